"""``wit filter``'s end check, on the files written, whatever the runner reported.

Every input shard was decided once, holding as many rows as its Parquet file; the plan's slices
cover each input shard's rows exactly once, in order; every planned output shard was written by
this run, holds in its Parquet exactly the input rows its slices name (``source_shard``,
``source_key``), in order, each with the input's status and reason unless it was a success, which
is still a success or is ``filtered`` with a known reason; its tar holds the three members of
each success and nothing else; no other shard files exist. So every input row is accounted for
exactly once. A broken rule fails the stage with the counts (:class:`StageFailed`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pyarrow.parquet as pq

from pipeline import fs
from pipeline.download import shard_writer as sw
from pipeline.filter.decide import FILTERED, REASONS
from pipeline.invariants import StageFailed, expect_each_once, expect_equal

STAGE = "filter"


def check_decided(decided: list, inputs: list) -> None:
    """Every input shard decided exactly once, with all of its rows."""
    expect_each_once(
        STAGE, "input shards decided", [i.shard for i in inputs], [d.shard for d in decided]
    )
    rows = {d.shard: d.rows for d in decided}
    for inp in inputs:
        expect_equal(STAGE, f"rows decided of input shard {inp.shard}", inp.rows, rows[inp.shard])


def check_plan(tasks: list, inputs: list) -> None:
    """The output shards' slices tile every input shard's rows, in order, once."""
    expect_equal(STAGE, "output shard numbers", list(range(len(tasks))), [t.shard for t in tasks])
    covered: dict[int, list[tuple[int, int]]] = {}
    for task in tasks:
        for shard, start, stop in task.slices:
            covered.setdefault(shard, []).append((start, stop))
    for inp in inputs:
        ranges = covered.pop(inp.shard, [])
        ends = [0] + [stop for _, stop in ranges]
        if [start for start, _ in ranges] != ends[:-1] or ends[-1] != inp.rows:
            raise StageFailed(
                STAGE, f"the plan covers input shard {inp.shard} ({inp.rows} rows) as {ranges}"
            )
    if covered:
        raise StageFailed(
            STAGE, f"the plan names input shards that do not exist: {sorted(covered)}"
        )


def _input_rows(path: str) -> list[tuple[str, str, str | None]]:
    """(key, status, error_message) of an input shard's rows, in key order."""
    with fs.open_read(path) as f:
        t = pq.read_table(f, columns=["key", "status", "error_message"])
    return sorted(zip(*(t.column(c).to_pylist() for c in ("key", "status", "error_message"))))


def _row_problems(name: str, expected: list, got: list) -> list[str]:
    """Problems of an output shard's rows against the input rows its slices name."""
    if [(s, k) for s, k, *_ in got] != [(s, k) for s, k, *_ in expected]:
        lost = len({(s, k) for s, k, *_ in expected} - {(s, k) for s, k, *_ in got})
        return [
            f"shard {name}: {len(expected)} input rows planned, {len(got)} in its Parquet "
            f"({lost} missing)"
        ]
    bad = 0
    for (_, _, status, reason), (_, _, new_status, new_reason, reasons) in zip(expected, got):
        if status != "success":
            bad += (new_status, new_reason) != (status, reason)
        elif new_status == FILTERED:
            bad += not reasons or new_reason != reasons[0] or any(r not in REASONS for r in reasons)
        else:
            bad += new_status != "success" or bool(reasons)
    return [f"shard {name}: {bad} rows whose status or reason does not follow"] if bad else []


def shard_problems(out_dir: str, task, expected: list, ext: str, run_id: str) -> list[str]:
    """What is wrong with one output shard's files (empty when nothing is)."""
    import json

    name = sw.shard_name(task.shard)
    paths = sw.final_paths(out_dir, task.shard)
    missing = [kind for kind, path in paths.items() if not fs.exists(path)]
    if missing:
        return [f"shard {name} lacks its {', '.join(missing)} file"]
    if json.loads(fs.read_text(paths["stats"])).get("run") != run_id:
        return [f"shard {name} was not written by this run"]
    cols = ["source_shard", "source_key", "status", "error_message", "filter_reasons", "key"]
    with fs.open_read(paths["parquet"]) as f:
        t = pq.read_table(f, columns=cols)
    got = list(zip(*(t.column(c).to_pylist() for c in cols[:5])))
    problems = _row_problems(name, expected, got)
    keys = t.column("key").to_pylist()
    successes = [k for k, row in zip(keys, got) if row[2] == "success"]
    return problems + sw.tar_member_problems(name, paths["tar"], successes, ext)


def check_outputs(out_dir: str, tasks: list, inputs: list, ext: str, run_id: str) -> None:
    """Raise StageFailed unless every output shard holds exactly the input rows it should."""
    by_shard = {i.shard: i for i in inputs}

    def problems(task) -> list[str]:
        expected = []
        for shard, start, stop in task.slices:
            rows = _input_rows(by_shard[shard].parquet)[start:stop]
            expected.extend((shard, key, status, reason) for key, status, reason in rows)
        return shard_problems(out_dir, task, expected, ext, run_id)

    with ThreadPoolExecutor(8) as pool:  # reads only: overlaps the latency of remote files
        found = list(pool.map(problems, tasks))
    flat = [p for shard in found for p in shard]
    stray = sw.stray_shards(out_dir, len(tasks))
    if stray:
        flat.append(f"shard files beyond the {len(tasks)} planned: {stray[:5]}")
    if flat:
        rows = sum(i.rows for i in inputs)
        raise StageFailed(
            STAGE,
            f"{len(tasks)} filtered shards planned for {rows} input rows, "
            f"{sum(1 for s in found if s)} wrong: "
            + "; ".join(flat[:3])
            + (f"; and {len(flat) - 3} more" if len(flat) > 3 else ""),
        )
