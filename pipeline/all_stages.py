"""``wit shards`` (every stage in order, skipping the current ones), and the one place where the
demo world stands in for the internet.

A run given no real input (no dumps, pageviews, WAT files or tables) works on the embedded demo
world: its stage generates ``<out>/world``, its files become the queries and select stages'
explicit inputs, and its image server runs around the download, whose allowed hosts gain the
server's address. The stages themselves only ever see explicit inputs. Single-stage commands
(``wit queries`` ...) go through :func:`execute` so they find the same inputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any

from pipeline import stages
from pipeline.config import write_resolved
from pipeline.demo_world import stand_in
from pipeline.layout import Layout

REAL_INPUTS = {"queries": ("wiki_dumps", "pageviews"), "select": ("wat", "tables")}


def uses_demo_world(queries, select) -> bool:
    """The demo world stands in for the internet unless real inputs are configured."""
    return not (queries.wiki_dumps or queries.pageviews or select.wat or select.tables)


def _with_world_inputs(section: str, cfg: Any, world: str) -> Any:
    """``cfg`` with the demo world's files as its inputs, where it was given none."""
    keys = REAL_INPUTS.get(section, ())
    if not keys or any(getattr(cfg, k) for k in keys) or not stand_in.exists(world):
        return cfg
    files = stand_in.inputs(world)
    return dataclasses.replace(cfg, **{k: files[k] for k in keys})


@contextlib.contextmanager
def _serving(name: str, cfg: Any, world: str):
    """Around the download of a demo run: the world's server, and its host allowed."""
    if name != "download" or not stand_in.exists(world):
        yield cfg
        return
    with stand_in.serving(world) as host:
        allowed = [h for h in cfg.allow_hosts if h != host] + [host]
        yield dataclasses.replace(cfg, allow_hosts=allowed)


def execute(name: str, configs: dict[str, Any]) -> stages.StageResult:
    """Run one stage with the demo world's inputs (and server) when the run has no real ones."""
    run = configs["run"]
    stage = stages.STAGES[name]
    world = Layout(run.out).world
    cfg = _with_world_inputs(stage.section, configs[stage.section], world)
    with _serving(name, cfg, world) as cfg:
        if cfg is not configs[stage.section]:  # the inputs actually read, for the lineage
            write_resolved({stage.section: cfg}, run.out)
        return stages.execute(name, run, cfg)


def run(run, demo_world, queries, select, download, filter, report) -> dict:
    """Run demo world -> queries -> select -> download -> (filter) -> report; returns the summary."""
    started = time.time()
    configs = {
        "run": run,
        "demo_world": demo_world,
        "queries": queries,
        "select": select,
        "download": download,
        "filter": filter,
        "report": report,
    }
    skipped = {"demo-world": not uses_demo_world(queries, select), "filter": not filter.in_shards}
    results = []
    for name in stages.SHARDS_ORDER:
        if not skipped.get(name):
            results.append(execute(name, configs))
    layout = Layout(run.out)
    summary = {
        "out": run.out,
        "stages": {
            r.name: ("skipped (up to date)" if r.skipped else f"ran in {r.seconds:.1f}s")
            for r in results
        },
        "report": f"{layout.reports}/index.html",
        "seconds": round(time.time() - started, 1),
    }
    for r in results:
        for key in ("queries", "candidates", "matched", "selected", "downloaded", "shards", "kept"):
            if key in r.summary:
                summary[key] = r.summary[key]
    summary["warnings"] = [f"{r.name}: {w}" for r in results for w in r.summary.get("warnings", [])]
    return summary


def format_summary(summary: dict) -> str:
    """The few lines ``make shards`` ends with."""
    lines = ["", "== wit shards: summary =="]
    for name, what in summary.get("stages", {}).items():
        lines.append(f"  {name:<11} {what}")
    for key in ("queries", "candidates", "matched", "selected", "downloaded", "kept", "shards"):
        if key in summary:
            lines.append(f"  {key:<11} {summary[key]}")
    lines.append(f"  output      {summary['out']}")
    lines.append(f"  report      {summary['report']}")
    lines.append(f"  total       {summary['seconds']}s")
    lines += [f"  warning     {w}" for w in summary.get("warnings", [])]
    return "\n".join(lines)
