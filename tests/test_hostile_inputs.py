"""Unreadable inputs of every reader are recorded per file with a named reason, so that a stage
can tell "every input failed" from "some failed"; a query list or table with the wrong columns
says so in one line."""

from __future__ import annotations

import bz2
import gzip
import os
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import ConfigError
from pipeline.demo_world.mediawiki import DumpPage, write_multistream
from pipeline.select import extract, matching
from pipeline.select.normalize import FilterSpec
from pipeline.select.readers import ReaderSpec, iter_pairs
from pipeline.select.stage import load_matcher
from queries.dump_reader import DumpFile, Page, read_dump
from queries.pageviews import PageviewFilter, read_hour_file
from queries.sources import TextCounter
from tests.select_helpers import img, write_queries, write_wat

NOISE = bytes((i * 151 + 7) % 256 for i in range(5000))  # 5 kB that are neither bz2 nor XML


def _tally(path, spec=ReaderSpec()) -> tuple[list, Counter]:
    tally: Counter = Counter()
    return list(iter_pairs(str(path), spec, tally)), tally


# -- select inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("noise.warc.wat.gz", NOISE, "error:wat_stream (OSError)"),
        ("html.warc.wat.gz", gzip.compress(b"<html></html>" * 50), "error:wat_stream (OSError)"),
        ("empty.warc.wat.gz", b"", "error:wat_no_records"),
        ("noise.parquet", NOISE, "error:file_unreadable (ArrowInvalid)"),
        ("noise.csv.gz", NOISE, "error:file_not_gzip"),
        ("empty.csv", b"", "error:file_empty"),
        ("empty.tsv.gz", gzip.compress(b""), "error:file_empty"),
        ("noise.jsonl", NOISE, "error:table_not_jsonl"),
        ("array.json", b'[{"url": "http://e.com/a.jpg", "caption": "a cat"}]', None),
        ("ids.jsonl", b'{"id": 1, "image_link": "http://e.com/a.jpg", "caption": "x"}\n', None),
    ],
)
def test_an_unreadable_input_is_a_failed_file_with_its_reason(tmp_path, name, data, reason):
    path = tmp_path / name
    path.write_bytes(data)
    pairs, tally = _tally(path)
    kind = "wat" if ".wat" in name else "table"
    assert not pairs and tally[f"{kind}_file:read"] == 1 and tally[f"{kind}_file:failed"] == 1
    errors = [k for k in tally if k.startswith("error:")]
    assert errors == [reason] if reason else len(errors) == 1


def test_a_readable_input_is_read_not_failed(tmp_path):
    wat = write_wat(tmp_path / "a.warc.wat.gz", [("http://e.com/p", [img("a.jpg", "a cat")])])
    header_only = tmp_path / "h.csv"
    header_only.write_bytes(b"url,caption\n")
    for path, kind, n in ((wat, "wat", 1), (header_only, "table", 0)):
        pairs, tally = _tally(path)
        assert len(pairs) == n and tally[f"{kind}_file:read"] == 1
        assert f"{kind}_file:failed" not in tally


def test_a_truncated_input_that_gave_pairs_has_not_failed(tmp_path):
    path = tmp_path / "t.csv.gz"
    path.write_bytes(
        gzip.compress(b"".join(b"http://e.com/%d.jpg,cap %d\n" % (i, i) for i in range(3000)))
    )
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    pairs, tally = _tally(cut)
    assert pairs and tally["error:file_truncated (EOFError)"] == 1
    assert "table_file:failed" not in tally


def test_the_file_report_carries_the_failure_for_the_stage(tmp_path):
    matching.clear_cache()
    queries = write_queries(tmp_path / "q.parquet", ["cat"])
    settings = extract.Settings(
        str(queries),
        "auto",
        str(tmp_path / "work"),
        2,
        ReaderSpec(),
        FilterSpec(),
        False,
        "exact",
        1,
        0,
    )
    bad = tmp_path / "corrupt.parquet"
    bad.write_bytes(NOISE)
    report = extract.extract_file(str(bad), 0, settings, matching.get_matcher(str(queries)))
    assert report["counts"]["table_file:failed"] == 1 and report["counts"]["table_file:read"] == 1


# -- CSV/TSV headers -----------------------------------------------------------------------------


def test_a_header_without_the_url_column_is_not_read_as_data(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"id,caption,image_link\n1,a cat,http://e.com/a.jpg\n")
    pairs, tally = _tally(path)
    assert not pairs and tally["error:table_missing_columns"] == 1 and "units" not in tally
    # The same file with its URL column named: read by its header.
    spec = ReaderSpec(url_columns=("image_link",))
    assert [(p.url, p.caption) for p in _tally(path, spec)[0]] == [("http://e.com/a.jpg", "a cat")]


def test_parquet_and_csv_with_the_same_columns_fail_the_same_way(tmp_path):
    pq.write_table(
        pa.table({"id": [1], "caption": ["a cat"], "image_link": ["http://e.com/a"]}),
        tmp_path / "t.parquet",
    )
    (tmp_path / "t.csv").write_bytes(b"id,caption,image_link\n1,a cat,http://e.com/a\n")
    for name in ("t.parquet", "t.csv"):
        tally = _tally(tmp_path / name)[1]
        assert tally["error:table_missing_columns"] == 1 and tally["table_file:failed"] == 1


