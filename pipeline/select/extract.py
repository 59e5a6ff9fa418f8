"""Steps 0 and 1 of ``wit select`` as plain functions (the Beam transforms only call these).

Every step works on Arrow batches and numpy arrays, a batch or a bucket at a time; rows never
become Python objects, except in the few places the rules are Python (a caption that needs ftfy,
a URL that needs IDNA, a WAT record's JSON) and in the hashes (uids, draws).

Step 0: the query list's trie is built once and saved (``<work>/query_trie/``); every worker
memory-maps it.
Step 1, per input file: read -> clean/filter -> match, in batches of rows; matched pairs are
spilled to Arrow files bucketed by a hash of the URL (``<work>/b0007/f00003.arrow``), so that no
step ever holds more than one bucket in memory and exact / URL duplicates meet in the same bucket.
The bucket steps are in :mod:`pipeline.select.bucket_steps`, the output parts in
:mod:`pipeline.select.selection_parts`, the files between them in :mod:`pipeline.select.work_files`.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import fs
from pipeline.memory import release_memory
from pipeline.select.matching import (
    Matcher,
    TokenTrie,
    read_query_arrays,
)
from pipeline.select.normalize import FilterSpec, clean_batch, is_encodable
from pipeline.select.readers import ReaderSpec, is_parquet, iter_pairs, iter_parquet_batches
from pipeline.select.work_files import IPC_OPTIONS, SPILL_SCHEMA, spill_path

BATCH_ROWS = 16_384  # rows read, cleaned and matched at a time

SPILL_FLUSH_ROWS = 2048  # a bucket's queued rows are written out at this size

SPILL_PENDING_ROWS = 16_384  # ... and every bucket is flushed when this many rows are queued


@dataclass(frozen=True)
class Settings:
    """Everything the per-element functions need, small and picklable."""

    queries_path: str
    case: str
    work_dir: str
    buckets: int
    reader: ReaderSpec
    filters: FilterSpec
    dedup_url: bool
    mode: str
    quota: int
    seed: int
    progress: bool = False  # a line on stderr per finished input file


def add_tally(tally: Counter, key: str, n: int) -> None:
    """Count ``n`` under ``key``; a zero adds no key (reports list only what happened)."""
    if n:
        tally[key] += int(n)


# ---- step 0: the query trie ---------------------------------------------------------------------


def trie_dir(work_dir: str) -> str:
    """Where the query trie is saved for every worker."""
    return fs.join(work_dir, "query_trie")


def save_query_trie(settings: Settings) -> None:
    """Build the query list's trie once and save it for every worker (:func:`query_matcher`)."""
    ids, texts, all_lower = read_query_arrays(settings.queries_path)
    lower = settings.case == "lower" or (settings.case == "auto" and all_lower)
    TokenTrie.build(ids, texts, lower).save(trie_dir(settings.work_dir))
    del ids, texts
    release_memory()  # the build's temporaries are several times the trie


_SAVED: dict[str, Matcher] = {}


def forget_query_trie() -> None:
    """Unmap the saved trie (the bucket steps run once every file was matched)."""
    _SAVED.clear()


def query_matcher(settings: Settings) -> Matcher:
    """The saved query trie as a matcher, loaded once per process (memory-mapped).

    Callers look it up per file rather than keep it, so that :func:`forget_query_trie` unmaps it.
    """
    directory = trie_dir(settings.work_dir)
    key = f"{directory}:{fs.version(fs.join(directory, 'trie.json'))}"
    if key not in _SAVED:
        _SAVED.clear()
        _SAVED[key] = Matcher.from_trie(TokenTrie.load(directory))
    return _SAVED[key]


# ---- step 1: read, filter, match, spill ---------------------------------------------------------


def bucket_of(url: str, buckets: int) -> int:
    """Spill bucket of a pair: a stable hash of its URL."""
    return zlib.crc32(url.encode("utf-8")) % buckets


class SpillWriter:
    """Streams matched rows of one input file into per-bucket Arrow files."""

    def __init__(self, work_dir: str, file_index: int, buckets: int):
        self.work_dir, self.file_index, self.buckets = work_dir, file_index, buckets
        self.pending: dict[int, list[pa.Table]] = {}
        self.pending_rows: dict[int, int] = {}
        self.queued = 0
        self.writers: dict[int, tuple] = {}

    def add(self, table: pa.Table, buckets: np.ndarray) -> None:
        """Queue each row of ``table`` in its bucket; full buckets are written out.

        With many buckets each one fills slowly, so the total queued is bounded too: otherwise
        memory would hold up to buckets x SPILL_FLUSH_ROWS rows (most of a large input file).
        """
        order = np.argsort(buckets, kind="stable")
        ordered, sorted_buckets = table.take(pa.array(order)), buckets[order]
        cuts = np.flatnonzero(np.diff(sorted_buckets)) + 1
        for start, end in zip(np.r_[0, cuts], np.r_[cuts, len(order)]):
            b = int(sorted_buckets[start])
            self.pending.setdefault(b, []).append(ordered.slice(start, end - start))
            self.pending_rows[b] = self.pending_rows.get(b, 0) + int(end - start)
            self.queued += int(end - start)
            if self.pending_rows[b] >= SPILL_FLUSH_ROWS:
                self._flush(b)
        if self.queued >= SPILL_PENDING_ROWS:
            for b in list(self.pending):
                self._flush(b)

    def _flush(self, b: int) -> None:
        tables = self.pending.pop(b, [])
        self.queued -= self.pending_rows.pop(b, 0)
        if not tables:
            return
        if b not in self.writers:
            ctx = fs.open_write_atomic(spill_path(self.work_dir, b, self.file_index))
            f = ctx.__enter__()
            self.writers[b] = (ctx, pa.ipc.new_stream(f, SPILL_SCHEMA, options=IPC_OPTIONS))
        self.writers[b][1].write_table(pa.concat_tables(tables))

    def close(self) -> None:
        """Write what is queued and move every bucket file into place."""
        for b in list(self.pending):
            self._flush(b)
        for ctx, writer in self.writers.values():
            writer.close()
            ctx.__exit__(None, None, None)
        self.writers.clear()


