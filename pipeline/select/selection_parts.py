"""Step 5 of ``wit select``: the output parts, each a uid range gathered from every bucket's
selected rows, sorted and written with fixed writer options."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import fs
from pipeline.memory import release_memory
from pipeline.select.work_files import SELECTION_SCHEMA, index_path, load_npy, selected_path

# Fixed writer options: the same rows give the same bytes on every run and worker count.
WRITE_OPTIONS = dict(
    compression="zstd", compression_level=3, use_dictionary=True, write_statistics=True
)


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


PART_GROUP_ROWS = 50_000  # rows one step-5 element gathers: bucket files are opened per group


def part_groups(parts: int, rows_per_part: int) -> list[tuple[int, int, int]]:
    """Step 5's elements: ``(first part, end part, parts)``, each about PART_GROUP_ROWS rows.

    Each element opens every bucket's file once, so grouping parts keeps the number of file
    opens at (buckets x groups) instead of (buckets x parts).
    """
    per = max(1, PART_GROUP_ROWS // max(1, rows_per_part))
    return [(a, min(a + per, parts), parts) for a in range(0, parts, per)]


def _read_uid_range(work_dir: str, bucket: int, lo: str, hi: str | None) -> pa.Table:
    """The rows of a selected file with ``lo <= uid < hi``: only the record batches whose uid
    prefixes meet the range are read."""
    first, last = load_npy(index_path(work_dir, bucket)).astype(np.int64)
    meets = last >= int(lo, 16)
    if hi is not None:
        meets &= first < int(hi, 16)
    with fs.open_read(selected_path(work_dir, bucket)) as f:
        reader = pa.ipc.open_file(f)
        batches = [reader.get_batch(i) for i in np.flatnonzero(meets).tolist()]
    table = pa.Table.from_batches(batches, schema=SELECTION_SCHEMA)
    uids = table.column("uid")
    keep = pc.greater_equal(uids, lo)
    if hi is not None:
        keep = pc.and_(keep, pc.less(uids, hi))
    return table.filter(keep)


def write_parts_from_buckets(
    work_dir: str, out_dir: str, buckets: int, first: int, end: int, parts: int
) -> list[tuple[str, int]]:
    """Step 5: gather parts ``first..end-1`` (a uid range) from every bucket's selected rows."""
    lo, _ = part_bounds(first, parts)
    _, hi = part_bounds(end - 1, parts)
    tables = []
    for b in range(buckets):
        if fs.exists(selected_path(work_dir, b)):
            tables.append(_read_uid_range(work_dir, b, lo, hi))
    table = pa.concat_tables(tables) if tables else SELECTION_SCHEMA.empty_table()
    table = table.take(pc.sort_indices(table, [("uid", "ascending")]))
    uids = table.column("uid")
    written = []
    for part in range(first, end):
        a, b = part_bounds(part, parts)
        start = pc.sum(pc.less(uids, a)).as_py() or 0  # sorted: the rows below a come first
        stop = (pc.sum(pc.less(uids, b)).as_py() or 0) if b else len(uids)
        written.append(write_part(out_dir, part, table.slice(start, stop - start)))
    del table, tables
    release_memory()
    return written
