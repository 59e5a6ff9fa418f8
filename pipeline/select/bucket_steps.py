"""Steps 2 to 4 of ``wit select``, one bucket at a time, as plain functions.

Step 2, per bucket: dedup; the bucket's unique rows, sorted by uid, are written once
(``b0007/unique.arrow``) with its matches per query (``b0007/counts.npy``); one step sums the
buckets' counts.
Step 3 (exact mode), per bucket: the draws of the pairs whose query is over quota (saved,
``b0007/draws.npy``) and, per such query, its smallest draws below a cutoff set from its count;
merged per query, the quota-th smallest is the query's admission threshold.
Step 4, per bucket: decide each pair from the saved counts and thresholds, write the bucket's
selected rows sorted by uid to ``<work>/selected/b0007.arrow``.

Only per-bucket summaries and a few small arrays travel between steps as Beam elements; rows and
draws stay in files (:mod:`pipeline.select.work_files`), so no runner process holds anything that
grows with the number of candidates.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import fs
from pipeline.memory import release_memory
from pipeline.select import balance
from pipeline.select.extract import Settings, add_tally, forget_query_trie
from pipeline.select.matching import query_table
from pipeline.select.work_files import (
    IPC_OPTIONS,
    SELECTION_SCHEMA,
    SPILL_SCHEMA,
    bucket_file,
    by_id,
    dense,
    index_path,
    load_npy,
    read_ipc,
    save_npy,
    save_step,
    selected_path,
    sum_buckets,
    write_ipc,
)

# ---- step 2: dedup and count --------------------------------------------------------------------


def _first_of_runs(values: pa.Array) -> np.ndarray:
    """Mask of the values that differ from the one before (the first of each run)."""
    first = np.ones(len(values), bool)
    if len(values) > 1:
        differs = pc.not_equal(values.slice(1), values.slice(0, len(values) - 1))
        first[1:] = differs.to_numpy(zero_copy_only=False)
    return first


def dedup(table: pa.Table, dedup_url: bool) -> tuple[pa.Table, Counter]:
    """Unique rows sorted by uid, and how many duplicates were removed.

    The same pair seen on several pages keeps one representative, chosen by value: the smallest
    (source_file, page_url). With ``dedup_url`` the smallest uid of each URL is kept.
    """
    removed: Counter = Counter()
    if not table.num_rows:
        return table, removed
    keys = [("uid", "ascending"), ("source_file", "ascending"), ("page_url", "ascending")]
    table = table.take(pc.sort_indices(table, keys)).combine_chunks()
    first = _first_of_runs(table.column("uid").chunk(0))
    add_tally(removed, "duplicate_uid", len(first) - first.sum())
    table = table.filter(pa.array(first))
    if dedup_url:
        order = pc.sort_indices(table, [("url", "ascending"), ("uid", "ascending")]).to_numpy()
        urls = table.column("url").take(pa.array(order)).combine_chunks()
        keep = np.sort(order[_first_of_runs(urls)])
        add_tally(removed, "duplicate_url", table.num_rows - len(keep))
        table = table.take(pa.array(keep))
    return table, removed


def per_query_counts(queries: np.ndarray) -> np.ndarray:
    """``[[query], [count]]`` (int64, query ascending) of a flat array of query indices."""
    queries = np.sort(queries)
    first = np.ones(len(queries), bool)
    first[1:] = queries[1:] != queries[:-1]
    starts = np.flatnonzero(first)
    counts = np.diff(np.r_[starts, len(queries)])
    return np.stack([queries[starts].astype(np.int64), counts.astype(np.int64)])


def _flat_queries(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Every (row, query index) of a table's ``query_index`` lists, row-major."""
    lists = table.column("query_index").combine_chunks()
    rows = pc.list_parent_indices(lists).to_numpy()
    return rows, pc.list_flatten(lists).to_numpy().astype(np.int64)