def _rows_table(rows: list) -> pa.Table:
    return pa.table(
        {
            "url": [r.url for r in rows],
            "caption": [r.caption for r in rows],
            "page_url": [r.page_url for r in rows],
            "source_file": [r.source_file for r in rows],
        },
        schema=pa.schema([(c, pa.string()) for c in ("url", "caption", "page_url", "source_file")]),
    )


def pair_batches(path: str, spec: ReaderSpec, tally: Counter) -> Iterator[pa.Table]:
    """The pairs of one input file as Arrow tables of up to BATCH_ROWS rows (``url``,
    ``caption``, ``page_url``, ``source_file``). Text that is not valid Unicode cannot be in an
    Arrow string: such a pair is counted here under the filter that drops it (invalid_utf8)."""
    if is_parquet(path):
        yield from iter_parquet_batches(path, spec, tally, BATCH_ROWS)
        return
    rows = []
    for raw in iter_pairs(path, spec, tally):
        if not is_encodable(raw.caption) or not is_encodable(raw.url):
            tally["filter:invalid_utf8"] += 1
            continue
        rows.append(raw)
        if len(rows) >= BATCH_ROWS:
            yield _rows_table(rows)
            rows = []
    if rows:
        yield _rows_table(rows)


def uids_of(urls: pa.Array, captions: pa.Array) -> pa.Array:
    """:func:`~pipeline.select.normalize.uid_for` of aligned URLs and captions."""
    messages = pc.binary_join_element_wise(
        urls.cast(pa.binary()), captions.cast(pa.binary()), b"\0"
    )
    blake2b = hashlib.blake2b
    return pa.array(
        [blake2b(m, digest_size=16).hexdigest() for m in messages.to_pylist()], pa.string()
    )


def buckets_of(urls: pa.Array, buckets: int) -> np.ndarray:
    """:func:`bucket_of` of every URL."""
    crc32 = zlib.crc32
    return np.array([crc32(u) for u in urls.cast(pa.binary()).to_pylist()], np.int64) % buckets


def match_pairs(
    batch: pa.Table, spec: FilterSpec, matcher: Matcher, tally: Counter
) -> pa.Table | None:
    """One batch of pairs -> its matched pairs as spill rows (SPILL_SCHEMA); the pairs removed
    are counted by reason."""
    cleaned = clean_batch(
        batch.column("url").combine_chunks(), batch.column("caption").combine_chunks(), spec
    )
    for reason, n in cleaned.removed.items():
        add_tally(tally, f"filter:{reason}", n)
    kept = len(cleaned.rows)
    add_tally(tally, "filtered", kept)
    if not kept:
        return None
    rows, queries = matcher.match_batch(cleaned.captions)
    per_row = np.bincount(rows, minlength=kept)
    matched = np.flatnonzero(per_row)
    add_tally(tally, "matched", len(matched))
    add_tally(tally, "match:no_query_match", kept - len(matched))
    if not len(matched):
        return None
    take, source = pa.array(matched), pa.array(cleaned.rows[matched])
    urls, captions = cleaned.urls.take(take), cleaned.captions.take(take)
    offsets = np.concatenate([[0], np.cumsum(per_row[matched])]).astype(np.int32)
    return pa.table(
        [
            uids_of(urls, captions),
            urls,
            captions,
            batch.column("page_url").take(source).combine_chunks(),
            batch.column("source_file").take(source).combine_chunks(),
            pa.ListArray.from_arrays(pa.array(offsets), pa.array(queries.astype(np.int32))),
        ],
        schema=SPILL_SCHEMA,
    )


def extract_file(path: str, file_index: int, settings: Settings, matcher: Matcher) -> dict:
    """Read, filter and match one input file, spilling matches; returns its accounting."""
    tally: Counter = Counter()
    spill = SpillWriter(settings.work_dir, file_index, settings.buckets)
    try:
        for batch in pair_batches(path, settings.reader, tally):
            matched = match_pairs(batch, settings.filters, matcher, tally)
            if matched is not None:
                spill.add(matched, buckets_of(matched.column("url"), settings.buckets))
            del batch, matched
    finally:
        spill.close()
        release_memory()
    return {"source_file": path, "file_index": file_index, "counts": dict(sorted(tally.items()))}
