"""The work of each ``wit select`` step as plain functions (the Beam transforms only call these).

Step 1, per input file: read -> clean/filter -> match; matched pairs are spilled to Parquet files
bucketed by a hash of the URL (``<work>/b0007/f00003.parquet``), so that no step ever holds more
than one bucket in memory and exact / URL duplicates meet in the same bucket.
Step 2, per bucket: dedup, then per-query counts (one dict per bucket, summed across buckets).
Step 3 (exact mode), per bucket: for the queries over quota only, the bucket's ``quota`` smallest
draws; merged per query, the largest kept draw is the query's admission threshold.
Step 4, per bucket: dedup again (deterministic), decide each pair, write the bucket's selected rows
sorted by uid to ``<work>/selected/b0007.parquet``.
Step 5, per group of output parts (a uid range): read that range from every bucket's selected
file, sort by uid and write one Parquet file per part with fixed writer options.

Only per-bucket summaries (dicts bounded by the number of queries) and a few hundred small lists
travel between steps as Beam elements; rows and draws stay in files, so no runner process holds
anything that grows with the number of candidates.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import json
import os
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import fs
from pipeline.arrow_rows import table_from_rows
from pipeline.select import balance
from pipeline.select.matching import Matcher
from pipeline.select.normalize import FilterSpec, clean_pair, uid_for
from pipeline.select.readers import ReaderSpec, iter_pairs

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
SPILL_FLUSH_ROWS = 4096  # a bucket's queued rows become one row group at this size
SPILL_PENDING_ROWS = 65_536  # ... and every bucket is flushed when this many rows are queued


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
        self.queued = 0
        self.writers: dict[int, tuple] = {}

    def add(self, row: dict) -> None:
        """Queue a row in its bucket; full buckets are written out as a row group.

        With many buckets each one fills slowly, so the total queued is bounded too: otherwise
        memory would hold up to buckets x SPILL_FLUSH_ROWS rows (most of a large input file).
        """
        b = bucket_of(row["url"], self.buckets)
        rows = self.pending.setdefault(b, [])
        rows.append(row)
        self.queued += 1
        if len(rows) >= SPILL_FLUSH_ROWS:
            self._flush(b)
        elif self.queued >= SPILL_PENDING_ROWS:
            for bucket in list(self.pending):
                self._flush(bucket)

    def _flush(self, b: int) -> None:
        rows = self.pending.pop(b, [])
        self.queued -= len(rows)
        if not rows:
            return
        if b not in self.writers:
            ctx = fs.open_write_atomic(spill_path(self.work_dir, b, self.file_index))
            f = ctx.__enter__()
            self.writers[b] = (ctx, pq.ParquetWriter(f, SPILL_SCHEMA, compression="zstd"))
        self.writers[b][1].write_table(table_from_rows(rows, SPILL_SCHEMA))

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
    return {"source_file": path, "file_index": file_index, "counts": dict(sorted(tally.items()))}


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


def bucket_summary(work_dir: str, bucket: int, dedup_url: bool) -> dict:
    """Step 2: a bucket's per-query match counts and dedup tallies."""
    rows, removed = load_bucket(work_dir, bucket, dedup_url)
    return {
        "bucket": bucket,
        "counts": dict(bucket_counts(rows)),
        "dedup": dict(removed, unique=len(rows)),
    }


INT_KEYED = ("counts", "attributed", "kept", "thresholds")  # {query_id: n} fields of step files


def step_path(work_dir: str, step: str) -> str:
    """Where a step's merged result is saved (read by the later steps and by the driver)."""
    return fs.join(work_dir, "steps", f"{step}.json")


def save_step(work_dir: str, step: str, result: dict) -> dict:
    """Write a step's merged result (a dict of JSON values); returns it."""
    fs.write_text_atomic(step_path(work_dir, step), json.dumps(result, sort_keys=True))
    return result


@functools.lru_cache(maxsize=4)
def _load_step(path: str, stamp: tuple) -> dict:
    result = json.loads(fs.read_text(path))
    for key in INT_KEYED:
        if key in result:
            result[key] = {int(q): n for q, n in result[key].items()}
    return result


def load_step(work_dir: str, step: str) -> dict:
    """What :func:`save_step` wrote, read once per worker process and file version."""
    path = step_path(work_dir, step)
    stamp = (fs.size(path),) if fs.is_remote(path) else (os.stat(path).st_mtime_ns, fs.size(path))
    return _load_step(path, stamp)


def smallest_draws(
    rows: Iterable[dict], seed: int, over_quota: set | dict, quota: int
) -> dict[int, list[int]]:
    """Step 3 for one bucket: the ``quota`` smallest draws (ascending) of each query over quota.

    A query's global ``quota`` smallest draws are among the union of every bucket's, so merging
    these lists per query (:func:`merge_smallest`) gives its threshold exactly.
    """
    draws: dict[int, list[int]] = {}
    for row in rows:
        for q in row["matched_query_ids"]:
            if q in over_quota:
                draws.setdefault(q, []).append(balance.draw(seed, q, row["uid"]))
    return {q: heapq.nsmallest(quota, ds) for q, ds in draws.items()}


