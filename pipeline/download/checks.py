"""``wit download``'s end check, on the files written, whatever the runner reported.

Every planned shard was finalised by this run and has its ``.tar``, ``.parquet`` and
``_stats.json`` (and no other shard files exist); each shard's Parquet holds exactly the selection
rows the plan gave it, in key order, so every selected uid appears exactly once; every success row
has its ``{key}.{ext}``, ``{key}.txt`` and ``{key}.json`` in the tar, and the tar holds nothing
else. A broken rule fails the stage with the counts (:class:`StageFailed`).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pyarrow.parquet as pq

from pipeline import fs
from pipeline.download import phases
from pipeline.download import shard_writer as sw
from pipeline.download.worker import ShardTask, rows_for_task
from pipeline.invariants import StageFailed

STAGE = "download"


def _finalized_by(shards_dir: str, shard: int) -> str | None:
    path = phases.finalized_path(shards_dir, shard)
    try:
        return json.loads(fs.read_text(path)).get("run") if fs.exists(path) else None
    except ValueError:
        return None


def _expected_rows(task: ShardTask) -> list[tuple[str, str]]:
    """(key, uid) of the selection rows the plan gave ``task``, in key order."""
    return [(r["key"], r["uid"]) for r in rows_for_task(task, phases.read_slice)]


def shard_problems(shards_dir: str, task: ShardTask, ext: str, run_id: str) -> list[str]:
    """What is wrong with one shard's final files (empty when nothing is)."""
    name = sw.shard_name(task.shard)
    if _finalized_by(shards_dir, task.shard) != run_id:
        return [f"shard {name} was not finalised by this run"]
    paths = sw.final_paths(shards_dir, task.shard)
    missing = [kind for kind, path in paths.items() if not fs.exists(path)]
    if missing:
        return [f"shard {name} lacks its {', '.join(missing)} file"]
    with fs.open_read(paths["parquet"]) as f:
        table = pq.read_table(f, columns=["key", "uid", "status"])
    got = list(zip(table.column("key").to_pylist(), table.column("uid").to_pylist()))
    expected = _expected_rows(task)
    problems = []
    if got != expected:
        lost = len(set(expected) - set(got))
        extra = len(got) - len(set(got) & set(expected))
        problems.append(
            f"shard {name}: {len(expected)} selected rows planned, {len(got)} in its Parquet "
            f"({lost} missing, {extra} not planned or repeated)"
        )
    successes = [
        k
        for k, s in zip(table.column("key").to_pylist(), table.column("status").to_pylist())
        if s == "success"
    ]
    return problems + sw.tar_member_problems(name, paths["tar"], successes, ext)


def check_shards(shards_dir: str, tasks: list[ShardTask], ext: str, run_id: str) -> None:
    """Raise StageFailed unless every planned shard's final files are complete and exact."""
    with ThreadPoolExecutor(8) as pool:  # reads only: overlaps the latency of remote files
        found = list(pool.map(lambda t: shard_problems(shards_dir, t, ext, run_id), tasks))
    problems = [p for shard in found for p in shard]
    stray = sw.stray_shards(shards_dir, len(tasks))
    if stray:
        problems.append(f"shard files beyond the {len(tasks)} planned: {stray[:5]}")
    if problems:
        bad = sum(1 for shard in found if shard)
        rows = sum(t.size for t in tasks)
        raise StageFailed(
            STAGE,
            f"{len(tasks)} shards planned for {rows} selected rows, {bad} incomplete: "
            + "; ".join(problems[:3])
            + (f"; and {len(problems) - 3} more" if len(problems) > 3 else ""),
        )
