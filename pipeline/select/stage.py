"""``wit select``: candidates -> filters -> query matching -> per-query balancing -> selection files."""

from __future__ import annotations

import dataclasses
import json

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import fs
from pipeline.beam_runner import run_pipeline
from pipeline.config import ConfigError, RunConfig, expand_inputs
from pipeline.invariants import StageFailed, input_verdicts
from pipeline.layout import Layout
from pipeline.portable import sum_into
from pipeline.select import balance, checks, extract, metadata, reports, work_files
from pipeline.select.config import SelectConfig
from pipeline.select.matching import get_matcher
from pipeline.select.normalize import FilterSpec
from pipeline.select.readers import TABLE_SUFFIXES, ReaderSpec


def _is_table(path: str) -> bool:
    return path.lower().removesuffix(".gz").endswith(TABLE_SUFFIXES)


def resolve_inputs(select: SelectConfig) -> list[str]:
    """Input files in a fixed order (WAT files, then tables); ConfigError when none are given."""
    if not (select.wat or select.tables):
        raise ConfigError(
            "select.wat",
            "no input given: pass --wat or --tables (`wit shards` with no inputs at all "
            "generates example ones)",
        )
    paths = expand_inputs(select.wat, "select.wat") + expand_inputs(select.tables, "select.tables")
    return list(dict.fromkeys(paths))


def queries_path(run: RunConfig, select: SelectConfig) -> str:
    """The query list to match against; a ConfigError if it does not exist."""
    path = select.queries_file or Layout(run.out).queries_parquet
    if not fs.exists(path):
        key = "select.queries_file"
        raise ConfigError(
            key, f"query list {path} not found: run the queries stage (`wit queries`) first"
        )
    return path


def load_matcher(path: str, case: str):
    """The automaton of the query list, or a ConfigError if the list is unreadable or empty."""
    try:
        matcher = get_matcher(path, case)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError("select.queries_file", f"cannot read query list {path}: {e}") from None
    if not matcher.size:
        raise ConfigError("select.queries_file", f"query list {path} holds no usable query")
    return matcher


ROWS_PER_BUCKET = 30_000  # keeps a bucket's rows (held by one step at a time) near 100 MB
MIN_BUCKETS = 32
MAX_BUCKETS = 4096  # spill files number (input files x buckets): see docs/scale.md, "Spill buckets"
# Input bytes per candidate for files whose row count is not in their metadata: Common Crawl WAT
# holds ~6.6 KB of gzipped WAT per page and ~5 image links per page (docs/scale.md); a text
# table row (url, caption) is rarely under 100 bytes. Both err towards more buckets.
WAT_BYTES_PER_CANDIDATE = 1_300
TEXT_BYTES_PER_ROW = 100


def estimated_candidates(paths: list[str], enough: int | None = None) -> int:
    """About how many candidate pairs the inputs hold (exact for readable Parquet tables).

    Stops adding once ``enough`` is reached (one size lookup per file is a remote call on GCS).
    An unreadable Parquet file is estimated by its size; the extract step records its error.
    """
    total = 0
    for path in paths:
        if enough is not None and total >= enough:
            break
        if path.lower().endswith(".parquet"):
            try:
                with fs.open_read(path) as f:
                    total += pq.ParquetFile(f).metadata.num_rows
                continue
            except (OSError, ValueError, pa.ArrowException):
                pass
        total += fs.size(path) // (
            TEXT_BYTES_PER_ROW if _is_table(path) else WAT_BYTES_PER_CANDIDATE
        )
    return total