def read_spill(work_dir: str, bucket: int) -> pa.Table:
    """Every row spilled to a bucket (by every input file)."""
    paths = sorted(fs.glob(fs.join(work_dir, f"b{bucket:04d}", "f*.arrow")))
    tables = [read_ipc(p) for p in paths]
    return pa.concat_tables(tables) if tables else SPILL_SCHEMA.empty_table()


def read_unique(work_dir: str, bucket: int) -> pa.Table:
    """A bucket's unique rows, sorted by uid (step 2's output)."""
    return read_ipc(bucket_file(work_dir, bucket, "unique.arrow"))


def bucket_summary(work_dir: str, bucket: int, dedup_url: bool) -> dict:
    """Step 2: dedup a bucket, write its unique rows and per-query counts; returns its tallies."""
    forget_query_trie()
    unique, removed = dedup(read_spill(work_dir, bucket), dedup_url)
    write_ipc(bucket_file(work_dir, bucket, "unique.arrow"), unique)
    save_npy(
        bucket_file(work_dir, bucket, "counts.npy"), per_query_counts(_flat_queries(unique)[1])
    )
    rows = unique.num_rows
    del unique
    release_memory()
    return {"bucket": bucket, "dedup": dict(removed, unique=rows)}


def save_counts(merged: dict, settings: Settings) -> dict:
    """Step 2's result: the buckets' counts summed; saved as step ``count`` (returned)."""
    table = query_table(settings.queries_path)
    total = sum_buckets(settings.work_dir, merged["buckets"], "counts.npy", table)
    result = dict(merged)
    if total is not None:
        result["counts"] = by_id(table, total[0])
    return save_step(settings.work_dir, "count", result)


# ---- step 3: thresholds (exact mode) ------------------------------------------------------------


def _over_quota_pairs(table: pa.Table, counts: np.ndarray, quota: int):
    """(row, query index) of every pair, and the mask of those whose query is over quota."""
    rows, queries = _flat_queries(table)
    return rows, queries, counts[queries] > quota


def _pair_draws(table: pa.Table, rows, queries, ids: np.ndarray, seed: int) -> np.ndarray:
    uids = table.column("uid").combine_chunks().take(pa.array(rows))
    return balance.draws(seed, ids[queries], uids)


def smallest_under_cutoff(bucket: int, settings: Settings) -> Iterator[tuple[int, np.ndarray]]:
    """Step 3 for one bucket: per query over quota, its ``quota`` smallest draws (ascending)
    among those at or below the query's cutoff (:func:`balance.threshold_cutoff`).

    The draws of every over-quota pair are saved for step 4. A query's global ``quota`` smallest
    draws are among the union of every bucket's lists whenever at least ``quota`` draws fall
    under its cutoff; :func:`save_thresholds` completes the others from the saved draws.
    """
    table_q = query_table(settings.queries_path)
    counts = dense(settings.work_dir, "count", "counts", table_q, 0)
    table = read_unique(settings.work_dir, bucket)
    rows, queries, over = _over_quota_pairs(table, counts, settings.quota)
    draws = _pair_draws(table, rows[over], queries[over], table_q.ids, settings.seed)
    save_npy(bucket_file(settings.work_dir, bucket, "draws.npy"), draws)
    queries = queries[over]
    cutoffs = np.zeros(len(counts), np.int64)
    heavy = np.flatnonzero(counts > settings.quota)
    cutoffs[heavy] = [balance.threshold_cutoff(n, settings.quota) for n in counts[heavy].tolist()]
    under = draws <= cutoffs[queries]
    smallest = list(_smallest_per_query(queries[under], draws[under], table_q.ids, settings.quota))
    del table, rows, queries, draws
    release_memory()
    yield from smallest


def _smallest_per_query(queries, draws, ids, quota: int) -> Iterator[tuple[int, np.ndarray]]:
    """Per query (as its id), its ``quota`` smallest draws, ascending."""
    if not len(queries):
        return
    order = np.lexsort((draws, queries))
    queries, draws = queries[order], draws[order]
    starts = np.flatnonzero(np.r_[True, queries[1:] != queries[:-1]])
    for start, end in zip(starts.tolist(), np.r_[starts[1:], len(queries)].tolist()):
        yield int(ids[queries[start]]), draws[start : min(end, start + quota)]


