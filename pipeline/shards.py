"""``wit shards``: every stage in order, skipping the ones whose outputs are current."""

from __future__ import annotations

import time

from pipeline import stages
from pipeline.layout import Layout


def uses_demo_world(queries, select) -> bool:
    """The demo world stands in for the internet unless real inputs are configured."""
    return not (queries.wiki_dumps or queries.pageviews or select.wat or select.tables)


def run(run, demo_world, queries, select, download, report) -> dict:
    """Run demo world -> queries -> select -> download -> report; returns the summary."""
    started = time.time()
    configs = {
        "demo_world": demo_world,
        "queries": queries,
        "select": select,
        "download": download,
        "report": report,
    }
    results = []
    for name in stages.SHARDS_ORDER:
        if name == "demo-world" and not uses_demo_world(queries, select):
            continue
        stage = stages.STAGES[name]
        results.append(stages.execute(name, run, configs[stage.section]))
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
        for key in ("queries", "candidates", "matched", "selected", "downloaded", "shards"):
            if key in r.summary:
                summary[key] = r.summary[key]
    summary["warnings"] = [f"{r.name}: {w}" for r in results for w in r.summary.get("warnings", [])]
    return summary


def format_summary(summary: dict) -> str:
    """The few lines ``make shards`` ends with."""
    lines = ["", "== wit shards: summary =="]
    for name, what in summary.get("stages", {}).items():
        lines.append(f"  {name:<11} {what}")
    for key in ("queries", "candidates", "matched", "selected", "downloaded", "shards"):
        if key in summary:
            lines.append(f"  {key:<11} {summary[key]}")
    lines.append(f"  output      {summary['out']}")
    lines.append(f"  report      {summary['report']}")
    lines.append(f"  total       {summary['seconds']}s")
    lines += [f"  warning     {w}" for w in summary.get("warnings", [])]
    return "\n".join(lines)
