"""Shared fixtures of the download tests: hand-written selection files and run configs."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.select import metadata
from pipeline.select.normalize import uid_for
from pipeline.select.work_files import SELECTION_SCHEMA  # the selection contract


def selection_row(url: str, caption: str, queries: dict[int, str]) -> dict:
    """One selection row, with the uid the selection stage would give it (hash of url+caption)."""
    uid = uid_for(url, caption)
    return {
        "uid": uid,
        "url": url,
        "caption": caption,
        "page_url": "http://example.org/page",
        "source_file": "test.wat.gz",
        "matched_query_ids": list(queries),
        "matched_queries": list(queries.values()),
        "selected_for": list(queries),
    }


def write_selection(
    out: str,
    rows: list[dict],
    per_part: int = 1000,
    cap: int | None = None,
    oversample: float = 1.0,
) -> None:
    """Write ``<out>/selection/part-NNNNN.parquet`` (sorted by uid per file) and the selection's
    ``_selection.json``, as ``wit select`` does."""
    sel = os.path.join(out, "selection")
    os.makedirs(sel, exist_ok=True)
    parts = []
    for i, lo in enumerate(range(0, len(rows), per_part)):
        chunk = sorted(rows[lo : lo + per_part], key=lambda r: r["uid"])
        path = os.path.join(sel, f"part-{i:05d}.parquet")
        pq.write_table(pa.Table.from_pylist(chunk, schema=SELECTION_SCHEMA), path)
        parts.append((path, len(chunk)))
    info = {"cap": cap or len(rows), "oversample": oversample if cap else 1.0, "mode": "exact"}
    metadata.write(sel, info, parts)


def shard_layout(folder: str) -> dict:
    """File-name patterns, Parquet columns, tar member suffixes and JSON keys of a shard folder."""
    import re
    import tarfile

    names = sorted(
        n for n in os.listdir(folder) if re.fullmatch(r"\d{5}(\.tar|\.parquet|_stats\.json)", n)
    )
    patterns = sorted({re.sub(r"^\d{5}", "NNNNN", n) for n in names})
    columns = pq.read_schema(
        os.path.join(folder, next(n for n in names if n.endswith(".parquet")))
    ).names
    with tarfile.open(os.path.join(folder, next(n for n in names if n.endswith(".tar")))) as tar:
        suffixes = sorted({m.name.split(".", 1)[1] for m in tar.getmembers()})
        first_json = next(m for m in tar.getmembers() if m.name.endswith(".json"))
        json_keys = sorted(json.load(tar.extractfile(first_json)))
    return {"files": patterns, "columns": columns, "members": suffixes, "json_keys": json_keys}
