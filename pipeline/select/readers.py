"""Pair readers: Common Crawl WAT files and URL/caption tables, streamed record by record.

Each reader yields :class:`RawPair` and counts what it saw in a ``collections.Counter``:
``units`` (links or rows considered), ``pairs`` (yielded), ``drop:<reason>`` for a link or row
that gives no pair, ``error:<reason>`` for a record or file that could not be read. The
invariant ``units == pairs + sum(drop:*)`` holds for every file.

Per file, ``wat_file:read`` or ``table_file:read`` is 1, and ``wat_file:failed`` or
``table_file:failed`` is 1 when an error was recorded and nothing of the file could be read (no
WAT record with a JSON envelope, no table row: corrupt, empty, not of its kind), or when it is a
table without the URL and caption columns. A stage whose every input of a kind failed has failed.

Memory per file is bounded whatever it holds: a WAT record larger than MAX_WAT_RECORD_BYTES and a
CSV/JSONL line longer than MAX_LINE_CHARS are skipped (counted) without being read whole.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
import sys
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import IO, Iterator
from urllib.parse import urljoin

from pipeline import fs

TABLE_SUFFIXES = (".parquet", ".csv", ".tsv", ".jsonl", ".json", ".ndjson")
IMG_PATH = "IMG@/src"
BATCH_ROWS = 8192
# Common Crawl truncates the pages it fetches at 1 MiB, so their WAT records stay well below this.
MAX_WAT_RECORD_BYTES = 32 << 20
# A 1 MB alt text must still reach the caption filter (which drops it, with its reason).
MAX_LINE_CHARS = 8 << 20
# Counts of WAT records and table rows that hold nothing readable.
UNREADABLE_RECORDS = (
    "error:wat_truncated_record",
    "error:wat_record_too_large",
    "error:wat_bad_json",
    "error:wat_no_envelope",
)
UNREADABLE_ROWS = ("drop:row_bad_json", "drop:row_too_long")


@dataclass(frozen=True)
class RawPair:
    """An (image URL, text) pair as read, before normalisation."""

    url: str
    caption: str
    page_url: str
    source_file: str


@dataclass(frozen=True)
class ReaderSpec:
    """How to read inputs: alt/title policy for WAT files, column names and header for tables."""

    use_title: bool = False
    url_columns: tuple[str, ...] = ("url", "URL")
    caption_columns: tuple[str, ...] = ("caption", "TEXT", "text", "alt")
    # CSV/TSV: "yes" (the first row names the columns), "no" (column 1 URL, column 2 caption),
    # "auto": a header naming the columns, else a two-field first row holding one http(s) URL.
    table_header: str = "auto"


def kind_of(path: str) -> str:
    """``wat`` or ``table`` from the file name."""
    name = path.rsplit("/", 1)[-1].lower().removesuffix(".gz")
    return "wat" if name.endswith(".wat") else "table"


def _readable(tally: Counter, kind: str) -> int:
    """WAT records with an envelope, or table rows, counted in ``tally`` so far."""
    if kind == "wat":
        return tally["records"] - sum(tally[k] for k in UNREADABLE_RECORDS)
    return tally["units"] - sum(tally[k] for k in UNREADABLE_ROWS)


def _errors(tally: Counter) -> int:
    return sum(n for k, n in tally.items() if k.startswith("error:"))


def iter_pairs(path: str, spec: ReaderSpec, tally: Counter) -> Iterator[RawPair]:
    """Every pair of one input file; unreadable parts are counted in ``tally``, never raised."""
    kind = kind_of(path)
    return _read_file(path, kind, tally, _iter_wat if kind == "wat" else _iter_table, spec)


def is_parquet(path: str) -> bool:
    """Whether ``path`` is a Parquet table (``.parquet`` or ``.parquet.gz``)."""
    return path.lower().removesuffix(".gz").endswith(".parquet")


def iter_parquet_batches(
    path: str, spec: ReaderSpec, tally: Counter, batch_rows: int = BATCH_ROWS
) -> Iterator:
    """:func:`iter_pairs` of a Parquet table as Arrow tables of ``url``, ``caption``,
    ``page_url`` and ``source_file``, with the same pairs and counts."""

    def read(raw, path, spec, tally):
        stream = gzip.GzipFile(fileobj=raw) if path.lower().endswith(".gz") else raw
        yield from _parquet_batches(stream, path, spec, tally, batch_rows)

    return _read_file(path, "table", tally, read, spec)


def _read_file(path: str, kind: str, tally: Counter, reader, spec: ReaderSpec) -> Iterator:
    readable, errors = _readable(tally, kind), _errors(tally)
    no_columns = tally["error:table_missing_columns"]
    tally[f"{kind}_file:read"] += 1
    try:
        with fs.open_read(path) as raw:
            yield from reader(raw, path, spec, tally)
    except EOFError as e:
        tally[f"error:file_truncated ({type(e).__name__})"] += 1
    except gzip.BadGzipFile as e:  # a bad magic number, or a CRC or length check that failed
        tally["error:file_not_gzip" if "Not a gzipped" in str(e) else "error:file_corrupt"] += 1
    except zlib.error:
        tally["error:file_corrupt"] += 1
    except (OSError, ValueError, csv.Error) as e:  # pyarrow's ArrowInvalid is a ValueError
        tally[f"error:file_unreadable ({type(e).__name__})"] += 1
    finally:
        unreadable = _readable(tally, kind) == readable and _errors(tally) > errors
        if unreadable or tally["error:table_missing_columns"] > no_columns:
            tally[f"{kind}_file:failed"] += 1


# --- WAT -----------------------------------------------------------------------------------


def _iter_wat(raw: IO[bytes], path: str, spec: ReaderSpec, tally: Counter) -> Iterator[RawPair]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    seen = tally["records"]
    try:
        records = ArchiveIterator(raw, record_types=WarcRecordType.metadata, parse_http=False)
        for record in records:
            tally["records"] += 1
            if record.content_length > MAX_WAT_RECORD_BYTES:
                tally["error:wat_record_too_large"] += 1
                continue  # the iterator skips the unread body without holding it
            body = record.reader.read()
            if len(body) < record.content_length:
                tally["error:wat_truncated_record"] += 1
                continue
            page = _decode_wat(body, tally)
            if page is not None:
                yield from _wat_links(
                    page, record.headers.get("WARC-Target-URI", ""), path, spec, tally
                )
    except Exception as e:  # a corrupt stream ends this file only; what was read stays
        tally[f"error:wat_stream ({type(e).__name__})"] += 1
        return
    if tally["records"] == seen:  # empty, or not a WARC file of metadata records
        tally["error:wat_no_records"] += 1


def _decode_wat(body: bytes, tally: Counter) -> dict | None:
    """The JSON envelope of a WAT record, or None (counted) if it is not one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        # Keep the rest of the page: only strings with U+FFFD are dropped later (invalid_utf8).
        tally["error:wat_invalid_utf8"] += 1
        text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        tally["error:wat_bad_json"] += 1
        return None
    if not isinstance(data, dict) or not isinstance(data.get("Envelope"), dict):
        tally["error:wat_no_envelope"] += 1
        return None
    return data["Envelope"]


