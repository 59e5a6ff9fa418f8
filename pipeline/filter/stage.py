"""``wit filter``: downloaded shards -> filtered shards, with every dropped pair's reason.

Reads ``<out>/shards`` (the download's final ``{NNNNN}.tar`` / ``.parquet``), writes
``<out>/filtered/`` in the same img2dataset layout (``{NNNNN}.tar``, ``.parquet``,
``_stats.json``, ``manifest.json``) and ``<out>/reports/filter.json``. One Beam pipeline
(:mod:`pipeline.filter.transforms`): analyse each shard (pHash, colour thumbnail, caption
language), group duplicates by sha256 and by pHash band keys, score pairs with CLIP through
RunInference and find the exact top-fraction threshold in two histogram passes, decide every row,
then reshard the kept pairs. The filtered Parquet holds one row per downloaded row: a dropped
success is ``filtered`` with its reason; the end check (:mod:`pipeline.filter.checks`) proves
that every input row is there exactly once before the stage declares success.
"""

from __future__ import annotations

import json
import os
import uuid

import pyarrow.parquet as pq

from pipeline import fs
from pipeline.config import ConfigError, RunConfig
from pipeline.download import shard_writer as sw
from pipeline.download.manifest import IMAGE_EXTS, MANIFEST, check_manifest, write_manifest
from pipeline.filter import checks, report
from pipeline.filter.analyse import InputShard, Settings
from pipeline.filter.config import FilterConfig
from pipeline.invariants import StageFailed
from pipeline.layout import Layout

DEFAULT_SHARD_SAMPLES = 1000


def input_shards(shards_dir: str) -> list[InputShard]:
    """The downloaded shards (``{NNNNN}.parquet`` with its ``.tar``), or a ConfigError."""
    found = []
    for path in fs.glob(fs.join(shards_dir, "[0-9]*.parquet")):
        stem = path.replace("\\", "/").rsplit("/", 1)[-1].split(".")[0]
        if not (stem.isdigit() and len(stem) == sw.SHARD_DIGITS):
            continue
        paths = sw.final_paths(shards_dir, int(stem))
        if not fs.exists(paths["tar"]):
            raise ConfigError("run.out", f"{path} has no {paths['tar']}: re-run `wit download`")
        with fs.open_read(path) as f:
            rows = pq.ParquetFile(f).metadata.num_rows
        found.append(InputShard(int(stem), path, paths["tar"], rows))
    if not found:
        raise ConfigError(
            "run.out", f"no downloaded shards in {shards_dir}; run `wit download` first"
        )
    return sorted(found, key=lambda s: s.shard)


def shard_facts(shards_dir: str) -> dict:
    """How the downloaded shards were made (their manifest's ``image_ext``, ``samples_per_shard``),
    as far as the manifest says."""
    path = fs.join(shards_dir, MANIFEST)
    try:
        return json.loads(fs.read_text(path)) if fs.exists(path) else {}
    except ValueError:
        return {}


def image_ext(shards_dir: str, inputs: list[InputShard]) -> str:
    """The image member extension of the shards: their manifest's, else the tars' own."""
    ext = shard_facts(shards_dir).get("image_ext")
    if ext:
        return ext
    import tarfile

    for inp in inputs:
        with fs.open_read(inp.tar) as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for member in tar:
                suffix = member.name.rsplit(".", 1)[-1].lower()
                if suffix in IMAGE_EXTS:
                    return suffix
    return "jpg"