def merge_smallest(lists: Iterable[list[int]], quota: int) -> list[int]:
    """The ``quota`` smallest values of ascending lists, ascending."""
    return list(heapq.merge(*lists))[:quota]


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


def selected_path(work_dir: str, bucket: int) -> str:
    """The selected rows of one bucket, sorted by uid (step 4's output)."""
    return fs.join(work_dir, "selected", f"b{bucket:04d}.parquet")


SELECTED_ROW_GROUP = 4096  # small row groups: step 5 reads uid ranges by their statistics


def decide_bucket(bucket: int, settings: Settings, counts: dict, thresholds: dict) -> dict:
    """Step 4: decide a bucket's pairs and write the selected ones; returns its tallies."""
    rows, _ = load_bucket(settings.work_dir, bucket, settings.dedup_url)
    attributed: Counter = Counter()
    kept: Counter = Counter()
    selected = []
    for row in decide(rows, settings, counts, thresholds):  # rows are in uid order
        attributed.update(row["selected_for"])
        kept.update(row["matched_query_ids"])
        selected.append(row)
    if selected:
        with fs.open_write_atomic(selected_path(settings.work_dir, bucket)) as f:
            pq.write_table(
                table_from_rows(selected, SELECTION_SCHEMA),
                f,
                row_group_size=SELECTED_ROW_GROUP,
                **WRITE_OPTIONS,
            )
    return {
        "bucket": bucket,
        "selected": len(selected),
        "attributed": dict(attributed),
        "kept": dict(kept),
    }


def decide_saved_bucket(bucket: int, settings: Settings) -> dict:
    """Step 4 with the counts (and, in exact mode, thresholds) that steps 2 and 3 saved."""
    counts = load_step(settings.work_dir, "count")["counts"]
    exact = settings.mode == "exact"
    thresholds = load_step(settings.work_dir, "thresholds")["thresholds"] if exact else {}
    return decide_bucket(bucket, settings, counts, thresholds)


def part_bounds(part: int, parts: int) -> tuple[str, str | None]:
    """The uid range ``[lo, hi)`` of a part, as 8-hex-digit prefixes (``hi`` None: no bound).

    The inverse of :func:`balance.part_of`: ``part_of(uid) == part`` exactly for uids in range.
    """
    lo = -(-part * 2**32 // parts)
    hi = -(-(part + 1) * 2**32 // parts)
    return f"{lo:08x}", (f"{hi:08x}" if hi < 2**32 else None)


def write_part(out_dir: str, part: int, table: pa.Table) -> tuple[str, int]:
    """Write one selection file (``table`` sorted by uid); returns (path, rows)."""
    path = fs.join(out_dir, f"part-{part:05d}.parquet")
    with fs.open_write_atomic(path) as f:
        pq.write_table(table, f, row_group_size=max(1, table.num_rows), **WRITE_OPTIONS)
    return path, table.num_rows


PART_GROUP_ROWS = 200_000  # rows one step-5 element gathers: bucket files are opened per group


def part_groups(parts: int, rows_per_part: int) -> list[tuple[int, int, int]]:
    """Step 5's elements: ``(first part, end part, parts)``, each about PART_GROUP_ROWS rows.

    Each element opens every bucket's file once, so grouping parts keeps the number of file
    opens at (buckets x groups) instead of (buckets x parts).
    """
    per = max(1, PART_GROUP_ROWS // max(1, rows_per_part))
    return [(a, min(a + per, parts), parts) for a in range(0, parts, per)]


def write_parts_from_buckets(
    work_dir: str, out_dir: str, buckets: int, first: int, end: int, parts: int
) -> list[tuple[str, int]]:
    """Step 5: gather parts ``first..end-1`` (a uid range) from every bucket's selected rows."""
    lo, _ = part_bounds(first, parts)
    _, hi = part_bounds(end - 1, parts)
    filters = [("uid", ">=", lo)] + ([("uid", "<", hi)] if hi else [])
    tables = []
    for b in range(buckets):
        path = selected_path(work_dir, b)
        if fs.exists(path):
            with fs.open_read(path) as f:
                tables.append(pq.read_table(f, filters=filters, schema=SELECTION_SCHEMA))
    table = pa.concat_tables(tables) if tables else SELECTION_SCHEMA.empty_table()
    table = table.take(pc.sort_indices(table, [("uid", "ascending")]))
    uids = table.column("uid").to_pylist()
    written = []
    for part in range(first, end):
        a, b = part_bounds(part, parts)
        start = bisect.bisect_left(uids, a)
        stop = bisect.bisect_left(uids, b) if b else len(uids)
        written.append(write_part(out_dir, part, table.slice(start, stop - start)))
    return written
