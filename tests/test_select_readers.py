"""Candidate readers on real WAT files and tables, including hostile inputs: counted, never raised."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.demo_world.wat import page_envelope as envelope
from pipeline.select.readers import ReaderSpec, iter_pairs
from tests.select_helpers import img, write_wat

SPEC = ReaderSpec()


def read(path, spec=SPEC):
    tally: Counter = Counter()
    pairs = list(iter_pairs(str(path), spec, tally))
    assert tally["units"] == tally["pairs"] + sum(
        v for k, v in tally.items() if k.startswith("drop:")
    )
    assert tally["pairs"] == len(pairs)
    return pairs, tally


def test_wat_links_resolution(tmp_path):
    page = "https://www.example.com/blog/2023/post.html"
    links = [
        img("https://cdn.example.com/a.jpg", "absolute url"),
        img("b.jpg", "relative to the page folder"),
        img("/c.jpg", "root relative"),
        img("../d.jpg", "dot dot"),
        img("//cdn.example.net/e.jpg", "protocol relative"),
        img("f.jpg", None, title="title only"),
        img(None, "no url at all"),
        img("g.jpg", None),
        img("h.jpg", "   "),
        {"path": "A@/href", "url": "/next.html", "text": "a link, not an image"},
        "not even a dict",
    ]
    path = write_wat(
        tmp_path / "a.warc.wat.gz",
        [(page, links), ("http://x.example/d/p.html", [img("i.jpg", "with base")], "/base/dir/")],
    )
    pairs, tally = read(path)
    got = {p.caption: p.url for p in pairs}
    assert got == {
        "absolute url": "https://cdn.example.com/a.jpg",
        "relative to the page folder": "https://www.example.com/blog/2023/b.jpg",
        "root relative": "https://www.example.com/c.jpg",
        "dot dot": "https://www.example.com/blog/d.jpg",
        "protocol relative": "https://cdn.example.net/e.jpg",
        "with base": "http://x.example/base/dir/i.jpg",
    }
    assert all(p.page_url in (page, "http://x.example/d/p.html") for p in pairs)
    assert tally["drop:link_missing_url"] == 1 and tally["drop:link_missing_alt"] == 3
    assert tally["records"] == 2
    with_title, _ = read(path, ReaderSpec(use_title=True))
    assert {p.caption for p in with_title} >= {"title only"}


def test_hostile_wat_payloads_are_counted(tmp_path):
    big_alt = "x" * 1_000_000
    raw = [
        b"this is not json",
        b'{"Envelope": {"Payload-Metadata": "oops"}}',
        b"[1, 2, 3]",
        b'{"no": "envelope"}',
        json.dumps(envelope("http://e.com/p", [img("a.jpg", "caf\u00e9 ok")]))
        .encode()
        .replace(b"caf\\u00e9", b"caf\xe9"),
        b"[" * 100_000,  # deep nesting
    ]
    path = write_wat(
        tmp_path / "h.warc.wat.gz",
        [("http://e.com/big", [img("big.jpg", big_alt)])],
        raw_payloads=raw,
    )
    pairs, tally = read(path)
    assert tally["error:wat_bad_json"] == 2  # not json, nesting
    assert tally["error:wat_no_envelope"] == 2
    assert tally["records_without_html"] == 1  # a Payload-Metadata that is not a mapping
    assert tally["error:wat_invalid_utf8"] == 1  # decoded with U+FFFD; the filter drops that pair
    assert [p.caption for p in pairs] == [big_alt, "caf\ufffd ok"]


def test_invalid_utf8_inside_a_string_keeps_the_page(tmp_path):
    body = json.dumps(
        envelope("http://e.com/p", [img("a.jpg", "good alt"), img("b.jpg", "BAD")])
    ).encode()
    body = body.replace(b"BAD", b"B\xffD")
    path = write_wat(tmp_path / "u.warc.wat.gz", [], raw_payloads=[body])
    pairs, tally = read(path)
    assert tally["error:wat_invalid_utf8"] == 1
    assert sorted(p.caption for p in pairs) == [
        "B\ufffdD",
        "good alt",
    ]  # the filter drops the U+FFFD one


def test_truncated_wat_file(tmp_path):
    full = write_wat(
        tmp_path / "full.warc.wat.gz",
        [(f"http://e.com/{i}", [img(f"{i}.jpg", f"caption {i}")]) for i in range(20)],
    )
    data = full.read_bytes()
    cut = tmp_path / "cut.warc.wat.gz"
    cut.write_bytes(data[: len(data) - 60])
    pairs, tally = read(cut)
    assert 0 < len(pairs) < 20
    assert sum(v for k, v in tally.items() if k.startswith("error:")) >= 1
    garbage = tmp_path / "garbage.warc.wat.gz"
    garbage.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00garbage" * 100)
    assert read(garbage)[0] == []


def test_missing_file_is_counted(tmp_path):
    pairs, tally = read(tmp_path / "nope.warc.wat.gz")
    assert pairs == [] and any(k.startswith("error:file_unreadable") for k in tally)


ROWS = [
    ("http://e.com/1.jpg", "one caption"),
    ("http://e.com/2.jpg", 'two, with "quotes"\tand tab'),
]


def _write_table(path, header=True):
    name = str(path).removesuffix(".gz")
    opener = gzip.open if str(path).endswith(".gz") else open
    if name.endswith(".parquet"):
        pq.write_table(
            pa.table({"URL": [r[0] for r in ROWS] + [None], "TEXT": [r[1] for r in ROWS] + ["x"]}),
            path,
        )
        return
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        if name.endswith(".jsonl"):
            for u, c in ROWS:
                f.write(json.dumps({"url": u, "text": c}) + "\n")
            f.write("{broken json\n")
            f.write(json.dumps({"url": "http://e.com/3.jpg"}) + "\n")
        else:
            import csv

            w = csv.writer(f, delimiter="\t" if name.endswith(".tsv") else ",")
            if header:
                w.writerow(["caption", "url"])
                w.writerows([(c, u) for u, c in ROWS])
            else:
                w.writerows(ROWS)
            w.writerow(["only-one-field"])


@pytest.mark.parametrize(
    "name, header, extra",
    [
        ("t.parquet", True, {"drop:row_missing_url": 1}),
        ("t.csv", True, {"drop:row_too_few_fields": 1}),
        ("t.csv.gz", True, {"drop:row_too_few_fields": 1}),
        ("cc12m.tsv", False, {"drop:row_too_few_fields": 1}),
        ("t.jsonl", True, {"drop:row_bad_json": 1, "drop:row_missing_caption": 1}),
        ("t.jsonl.gz", True, {"drop:row_bad_json": 1, "drop:row_missing_caption": 1}),
    ],
)
def test_tables(tmp_path, name, header, extra):
    path = tmp_path / name
    _write_table(path, header)
    pairs, tally = read(path)
    assert [(p.url, p.caption) for p in pairs] == ROWS
    assert {k: v for k, v in tally.items() if k.startswith("drop:")} == extra


def test_table_missing_columns_and_truncated_gzip(tmp_path):
    pq.write_table(pa.table({"a": ["x"], "b": ["y"]}), tmp_path / "odd.parquet")
    assert read(tmp_path / "odd.parquet")[1]["error:table_missing_columns"] == 1
    path = tmp_path / "t.csv.gz"
    with gzip.open(path, "wt") as f:
        f.writelines(f"http://e.com/{i}.jpg,caption number {i}\n" for i in range(5000))
    data = path.read_bytes()
    (tmp_path / "cut.csv.gz").write_bytes(data[: len(data) // 2])
    pairs, tally = read(tmp_path / "cut.csv.gz")
    assert 0 < len(pairs) < 5000
    assert any(k.startswith("error:file_truncated") for k in tally)
