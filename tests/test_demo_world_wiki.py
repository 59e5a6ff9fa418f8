"""The demo wiki dump reads with independent readers: mwxml, bz2 stream by stream, mwparserfromhell."""

from __future__ import annotations

import bz2
import json
import re
from collections import Counter
from xml.sax.saxutils import escape

import mwparserfromhell
import mwxml
import pytest

from pipeline.demo_world import mediawiki, scene, wiki

XML = "wiki/enwiki-20240101-pages-articles-multistream.xml.bz2"
INDEX = "wiki/enwiki-20240101-pages-articles-multistream-index.txt.bz2"


@pytest.fixture(scope="module")
def pages(tiny_world):
    """(page, revision) pairs as mwxml reads them."""
    with bz2.open(tiny_world / XML) as f:
        dump = mwxml.Dump.from_file(f)
        out = [(p, next(iter(p))) for p in dump]
        assert dump.site_info.dbname == "enwiki"
        assert {ns.id: ns.name for ns in dump.site_info.namespaces}[14] == "Category"
    return out


def test_mwxml_reads_every_page_with_namespaces_and_redirects(tiny_world, pages):
    manifest = json.loads((tiny_world / "manifest.json").read_text())
    kinds = manifest["counts"]["wiki"]["by_kind"]
    assert len(pages) == manifest["counts"]["wiki"]["pages"]
    by_ns = Counter(p.namespace for p, _ in pages)
    assert by_ns[0] == kinds["article"] + kinds["redirect"] + kinds["disambiguation"]
    assert {1, 2, 4, 6, 10, 14} <= set(by_ns)
    redirects = [(p, r) for p, r in pages if p.redirect]
    assert len(redirects) == kinds["redirect"] > 0
    titles = {p.title for p, _ in pages}
    for p, r in redirects:
        assert r.text.startswith(f"#REDIRECT [[{p.redirect}]]") and p.redirect in titles
    ids = [p.id for p, _ in pages]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_revisions_carry_real_metadata(pages):
    for _, rev in pages:
        assert rev.model == "wikitext" and rev.format == "text/x-wiki"
        assert rev.bytes == len(rev.text.encode("utf-8"))
        assert rev.sha1 == mediawiki.sha1_base36(rev.text) and len(rev.sha1) == 31
        assert re.fullmatch(r"2023-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(rev.timestamp))


def test_multistream_index_offsets_open_each_stream(tiny_world, pages):
    data = (tiny_world / XML).read_bytes()
    lines = bz2.decompress((tiny_world / INDEX).read_bytes()).decode().splitlines()
    assert len(lines) == len(pages)
    offsets = sorted({int(line.split(":", 1)[0]) for line in lines})
    assert offsets[0] > 0  # the first stream holds only the header and siteinfo
    header = bz2.BZ2Decompressor().decompress(data)
    assert b"<siteinfo>" in header and b"<page>" not in header
    by_offset: dict[int, list[tuple[str, str]]] = {}
    for line in lines:
        offset, page_id, title = line.split(":", 2)
        by_offset.setdefault(int(offset), []).append((page_id, title))
    for offset, entries in by_offset.items():
        d = bz2.BZ2Decompressor()
        xml = d.decompress(data[offset:]).decode("utf-8")
        assert d.eof and xml.count("<page>") == len(entries) <= wiki.PAGES_PER_STREAM
        for page_id, title in entries:
            assert (
                f"<title>{escape(title)}</title>\n    <ns>" in xml and f"<id>{page_id}</id>" in xml
            )
    last = bz2.BZ2Decompressor()
    assert last.decompress(data[data.rindex(b"BZh91AY&SY") :]) == b"</mediawiki>\n"


def test_articles_use_real_markup(pages):
    articles = [
        r.text
        for p, r in pages
        if p.namespace == 0 and not p.redirect and "{{disambiguation}}" not in r.text
    ]
    code = mwparserfromhell.parse(articles[0])
    assert code.filter_wikilinks() and code.filter_templates() and code.filter_headings()
    assert any(
        t.name.strip() == "Infobox thing" and t.get("colour").value.filter_templates()
        for t in code.filter_templates()
    )
    joined = "\n".join(articles)
    for pattern in (r"\[\[[^]|]+\|[^]]+\]\]", r"<ref>", r"<ref name=\"\w+\" />", r"\{\| class=\"wikitable", r"\[\[File:[^]]+\|thumb\|",
                    r"\[\[Category:", r"\[\[(de|fr|es|it|nl|pl|ja|pt):", r"'''", r"^\* ", r"^== .+ ==$"):  # fmt: skip
        assert re.search(pattern, joined, re.M), pattern
    assert any("{{disambiguation}}" in r.text for _, r in pages)


def test_scene_words_and_title_bigrams_are_frequent(pages):
    text = " ".join(
        mwparserfromhell.parse(r.text).strip_code() for p, r in pages if p.namespace == 0
    ).lower()
    words = Counter(re.findall(r"[a-z]+", text))
    for colour in scene.COLOURS:
        assert words[colour] >= 20, colour
    for count in scene.COUNT_WORDS.values():
        assert words[count] >= 20, count
    for shape in scene.SHAPES:
        assert words[shape] + words[scene.PLURALS.get(shape, shape + "s")] >= 20, shape
    titles = [
        p.title.lower() for p, r in pages if p.namespace == 0 and " " in p.title and not p.redirect
    ]
    assert max(text.count(t) for t in titles) >= 20  # popular multi-word titles recur: PMI bigrams


def test_sha1_base36_matches_mediawiki():
    assert (
        mediawiki.sha1_base36("") == "phoiac9h4m842xq45sp7s6u21eteeq1"
    )  # blank revisions in real dumps


def test_wordnet_data_lines_parse(tmp_path):
    from pipeline.demo_world.vocab import read_wordnet_data

    path = tmp_path / "data.adj"
    path.write_text(
        "  1 This software and database is being provided to you, the LICENSEE, by  \n"
        '00002312 00 a 02 abaxial 0 dorsal 4 002 ;c 06037666 n 0000 ! 00002527 a 0101 | facing away from the axis; "the abaxial surface"  \n'
        "00003356 00 s 0b long_ago(p) 0 a 0 b 0 c 0 d 0 e 0 f 0 g 0 h 0 i 0 j 0 000 | in the past\n"
    )
    (lemmas, gloss), (many, _) = read_wordnet_data(path)
    assert lemmas == ["abaxial", "dorsal"] and gloss == "facing away from the axis"
    assert many[0] == "long ago" and len(many) == 11  # w_cnt is hexadecimal; markers dropped
