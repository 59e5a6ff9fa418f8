"""Reading MediaWiki dumps: splits, stream boundaries, and hostile input (never a crash)."""

import bz2
import collections
import re

import mwxml
import pytest

from pipeline.demo_world.mediawiki import (
    HEADER,
    DumpPage,
    page_xml,
    write_multistream,
    write_single_stream,
)
from queries.dump_reader import (
    DumpFile,
    Page,
    PageSplitter,
    Skip,
    parse_page,
    plan_splits,
    read_dump,
    read_split,
)


def _pages(n, words=30):
    return [
        DumpPage(
            f"Page {i} & <co>",
            f"Text of '''page''' {i} [[link|linked]] é " * (i % words + 1),
            i + 1,
        )
        for i in range(n)
    ]


def _ids(records):
    return [r.page_id for r in records if isinstance(r, Page)]


def _skips(records):
    return collections.Counter(r.reason for r in records if isinstance(r, Skip))


@pytest.fixture
def dump(tmp_path):
    path = str(tmp_path / "enwiki-pages-articles-multistream.xml.bz2")
    write_multistream(path, _pages(750), str(tmp_path / "index.txt.bz2"), pages_per_stream=50)
    return path


def test_matches_mwxml_on_a_whole_dump(dump):
    with bz2.open(dump) as f:
        expected = [
            (p.title, p.namespace, p.id, p.redirect, next(iter(p)).text)
            for p in mwxml.Dump.from_file(f)
        ]
    records = list(read_dump(dump))
    ours = [(r.title, r.ns, r.page_id, r.redirect, r.text) for r in records if isinstance(r, Page)]
    assert ours == expected and len(ours) == 750
    assert records[-1] == DumpFile(dump, None)  # the file's verdict: read, not failed


@pytest.mark.parametrize("split_bytes", [10**9, 6_000, 1_001, 300])
def test_every_page_once_whatever_the_splits(dump, split_bytes):
    splits = plan_splits(dump, split_bytes)
    records = [r for s in splits for r in read_split(s)]
    assert sorted(_ids(records)) == list(range(1, 751)) and not _skips(records)
    if split_bytes < 10**9:
        assert (
            len(splits) > 1 and sum(1 for s in splits if _ids(read_split(s))) > 1
        )  # read in parallel


def test_streams_cutting_through_pages(tmp_path):
    """pbzip2-style files cut the XML at arbitrary bytes: a page open at a split end is finished
    by that split and skipped by the next."""
    xml = (HEADER + "".join(page_xml(p) for p in _pages(300)) + "</mediawiki>\n").encode()
    path = str(tmp_path / "cut.xml.bz2")
    with open(path, "wb") as f:
        for i in range(0, len(xml), 7_000):
            f.write(bz2.compress(xml[i : i + 7_000]))
    for split_bytes in (10**9, 4_000, 1_000):
        records = [r for s in plan_splits(path, split_bytes) for r in read_split(s)]
        assert sorted(_ids(records)) == list(range(1, 301)), split_bytes


def test_single_stream_and_plain_xml(tmp_path):
    path = str(tmp_path / "single.xml.bz2")
    write_single_stream(path, _pages(120))
    assert sorted(_ids(read_dump(path, split_bytes=2_000))) == list(range(1, 121))
    plain = tmp_path / "plain.xml"
    plain.write_bytes(bz2.decompress(open(path, "rb").read()))
    assert len(plan_splits(str(plain), 100)) == 1
    assert sorted(_ids(read_dump(str(plain)))) == list(range(1, 121))


def test_redirect_and_namespace_fields(tmp_path):
    path = str(tmp_path / "d.xml.bz2")
    write_multistream(
        path,
        [
            DumpPage("Paris, France", "#REDIRECT [[Paris]]", 1, redirect="Paris"),
            DumpPage("Talk:Paris", "hi", 2, ns=1),
        ],
    )
    a, b = (r for r in read_dump(path) if isinstance(r, Page))
    assert (a.title, a.redirect, a.ns) == ("Paris, France", "Paris", 0) and (b.title, b.ns) == (
        "Talk:Paris",
        1,
    )


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_file_is_a_counted_skip(dump, tmp_path, keep):
    data = open(dump, "rb").read()
    cut = tmp_path / "cut.xml.bz2"
    cut.write_bytes(data[: int(len(data) * keep)])
    records = list(read_dump(str(cut), split_bytes=5_000))
    ids = _ids(records)
    assert len(ids) == len(set(ids)) and 0 < len(ids) < 750
    assert _skips(records) == {"truncated": 1}


def test_truncated_single_stream(tmp_path):
    path = tmp_path / "single.xml.bz2"
    write_single_stream(str(path), _pages(3000))  # > 900 kB of XML: several bz2 blocks
    path.write_bytes(path.read_bytes()[:-2000])
    records = list(read_dump(str(path)))
    assert _skips(records) == {"truncated": 1} and len(_ids(records)) > 0


