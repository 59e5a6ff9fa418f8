"""``reports/download.json``: outcomes by status and reason, by host, bytes and timings.

Everything is computed from the final shard Parquet files, so the totals equal the sums of the rows
and the report can be re-rendered from disk at any time.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import fs

TOP_HOSTS = 20


def read_shard_rows(shards_dir: str) -> pa.Table:
    """All final shard Parquet files of a directory, concatenated (key order within each)."""
    from pipeline.download.shard_writer import FINAL_SCHEMA

    paths = [p for p in fs.glob(fs.join(shards_dir, "*.parquet"))]
    tables = []
    for path in paths:
        with fs.open_read(path) as f:
            tables.append(pq.read_table(f, schema=FINAL_SCHEMA))
    return pa.concat_tables(tables) if tables else FINAL_SCHEMA.empty_table()


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 4)


def _hosts(table: pa.Table) -> list[dict]:
    per_host: dict[str, Counter] = defaultdict(Counter)
    for host, status in zip(table.column("host").to_pylist(), table.column("status").to_pylist()):
        per_host[host or "(none)"][status] += 1
    rows = []
    for host, c in per_host.items():
        total = sum(c.values())
        failed = c["failed_to_download"] + c["failed_to_resize"]
        rows.append(
            {
                "host": host,
                "samples": total,
                "successes": c["success"],
                "failed": failed,
                "failure_rate": round(failed / total, 4),
            }
        )
    rows.sort(key=lambda r: (-r["samples"], r["host"]))
    return rows[:TOP_HOSTS]


def build_report(table: pa.Table, extra: dict | None = None) -> dict:
    """The download report of a table of shard rows."""
    statuses = Counter(table.column("status").to_pylist())
    reasons: dict[str, Counter] = defaultdict(Counter)
    for status, reason in zip(
        table.column("status").to_pylist(), table.column("error_message").to_pylist()
    ):
        if status != "success":
            reasons[status][reason or "unknown"] += 1
    attempted = table.filter(pc.field("http_status").is_valid() | (pc.field("status") != "success"))
    latencies = [s for s in attempted.column("seconds").to_pylist() if s]
    ok = table.filter(pc.field("status") == "success")
    report = {
        "samples": table.num_rows,
        "successes": statuses.get("success", 0),
        "success_rate": round(statuses.get("success", 0) / table.num_rows, 4)
        if table.num_rows
        else None,
        "by_status": dict(sorted(statuses.items())),
        "by_reason": {s: dict(c.most_common()) for s, c in sorted(reasons.items())},
        "hosts": {"distinct": len(set(table.column("host").to_pylist())), "top": _hosts(table)},
        "bytes": {
            "downloaded": int(pc.sum(table.column("bytes")).as_py() or 0),
            "mean_per_success": round(pc.mean(ok.column("bytes")).as_py() or 0, 1)
            if ok.num_rows
            else None,
        },
        "timings": {
            "latency_p50_s": _quantile(latencies, 0.5),
            "latency_p95_s": _quantile(latencies, 0.95),
            "latency_max_s": _quantile(latencies, 1.0),
            "retries": int(pc.sum(table.column("retries")).as_py() or 0),
            "redirects": int(pc.sum(table.column("redirects")).as_py() or 0),
        },
    }
    report.update(extra or {})
    return report


def write_report(shards_dir: str, path: str, extra: dict | None = None) -> dict:
    """Build the report from the shards on disk and write it atomically."""
    report = build_report(read_shard_rows(shards_dir), extra)
    fs.write_text_atomic(path, json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report
