"""The work of each ``wit select`` step as plain functions (the Beam transforms only call these).

Step 1, per input file: read -> clean/filter -> match; matched pairs are spilled to Parquet files
bucketed by a hash of the URL (``<work>/b0007/f00003.parquet``), so that no step ever holds more
than one bucket in memory and exact / URL duplicates meet in the same bucket.
Step 2, per bucket: dedup, then per-query counts (and draws for exact mode).
Step 3, per bucket: dedup again (deterministic), decide each pair, emit the selected rows.
Step 4, per output part: sort by uid and write one Parquet file with fixed writer options.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import fs
from pipeline.select import balance
from pipeline.select.candidates import ReaderSpec, iter_pairs
from pipeline.select.matching import Matcher
from pipeline.select.normalize import FilterSpec, clean_pair, uid_for

SPILL_SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("url", pa.string()),
        ("caption", pa.string()),
        ("page_url", pa.string()),
        ("source_file", pa.string()),
        ("matched_query_ids", pa.list_(pa.int64())),
        ("matched_queries", pa.list_(pa.string())),
    ]
)
SELECTION_SCHEMA = SPILL_SCHEMA.append(pa.field("selected_for", pa.list_(pa.int64())))
# Fixed writer options: the same rows give the same bytes on every run and worker count.
WRITE_OPTIONS = dict(
    compression="zstd", compression_level=3, use_dictionary=True, write_statistics=True
)
SPILL_FLUSH_ROWS = 4096


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


def bucket_of(url: str, buckets: int) -> int:
    """Spill bucket of a pair: a stable hash of its URL."""
    return zlib.crc32(url.encode("utf-8")) % buckets


def spill_path(work_dir: str, bucket: int, file_index: int) -> str:
    """Spill file of one input file in one bucket."""
    return fs.join(work_dir, f"b{bucket:04d}", f"f{file_index:05d}.parquet")


class SpillWriter:
    """Streams matched rows of one input file into per-bucket Parquet files."""

    def __init__(self, work_dir: str, file_index: int, buckets: int):
        self.work_dir, self.file_index, self.buckets = work_dir, file_index, buckets
        self.pending: dict[int, list[dict]] = {}
        self.writers: dict[int, tuple] = {}

    def add(self, row: dict) -> None:
        """Queue a row in its bucket; full buckets are written out as a row group."""
        b = bucket_of(row["url"], self.buckets)
        rows = self.pending.setdefault(b, [])
        rows.append(row)
        if len(rows) >= SPILL_FLUSH_ROWS:
            self._flush(b)

    def _flush(self, b: int) -> None:
        rows = self.pending.pop(b, [])
        if not rows:
            return
        if b not in self.writers:
            ctx = fs.open_write_atomic(spill_path(self.work_dir, b, self.file_index))
            f = ctx.__enter__()
            self.writers[b] = (ctx, pq.ParquetWriter(f, SPILL_SCHEMA, compression="zstd"))
        self.writers[b][1].write_table(pa.Table.from_pylist(rows, schema=SPILL_SCHEMA))

    def close(self) -> None:
        """Write what is queued and move every bucket file into place."""
        for b in list(self.pending):
            self._flush(b)
        for ctx, writer in self.writers.values():
            writer.close()
            ctx.__exit__(None, None, None)
        self.writers.clear()


def extract_file(path: str, file_index: int, settings: Settings, matcher: Matcher) -> dict:
    """Read, filter and match one input file, spilling matches; returns its accounting."""
    tally: Counter = Counter()
    spill = SpillWriter(settings.work_dir, file_index, settings.buckets)
    try:
        for raw in iter_pairs(path, settings.reader, tally):
            url, caption, reason = clean_pair(raw.url, raw.caption, settings.filters)
            if reason:
                tally[f"filter:{reason}"] += 1
                continue
            tally["filtered"] += 1
            ids = matcher.match(caption)
            if not ids:
                tally["match:no_query_match"] += 1
                continue
            tally["matched"] += 1
            spill.add(
                {
                    "uid": uid_for(url, caption),
                    "url": url,
                    "caption": caption,
                    "page_url": raw.page_url,
                    "source_file": raw.source_file,
                    "matched_query_ids": list(ids),
                    "matched_queries": [matcher.names[i] for i in ids],
                }
            )
    finally:
        spill.close()
    return {"source_file": path, "counts": dict(sorted(tally.items()))}


def load_bucket(work_dir: str, bucket: int, dedup_url: bool) -> tuple[list[dict], Counter]:
    """Unique rows of one bucket, sorted by uid, and how many duplicates were removed."""
    removed: Counter = Counter()
    best: dict[str, dict] = {}
    for path in fs.glob(fs.join(work_dir, f"b{bucket:04d}", "f*.parquet")):
        with fs.open_read(path) as f:
            rows = pq.read_table(f).to_pylist()
        for row in rows:
            old = best.get(row["uid"])
            if old is not None:
                removed["duplicate_uid"] += 1
                # The same pair seen on several pages: keep one representative, chosen by value.
                if (row["source_file"], row["page_url"]) >= (old["source_file"], old["page_url"]):
                    continue
            best[row["uid"]] = row
    unique = [best[u] for u in sorted(best)]
    if dedup_url:
        seen: set[str] = set()
        kept = []
        for row in unique:  # ascending uid: the smallest uid of a URL wins
            if row["url"] in seen:
                removed["duplicate_url"] += 1
                continue
            seen.add(row["url"])
            kept.append(row)
        unique = kept
    return unique, removed


def bucket_counts(rows: Iterable[dict]) -> Counter:
    """Matches per query in a bucket."""
    counts: Counter = Counter()
    for row in rows:
        counts.update(row["matched_query_ids"])
    return counts


def bucket_draws(rows: Iterable[dict], seed: int) -> Iterator[tuple[int, int]]:
    """``(query_id, draw)`` for every match (exact mode feeds these to a per-query Top)."""
    for row in rows:
        for q in row["matched_query_ids"]:
            yield q, balance.draw(seed, q, row["uid"])


def decide(
    rows: Iterable[dict], settings: Settings, counts: dict, thresholds: dict
) -> Iterator[dict]:
    """The selected rows of a bucket, each with ``selected_for``."""
    for row in rows:
        ids = row["matched_query_ids"]
        if settings.mode == "exact":
            chosen = balance.admit_exact(row["uid"], ids, thresholds, settings.seed)
        else:
            chosen = balance.admit_probabilistic(
                row["uid"], ids, counts, settings.quota, settings.seed
            )
        if chosen:
            yield {**row, "selected_for": list(chosen)}


def write_part(out_dir: str, part: int, rows: Iterable[dict]) -> tuple[str, int]:
    """Write one selection file, rows sorted by uid; returns (path, rows)."""
    ordered = sorted(rows, key=lambda r: r["uid"])
    table = pa.Table.from_pylist(ordered, schema=SELECTION_SCHEMA)
    path = fs.join(out_dir, f"part-{part:05d}.parquet")
    with fs.open_write_atomic(path) as f:
        pq.write_table(table, f, row_group_size=max(1, len(ordered)), **WRITE_OPTIONS)
    return path, len(ordered)