def spill_buckets(select: SelectConfig, inputs: list[str]) -> int:
    """The configured bucket count, or (0) one bucket per ROWS_PER_BUCKET estimated candidates,
    between MIN_BUCKETS and MAX_BUCKETS."""
    if select.spill_buckets:
        return select.spill_buckets
    estimate = estimated_candidates(inputs, enough=MAX_BUCKETS * ROWS_PER_BUCKET)
    return min(MAX_BUCKETS, max(MIN_BUCKETS, -(-estimate // ROWS_PER_BUCKET)))


def settings_for(
    run: RunConfig, select: SelectConfig, queries: str, inputs: list[str] = ()
) -> extract.Settings:
    """The picklable settings every worker gets."""
    return extract.Settings(
        queries_path=queries,
        case=select.match_case,
        work_dir=fs.join(Layout(run.out).selection, "_work"),
        buckets=spill_buckets(select, list(inputs)),
        reader=ReaderSpec(
            select.use_title,
            tuple(select.url_columns),
            tuple(select.caption_columns),
            table_header=select.table_header,
        ),
        filters=FilterSpec(
            select.min_caption_chars,
            select.max_caption_chars,
            tuple(select.skip_extensions),
            select.language_filter,
        ),
        dedup_url=select.dedup_url,
        mode=select.mode,
        quota=balance.quota(select.cap, select.oversample),
        seed=run.seed,
        progress=run.progress,
    )


def _clear_outputs(selection_dir: str, work_dir: str) -> None:
    """Stale parts or spill files from an earlier run would mix into this one."""
    for old in fs.glob(fs.join(selection_dir, "part-*.parquet")):
        fs.delete(old)
    fs.delete(metadata.path(selection_dir))
    fs.remove_tree(work_dir)


STEPS = ("files", "count", "decide", "write")


def load_facts(work_dir: str, mode: str) -> dict:
    """What the pipeline's steps saved; a StageFailed if a step's file is missing."""
    steps = STEPS[:2] + (("thresholds",) if mode == "exact" else ()) + STEPS[2:]
    for step in steps:
        if not fs.exists(work_files.step_path(work_dir, step)):
            raise StageFailed("select", f"the pipeline finished without saving its {step!r} step")
    count, decide = (
        work_files.load_step(work_dir, "count"),
        work_files.load_step(work_dir, "decide"),
    )
    return {
        "files": work_files.load_step(work_dir, "files")["files"],
        "counts": count.get("counts", {}),
        "dedup": count.get("dedup", {}),
        "counted_buckets": count["buckets"],
        "attributed": decide.get("attributed", {}),
        "kept": decide.get("kept", {}),
        "selected": decide.get("selected", 0),
        "decided_buckets": decide["buckets"],
        "parts": work_files.load_step(work_dir, "write")["parts"],
    }


def run(run: RunConfig, select: SelectConfig) -> dict:
    """Run the select stage; writes selection/*.parquet, reports/select.json, reports/balance.json."""
    layout = Layout(run.out)
    inputs = resolve_inputs(select)
    qpath = queries_path(run, select)
    matcher = load_matcher(qpath, select.match_case)
    settings = settings_for(run, select, qpath, inputs)
    _clear_outputs(layout.selection, settings.work_dir)
    fs.makedirs(settings.work_dir)

    import apache_beam as beam

    from pipeline.select.transforms import SelectPairs

    def build(p):
        files = p | "Inputs" >> beam.Create(list(enumerate(inputs)))
        _ = files | "Select" >> SelectPairs(settings, layout.selection, select.selection_shard_rows)

    run_pipeline(run, "wit-select", build, ("pipeline.select.transforms",))
    facts = load_facts(settings.work_dir, settings.mode)
    totals: dict = {}
    for report in facts["files"]:
        sum_into(totals, report["counts"])
    warnings = input_verdicts("select", totals, ("wat", "table"))
    checks.check_facts(facts, len(inputs), settings.buckets, settings.mode, settings.quota)
    checks.check_parts(
        facts["parts"], layout.selection, facts["selected"], select.selection_shard_rows
    )
    info = {"cap": select.cap, "oversample": select.oversample, "quota": settings.quota,
            "mode": select.mode, "seed": run.seed, "queries_file": qpath}  # fmt: skip
    metadata.write(layout.selection, info, [tuple(p) for p in facts["parts"]])
    summary = _write_reports(layout, select, settings, matcher.names, len(inputs), facts)
    return {**summary, "warnings": warnings}


def _write_reports(
    layout: Layout,
    select: SelectConfig,
    settings: extract.Settings,
    names: dict,
    n_inputs: int,
    facts: dict,
) -> dict:
    work = settings.work_dir
    parts = facts["parts"]
    selected = sum(n for _, n in parts)
    info = {
        **{k: v for k, v in dataclasses.asdict(select).items() if k not in ("wat", "tables")},
        "quota": settings.quota,
        "seed": settings.seed,
        "queries_file": settings.queries_path,
        "lower_case_matching": get_matcher(settings.queries_path, settings.case).lower,
    }
    sel = reports.select_report(facts["files"], [facts["dedup"]], selected, info)
    per_query = {k: facts[k] for k in ("counts", "attributed", "kept")}
    bal = reports.balance_report(
        names, per_query["counts"], per_query["attributed"], per_query["kept"], sel["steps"], info
    )
    fs.write_text_atomic(fs.join(layout.reports, "select.json"), json.dumps(sel, indent=1) + "\n")
    indent = 1 if len(bal["queries"]) <= 20_000 else None  # 500k query rows: keep the file compact
    fs.write_text_atomic(
        fs.join(layout.reports, "balance.json"), json.dumps(bal, indent=indent) + "\n"
    )
    fs.remove_tree(work)
    g = bal["global"]
    return {
        "inputs": n_inputs,
        "queries": g["queries"],
        "candidates": g["after_read"],
        "matched": g["matched"],
        "selected": selected,
        "selection_files": len(parts),
        "queries_zero_matches": g["queries_zero_matches"],
        "gini_before": g["gini_before"],
        "gini_after": g["gini_after"],
    }