@pytest.mark.parametrize(
    "text, header, expected",
    [
        ("http://e.com/a.jpg\ta cat\n", "auto", [("http://e.com/a.jpg", "a cat")]),  # CC12M
        ("a cat\thttp://e.com/a.jpg\n", "auto", [("http://e.com/a.jpg", "a cat")]),  # CC3M
        ("http://e.com/a.jpg\ta cat\tx\n", "auto", None),  # three fields, no header: not guessed
        ("http://e.com/a.jpg\ta cat\tx\n", "no", [("http://e.com/a.jpg", "a cat")]),
        ("http://e.com/a.jpg\thttp://e.com/b.jpg\n", "auto", None),  # which one is the URL?
        ("http://e.com/a.jpg\ta cat\n", "yes", None),  # told there is a header: there is none
        (
            "\ufeffurl\tcaption\nhttp://e.com/a.jpg\ta cat\n",
            "yes",
            [("http://e.com/a.jpg", "a cat")],
        ),
    ],
)
def test_headerless_tables_are_explicit_or_safely_detected(tmp_path, text, header, expected):
    path = tmp_path / "t.tsv"
    path.write_bytes(text.encode())
    pairs, tally = _tally(path, ReaderSpec(table_header=header))
    if expected is None:
        assert not pairs and tally["error:table_missing_columns"] == 1
    else:
        assert [(p.url, p.caption) for p in pairs] == expected


# -- query lists ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "table, message",
    [
        ({"query": ["cat"], "count": [3]}, "no query_id column (columns: query, count)"),
        ({"query_id": ["a"], "query": ["cat"]}, "query_id must hold integers, not string"),
        ({"query_id": [1], "query": [3]}, "query must hold strings, not int64"),
    ],
)
def test_a_query_list_with_the_wrong_columns_is_one_line_naming_the_flag(tmp_path, table, message):
    matching.clear_cache()
    path = tmp_path / "q.parquet"
    pq.write_table(pa.table(table), path)
    with pytest.raises(ConfigError) as e:
        load_matcher(str(path), "auto")
    text = str(e.value)
    assert "\n" not in text and text.startswith("select.queries_file (--queries-file): ")
    assert text.endswith(message)


def test_a_corrupt_query_list_is_one_line(tmp_path):
    matching.clear_cache()
    path = tmp_path / "q.parquet"
    path.write_bytes(NOISE)
    with pytest.raises(ValueError) as e:
        matching.read_query_arrays(str(path))
    assert "\n" not in str(e.value) and str(e.value).startswith("not a readable Parquet file")


# -- dumps and pageviews -------------------------------------------------------------------------


def _dump_stats(path) -> tuple[int, Counter]:
    counter = TextCounter()
    pages = 0
    for rec in read_dump(str(path)):
        pages += isinstance(rec, Page)
        counter.add(rec)
    return pages, counter.stats


@pytest.mark.parametrize(
    "data, problem",
    [
        (NOISE, "not_a_dump"),  # random bytes named like a dump
        (gzip.compress(b"<mediawiki><page></page></mediawiki>"), "not_a_dump"),  # not bz2
        (b"", "empty"),
        (b"BZh91AY&SY" + NOISE, "bz2_error"),
        (bz2.compress(b"<mediawiki>\n</mediawiki>\n"), "no_pages"),
    ],
)
def test_a_dump_without_a_readable_page_is_a_failed_dump(tmp_path, data, problem):
    path = tmp_path / "enwiki-pages-articles.xml.bz2"
    path.write_bytes(data)
    pages, stats = _dump_stats(path)
    assert pages == 0
    assert stats["dump_file:read"] == stats["dump_file:failed"] == 1
    assert stats[f"dump_file:failed:{problem}"] == 1


def test_a_good_or_truncated_dump_is_read_not_failed(tmp_path):
    path = tmp_path / "d.xml.bz2"
    write_multistream(str(path), [DumpPage(f"P{i}", "text " * 50, i + 1) for i in range(300)])
    pages, stats = _dump_stats(path)
    assert pages == 300 and stats["dump_file:read"] == 1 and "dump_file:failed" not in stats
    cut = tmp_path / "cut.xml.bz2"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    pages, stats = _dump_stats(cut)
    assert 0 < pages < 300 and stats["page:skipped:truncated"] == 1
    assert stats["dump_file:read"] == 1 and "dump_file:failed" not in stats


def test_a_missing_dump_is_a_failed_dump_not_a_crash(tmp_path):
    records = list(read_dump(str(tmp_path / "gone.xml.bz2")))
    assert records[-1] == DumpFile(str(tmp_path / "gone.xml.bz2"), "io_error")


@pytest.mark.parametrize(
    "name, data, why",
    [
        ("pageviews-20240101-000000.gz", NOISE, "not_gzip"),
        ("pageviews-20240101-000000.gz", gzip.compress(b""), "empty"),
        ("pageviews-20240101-000000", b"<html>not a pageview file</html>\n", "not_pageviews"),
        ("pageviews-20240101-000000.gz", gzip.compress(b"en Paris 3 0\n" * 999)[:-30], "truncated"),
    ],
)
def test_a_pageview_file_without_a_readable_line_is_failed(tmp_path, name, data, why):
    path = tmp_path / name
    path.write_bytes(data)
    views, stats = read_hour_file(str(path), PageviewFilter(), 1)
    assert not views and stats["pageview_file:failed"] == 1
    assert stats[f"pageview_file:failed:{why}"] == 1


def test_a_readable_pageview_file_is_not_failed(tmp_path):
    path = tmp_path / "pageviews-20240101-000000.gz"
    path.write_bytes(gzip.compress(b"de Paris 3 0\nen Paris 4 0\n"))
    views, stats = read_hour_file(str(path), PageviewFilter(), 1)
    assert views == {"Paris": 4} and "pageview_file:failed" not in stats
    missing = read_hour_file(str(tmp_path / "gone.gz"), PageviewFilter(), 1)[1]
    assert missing == {"pageview_file:failed": 1, "pageview_file:failed:unreadable": 1}
    assert os.path.exists(path)
