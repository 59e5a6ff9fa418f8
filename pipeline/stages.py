"""The stages of ``make shards``, their order, and the completion markers that let re-runs skip.

A stage is complete when its output directory holds ``_SUCCESS.json`` whose fingerprint equals
the fingerprint of the current run: a hash of the stage's resolved configuration, the run seed,
the fingerprints of the stages it reads from, and the size and mtime of its external input files.
Anything else re-runs the stage.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import importlib
import json
import os
import platform
import time
from dataclasses import dataclass
from typing import Any, Callable

from pipeline import fs
from pipeline.config import RunConfig
from pipeline.layout import Layout


@dataclass(frozen=True)
class Stage:
    """One stage: its config section, the function that runs it, where it writes, what it reads."""

    name: str
    section: str
    func: str  # "module:function", called as func(run=RunConfig, <section>=SectionConfig) -> dict
    out_dir: Callable[[Layout], str]
    upstream: tuple[str, ...] = ()
    always_run: bool = False  # cheap stages that render from whatever is on disk
    beam: bool = True  # runs a Beam pipeline

    def load(self) -> Callable[..., dict]:
        module, name = self.func.split(":")
        return getattr(import_frozen(module, with_beam=self.beam), name)


def import_frozen(module: str, with_beam: bool = False):
    """Import a stage module (and Beam) with the cyclic GC paused, then freeze what it created.

    Importing Beam creates a few hundred thousand objects that live as long as the process. With
    the collector on, the import itself triggers full collections that rescan them, and so does
    every later one, down to the last at exit; frozen, the collector skips them for good (the
    saving is part of the start-up figures of ``python -m bench.bench_download``).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        if with_beam:
            import apache_beam  # noqa: F401
        return importlib.import_module(module)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


STAGES: dict[str, Stage] = {
    s.name: s
    for s in [
        Stage(
            "demo-world",
            "demo_world",
            "pipeline.demo_world.stage:run",
            lambda lay: lay.world,
            beam=False,
        ),
        Stage("queries", "queries", "queries.stage:run", lambda lay: lay.queries, ("demo-world",)),
        Stage(
            "select",
            "select",
            "pipeline.select.stage:run",
            lambda lay: lay.selection,
            ("demo-world", "queries"),
        ),
        Stage(
            "download",
            "download",
            "pipeline.download.stage:run",
            lambda lay: lay.shards,
            ("select",),
        ),
        Stage(
            "filter",
            "filter",
            "pipeline.filter.stage:run",
            lambda lay: lay.filtered,
            ("download",),
        ),
        Stage(
            "report",
            "report",
            "pipeline.report.stage:run",
            lambda lay: lay.reports,
            ("queries", "select", "download", "filter"),
            always_run=True,
            beam=False,
        ),
    ]
}
SHARDS_ORDER = ["demo-world", "queries", "select", "download", "filter", "report"]


@dataclass
class StageResult:
    """What happened to a stage in this invocation."""

    name: str
    skipped: bool
    seconds: float
    summary: dict[str, Any]


def marker_path(layout: Layout, stage: Stage) -> str:
    return fs.join(stage.out_dir(layout), "_SUCCESS.json")


def read_marker(layout: Layout, stage: Stage) -> dict | None:
    """The completion marker of a stage, or None if the stage never finished."""
    path = marker_path(layout, stage)
    if not fs.exists(path):
        return None
    try:
        return json.loads(fs.read_text(path))
    except ValueError:
        return None


def _input_stats(cfg: Any, out: str) -> list:
    patterns = cfg.inputs(out) if hasattr(cfg, "inputs") else []
    stats = []
    for pattern in patterns:
        for path in fs.glob(pattern):
            if fs.is_remote(path):
                stats.append([path, fs.size(path)])
            else:
                st = os.stat(path)
                stats.append([path, st.st_size, st.st_mtime_ns])
    return stats


def fingerprint(layout: Layout, stage: Stage, run: RunConfig, cfg: Any) -> str:
    """Hash of everything that determines a stage's output."""
    upstream = {}
    for name in stage.upstream:
        marker = read_marker(layout, STAGES[name])
        upstream[name] = marker["fingerprint"] if marker else None
    material = {
        "stage": stage.name,
        "config": dataclasses.asdict(cfg),
        "seed": run.seed,
        "upstream": upstream,
        "inputs": _input_stats(cfg, layout.out),
    }
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def versions() -> dict[str, str]:
    """Versions of the software that shaped the outputs (for lineage)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("wit-builder", "apache-beam", "pyarrow", "pillow", "nltk", "aiohttp", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def execute(
    name: str, run: RunConfig, cfg: Any, echo: Callable[[str], None] = print
) -> StageResult:
    """Run one stage unless its marker says its outputs are complete and current."""
    stage = STAGES[name]
    layout = Layout(run.out)
    fp = fingerprint(layout, stage, run, cfg)
    marker = read_marker(layout, stage)
    if marker and marker.get("fingerprint") == fp and not run.force and not stage.always_run:
        echo(f"[{name}] up to date, skipped (outputs in {stage.out_dir(layout)}; --force to redo)")
        return StageResult(name, True, 0.0, marker.get("summary", {}))
    if marker:  # outputs are about to change: the old marker must not vouch for them
        fs.delete(marker_path(layout, stage))
    echo(f"[{name}] running")
    started = time.time()
    summary = stage.load()(**{"run": run, stage.section: cfg}) or {}
    seconds = time.time() - started
    record = {
        "stage": name,
        "fingerprint": fp,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(seconds, 3),
        "seed": run.seed,
        "runner": run.runner,
        "workers": run.workers,
        "config": dataclasses.asdict(cfg),
        "versions": versions(),
        "summary": summary,
    }
    fs.makedirs(stage.out_dir(layout))
    fs.write_text_atomic(
        marker_path(layout, stage), json.dumps(record, indent=2, default=str) + "\n"
    )
    echo(f"[{name}] done in {seconds:.1f}s")
    return StageResult(name, False, seconds, summary)
