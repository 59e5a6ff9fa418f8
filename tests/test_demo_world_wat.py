"""The demo WAT files read with warcio and fastwarc, and their image links resolve to the demo server."""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import urljoin, urlsplit

import pytest
from fastwarc.warc import ArchiveIterator as FastIterator
from fastwarc.warc import WarcRecordType
from warcio.archiveiterator import ArchiveIterator

from pipeline.demo_world import scene, urls


def _wat_files(world):
    manifest = json.loads((world / "manifest.json").read_text())
    return manifest, [world / f for f in manifest["files"]["wat"]]


@pytest.fixture(scope="module")
def records(tiny_world):
    """(warc headers, payload bytes) of every record, read by warcio."""
    _, files = _wat_files(tiny_world)
    out = []
    for path in files:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                out.append((path.name, dict(rec.rec_headers.headers), rec.content_stream().read()))
    return out


@pytest.fixture(scope="module")
def pages(records):
    """(page url, Head, Links) of every HTML response described in the WAT files."""
    out = []
    for _, headers, payload in records:
        if headers["WARC-Type"] != "metadata":
            continue
        meta = json.loads(payload)["Envelope"]["Payload-Metadata"].get("HTTP-Response-Metadata", {})
        if "HTML-Metadata" in meta:
            out.append(
                (
                    headers["WARC-Target-URI"],
                    meta["HTML-Metadata"]["Head"],
                    meta["HTML-Metadata"]["Links"],
                )
            )
    return out


def test_warcio_sees_warcinfo_then_metadata_records(tiny_world, records):
    manifest, files = _wat_files(tiny_world)
    assert len(records) == manifest["counts"]["wat"]["records"]
    for path in files:
        types = [h["WARC-Type"] for name, h, _ in records if name == path.name]
        assert types[0] == "warcinfo" and set(types[1:]) == {"metadata"}
    for _, h, payload in records:
        if h["WARC-Type"] == "metadata":
            assert h["Content-Type"] == "application/json" and h["WARC-Refers-To"].startswith(
                "<urn:uuid:"
            )
            env = json.loads(payload)
            assert env["Envelope"]["Format"] == "WARC"
            assert (
                env["Envelope"]["WARC-Header-Metadata"]["WARC-Target-URI"] == h["WARC-Target-URI"]
            )
            assert env["Envelope"]["Payload-Metadata"]["Actual-Content-Type"].startswith(
                "application/http; msgtype="
            )


def test_fastwarc_reads_the_same_records(tiny_world, records):
    _, files = _wat_files(tiny_world)
    seen = []
    for path in files:
        with open(path, "rb") as f:
            for rec in FastIterator(f, record_types=WarcRecordType.any_type, parse_http=False):
                seen.append(
                    (str(rec.record_type), rec.headers.get("WARC-Record-ID"), rec.reader.read())
                )
    assert [(t, i) for t, i, _ in seen] == [
        (h["WARC-Type"], h["WARC-Record-ID"]) for _, h, _ in records
    ]
    assert [p for *_, p in seen] == [p for *_, p in records]


def _resolve(page_url: str, head: dict, url: str) -> str:
    return urljoin(head.get("Base") or page_url, url)


def test_image_links_resolve_to_the_demo_server(tiny_world, pages):
    manifest, _ = _wat_files(tiny_world)
    port, wat = manifest["port"], manifest["counts"]["wat"]
    imgs = [(u, h, link) for u, h, links in pages for link in links if link["path"] == "IMG@/src"]
    assert len(imgs) == wat["img_links"]
    demo, faults, copies, other = 0, Counter(), Counter(), []
    for page_url, head, link in imgs:
        parts = urlsplit(_resolve(page_url, head, link["url"]))
        parsed = urls.parse_path(parts.path)
        copy = urls.parse_variant_path(parts.path)
        if parts.netloc == f"{urls.HOST}:{port}" and (parsed or copy):
            demo += 1
            if parsed:
                faults[parsed[0]] += parsed[0] is not None
            else:
                copies[copy[0]] += 1
        else:
            other.append(parts)
    assert demo == wat["demo_img_links"]
    assert set(faults) - {None} == set(urls.FAULT_MODES)
    assert sum(copies.values()) == wat["kinds"]["planted_copy"] > 0
    schemes_hosts = {(p.scheme, p.hostname) for p in other}
    assert ("data", None) in schemes_hosts and ("http", "169.254.169.254") in schemes_hosts
    assert {p.path.rsplit(".", 1)[-1] for p in other if p.scheme == "http"} >= {"svg", "gif", "ico"}


def test_links_hold_what_real_pages_hold(pages):
    links = [(u, h, link) for u, h, ls in pages for link in ls]
    raw = [link["url"] for _, _, link in links if link["path"] == "IMG@/src"]
    assert any(r.startswith("../") for r in raw) and any(r.startswith("/img/") for r in raw)
    assert any(r.startswith("//") for r in raw) and any(r.startswith("img/") for r in raw)
    assert all(
        h.get("Base")
        for _, h, link in links
        if link["path"] == "IMG@/src" and link["url"].startswith("img/")
    )
    assert {"A@/href", "LINK@/href", "SCRIPT@/src", "IMG@/src"} <= {
        link["path"] for _, _, link in links
    }
    img = [link for _, _, link in links if link["path"] == "IMG@/src"]
    assert (
        any("alt" not in i for i in img)
        and any(i.get("alt") == "" for i in img)
        and any("title" in i for i in img)
    )
    alts = [i["alt"] for i in img if i.get("alt", "").strip()]
    assert (
        any("&amp;" in a for a in alts)
        and any("Ã" in a for a in alts)
        and any(len(a) > 1000 for a in alts)
    )
    pairs = Counter(
        (_resolve(u, h, link["url"]), link.get("alt"))
        for u, h, link in links
        if link["path"] == "IMG@/src"
    )
    assert max(pairs.values()) >= 2  # the same image and alt on several pages


def test_alt_texts_describe_the_images(tiny_world, pages):
    seed = json.loads((tiny_world / "manifest.json").read_text())["seed"]
    described = total = 0
    for page_url, head, ls in pages:
        for link in ls:
            parsed = urls.parse_path(urlsplit(_resolve(page_url, head, link["url"])).path)
            if link["path"] == "IMG@/src" and parsed and link.get("alt", "").strip():
                s = scene.scene_for(int(parsed[1]), seed)
                total += 1
                described += s.colour in link["alt"] and s.shape[:4] in link["alt"]
    assert described / total > 0.75
