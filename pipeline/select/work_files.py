"""The work files of ``wit select``: where each step leaves what the next one reads.

Rows and draws stay in files under the run's work directory, never in Beam elements:

- ``b0007/f00003.arrow``: the pairs input file 3 spilled to bucket 7 (SPILL_SCHEMA);
- ``b0007/unique.arrow``, ``counts.npy``, ``draws.npy``, ``decided.npy``: the bucket's unique
  rows sorted by uid, and per-query arrays of the later steps;
- ``selected/b0007.arrow`` (+ ``.index.npy``): the bucket's selected rows (SELECTION_SCHEMA);
- ``steps/<step>.json`` (+ ``steps/<step>.<field>.npy``): what a step needs from all buckets,
  saved once by one step (per-query columns as ``[[query_id], [n]]`` arrays).

A query is referred to by its index in the query list's sorted ids
(:class:`~pipeline.select.matching.QueryTable`) inside a step, and by its id in saved results.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pyarrow as pa

from pipeline import fs
from pipeline.select.matching import QueryTable

SPILL_SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("url", pa.string()),
        ("caption", pa.string()),
        ("page_url", pa.string()),
        ("source_file", pa.string()),
        ("query_index", pa.list_(pa.int32())),  # the matched queries, ascending
    ]
)


SELECTION_SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("url", pa.string()),
        ("caption", pa.string()),
        ("page_url", pa.string()),
        ("source_file", pa.string()),
        ("matched_query_ids", pa.list_(pa.int64())),
        ("matched_queries", pa.list_(pa.string())),
        ("selected_for", pa.list_(pa.int64())),
    ]
)

# Work files (written and read once or twice by this run): Arrow IPC streams, cheap to write
# and read whole, LZ4-compressed.
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


def bucket_file(work_dir: str, bucket: int, name: str) -> str:
    """A per-bucket work file (``unique.arrow``, ``counts.npy``, ``draws.npy``, ...)."""
    return fs.join(work_dir, f"b{bucket:04d}", name)


def spill_path(work_dir: str, bucket: int, file_index: int) -> str:
    """Spill file of one input file in one bucket."""
    return fs.join(work_dir, f"b{bucket:04d}", f"f{file_index:05d}.arrow")


def selected_path(work_dir: str, bucket: int) -> str:
    """The selected rows of one bucket, sorted by uid (step 4's output, an Arrow file)."""
    return fs.join(work_dir, "selected", f"b{bucket:04d}.arrow")


def index_path(work_dir: str, bucket: int) -> str:
    return fs.join(work_dir, "selected", f"b{bucket:04d}.index.npy")


def write_ipc(path: str, table: pa.Table) -> None:
    with fs.open_write_atomic(path) as f:
        with pa.ipc.new_stream(f, table.schema, options=IPC_OPTIONS) as writer:
            writer.write_table(table)


def read_ipc(path: str) -> pa.Table:
    with fs.open_read(path) as f:
        return pa.ipc.open_stream(f).read_all()


def save_npy(path: str, array: np.ndarray) -> None:
    with fs.open_write_atomic(path) as f:
        np.save(f, array, allow_pickle=False)


def load_npy(path: str) -> np.ndarray:
    with fs.open_read(path) as f:
        return np.load(f, allow_pickle=False)


# ---- the steps' saved results -------------------------------------------------------------------


PER_QUERY = ("counts", "attributed", "kept", "thresholds")  # {query_id: n} fields of step files


def step_path(work_dir: str, step: str) -> str:
    """Where a step's merged result is saved (read by the later steps and by the driver)."""
    return fs.join(work_dir, "steps", f"{step}.json")


def _field_path(work_dir: str, step: str, field: str) -> str:
    return fs.join(work_dir, "steps", f"{step}.{field}.npy")


def save_step(work_dir: str, step: str, result: dict) -> dict:
    """Write a step's merged result; returns it. Per-query fields (PER_QUERY), given as
    ``{query_id: n}`` or as ``[[query_id], [n]]`` arrays, go to ``.npy`` files, the rest to JSON."""
    plain = {}
    for key, value in result.items():
        if key in PER_QUERY:
            if isinstance(value, dict):
                ids = np.array(sorted(value), np.int64)
                value = np.stack([ids, np.array([value[q] for q in ids.tolist()], np.int64)])
            save_npy(_field_path(work_dir, step, key), np.asarray(value, np.int64).reshape(2, -1))
            plain.setdefault("per_query", []).append(key)
        else:
            plain[key] = value
    fs.write_text_atomic(step_path(work_dir, step), json.dumps(plain, sort_keys=True))
    return plain


@functools.lru_cache(maxsize=8)
def _load_json(path: str, stamp: tuple) -> dict:
    return json.loads(fs.read_text(path))


@functools.lru_cache(maxsize=8)
def _load_field(path: str, stamp: tuple) -> np.ndarray:
    return load_npy(path)


def load_field(work_dir: str, step: str, field: str) -> np.ndarray:
    """A per-query field of a saved step: ``[[query_id], [n]]``, read once per process and file
    version."""
    path = _field_path(work_dir, step, field)
    return _load_field(path, fs.version(path))


def load_step(work_dir: str, step: str) -> dict:
    """What :func:`save_step` wrote, per-query fields as ``{query_id: n}`` dicts."""
    path = step_path(work_dir, step)
    result = dict(_load_json(path, fs.version(path)))
    for key in result.pop("per_query", []):
        ids, values = load_field(work_dir, step, key)
        result[key] = dict(zip(ids.tolist(), values.tolist()))
    return result


_DENSE: dict[tuple, np.ndarray] = {}


def dense(work_dir: str, step: str, field: str, table: QueryTable, default: int) -> np.ndarray:
    """A per-query field as an array over the query index (``default`` for absent queries),
    built once per process and file version (every bucket step reads the same ones)."""
    path = _field_path(work_dir, step, field)
    key = (path, fs.version(path), default, len(table.ids))
    if key not in _DENSE:
        if len(_DENSE) >= 4:
            _DENSE.pop(next(iter(_DENSE)))
        ids, values = load_field(work_dir, step, field)
        out = np.full(len(table.ids), default, np.int64)
        out[table.index_of(ids)] = values
        out.flags.writeable = False
        _DENSE[key] = out
    return _DENSE[key]


def sum_buckets(work_dir: str, buckets: list, name: str, table: QueryTable) -> np.ndarray:
    """Per-bucket ``[[query index], [n], ...]`` files summed into rows of arrays over the index."""
    total = None
    for b in buckets:
        part = load_npy(bucket_file(work_dir, b, name))
        if total is None:
            total = np.zeros((len(part) - 1, len(table.ids)), np.int64)
        total[:, part[0]] += part[1:]
    return total


def by_id(table: QueryTable, values: np.ndarray) -> np.ndarray:
    """``[[query_id], [n]]`` of the queries with a non-zero value."""
    nonzero = np.flatnonzero(values)
    return np.stack([table.ids[nonzero], values[nonzero]])