def _dig(data, *keys):
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _wat_links(
    env: dict, target: str, path: str, spec: ReaderSpec, tally: Counter
) -> Iterator[RawPair]:
    meta = _dig(env, "Payload-Metadata", "HTTP-Response-Metadata", "HTML-Metadata")
    if meta is None:
        tally["records_without_html"] += 1
        return
    page_url = _dig(env, "WARC-Header-Metadata", "WARC-Target-URI") or target
    links = meta.get("Links") if isinstance(meta, dict) else None
    if not isinstance(page_url, str) or not isinstance(links, list):
        tally["error:wat_bad_structure"] += 1
        return
    base = _dig(meta, "Head", "Base")
    try:
        base_url = urljoin(page_url, base) if isinstance(base, str) and base else page_url
    except ValueError:
        base_url = page_url
    for link in links:
        if not isinstance(link, dict) or link.get("path") != IMG_PATH:
            continue
        tally["units"] += 1
        pair = _link_pair(link, base_url, page_url, path, spec, tally)
        if pair is not None:
            tally["pairs"] += 1
            yield pair


def _link_pair(
    link: dict, base_url: str, page_url: str, path: str, spec: ReaderSpec, tally: Counter
):
    url = link.get("url")
    if not isinstance(url, str) or not url.strip():
        tally["drop:link_missing_url"] += 1
        return None
    caption = link.get("alt")
    if spec.use_title and (not isinstance(caption, str) or not caption.strip()):
        caption = link.get("title")
    if not isinstance(caption, str) or not caption.strip():
        tally["drop:link_missing_alt"] += 1
        return None
    try:
        absolute = urljoin(base_url, url.strip())
    except ValueError:
        tally["drop:url_unresolvable"] += 1
        return None
    return RawPair(absolute, caption, page_url, path)