def scorer_spec(run: RunConfig, cfg: FilterConfig):
    """The CLIP scorer's settings (a ScorerSpec) and a description of its weights; ConfigError
    if they are unusable. PyTorch is imported only here, when the CLIP score is on."""
    if not cfg.clip:
        return None, ""
    try:
        from pipeline.filter.clip_score import ScorerSpec, load_model
    except ImportError as e:
        raise ConfigError(
            "filter.clip", f"needs PyTorch (pip install -e '.[train]'): {e}"
        ) from None
    weights = cfg.clip_weights or fs.join(Layout(run.out).train, "checkpoint.pt")
    if not fs.exists(weights):
        raise ConfigError(
            "filter.clip_weights", f"no weights at {weights!r} (train first: `wit train`)"
        )
    threads = cfg.clip_threads or max(1, (os.cpu_count() or 1) // run.workers)
    spec = ScorerSpec(
        weights, cfg.clip_bpe_vocab, cfg.clip_quick_gelu, cfg.clip_batch_size, cfg.clip_device,
        threads,
    )  # fmt: skip
    key = "filter.clip_bpe_vocab" if cfg.clip_bpe_vocab else "filter.clip_weights"
    try:
        _, _, description = load_model(spec)  # fails here, before any work, if unusable
    except ValueError as e:
        raise ConfigError(key, str(e)) from None
    return spec, description


def settings_for(run: RunConfig, cfg: FilterConfig, inputs: list[InputShard]) -> Settings:
    """The picklable settings every worker gets."""
    layout = Layout(run.out)
    out_dir = layout.filtered
    per_shard = cfg.reshard_samples or int(
        shard_facts(layout.shards).get("samples_per_shard") or DEFAULT_SHARD_SAMPLES
    )
    return Settings(
        shards_dir=layout.shards,
        out_dir=out_dir,
        work_dir=fs.join(out_dir, "_work"),
        ext=image_ext(layout.shards, inputs),
        dedup_exact=cfg.dedup_exact,
        dedup_near=cfg.dedup_near,
        bands=cfg.bands,
        distance=cfg.near_distance,
        thumb_diff=cfg.near_thumb_diff,
        clip=cfg.clip,
        languages=tuple(cfg.languages),
        min_confidence=cfg.language_min_confidence,
        reshard_samples=per_shard,
        examples=cfg.filter_examples,
        run_id=uuid.uuid4().hex,
    )


def _clear(out_dir: str, work_dir: str) -> None:
    """Shards, manifest and work files of an earlier run would mix into this one."""
    for pattern in (
        "[0-9]*.tar",
        "[0-9]*.parquet",
        "[0-9]*_stats.json",
        "*.tmp-*",
        "manifest.json",
    ):
        for path in fs.glob(fs.join(out_dir, pattern)):
            fs.delete(path)
    fs.remove_tree(work_dir)


def _query_names(out: str) -> dict[int, str]:
    path = Layout(out).queries_parquet
    if not fs.exists(path):
        return {}
    with fs.open_read(path) as f:
        t = pq.read_table(f, columns=["query_id", "query"])
    return dict(zip(t.column("query_id").to_pylist(), t.column("query").to_pylist()))


def run(run: RunConfig, filter: FilterConfig) -> dict:
    """Run the filter stage; writes ``<out>/filtered/`` and ``reports/filter.json``."""
    import apache_beam as beam

    from pipeline.beam_runner import run_pipeline
    from pipeline.filter.transforms import FilterShards, load_step

    layout = Layout(run.out)
    inputs = input_shards(layout.shards)
    spec, description = scorer_spec(run, filter)
    settings = settings_for(run, filter, inputs)
    _clear(settings.out_dir, settings.work_dir)
    fs.makedirs(settings.work_dir)

    def build(p):
        _ = (
            p
            | "InputShards" >> beam.Create(inputs)
            | "Filter"
            >> FilterShards(settings, spec, filter.clip_min_score, filter.clip_top_fraction)
        )

    run_pipeline(run, "wit-filter", build, ("pipeline.filter.transforms",))
    steps = {k: load_step(settings.work_dir, k) for k in ("plan", "written", "dedup", "clip")}
    for step in ("plan", "written") + (("clip",) if spec else ()):
        if steps[step] is None:
            raise StageFailed("filter", f"the pipeline finished without saving its {step!r} step")
    tasks = steps["plan"]["tasks"]
    checks.check_decided(steps["plan"]["decided"], inputs)
    checks.check_plan(tasks, inputs)
    checks.check_outputs(settings.out_dir, tasks, inputs, settings.ext, settings.run_id)
    manifest = write_manifest(
        settings.out_dir, image_ext=settings.ext, samples_per_shard=settings.reshard_samples
    )
    kept = sum(w["successes"] for w in steps["written"])
    check_manifest(checks.STAGE, manifest, len(tasks), kept)
    data = _report(run, filter, settings, inputs, tasks, steps, description)
    fs.remove_tree(settings.work_dir)
    totals = data["totals"]
    return {
        "input_shards": len(inputs),
        "shards": len(tasks),
        "successes_before": totals["successes_before"],
        "kept": totals["kept"],
        "filtered": {r: n for r, n in data["reasons"]["first"].items() if n},
        "clip_threshold": data["clip"].get("top_threshold"),
        "warnings": [],
    }


def _report(run, cfg, settings, inputs, tasks, steps, description) -> dict:
    """Write ``reports/filter.json``; returns its data."""
    from pipeline.filter.report import clip_section, duplicates_section

    extra = {
        "config": {
            **{k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
            "bands": settings.bands,
            "reshard_samples": settings.reshard_samples,
            "image_ext": settings.ext,
        },
        "shards": {"input": len(inputs), "output": len(tasks), "dir": settings.out_dir},
        "duplicates": duplicates_section(steps["dedup"], settings.shards_dir),
        "clip": clip_section(steps["clip"], description),
    }
    data = report.build(
        settings.out_dir, settings.shards_dir, tasks, _query_names(run.out), extra,
        settings.examples,
    )  # fmt: skip
    report.write(fs.join(Layout(run.out).reports, "filter.json"), data)
    return data
