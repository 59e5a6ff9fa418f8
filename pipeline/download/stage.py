"""``wit download``: selection -> webdataset shards + per-shard Parquet/stats + reports/download.json.

Design (two phases, one Beam pipeline):

1. *Fetch*: the selection is cut into shards by row position (``samples_per_shard`` rows each,
   part files in name order), one Beam element per shard. Each worker keeps one event loop and one
   aiohttp session (``DoFn.setup``) and runs a whole shard through it; the re-encoded images go to
   ``shards/_staging/{NNNNN}-{digest}.tar`` and the outcomes to ``_staging/{NNNNN}.parquet``
   (atomic, the Parquet last; see :mod:`pipeline.download.phases`). A re-run reuses complete
   staging files and redoes missing ones, so a killed run resumes where it stopped.
2. *Trim and write*: when the selection over-sampled (its ``_selection.json`` says so), each query
   keeps its ``cap`` successes with the smallest stable hash (``Top.SmallestPerKey``); a pair
   survives if any of its ``selected_for`` queries keeps it. Then each shard's final ``.tar``
   (successes only, key order), ``.parquet`` (every row, trimmed ones with status ``trimmed``) and
   ``_stats.json`` are written from staging, to temporary names renamed when complete (a shard with
   nothing trimmed links the staging tar, so its images are written once). The trim must be known
   before any final tar is written, hence the staging area; it is kept so that ``--retry-failed``
   can re-decide the trim with the newly fetched images.

Private, loopback and link-local hosts are refused unless ``--allow-hosts`` lists them (the
run-everything entry point lists its example world's server there when no real input is given).
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import uuid

from pipeline import fs
from pipeline.config import ConfigError, RunConfig
from pipeline.download import checks, images, phases, report
from pipeline.download.config import DownloadConfig
from pipeline.download.fetch import FetchOptions
from pipeline.download.manifest import check_manifest, write_manifest
from pipeline.layout import Layout
from pipeline.select import metadata


def selection(layout: Layout) -> tuple[dict, list[str]]:
    """The selection's metadata and part files; a ConfigError when there is none to download."""
    try:
        meta = metadata.read(layout.selection)
    except (OSError, ValueError):
        raise ConfigError(
            "run.out",
            f"no selection in {layout.selection} ({metadata.NAME}); run `wit select` first",
        ) from None
    parts = metadata.part_paths(layout.selection, meta)
    missing = [p for p in parts if not fs.exists(p)]
    if missing:
        raise ConfigError("run.out", f"the selection lacks {missing[0]}; run `wit select` again")
    if not parts:
        raise ConfigError("run.out", f"the selection in {layout.selection} holds no pairs")
    return meta, parts


def image_options(cfg: DownloadConfig) -> images.ImageOptions:
    return images.ImageOptions(
        image_size=cfg.image_size,
        resize_mode=cfg.resize_mode,
        output_format=cfg.output_format,
        quality=cfg.quality,
        min_image_size=cfg.min_image_size,
        max_aspect_ratio=cfg.max_aspect_ratio,
        max_pixels=cfg.max_pixels,
        threads=cfg.image_threads,
    )


def _cleanup(shards_dir: str, n_shards: int) -> None:
    """Drop temporary files of killed runs, progress files, and shards beyond the current plan."""
    if fs.is_remote(shards_dir):
        return
    for pattern in ("*.tmp-*", f"{phases.STAGING}/*.tmp-*", f"{phases.STAGING}/*.progress.json"):
        for path in fs.glob(fs.join(shards_dir, pattern)):
            fs.delete(path)
    for pattern in (
        "[0-9]*.tar",
        "[0-9]*.parquet",
        "[0-9]*_stats.json",
        f"{phases.STAGING}/[0-9]*.parquet",
        f"{phases.STAGING}/[0-9]*.tar",
    ):
        for path in fs.glob(fs.join(shards_dir, pattern)):
            name = path.rsplit("/", 1)[-1]
            if name[:5].isdigit() and int(name[:5]) >= n_shards:
                fs.delete(path)