def merge_smallest(arrays, quota: int) -> np.ndarray:
    """The ``quota`` smallest values of several arrays, ascending."""
    arrays = [a for a in arrays if len(a)]
    if not arrays:
        return np.zeros(0, np.int64)
    return np.sort(np.concatenate(arrays))[:quota]


def save_thresholds(found: list, settings: Settings) -> dict:
    """Step 3's result: each over-quota query's threshold, the quota-th smallest of its draws;
    saved as step ``thresholds``. ``found``: (query_id, threshold or None) from the merged
    lists; queries with no threshold there are completed from every bucket's saved draws."""
    table_q = query_table(settings.queries_path)
    counts = dense(settings.work_dir, "count", "counts", table_q, 0)
    thresholds = {q: t for q, t in found if t is not None}
    over = table_q.ids[counts > settings.quota].tolist()
    missing = [q for q in over if q not in thresholds]
    if missing:
        thresholds.update(exact_thresholds(missing, settings, table_q, counts))
    return save_step(
        settings.work_dir, "thresholds", {"thresholds": thresholds, "completed": len(missing)}
    )


def exact_thresholds(query_ids: list, settings: Settings, table_q, counts) -> dict:
    """The thresholds of ``query_ids`` from every bucket's saved draws (no cutoff)."""
    wanted = np.zeros(len(table_q.ids), bool)
    wanted[table_q.index_of(query_ids)] = True
    best: dict = {}
    for b in range(settings.buckets):
        table = read_unique(settings.work_dir, b)
        _, queries, over = _over_quota_pairs(table, counts, settings.quota)
        draws = load_npy(bucket_file(settings.work_dir, b, "draws.npy"))
        keep = wanted[queries[over]]
        for q, smallest in _smallest_per_query(
            queries[over][keep], draws[keep], table_q.ids, settings.quota
        ):
            best[q] = merge_smallest([best.get(q, np.zeros(0, np.int64)), smallest], settings.quota)
    return {q: int(d[settings.quota - 1]) for q, d in best.items() if len(d) >= settings.quota}


# ---- step 4: decide -----------------------------------------------------------------------------


# Step 5 reads the record batches of a selected file whose uid range meets its parts'; the
# file's index holds each batch's first and last uid prefix. (Only the values reach the parts:
# a sorted take yields one chunk whatever the files' layout.)
SELECTED_BATCH = 1024

_HEX = np.full(256, 0, np.uint32)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)


def uid_prefixes(uids: pa.Array) -> np.ndarray:
    """The first 8 hex digits of each uid as an integer (how part bounds cut the uid space)."""
    uids = uids.combine_chunks() if isinstance(uids, pa.ChunkedArray) else uids
    if not len(uids):
        return np.zeros(0, np.uint32)
    buffers = uids.buffers()
    starts = np.frombuffer(buffers[1], np.int32, len(uids), uids.offset * 4).astype(np.int64)
    data = np.frombuffer(buffers[2], np.uint8)
    prefix = np.zeros(len(uids), np.uint32)
    for k in range(8):
        prefix = (prefix << np.uint32(4)) | _HEX[data[starts + k]]
    return prefix


def write_selected(work_dir: str, bucket: int, table: pa.Table) -> None:
    """Write a bucket's selected rows (SELECTION_SCHEMA, sorted by uid) and their batch index."""
    with fs.open_write_atomic(selected_path(work_dir, bucket)) as f:
        with pa.ipc.new_file(f, SELECTION_SCHEMA, options=IPC_OPTIONS) as writer:
            writer.write_table(table, max_chunksize=SELECTED_BATCH)
    prefixes = uid_prefixes(table.column("uid"))
    last = np.minimum(
        np.arange(SELECTED_BATCH, len(prefixes) + SELECTED_BATCH, SELECTED_BATCH), len(prefixes)
    )
    save_npy(
        index_path(work_dir, bucket), np.stack([prefixes[::SELECTED_BATCH], prefixes[last - 1]])
    )


