"""Property tests of every reader: WAT records, URL/caption tables in each format, dump pages and
pageview lines, well-formed or damaged, end as counted, named outcomes within a bounded memory.

Each file is read in a child process under an address-space limit (:mod:`tests.hostile_worker`).
What holds for every input: no exception, the reader's accounting adds up, every key it counts is
one the reports know, a file that failed says why, and an undamaged file is read in full.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import re
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.demo_world.mediawiki import FOOTER, HEADER, DumpPage, page_xml
from tests.select_helpers import img, write_wat

pytestmark = pytest.mark.timeout(300)

PEAK_MB = 96  # every case below is small, and each long line or record is read in bounded pieces
CI = settings(
    max_examples=80,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# What the tallies may hold: the readers' named outcomes (an exception name in brackets at most).
PAIR_KEYS = re.compile(
    r"^(records|records_without_html|units|pairs|(wat|table)_file:(read|failed)"
    r"|drop:(link_missing_url|link_missing_alt|url_unresolvable|row_missing_url"
    r"|row_missing_caption|row_bad_json|row_too_few_fields|row_too_long)"
    r"|error:(wat_truncated_record|wat_record_too_large|wat_bad_json|wat_no_envelope"
    r"|wat_invalid_utf8|wat_bad_structure|wat_no_records|file_empty|file_not_gzip|file_corrupt"
    r"|table_missing_columns|table_not_jsonl)"
    r"|error:(wat_stream|file_truncated|file_unreadable) \(\w+\))$"
)
DUMP_SKIPS = {"bad_utf8", "xml_error", "no_text", "too_large", "truncated", "bz2_error", "io_error"}
DUMP_PROBLEMS = {None, "empty", "not_a_dump", "bz2_error", "io_error", "no_pages", "truncated"}
PAGEVIEW_KEYS = re.compile(
    r"^(pageview_line:(kept|malformed|too_long|other_project|excluded_namespace|bad_title)"
    r"|pageview_title:below_hour_min|pageview_file:failed"
    r"|pageview_file:failed:(empty|not_pageviews|not_gzip|truncated|corrupt|unreadable))$"
)

# Text that real inputs hold, and the characters that break naive parsers.
words = st.text(
    st.characters(blacklist_categories=("Cs",), max_codepoint=0x2FFF), max_size=40
) | st.sampled_from(["", " ", "a cat", "caf\u00e9", '"quoted, text"', "tab\there", "line\nbreak"])
urls = (
    st.sampled_from(
        ["http://e.com/a.jpg", "https://cdn.e.org/x/y.png", "/rel.jpg", "b.jpg", "//h.e/c.jpg", ""]
    )
    | words
)


@st.composite
def damage(draw, data: bytes) -> tuple[bytes, bool]:
    """``data`` unchanged, truncated, with bytes flipped, or replaced by noise; and whether intact."""
    kind = draw(st.sampled_from(["none", "none", "truncate", "flip", "noise", "empty"]))
    # Positions are drawn independently of len(data): WARC writers stamp dates and record ids,
    # so the same draw must not depend on the bytes of one run.
    at = st.integers(0, 2**20)
    if kind == "none" or not data:
        return data, True
    if kind == "truncate":
        return data[: draw(at) % len(data)], False
    if kind == "flip":
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, 6))):
            buf[draw(at) % len(buf)] ^= draw(st.integers(1, 255))
        return bytes(buf), False
    if kind == "noise":
        return draw(st.binary(min_size=1, max_size=2048)), False
    return b"", False


def _check_tally(result: dict) -> dict:
    assert "error" not in result, result.get("traceback", result.get("error"))
    assert result["peak_mb"] <= PEAK_MB, result
    out = result["outcome"]
    tally = out["tally"]
    bad = [k for k in tally if not PAIR_KEYS.match(k)]
    assert not bad, bad
    drops = sum(n for k, n in tally.items() if k.startswith("drop:"))
    assert tally.get("units", 0) == tally.get("pairs", 0) + drops
    assert tally.get("pairs", 0) == len(out["pairs"])
    kind = "wat" if any(k.startswith("wat_file") for k in tally) else "table"
    assert tally[f"{kind}_file:read"] == 1
    if tally.get(f"{kind}_file:failed"):
        assert not out["pairs"] and any(k.startswith("error:") for k in tally)
    return out


# -- WAT ---------------------------------------------------------------------------------------


links = st.lists(
    st.fixed_dictionaries(
        {"path": st.sampled_from(["IMG@/src", "IMG@/src", "A@/href", "x"])},
        optional={"url": urls | st.integers(), "alt": words | st.none(), "title": words},
    )
    | st.sampled_from(["not a dict", 7, None]),
    max_size=6,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | words,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words, inner, max_size=3),
    max_leaves=8,
)
raw_payloads = st.lists(
    st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()), max_size=3
)


@st.composite
def wat_files(draw) -> tuple[bytes, str, dict]:
    pages = draw(
        st.lists(
            st.tuples(st.sampled_from(["http://e.com/p", "https://x.org/a/b.html", ""]), links),
            max_size=5,
        )
    )
    raw = draw(raw_payloads)
    with tempfile.TemporaryDirectory() as d:
        path = write_wat(Path(d) / "w.warc.wat.gz", pages, raw_payloads=raw)
        data = path.read_bytes()
    if draw(st.booleans()):  # an uncompressed WAT file
        data, name = gzip.decompress(data), "w.warc.wat"
    else:
        name = "w.warc.wat.gz"
    data, intact = draw(damage(data))
    img_links = sum(
        1 for _, ls in pages for link in ls if isinstance(link, dict) and link["path"] == "IMG@/src"
    )
    expect = {"records": len(pages) + len(raw), "img_links": img_links} if intact else None
    return data, name, expect


@CI
@given(case=wat_files())
def test_any_wat_file_is_counted_never_raised(worker, case):
    data, name, expect = case
    out = _check_tally(worker.run("wat", data, name))
    tally = out["tally"]
    if expect is not None:  # undamaged: every record read, every image link considered
        assert tally.get("records", 0) == expect["records"]
        assert tally.get("units", 0) == expect["img_links"] or tally.get("error:wat_bad_structure")
        if expect["records"] == 0:
            assert tally["wat_file:failed"] == 1 and tally["error:wat_no_records"] == 1


def test_wat_record_beyond_the_bound_is_skipped_unread(worker, tmp_path):
    big = [("http://e.com/big", [img("big.jpg", "x" * (40 << 20))])]
    path = write_wat(tmp_path / "big.warc.wat.gz", big + [("http://e.com/p", [img("a.jpg", "ok")])])
    out = _check_tally(worker.run("wat", path.read_bytes(), "big.warc.wat.gz"))
    assert out["tally"]["error:wat_record_too_large"] == 1 and out["pairs"] == [
        ("http://e.com/a.jpg", "ok")
    ]


# -- tables ------------------------------------------------------------------------------------

COLUMNS = ["url", "URL", "caption", "TEXT", "text", "alt", "id", "image_link", "title"]


URL_COLUMNS, CAPTION_COLUMNS = ("url", "URL"), ("caption", "TEXT", "text", "alt")


def _expected_rows(first: list | None, rows: int, table_header: str) -> int | str | None:
    """Rows a CSV/TSV reader must read (None: the file fails as table_missing_columns, "empty":
    as file_empty).

    The rule of ``--table-header``, written out: a header naming a URL and a caption column,
    or (auto) a two-field first row with exactly one http(s) URL, which no column name is.
    """
    if first is None:
        return "empty"
    if table_header == "no":
        return rows
    if any(c in first for c in URL_COLUMNS) and any(c in first for c in CAPTION_COLUMNS):
        return rows - 1
    is_url = [f.strip().lower().startswith(("http://", "https://")) for f in first]
    if table_header == "auto" and len(first) == 2 and is_url.count(True) == 1:
        return rows
    return None


@st.composite
def tables(draw) -> tuple[bytes, str, dict, dict | None]:
    fmt = draw(st.sampled_from(["csv", "tsv", "jsonl", "parquet"]))
    header = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=4, unique=True))
    rows = draw(
        st.lists(st.lists(urls | words, min_size=len(header), max_size=len(header)), max_size=8)
    )
    table_header = draw(st.sampled_from(["auto", "yes", "no"]))
    write_header = draw(st.booleans()) or fmt != "csv"
    if fmt == "parquet":
        cols = {c: [r[i] for r in rows] for i, c in enumerate(header)}
        if draw(st.booleans()):  # a column of another type than text
            cols[header[0]] = list(range(len(rows)))
        buf = io.BytesIO()
        pq.write_table(pa.table(cols), buf)
        data = buf.getvalue()
    elif fmt == "jsonl":
        lines = [json.dumps(dict(zip(header, r))) for r in rows]
        lines += draw(st.lists(words, max_size=2))  # lines that are no JSON object
        data = ("\n".join(lines) + "\n").encode()
    else:
        text = io.StringIO()
        writer = csv.writer(text, delimiter="\t" if fmt == "tsv" else ",")
        written = ([header] if write_header else []) + rows
        writer.writerows(written)
        data = text.getvalue().encode()
    gz = draw(st.booleans())
    name = f"t.{fmt}" + (".gz" if gz else "")
    data = gzip.compress(data) if gz else data
    data, intact = draw(damage(data))
    expect = None
    if intact and fmt in ("csv", "tsv"):
        expect = {
            "rows": _expected_rows(written[0] if written else None, len(written), table_header)
        }
    elif intact and fmt == "parquet":
        named = any(c in header for c in URL_COLUMNS) and any(c in header for c in CAPTION_COLUMNS)
        expect = {"rows": len(rows) if named else None}
    return data, name, {"table_header": table_header}, expect


@CI
@given(case=tables())
@example(case=(b"id,caption,image_link\n1,a cat,http://e.com/a.jpg\n", "t.csv", {}, {"rows": None}))
@example(case=(b"a cat\thttp://e.com/a.jpg\n", "cc3m.tsv", {}, {"rows": 1}))
def test_any_table_is_counted_never_raised(worker, case):
    data, name, options, expect = case
    out = _check_tally(worker.run("table", data, name, options))
    tally = out["tally"]
    if expect is None:
        return
    if expect["rows"] == "empty":
        assert tally.get("error:file_empty") == 1 and tally["table_file:failed"] == 1
    elif expect["rows"] is None:  # never read as data: the file fails, named
        assert tally.get("error:table_missing_columns") == 1 and tally["table_file:failed"] == 1
        assert tally.get("units", 0) == 0
    else:  # every row considered once
        assert tally.get("units", 0) == expect["rows"] and not tally.get("table_file:failed")


def test_a_header_without_a_url_column_fails_the_file_not_its_rows(worker):
    data = b"id,caption,image_link\n1,a cat,http://e.com/a.jpg\n2,a dog,http://e.com/b.jpg\n"
    out = _check_tally(worker.run("table", data, "t.csv"))
    assert out["tally"] == {
        "table_file:read": 1,
        "error:table_missing_columns": 1,
        "table_file:failed": 1,
    }


@pytest.mark.parametrize("name", ["long.csv.gz", "long.jsonl.gz"])
def test_a_line_longer_than_the_bound_is_a_counted_row(worker, name):
    head = b"url,caption\n" if name.startswith("long.csv") else b""
    good = (
        b"http://e.com/a.jpg,fine\n"
        if "csv" in name
        else b'{"url": "http://e.com/a.jpg", "caption": "fine"}\n'
    )
    data = gzip.compress(head + b"x" * (40 << 20) + b"\n" + good)
    out = _check_tally(worker.run("table", data, name))
    assert out["tally"]["drop:row_too_long"] == 1 and out["pairs"] == [
        ("http://e.com/a.jpg", "fine")
    ]


# -- dumps -------------------------------------------------------------------------------------

xml_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), max_codepoint=0x2FFF)
    | st.sampled_from("\n\t"),
    max_size=60,
)


@st.composite
def dumps(draw) -> tuple[bytes, dict, list | None]:
    n = draw(st.integers(0, 12))
    pages = [
        DumpPage(
            draw(xml_text.filter(str.strip)), draw(xml_text), i + 1, draw(st.sampled_from([0, 1]))
        )
        for i in range(n)
    ]
    junk = draw(st.lists(st.binary(max_size=80), max_size=2))  # raw bytes between pages
    blobs = [page_xml(p).encode() for p in pages] + junk
    layout = draw(st.sampled_from(["multistream", "single", "plain"]))
    if layout == "multistream":
        per = draw(st.integers(1, 5))
        streams = [HEADER.encode()] + [
            b"".join(blobs[i : i + per]) for i in range(0, len(blobs), per)
        ]
        data = b"".join(bz2.compress(s) for s in streams + [FOOTER.encode()])
    else:
        xml = HEADER.encode() + b"".join(blobs) + FOOTER.encode()
        data = bz2.compress(xml) if layout == "single" else xml
    data, intact = draw(damage(data))
    options = {"split_bytes": draw(st.sampled_from([300, 2_000, 1 << 30]))}
    expect = [p.page_id for p in pages] if intact and not junk else None
    return data, options, expect


@CI
@given(case=dumps())
@example(case=(bytes(range(256)) * 20, {}, None))  # 5 kB of noise named like a dump
def test_any_dump_is_counted_never_raised(worker, case):
    data, options, expect = case
    result = worker.run("dump", data, "enwiki-pages-articles.xml.bz2", options)
    assert "error" not in result, result.get("traceback", result.get("error"))
    assert result["peak_mb"] <= PEAK_MB, result
    out = result["outcome"]
    assert len(out["files"]) == 1 and out["files"][0] in DUMP_PROBLEMS  # one verdict per file
    assert set(out["skips"]) <= DUMP_SKIPS
    if out["pages"]:
        assert out["files"][0] is None  # a file with a readable page has not failed
    elif not data:
        assert out["files"] == ["empty"]
    if expect is not None:  # undamaged: every page once, nothing skipped
        assert sorted(i for i, _ in out["pages"]) == expect and not out["skips"]
        # No page at all: known when one split read the file; a head with markup passes.
        assert out["files"] == [None] if expect else out["files"][0] in (None, "no_pages")


# -- pageviews ---------------------------------------------------------------------------------

pageview_lines = st.one_of(
    st.builds(
        lambda p, t, v: f"{p} {t} {v} 0",
        st.sampled_from(["en", "en.m", "de", "en.d"]),
        st.text(
            st.characters(whitelist_categories=("L", "N")) | st.sampled_from("_:%"),
            min_size=1,
            max_size=20,
        ),
        st.integers(0, 10**6),
    ),
    words.map(lambda w: w.replace("\n", " ")),
)


@st.composite
def pageview_files(draw) -> tuple[bytes, str, int | None]:
    lines = draw(st.lists(pageview_lines, max_size=12))
    data = "".join(line + "\n" for line in lines).encode()
    gz = draw(st.booleans())
    data, intact = draw(damage(gzip.compress(data) if gz else data))
    return data, "pageviews-20240101-000000" + (".gz" if gz else ""), len(lines) if intact else None


@CI
@given(case=pageview_files())
def test_any_pageview_file_is_counted_never_raised(worker, case):
    data, name, n_lines = case
    result = worker.run("pageviews", data, name, {"hour_min": 1})
    assert "error" not in result, result.get("traceback", result.get("error"))
    assert result["peak_mb"] <= PEAK_MB, result
    stats, views = result["outcome"]["stats"], result["outcome"]["views"]
    bad = [k for k in stats if not PAGEVIEW_KEYS.match(k)]
    assert not bad, bad
    kept = stats.get("pageview_line:kept", 0)
    if stats.get("pageview_file:failed"):
        assert not views and not kept
    if n_lines is not None:  # undamaged: every line counted once
        lines = sum(n for k, n in stats.items() if k.startswith("pageview_line:"))
        assert lines == n_lines
        assert bool(stats.get("pageview_file:failed")) == (
            lines == stats.get("pageview_line:malformed", 0)
        )


def test_a_pageview_line_longer_than_the_bound_is_counted_not_held(worker):
    data = gzip.compress(b"en " + b"x" * (40 << 20) + b" 3 0\nen Paris 4 0\n")
    result = worker.run("pageviews", data, "pageviews-20240101-000000.gz", {"hour_min": 1})
    assert result["peak_mb"] <= PEAK_MB, result
    assert result["outcome"]["views"] == {"Paris": 4}
    assert result["outcome"]["stats"]["pageview_line:too_long"] == 1