# --- tables --------------------------------------------------------------------------------


def _iter_table(raw: IO[bytes], path: str, spec: ReaderSpec, tally: Counter) -> Iterator[RawPair]:
    name = path.lower()
    stream: IO[bytes] = raw
    if name.endswith(".gz"):
        name = name[:-3]
        stream = gzip.GzipFile(fileobj=raw)
    if name.endswith(".parquet"):
        yield from _iter_parquet(stream, path, spec, tally)
    elif name.endswith((".jsonl", ".json", ".ndjson")):
        yield from _iter_jsonl(stream, path, spec, tally)
    else:
        yield from _iter_csv(stream, path, spec, tally, "\t" if name.endswith(".tsv") else ",")


def _pick(names, wanted: tuple[str, ...]) -> str | None:
    return next((w for w in wanted if w in names), None)


def _row_pair(url, caption, path: str, tally: Counter) -> RawPair | None:
    tally["units"] += 1
    if not isinstance(url, str) or not url.strip():
        tally["drop:row_missing_url"] += 1
        return None
    if not isinstance(caption, str) or not caption.strip():
        tally["drop:row_missing_caption"] += 1
        return None
    tally["pairs"] += 1
    return RawPair(url.strip(), caption, "", path)


def _iter_parquet(
    stream: IO[bytes], path: str, spec: ReaderSpec, tally: Counter
) -> Iterator[RawPair]:
    for batch in _parquet_batches(stream, path, spec, tally, BATCH_ROWS):
        columns = [batch.column(c).to_pylist() for c in ("url", "caption", "page_url")]
        for url, caption, page_url in zip(*columns):
            yield RawPair(url, caption, page_url, path)


@functools.cache
def whitespace() -> str:
    """The characters str.strip() removes (str.isspace()), for Arrow's trim: the same strip,
    vectorised (found once, on first use: it scans every code point)."""
    return "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())


def _strings(column):
    """The column as one string array, or None when its values are not strings (every value
    then counts as missing, as ``isinstance(value, str)`` decides row by row)."""
    import pyarrow as pa

    t = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)):
        column.to_pylist()  # what the row-by-row reader would have raised, it raises
        return None
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    column = column.cast(pa.string())
    try:
        column.validate(full=True)
    except pa.ArrowInvalid:
        column.to_pylist()  # invalid UTF-8: raises UnicodeDecodeError, as the row reader did
        raise
    return column


def _pair_batch(batch, url_col: str, cap_col: str, path: str, tally: Counter):
    """:func:`_row_pair` over a record batch: the kept pairs as a table, the rest counted."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = batch.num_rows
    urls, captions = _strings(batch.column(url_col)), _strings(batch.column(cap_col))
    if not n:
        return None
    tally["units"] += n
    if urls is None:
        has_url = np.zeros(n, bool)
    else:
        urls = pc.utf8_trim(urls, whitespace())
        has_url = pc.fill_null(pc.greater(pc.binary_length(urls), 0), False).to_numpy(False)
    if captions is None:
        has_caption = np.zeros(n, bool)
    else:
        blank = pc.equal(pc.binary_length(pc.utf8_trim(captions, whitespace())), 0)
        has_caption = pc.fill_null(pc.invert(blank), False).to_numpy(zero_copy_only=False)
    keep = has_url & has_caption
    missing_url, missing_caption = int((~has_url).sum()), int((has_url & ~has_caption).sum())
    if missing_url:
        tally["drop:row_missing_url"] += missing_url
    if missing_caption:
        tally["drop:row_missing_caption"] += missing_caption
    kept = int(keep.sum())
    if not kept:
        return None
    tally["pairs"] += kept
    mask = pa.array(keep)
    return pa.table(
        {
            "url": urls.filter(mask),
            "caption": captions.filter(mask),
            "page_url": pa.repeat("", kept),
            "source_file": pa.repeat(path, kept),
        }
    )


def _parquet_batches(stream, path: str, spec: ReaderSpec, tally: Counter, batch_rows: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(stream)
        names = pf.schema_arrow.names
        url_col, cap_col = _pick(names, spec.url_columns), _pick(names, spec.caption_columns)
        if url_col is None or cap_col is None:
            tally["error:table_missing_columns"] += 1
            return
        for batch in pf.iter_batches(batch_size=batch_rows, columns=[url_col, cap_col]):
            pairs = _pair_batch(batch, url_col, cap_col, path, tally)
            if pairs is not None:
                yield pairs
    except pa.ArrowException as e:  # not only ArrowInvalid: also NotImplemented, IOError, ...
        tally[f"error:file_unreadable ({type(e).__name__})"] += 1


def _lines(stream: IO[bytes], tally: Counter, newline: str | None = None) -> Iterator[str]:
    """Decoded lines of at most MAX_LINE_CHARS; a longer one is skipped (a counted row)."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline=newline)
    while line := text.readline(MAX_LINE_CHARS + 1):
        if len(line) <= MAX_LINE_CHARS or line[-1] in "\r\n":
            yield line
            continue
        while line and line[-1] not in "\r\n":  # read past the rest, one bounded piece at a time
            line = text.readline(MAX_LINE_CHARS)
        tally["units"] += 1
        tally["drop:row_too_long"] += 1