def _admitted(table, rows, queries, over, settings: Settings, table_q, counts, bucket: int):
    """Per pair, whether its query admits it (pairs of queries within quota always)."""
    admitted = ~over
    if not over.any():
        return admitted
    over_queries = queries[over]
    if settings.mode == "exact":
        draws = load_npy(bucket_file(settings.work_dir, bucket, "draws.npy"))
        limit = dense(settings.work_dir, "thresholds", "thresholds", table_q, -1)
        admitted[over] = draws <= limit[over_queries]
    else:
        draws = _pair_draws(table, rows[over], over_queries, table_q.ids, settings.seed)
        admitted[over] = draws < balance.probabilistic_bounds(counts[over_queries], settings.quota)
    return admitted


def _lists(offsets: np.ndarray, values: pa.Array) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)


def _selection_table(table, rows, queries, admitted, keep_row, table_q) -> pa.Table:
    """The selected rows (``keep_row``) in SELECTION_SCHEMA."""
    in_kept = keep_row[rows]
    kept_queries, chosen = queries[in_kept], queries[in_kept & admitted]
    kept_rows = np.flatnonzero(keep_row)
    per_row = np.bincount(rows[in_kept], minlength=len(keep_row))[kept_rows]
    chosen_per_row = np.bincount(rows[in_kept & admitted], minlength=len(keep_row))[kept_rows]
    offsets = np.r_[0, np.cumsum(per_row)]
    take = pa.array(kept_rows)
    columns = [table.column(c).take(take).combine_chunks() for c in SELECTION_SCHEMA.names[:5]]
    columns += [
        _lists(offsets, pa.array(table_q.ids[kept_queries])),
        _lists(offsets, table_q.names.take(pa.array(kept_queries))),
        _lists(np.r_[0, np.cumsum(chosen_per_row)], pa.array(table_q.ids[chosen])),
    ]
    return pa.Table.from_arrays(columns, schema=SELECTION_SCHEMA)


def decide_saved_bucket(bucket: int, settings: Settings) -> dict:
    """Step 4: decide a bucket's pairs from the saved counts (and, in exact mode, thresholds),
    write the selected ones; returns its tallies (per-query tallies go to ``decided.npy``)."""
    table_q = query_table(settings.queries_path)
    counts = dense(settings.work_dir, "count", "counts", table_q, 0)
    table = read_unique(settings.work_dir, bucket)
    rows, queries, over = _over_quota_pairs(table, counts, settings.quota)
    admitted = _admitted(table, rows, queries, over, settings, table_q, counts, bucket)
    keep_row = np.zeros(table.num_rows, bool)
    keep_row[rows[admitted]] = True
    selected = int(keep_row.sum())
    if selected:
        write_selected(
            settings.work_dir,
            bucket,
            _selection_table(table, rows, queries, admitted, keep_row, table_q),
        )
    attributed = per_query_counts(queries[admitted])
    kept = per_query_counts(queries[keep_row[rows]])
    tallies = np.zeros((3, kept.shape[1]), np.int64)
    tallies[0], tallies[2] = kept[0], kept[1]
    tallies[1, np.searchsorted(kept[0], attributed[0])] = attributed[1]
    save_npy(bucket_file(settings.work_dir, bucket, "decided.npy"), tallies)
    del table, rows, queries, admitted
    release_memory()
    return {"bucket": bucket, "selected": selected}


def save_decisions(merged: dict, settings: Settings) -> dict:
    """Step 4's result: per query the pairs attributed to it and the selected pairs matching
    it, summed over the buckets; saved as step ``decide``."""
    table = query_table(settings.queries_path)
    total = sum_buckets(settings.work_dir, merged["buckets"], "decided.npy", table)
    result = dict(merged)
    if total is not None:
        result["attributed"], result["kept"] = by_id(table, total[0]), by_id(table, total[1])
    return save_step(settings.work_dir, "decide", result)