class _ProgressMonitor:
    """A tqdm bar fed by the per-shard progress files the workers write (local runs only)."""

    def __init__(self, shards_dir: str, total: int, enabled: bool):
        self.shards_dir = shards_dir
        self.total = total
        self.enabled = enabled and not fs.is_remote(shards_dir)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.enabled:
            self._thread.join()

    def _poll(self) -> tuple[int, int]:
        done = ok = 0
        for path in fs.glob(fs.join(self.shards_dir, phases.STAGING, "*.progress.json")):
            with contextlib.suppress(ValueError, OSError):
                p = json.loads(fs.read_text(path))
                done, ok = done + p["done"], ok + p["ok"]
        return done, ok

    def _run(self) -> None:
        if not sys.stderr.isatty():  # a log file: a plain line now and then, not a redrawn bar
            self._log_lines()
            return
        from tqdm import tqdm

        with tqdm(total=self.total, unit="img", desc="download", dynamic_ncols=True) as bar:
            while not self._stop.wait(0.5):
                done, ok = self._poll()
                bar.n = done
                bar.set_postfix(ok=ok, refresh=False)
                bar.refresh()
            done, ok = self._poll()
            bar.n = done
            bar.set_postfix(ok=ok)

    def _log_lines(self, every: float = 15.0) -> None:
        started = time.monotonic()
        while not self._stop.wait(every):
            done, ok = self._poll()
            rate = done / max(time.monotonic() - started, 1e-9)
            eta = (self.total - done) / rate if rate else float("inf")
            print(
                f"[download] {done:,}/{self.total:,} images, {ok:,} ok, {rate:,.0f}/s, "
                f"about {eta:,.0f}s left",
                file=sys.stderr,
                flush=True,
            )


def beam_counters(result) -> dict:
    """The stage's Beam counters of this invocation (what was fetched now, not what was reused)."""
    try:
        counters = result.metrics().query()["counters"]
    except Exception:  # some runners do not report metrics
        return {}
    totals: dict = {}
    for c in counters:
        if c.key.metric.namespace == "download":
            totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + (
                c.committed or c.attempted or 0
            )
    return dict(sorted(totals.items()))


def run(run: RunConfig, download: DownloadConfig, resolver_factory=None) -> dict:
    """Download the selection of ``run.out`` into ``run.out/shards``; returns the summary."""
    import apache_beam as beam

    from pipeline.beam_runner import run_pipeline
    from pipeline.download.transforms import DownloadShards

    layout = Layout(run.out)
    meta, parts = selection(layout)
    tasks = phases.plan_tasks(parts, download.samples_per_shard)
    shards_dir = layout.shards
    fs.makedirs(fs.join(shards_dir, phases.STAGING))
    _cleanup(shards_dir, len(tasks))
    cap = metadata.trim_cap(meta)
    total = sum(t.size for t in tasks)
    run_id = uuid.uuid4().hex
    fetch_opts = FetchOptions.from_config(download)

    def build(p):
        _ = (
            p
            | "ShardTasks" >> beam.Create(tasks)
            | "Download"
            >> DownloadShards(
                shards_dir,
                fetch_opts,
                image_options(download),
                download.output_format,
                cap,
                download.retry_failed,
                resolver_factory,
                download.shards_in_flight,
                run_id,
            )
        )

    with _ProgressMonitor(shards_dir, total, run.progress and not fs.is_remote(shards_dir)):
        # Local workers are threads of this process: fetching and the image codecs release the
        # GIL, and one process pays Beam's start-up once.
        result = run_pipeline(run, "wit-download", build, worker_threads=True)
    _cleanup(shards_dir, len(tasks))
    checks.check_shards(shards_dir, tasks, download.output_format, run_id)
    manifest = write_manifest(
        shards_dir,
        image_ext=download.output_format,
        samples_per_shard=download.samples_per_shard,
    )
    extra = {
        "shards": len(tasks),
        "trim_cap": cap,
        "allow_hosts": list(download.allow_hosts),
        "this_run": beam_counters(result),
    }
    rep = report.write_report(shards_dir, fs.join(layout.reports, "download.json"), extra)
    check_manifest(checks.STAGE, manifest, len(tasks), rep["successes"])
    return {
        "selected": rep["samples"],
        "downloaded": rep["successes"],
        "shards": len(tasks),
        "by_status": rep["by_status"],
        "warnings": failure_lines(rep),
    }


def failure_lines(rep: dict, top: int = 4) -> list[str]:
    """The run's last word on what did not download: how many, and the commonest reasons."""
    failed = rep["samples"] - rep["successes"] - rep["by_status"].get("trimmed", 0)
    if not failed:
        return []
    reasons = [(n, r) for by in rep["by_reason"].values() for r, n in by.items()]
    common = ", ".join(f"{r} {n}" for n, r in sorted(reasons, key=lambda x: (-x[0], x[1]))[:top])
    return [
        f"{failed} of {rep['samples']} selected images not downloaded ({common}; all reasons in "
        "reports/download.json)"
    ]
