"""``wit queries``: build the query list from Wikipedia dumps, pageviews and WordNet.

One Beam pipeline (:class:`queries.transforms.WikipediaSources`) computes the Wikipedia sources'
candidates (the corpus-sized work: reading, counting, joining) and writes them as JSON lines
under ``queries/_work/``; WordNet's come from a local lexicon on the driver; the driver then checks
what was written, assembles the list (a few hundred thousand candidates at most) and writes
``queries.parquet``, ``queries.txt`` and ``report.json``.
"""

from __future__ import annotations

import json

from pipeline import fs
from pipeline.beam_runner import run_pipeline
from pipeline.config import ConfigError, RunConfig, expand_inputs
from pipeline.invariants import StageFailed, expect_equal, input_verdicts
from pipeline.layout import Layout
from queries import assemble, dump_reader, sources, transforms
from queries.config import QueriesConfig
from queries.sources import Candidate
from queries.transforms import SourceSettings, WikipediaSources
from queries.wordnet_data import WordNetMissing


def resolve_inputs(cfg: QueriesConfig) -> tuple[list[str], list[str]]:
    """The dump and pageview files to read; a ConfigError names the flag when there are none."""
    found = []
    for key, flag in (("wiki_dumps", "--wiki-dumps"), ("pageviews", "--pageviews")):
        if not getattr(cfg, key):
            raise ConfigError(
                f"queries.{key}",
                f"no files given: pass {flag} (`wit shards` with no inputs at all generates "
                "example ones)",
            )
        found.append(expand_inputs(getattr(cfg, key), f"queries.{key}"))
    return found[0], found[1]


MIN_SPLITS = 16  # a dump is cut into at least this many byte ranges (when large enough)
N_SHARDS = 64  # counts are merged per shard of keys: the parallelism of the merge


def plan_splits(dumps: list[str], split_bytes: int) -> list[dump_reader.Split]:
    """Every dump's byte ranges, planned here so that each range is its own task on any runner."""
    return [s for d in dumps for s in dump_reader.plan_splits(d, split_bytes, MIN_SPLITS)]


def source_settings(cfg: QueriesConfig) -> SourceSettings:
    """The thresholds and policies the Wikipedia sources need, from the stage's configuration."""
    return SourceSettings(
        max_page_bytes=cfg.max_page_mb << 20,
        lower=cfg.case == "lower",
        case=cfg.case,
        min_count=cfg.min_count,
        bigram_min_count=cfg.bigram_min_count,
        pmi_threshold=cfg.pmi_threshold,
        bigram_top_n=cfg.bigram_top_n,
        min_views=cfg.min_views,
        titles_in_dump=cfg.titles_in_dump,
        title_strip_qualifier=cfg.title_strip_qualifier,
        pageview_projects=tuple(cfg.pageview_projects),
        pageview_excluded=tuple(cfg.pageview_excluded),
        pageview_hour_min=cfg.pageview_hour_min,
        n_shards=N_SHARDS,
    )


def read_outputs(work: str) -> dict[str, list[str]]:
    """Each output's JSON lines, after checking every file the pipeline listed is there, whole."""
    listing = fs.join(work, transforms.OUTPUTS)
    if not fs.exists(listing):
        raise StageFailed("queries", f"the pipeline finished without writing {listing}")
    lines: dict[str, list[str]] = {name: [] for name in (*sources.SOURCES[:3], "stats")}
    for name, path, n in json.loads(fs.read_text(listing)):
        found = (
            [ln for ln in fs.read_text(path).splitlines() if ln.strip()] if fs.exists(path) else []
        )
        expect_equal("queries", f"lines in {path}", n, len(found))
        lines[name].extend(found)
    return lines


def check_reads(stats: dict, splits: int, views: int) -> None:
    """Every planned dump split and pageview file was read exactly once."""
    expect_equal("queries", "dump splits read", splits, stats.get("dump_split:read", 0))
    expect_equal("queries", "pageview files read", views, stats.get("pageview_file:read", 0))


def expected_size(facts: dict, weights: dict, target: int) -> int:
    """The list's size: the target, or every distinct query of the weighted sources if fewer."""
    available = {c.query for s, cs in facts["ranked"].items() if weights.get(s, 0) > 0 for c in cs}
    return min(target, len(available))


def check_list(path: str, expected: int) -> None:
    """The written list holds ``expected`` rows with unique queries and unique ids."""
    import pyarrow.parquet as pq

    with fs.open_read(path) as f:
        table = pq.read_table(f, columns=["query", "query_id"])
    expect_equal("queries", f"queries in {path}", expected, table.num_rows)
    for column in ("query", "query_id"):
        unique = len(set(table.column(column).to_pylist()))
        expect_equal("queries", f"distinct {column} values in {path}", table.num_rows, unique)


def thresholds(cfg: QueriesConfig) -> dict:
    """The thresholds and policies in force (for the report)."""
    return {
        "min_count": cfg.min_count,
        "bigram_min_count": cfg.bigram_min_count,
        "pmi": f"top {cfg.bigram_top_n}" if cfg.bigram_top_n else f">= {cfg.pmi_threshold}",
        "pmi_formula": "ln(c(xy) * N / (c(x) * c(y))), N = total word tokens",
        "min_views": cfg.min_views,
        "pageview_projects": cfg.pageview_projects,
        "pageview_hour_min": cfg.pageview_hour_min,
        "titles_in_dump": cfg.titles_in_dump,
        "title_strip_qualifier": cfg.title_strip_qualifier,
        "wordnet": cfg.wordnet,
        "case": cfg.case,
        "target_size": cfg.target_size,
        "source_weights": cfg.weights(),
    }


def run(run: RunConfig, queries: QueriesConfig) -> dict:
    """Build ``<out>/queries/``; returns a summary with the number of queries per source."""
    cfg = queries
    dumps, views = resolve_inputs(cfg)
    out_dir = Layout(run.out).queries
    work = fs.join(out_dir, "_work")
    fs.remove_tree(work)  # a previous run's candidates must not leak into this one
    fs.makedirs(work)
    try:  # before any Beam work, so a machine without WordNet fails fast
        wordnet = sources.wordnet_candidates(cfg.wordnet, cfg.case)
    except WordNetMissing as e:
        raise ConfigError("queries.wordnet", str(e)) from None

    splits = plan_splits(dumps, cfg.split_mb << 20)
    settings = source_settings(cfg)
    run_pipeline(
        run,
        "wit-queries",
        lambda p: p | "Sources" >> WikipediaSources(settings, splits, views, work),
        ("queries.transforms",),
    )
    outputs = read_outputs(work)
    wiki = [Candidate.from_json(line) for s in sources.SOURCES[:3] for line in outputs[s]]
    cands = wiki + list(wordnet)
    stats = dict(json.loads(line) for line in outputs["stats"])
    check_reads(stats, len(splits), len(views))
    warnings = input_verdicts("queries", stats, ("dump", "pageview"))
    rows, facts = assemble.build_rows(cands, cfg.weights(), cfg.target_size, cfg.case)
    rep = assemble.report(cands, rows, facts, thresholds(cfg), stats)
    rep["inputs"] = {"wiki_dumps": dumps, "pageviews": views}
    paths = assemble.write_outputs(rows, rep, out_dir)
    check_list(paths["parquet"], expected_size(facts, cfg.weights(), cfg.target_size))
    per_source = {s: rep["sources"][s]["admitted_by"] for s in sources.SOURCES}
    return {
        "queries": len(rows),
        "per_source": per_source,
        "candidates_by_source": {s: rep["sources"][s]["candidates"] for s in sources.SOURCES},
        "warnings": warnings,
    }
