"""What the demo world plants for the curation filters: copies of images at other URLs and
captions in other languages, each recorded in ``planted.json`` and present in the world's files."""

from __future__ import annotations

import itertools
import json
import random
from urllib.parse import urljoin, urlsplit

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq
import pytest
from warcio.archiveiterator import ArchiveIterator

from pipeline.demo_world import plant, scene, urls


@pytest.fixture(scope="module")
def world(tiny_world):
    manifest = json.loads((tiny_world / "manifest.json").read_text())
    planted = json.loads((tiny_world / "planted.json").read_text())
    return manifest, planted


def _wat_pairs(world_dir, manifest) -> set[tuple[str, str | None]]:
    """(absolute image URL, alt) of every IMG@/src link of the WAT files."""
    out = set()
    for name in manifest["files"]["wat"]:
        with open(world_dir / name, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_headers.get_header("WARC-Type") != "metadata":
                    continue
                env = json.loads(rec.content_stream().read())
                meta = env["Envelope"]["Payload-Metadata"].get("HTTP-Response-Metadata", {})
                html = meta.get("HTML-Metadata")
                if not html:
                    continue
                page = rec.rec_headers.get_header("WARC-Target-URI")
                base = html["Head"].get("Base") or page
                for link in html["Links"]:
                    if link["path"] == "IMG@/src":
                        out.add((urljoin(base, link["url"]), link.get("alt")))
    return out


def _table_pairs(world_dir, manifest) -> set[tuple[str, str]]:
    """(URL, caption) of every table row."""
    out = set()
    for name in manifest["counts"]["tables"]:
        path = str(world_dir / "tables" / name)
        if name.endswith(".parquet"):
            t = pq.read_table(path)
        elif name.endswith(".tsv"):
            opts = pcsv.ParseOptions(delimiter="\t", quote_char=False)
            t = pcsv.read_csv(path, pcsv.ReadOptions(column_names=["url", "caption"]), opts)
        elif name.endswith(".csv"):
            t = pcsv.read_csv(path)
        else:
            gz = "gzip" if name.endswith(".gz") else None
            with pa.input_stream(path, compression=gz) as f:
                t = pjson.read_json(f)
        url, text = ("URL", "TEXT") if "URL" in t.column_names else ("url", "caption")
        if text not in t.column_names:
            text = "text"
        out |= set(zip(t[url].to_pylist(), t[text].to_pylist()))
    return out


@pytest.fixture(scope="module")
def pairs(tiny_world, world):
    manifest, _ = world
    return _wat_pairs(tiny_world, manifest) | _table_pairs(tiny_world, manifest)


def test_every_planted_copy_is_in_the_world_files_and_recorded(world, pairs):
    manifest, planted = world
    in_files = {url for url, _ in pairs}
    members = {m["url"] for g in planted["duplicates"] for m in g["members"]}
    assert members <= in_files
    copies_in_files = {u for u in in_files if urls.parse_variant_path(urlsplit(u).path)}
    placed = {m["url"] for g in planted["duplicates"] for m in g["members"][1:]}
    assert copies_in_files == placed  # no copy the record does not know of
    summary = manifest["planted"]
    assert summary["duplicate_groups"] == len(planted["duplicates"]) >= 5
    assert summary["copies"] == len(placed) == sum(summary["copies_by_variant"].values())
    assert summary["copies_by_variant"].get("copy", 0) > 0  # exact copies as well as modified


def test_each_group_is_an_original_and_copies_of_it_with_looks_no_other_group_has(world):
    manifest, planted = world
    looks = set()
    for group in planted["duplicates"]:
        image_id = group["image_id"]
        s = scene.scene_for(image_id, manifest["seed"])
        original, *copies = group["members"]
        assert original["variant"] == "original" and copies
        assert urls.parse_path(urlsplit(original["url"]).path) == (None, str(image_id), s.fmt)
        for m in copies:
            variant, copy_id, ext = urls.parse_variant_path(urlsplit(m["url"]).path)
            assert (variant, copy_id, ext) == (
                m["variant"],
                str(image_id),
                urls.variant_ext(variant, s.fmt),
            )
        assert len({m["url"] for m in group["members"]}) == len(group["members"])
        assert plant.look(s) not in looks
        looks.add(plant.look(s))


def test_planted_foreign_captions_are_in_the_files_at_their_images_url(world, pairs):
    manifest, planted = world
    foreign = planted["languages"]
    assert {f["language"] for f in foreign} == set(plant.FOREIGN)
    assert manifest["planted"]["foreign_captions"] == {
        code: sum(f["language"] == code for f in foreign) for code in plant.FOREIGN
    }
    for f in foreign:
        assert (f["url"], f["caption"]) in pairs
        assert urls.parse_path(urlsplit(f["url"]).path)[0] is None  # no fault mode: fetchable
        assert len(f["caption"].split(" - ")[0].split()) >= 6


def test_every_foreign_template_is_identified_as_its_language():
    """Each phrasing, with any scene and a title in English, reads as its language to the
    filter's identifier: the planted captions are a fair test of the language filter."""
    from pipeline.filter.language import identify

    rng = random.Random(0)
    titles = ["Pulse modulation", "League", "Red Diamond Park", "Lard oil", "Gray machete"]
    looks = list(itertools.product(scene.COLOURS, scene.SHAPES, scene.POSITIONS))
    for language in plant.FOREIGN:
        for colour, shape, position in rng.sample(looks, 120):
            background = rng.choice([c for c in scene.COLOURS if c != colour])
            s = scene.Scene(colour, shape, 1, position, background, 400, 300, "jpg")
            caption = plant.foreign_caption(s, language, rng.choice(titles), rng)
            assert identify(caption, 0.5)[0] == language, caption
