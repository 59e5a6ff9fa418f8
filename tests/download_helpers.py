"""Shared fixtures of the download tests: hand-written selection files and run configs."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.select.extract import SELECTION_SCHEMA  # the selection contract
from pipeline.select.normalize import uid_for


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
    """Write ``<out>/selection/part-NNNNN.parquet`` (sorted by uid per file) and config.json."""
    sel = os.path.join(out, "selection")
    os.makedirs(sel, exist_ok=True)
    for i, lo in enumerate(range(0, len(rows), per_part)):
        chunk = sorted(rows[lo : lo + per_part], key=lambda r: r["uid"])
        pq.write_table(
            pa.Table.from_pylist(chunk, schema=SELECTION_SCHEMA),
            os.path.join(sel, f"part-{i:05d}.parquet"),
        )
    if cap is not None:
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump({"select": {"cap": cap, "oversample": oversample}}, f)