def _iter_jsonl(
    stream: IO[bytes], path: str, spec: ReaderSpec, tally: Counter
) -> Iterator[RawPair]:
    lines = objects = with_url = with_caption = 0
    for line in _lines(stream, tally):
        if not line.strip():
            continue
        lines += 1
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            row = None
        if not isinstance(row, dict):
            tally["units"] += 1
            tally["drop:row_bad_json"] += 1
            continue
        objects += 1
        url_col, cap_col = _pick(row, spec.url_columns), _pick(row, spec.caption_columns)
        with_url += url_col is not None
        with_caption += cap_col is not None
        pair = _row_pair(
            row.get(url_col) if url_col else None,
            row.get(cap_col) if cap_col else None,
            path,
            tally,
        )
        if pair is not None:
            yield pair
    if not lines:
        tally["error:file_empty"] += 1
    elif not objects:
        tally["error:table_not_jsonl"] += 1
    elif not with_url or not with_caption:  # like a table whose header lacks them
        tally["error:table_missing_columns"] += 1


def _csv_columns(first: list[str], spec: ReaderSpec) -> tuple[int, int, bool] | None:
    """(URL index, caption index, first row is data), or None if the columns are unknown."""
    if spec.table_header == "no":
        return 0, 1, True
    url_col, cap_col = _pick(first, spec.url_columns), _pick(first, spec.caption_columns)
    if url_col is not None and cap_col is not None:
        return first.index(url_col), first.index(cap_col), False
    if spec.table_header == "auto" and len(first) == 2:
        # No header (CC12M's url<TAB>caption, CC3M's caption<TAB>url): decided only when
        # exactly one of the two fields is an http(s) URL, which no column name is.
        is_url = [f.strip().lower().startswith(("http://", "https://")) for f in first]
        if is_url.count(True) == 1:
            ui = is_url.index(True)
            return ui, 1 - ui, True
    return None


def _iter_csv(
    stream: IO[bytes], path: str, spec: ReaderSpec, tally: Counter, delimiter: str
) -> Iterator[RawPair]:
    csv.field_size_limit(MAX_LINE_CHARS)
    rows = csv.reader(_lines(stream, tally, newline=""), delimiter=delimiter)
    first = next(rows, None)
    if first is None:
        tally["error:file_empty"] += 1
        return
    columns = _csv_columns(first, spec)
    if columns is None:  # a header without the configured columns, or an undecidable first row
        tally["error:table_missing_columns"] += 1
        return
    ui, ci, first_is_data = columns
    if first_is_data:
        rows = _chain_first(first, rows)
    for row in rows:
        if len(row) <= max(ui, ci):
            tally["units"] += 1
            tally["drop:row_too_few_fields"] += 1
            continue
        pair = _row_pair(row[ui], row[ci], path, tally)
        if pair is not None:
            yield pair


def _chain_first(first, rest):
    yield first
    yield from rest