def _stream_file(tmp_path, *page_blobs: bytes) -> str:
    path = tmp_path / "hostile.xml.bz2"
    path.write_bytes(
        bz2.compress(HEADER.encode())
        + bz2.compress(b"".join(page_blobs))
        + bz2.compress(b"</mediawiki>\n")
    )
    return str(path)


def test_bad_utf8_skips_only_that_page(tmp_path):
    bad = (
        page_xml(DumpPage("Bad", "caf\u00e9 PLACEHOLDER", 2))
        .encode()
        .replace(b"PLACEHOLDER", b"\xff\xfe")
    )
    path = _stream_file(
        tmp_path,
        page_xml(DumpPage("A", "ok", 1)).encode(),
        bad,
        page_xml(DumpPage("C", "ok", 3)).encode(),
    )
    records = list(read_dump(path))
    assert _ids(records) == [1, 3] and _skips(records) == {"bad_utf8": 1}


def test_missing_or_deleted_text_and_broken_xml(tmp_path):
    no_text = (
        b"<page><title>NoText</title><ns>0</ns><id>2</id><revision><id>9</id></revision></page>"
    )
    deleted = b'<page><title>Del</title><ns>0</ns><id>3</id><revision><text deleted="deleted" /></revision></page>'
    empty = b'<page><title>Empty</title><ns>0</ns><id>4</id><revision><text bytes="0" /></revision></page>'
    broken = (
        b"<page><title>A & B</title><ns>0</ns><id>5</id><revision><text>x</text></revision></page>"
    )
    no_ns = b"<page><title>X</title><id>6</id><revision><text>x</text></revision></page>"
    path = _stream_file(
        tmp_path, page_xml(DumpPage("A", "ok", 1)).encode(), no_text, deleted, empty, broken, no_ns
    )
    records = list(read_dump(path))
    assert _ids(records) == [1, 4] and [r.text for r in records if isinstance(r, Page)] == [
        "ok",
        "",
    ]
    assert _skips(records) == {"no_text": 2, "xml_error": 2}


def test_giant_page_is_skipped_and_the_next_one_read(tmp_path):
    giant = page_xml(DumpPage("Giant", "word " * 600_000, 2)).encode()  # 3 MB: spans read blocks
    path = _stream_file(
        tmp_path,
        page_xml(DumpPage("A", "ok", 1)).encode(),
        giant,
        page_xml(DumpPage("C", "ok", 3)).encode(),
    )
    records = list(read_dump(path, max_page_bytes=1 << 20))
    assert _ids(records) == [1, 3] and _skips(records) == {"too_large": 1}
    assert _ids(read_dump(path, max_page_bytes=8 << 20)) == [1, 2, 3]


def test_corrupt_bz2_data_is_a_counted_skip(dump, tmp_path):
    data = bytearray(open(dump, "rb").read())
    data[len(data) // 2 : len(data) // 2 + 200] = b"\x00" * 200
    bad = tmp_path / "corrupt.xml.bz2"
    bad.write_bytes(bytes(data))
    records = list(read_dump(str(bad)))
    assert set(_skips(records)) <= {"bz2_error", "truncated"} and _skips(records)
    assert 0 < len(_ids(records)) < 750


def test_page_splitter_handles_markers_split_across_feeds():
    blob = b"junk<page><title>T</title></page>more<page>x</page>"
    splitter = PageSplitter(1 << 20)
    out = [p for i in range(len(blob)) for p in splitter.feed(blob[i : i + 1])]
    assert out == [b"<page><title>T</title></page>", b"<page>x</page>"] and not splitter.pending


def test_parse_page_without_title():
    assert parse_page(b"<page><ns>0</ns></page>", "s").reason == "xml_error"


@pytest.mark.parametrize("split_bytes", [10**9, 700])
def test_a_damaged_stream_costs_only_its_own_pages(tmp_path, split_bytes):
    """A bz2 error in one stream of a multistream dump: the reader resumes at the next stream
    header, so the split's later streams (and the file's verdict) are not lost with it."""
    path = tmp_path / "enwiki-pages-articles-multistream.xml.bz2"
    write_multistream(str(path), _pages(40), pages_per_stream=10)
    data = bytearray(path.read_bytes())
    starts = [m.start() for m in re.finditer(rb"BZh91AY&SY", bytes(data))]
    second = starts[2]  # header stream, pages 1-10, then the stream of pages 11-20
    data[second + 40] ^= 0xFF
    path.write_bytes(bytes(data))
    records = list(read_dump(str(path), split_bytes=split_bytes))
    assert _ids(records) == [i for i in range(1, 41) if not 11 <= i <= 20]
    assert _skips(records)["bz2_error"] == 1
    assert [r for r in records if isinstance(r, DumpFile)] == [DumpFile(str(path), None)]
