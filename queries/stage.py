"""``wit queries``: build the query list from Wikipedia dumps, pageviews and WordNet.

One Beam pipeline computes the Wikipedia sources' candidates (the corpus-sized work: reading,
counting, joining) and writes them as JSON lines under ``queries/_work/``; WordNet's come from a
local lexicon on the driver; the driver then assembles the list (a few hundred thousand candidates at most) and writes ``queries.parquet``, ``queries.txt``
and ``report.json``.
"""

from __future__ import annotations

import json

import apache_beam as beam

from pipeline import fs
from pipeline.beam_runner import make_pipeline
from pipeline.config import ConfigError, RunConfig, expand_inputs
from pipeline.layout import Layout
from queries import assemble, sources
from queries.config import QueriesConfig
from queries.sources import Candidate
from queries.transforms import (
    BigramSource,
    PageviewCounts,
    ReadWikiCounts,
    TitleSource,
    UnigramSource,
)
from queries.wordnet_data import WordNetMissing

DEMO_DUMP = "wiki/enwiki-20240101-pages-articles-multistream.xml.bz2"
DEMO_PAGEVIEWS = "pageviews/pageviews-*.gz"


def resolve_inputs(run: RunConfig, cfg: QueriesConfig) -> tuple[list[str], list[str]]:
    """Dump and pageview paths: the configured ones, else the demo world's; ConfigError if none."""
    world = Layout(run.out).world
    if cfg.wiki_dumps:
        dumps = expand_inputs(cfg.wiki_dumps, "queries.wiki_dumps")
    else:
        dumps = fs.glob(fs.join(world, DEMO_DUMP))
        if not dumps:
            raise ConfigError(
                "queries.wiki_dumps",
                f"no dump given and no demo world at {world} (run `wit demo-world` first)",
            )
    if cfg.pageviews:
        views = expand_inputs(cfg.pageviews, "queries.pageviews")
    else:
        views = fs.glob(fs.join(world, DEMO_PAGEVIEWS))
        if not views:
            raise ConfigError(
                "queries.pageviews",
                f"no pageview files given and none in the demo world at {world}",
            )
    return dumps, views


def _write_lines(pcoll, path: str, label: str):
    return pcoll | label >> beam.io.WriteToText(path, num_shards=1, shard_name_template="")


def build_pipeline(p, cfg: QueriesConfig, dumps: list[str], views: list[str], work: str) -> None:
    """Add the three Wikipedia sources to pipeline ``p``; each writes ``<work>/<source>.jsonl``."""
    lower = cfg.case == "lower"
    wiki = (
        p
        | "DumpPaths" >> beam.Create(dumps)
        | "Wiki"
        >> ReadWikiCounts(
            cfg.split_mb << 20, cfg.max_page_mb << 20, lower, bigram_floor=cfg.bigram_min_count
        )
    )
    pv = (
        p
        | "PageviewPaths" >> beam.Create(views)
        | "Pageviews"
        >> PageviewCounts(cfg.pageview_projects, cfg.pageview_excluded, cfg.pageview_hour_min)
    )
    titles = (pv["views"], wiki["titles"]) | "Titles" >> TitleSource(
        cfg.min_views, cfg.titles_in_dump, cfg.title_strip_qualifier, cfg.case
    )
    candidates = {
        "wiki_unigram": wiki["unigrams"] | "Unigrams" >> UnigramSource(cfg.min_count),
        "wiki_bigram": (wiki["unigrams"], wiki["bigrams"])
        | "Bigrams" >> BigramSource(cfg.bigram_min_count, cfg.pmi_threshold, cfg.bigram_top_n),
        "wiki_title": titles["candidates"],
    }
    for name, pcoll in candidates.items():
        _write_lines(
            pcoll | f"Json_{name}" >> beam.Map(Candidate.to_json),
            fs.join(work, f"{name}.jsonl"),
            f"Write_{name}",
        )
    stats = (
        (wiki["stats"], pv["stats"], titles["stats"])
        | "AllStats" >> beam.Flatten()
        | "StatsJson" >> beam.MapTuple(lambda k, n: json.dumps([k, n]))
    )
    _write_lines(stats, fs.join(work, "stats.jsonl"), "WriteStats")


def _clear(work: str) -> None:
    """Empty the work directory: a previous run's candidates must not leak into this one."""
    from apache_beam.io.filesystems import FileSystems

    if fs.exists(work):
        FileSystems.delete([work])
    fs.makedirs(work)


def _read_lines(path: str) -> list[str]:
    return (
        [line for line in fs.read_text(path).splitlines() if line.strip()]
        if fs.exists(path)
        else []
    )


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
    dumps, views = resolve_inputs(run, cfg)
    out_dir = Layout(run.out).queries
    work = fs.join(out_dir, "_work")
    _clear(work)
    try:  # before any Beam work, so a machine without WordNet fails fast
        wordnet = sources.wordnet_candidates(cfg.wordnet, cfg.case)
    except WordNetMissing as e:
        raise ConfigError("queries.wordnet", str(e)) from None

    p = make_pipeline(run, "wit-queries", ("queries.transforms",))
    build_pipeline(p, cfg, dumps, views, work)
    p.run().wait_until_finish()

    wiki = [
        Candidate.from_json(line)
        for s in sources.SOURCES[:3]
        for line in _read_lines(fs.join(work, f"{s}.jsonl"))
    ]
    cands = wiki + list(wordnet)
    stats = dict(json.loads(line) for line in _read_lines(fs.join(work, "stats.jsonl")))
    rows, facts = assemble.build_rows(cands, cfg.weights(), cfg.target_size, cfg.case)
    rep = assemble.report(cands, rows, facts, thresholds(cfg), stats)
    rep["inputs"] = {"wiki_dumps": dumps, "pageviews": views}
    assemble.write_outputs(rows, rep, out_dir)
    per_source = {s: rep["sources"][s]["admitted_by"] for s in sources.SOURCES}
    return {
        "queries": len(rows),
        "per_source": per_source,
        "candidates_by_source": {s: rep["sources"][s]["candidates"] for s in sources.SOURCES},
    }
