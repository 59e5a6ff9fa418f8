"""Beam wiring of the query builder: one composite transform per step, logic in plain modules.

``ReadWikiCounts`` (dump splits -> word, bigram and page counts + namespace-0 titles),
``UnigramSource``, ``BigramSource`` (PMI), ``PageviewCounts`` + ``TitleSource``. WordNet is not
corpus-sized (148,730 names from a local lexicon) and is derived on the driver
(:func:`queries.sources.wordnet_candidates`): through Beam's local runner, one element per name
cost far more than the work itself, and every remote worker would need the WordNet files.
Counting pre-aggregates inside each split (a :class:`~queries.sources.TextCounter` drained when
full and at the end of the split) and ships the counts as a few Arrow tables per split, sharded by
a stable hash of the word, which a combiner sums per shard in C++: Beam's cost is per element and
per entry it encodes, so this moves tens of tables through the shuffle instead of one element per
distinct word or bigram (or worse, per occurrence). Only the merged totals that pass their
threshold become one element per key.

Every step has one output (a step that yields two kinds of results tags each element with its
kind, and :func:`only` picks one kind out), nothing is emitted from ``finish_bundle`` and no step
reads a side input: see :mod:`pipeline.portable` for why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import apache_beam as beam
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from pipeline import fs
from pipeline.portable import Gather, ToListFn, WithValue, WriteLines
from queries import dump_reader, pageviews, sources
from queries.sources import Candidate

NS = "queries"


def _count_stat(key: str, n: int) -> None:
    Metrics.counter(NS, key).inc(n)


def only(pcoll, kind: str, label: str):
    """The payloads of the ``(kind, payload)`` elements of ``pcoll`` whose kind is ``kind``."""
    return pcoll | label >> beam.FlatMap(lambda e, k: (e[1],) if e[0] == k else (), kind)


class ReadAndCountFn(beam.DoFn):
    """Reads one split of a dump; yields ``("counts", ((kind, shard), counts))`` count tables
    (:func:`queries.sources.shard_counts`) and one ``("titles", [(title, kind), ...])`` with the
    split's namespace-0 titles."""

    def __init__(self, lower: bool, max_page_bytes: int, max_entries: int, n_shards: int):
        self.lower, self.max_page_bytes, self.max_entries = lower, max_page_bytes, max_entries
        self.n_shards = n_shards

    def _drain(self, counter):
        for key, n in counter.stats.items():
            _count_stat(key, n)
        for kv in counter.drain_shards(self.n_shards):
            yield "counts", kv

    def process(self, split):
        counter = sources.TextCounter(self.lower, self.max_entries)
        titles = []
        for rec in dump_reader.read_split(split, self.max_page_bytes):
            title = counter.add(rec)
            if title is not None:
                titles.append(title)
            if counter.full:
                yield from self._drain(counter)
        counter.stats["dump_split:read"] += 1  # the stage checks every planned split reported
        yield from self._drain(counter)
        yield "titles", titles


class SumCountTables(beam.CombineFn):
    """Count tables (``key``, ``n``) summed per key; summed as they come, many at a time."""

    def create_accumulator(self):
        return []

    def add_input(self, acc, table):
        acc.append(table)
        return [sources.sum_counts(acc)] if len(acc) >= 32 else acc

    def merge_accumulators(self, accs):
        return [sources.sum_counts([t for acc in accs for t in acc])]

    def extract_output(self, acc):
        return sources.sum_counts(acc)


def _at_least(counts, floor: int):
    """The rows of a count table with ``n >= floor``."""
    return counts if floor <= 1 else counts.filter(pc.greater_equal(counts.column("n"), floor))


def _of_kind(kv, kind: str, floor: int):
    """``((kind, shard), counts)`` -> its ``(key, count)`` pairs of at least ``floor``."""
    (k, _), counts = kv
    if k == kind:
        yield from sources.count_rows(_at_least(counts, floor))


def _tables_of_kind(kv, kind: str, floor: int):
    """``((kind, shard), counts)`` -> ``(shard, counts of at least floor)``."""
    (k, shard), counts = kv
    if k == kind:
        kept = _at_least(counts, floor)
        if kept.num_rows:
            yield shard, kept


class ReadWikiCounts(beam.PTransform):
    """Dump splits -> ``unigrams`` and ``bigrams`` (only those seen at least ``bigram_floor``
    times) as ``(shard, counts)`` count tables (a key in one shard only), ``stats``
    (key, count) and ``titles`` (title, kind) of namespace-0 pages.

    The splits are planned on the driver (:func:`queries.dump_reader.plan_splits`) so that each
    is its own element from the start: runners that keep a Create's partitioning (Dask's) would
    otherwise read every split of a dump in one task.
    """

    def __init__(
        self,
        max_page_bytes: int,
        lower: bool,
        max_entries: int = 500_000,
        n_shards: int = 64,
        bigram_floor: int = 1,
    ):
        super().__init__()
        self.n_shards, self.bigram_floor = n_shards, bigram_floor
        self.max_page_bytes, self.lower, self.max_entries = max_page_bytes, lower, max_entries

    def expand(self, splits):
        read = splits | "ReadAndCount" >> beam.ParDo(
            ReadAndCountFn(self.lower, self.max_page_bytes, self.max_entries, self.n_shards)
        )
        merged = only(read, "counts", "Counts") | "SumCounts" >> beam.CombinePerKey(
            SumCountTables()
        )
        return {
            "unigrams": merged | "Unigrams" >> beam.FlatMap(_tables_of_kind, "u", 1),
            "bigrams": merged | "Bigrams" >> beam.FlatMap(_tables_of_kind, "b", self.bigram_floor),
            "stats": merged | "Stats" >> beam.FlatMap(_of_kind, "s", 1),
            "titles": only(read, "titles", "TitleLists") | "Titles" >> beam.FlatMap(lambda ts: ts),
        }


def _unigram_candidates(shard_counts, min_count: int):
    for word, n in sources.count_rows(_at_least(shard_counts[1], min_count)):
        yield Candidate(word, "wiki_unigram", count=n, rank_key=float(n))


class UnigramSource(beam.PTransform):
    """``(shard, counts)`` word count tables -> Candidates of words with count >= ``min_count``."""

    def __init__(self, min_count: int):
        super().__init__()
        self.min_count = min_count

    def expand(self, unigrams):
        return unigrams | "AtLeastMinCount" >> beam.FlatMap(_unigram_candidates, self.min_count)


class WordsAndTotal(beam.CombineFn):
    """Word count tables -> ``(words seen at least min_count times, total of all counts)``.

    A word is in one shard's table only, so the filtered tables are concatenated, not summed.
    """

    def __init__(self, min_count: int):
        self.min_count = min_count

    def create_accumulator(self):
        return [], 0

    def add_input(self, acc, shard_counts):
        tables, total = acc
        counts = shard_counts[1]
        tables.append(_at_least(counts, self.min_count))
        return tables, total + (pc.sum(counts.column("n")).as_py() or 0)

    def merge_accumulators(self, accs):
        tables, total = [], 0
        for more, n in accs:
            tables.extend(more)
            total += n
        return tables, total

    def extract_output(self, acc):
        return sources.sum_counts(acc[0]), acc[1]


def _scored_bigrams(record):
    """``((shard, pair counts), (word counts, total))`` -> a Candidate per pair whose two words
    are both among the word counts, scored by PMI."""
    (_, pairs), (words, total) = record
    for bigram, c_xy, c_x, c_y in sources.pairs_with_word_counts(pairs, words):
        score = sources.pmi(c_xy, c_x, c_y, total)
        yield Candidate(bigram, "wiki_bigram", count=c_xy, pmi=score, rank_key=score)


class BigramSource(beam.PTransform):
    """``(shard, counts)`` word and pair count tables -> Candidates scored by PMI, thresholded
    or top N.

    PMI = ln(c(xy) * N / (c(x) c(y))) with N the total number of word tokens. Pairs seen fewer
    than ``min_count`` times are not scored (rare pairs get extreme PMI from a single sighting).
    The words seen at least ``min_count`` times (a word in such a pair is one of them) and N go
    to every shard of pairs as one value, and each shard joins its pairs with them in Arrow.
    """

    def __init__(self, min_count: int, threshold: float, top_n: int):
        super().__init__()
        self.min_count, self.threshold, self.top_n = min_count, threshold, top_n

    def expand(self, pcolls):
        unigrams, bigrams = pcolls
        words = unigrams | "WordsAndTotal" >> Gather(WordsAndTotal(self.min_count))
        scored = (
            bigrams
            | "PairsAtLeastMin"
            >> beam.Map(lambda sc, m: (sc[0], _at_least(sc[1], m)), self.min_count)
            | "WithWords" >> WithValue(words)
            | "Pmi" >> beam.FlatMap(_scored_bigrams)
        )
        if self.top_n > 0:
            return (
                scored
                | "TopN"
                >> Gather(beam.combiners.TopCombineFn(self.top_n, key=lambda c: (c.pmi, c.query)))
                | "Unlist" >> beam.FlatMap(lambda cs: cs)
            )
        return scored | "AtLeastThreshold" >> beam.Filter(lambda c, t: c.pmi >= t, self.threshold)


class ReadHourFn(beam.DoFn):
    """One hourly pageview file -> ``("views", (title, views in that hour))`` and
    ``("stats", (key, count))`` elements."""

    def __init__(self, projects, excluded_prefixes, hour_min: int):
        self.projects, self.excluded_prefixes, self.hour_min = (
            list(projects),
            list(excluded_prefixes),
            hour_min,
        )

    def setup(self):
        self.flt = pageviews.PageviewFilter(self.projects, self.excluded_prefixes)

    def process(self, path):
        views, stats = pageviews.read_hour_file(path, self.flt, self.hour_min)
        stats["pageview_file:read"] += 1  # the stage checks every file reported
        for key, n in stats.items():
            _count_stat(key, n)
            yield "stats", (key, n)
        for title_views in views.items():
            yield "views", title_views


class PageviewCounts(beam.PTransform):
    """Pageview file paths -> {'views': (title, total views), 'stats': (key, count)}."""

    def __init__(self, projects, excluded_prefixes, hour_min: int):
        super().__init__()
        self.fn = ReadHourFn(projects, excluded_prefixes, hour_min)

    def expand(self, paths):
        read = paths | "ReadHours" >> beam.ParDo(self.fn)
        return {
            "views": only(read, "views", "Views") | "SumViews" >> beam.CombinePerKey(sum),
            "stats": only(read, "stats", "Stats") | "SumStats" >> beam.CombinePerKey(sum),
        }


def _title_outcome(kv, min_views: int, in_dump: bool):
    title, grouped = kv
    views = sum(grouped["views"])
    kinds = set(grouped["kind"])
    if not grouped["views"]:
        pass  # an article nobody viewed in these hours
    elif views < min_views:
        yield "stats", ("title:below_min_views", 1)
    elif "disambiguation" in kinds:
        yield "stats", ("title:disambiguation", 1)
    elif in_dump and not kinds:
        yield "stats", ("title:not_in_dump", 1)
    else:
        yield "stats", ("title:kept", 1)
        yield "kept", (title, views)


class TitleSource(beam.PTransform):
    """(title, views) + (title, kind) from the dump -> Candidates of titles with views >= min_views.

    Kept: namespace-0 articles and redirects (a redirect title is another name people use);
    dropped and counted: disambiguation pages, titles not in the dump (when ``in_dump``), titles
    under ``min_views``. Titles that normalise to one query (qualifier stripped) sum their views.
    """

    def __init__(self, min_views: int, in_dump: bool, strip_qualifier: bool, case: str):
        super().__init__()
        self.min_views, self.in_dump = min_views, in_dump
        self.strip_qualifier, self.case = strip_qualifier, case

    def expand(self, pcolls):
        views, dump_titles = pcolls
        outcome = (
            {"views": views, "kind": dump_titles}
            | "JoinDumpTitles" >> beam.CoGroupByKey()
            | "Decide" >> beam.FlatMap(_title_outcome, self.min_views, self.in_dump)
        )
        candidates = (
            only(outcome, "kept", "Kept")
            | "ToQuery"
            >> beam.Map(
                lambda kv, s, c: (sources.title_query(kv[0], s, c), kv[1]),
                self.strip_qualifier,
                self.case,
            )
            | "SumPerQuery" >> beam.CombinePerKey(sum)
            | "ToCandidate"
            >> beam.Map(
                lambda kv: Candidate(kv[0], "wiki_title", views=kv[1], rank_key=float(kv[1]))
            )
        )
        return {
            "candidates": candidates,
            "stats": only(outcome, "stats", "Stats") | "SumStats" >> beam.CombinePerKey(sum),
        }


OUTPUTS = "outputs.json"  # the list of files the sources wrote, the pipeline's last step


@dataclass(frozen=True)
class SourceSettings:
    """Thresholds and policies of the Wikipedia sources (small and picklable)."""

    max_page_bytes: int
    lower: bool
    case: str
    min_count: int
    bigram_min_count: int
    pmi_threshold: float
    bigram_top_n: int
    min_views: int
    titles_in_dump: bool
    title_strip_qualifier: bool
    pageview_projects: tuple
    pageview_excluded: tuple
    pageview_hour_min: int
    n_shards: int = 64


def _written(pcoll, name: str, work: str):
    """Write ``pcoll``'s JSON lines under ``<work>/<name>-*.jsonl``; yields (name, path, lines)."""
    return (
        pcoll
        | f"Write_{name}" >> WriteLines(fs.join(work, name))
        | f"Name_{name}" >> beam.MapTuple(lambda path, n: (name, path, n))
    )


class WikipediaSources(beam.PTransform):
    """The query list's corpus-sized work, from the pipeline's start: dump splits and pageview
    files -> unigram, bigram and title candidates and input statistics, each written as JSON lines
    under ``work``; the last step lists every file written in ``<work>/outputs.json``."""

    def __init__(self, settings: SourceSettings, splits: list, views: list[str], work: str):
        super().__init__()
        self.settings, self.splits, self.views, self.work = settings, splits, views, work

    def expand(self, pbegin):
        s, work = self.settings, self.work
        wiki = (
            pbegin
            | "DumpSplits" >> beam.Create(self.splits)
            | "Wiki"
            >> ReadWikiCounts(
                s.max_page_bytes, s.lower, n_shards=s.n_shards, bigram_floor=s.bigram_min_count
            )
        )
        pv = (
            pbegin
            | "PageviewPaths" >> beam.Create(self.views)
            | "Pageviews"
            >> PageviewCounts(s.pageview_projects, s.pageview_excluded, s.pageview_hour_min)
        )
        titles = (pv["views"], wiki["titles"]) | "Titles" >> TitleSource(
            s.min_views, s.titles_in_dump, s.title_strip_qualifier, s.case
        )
        candidates = {
            "wiki_unigram": wiki["unigrams"] | "Unigrams" >> UnigramSource(s.min_count),
            "wiki_bigram": (wiki["unigrams"], wiki["bigrams"])
            | "Bigrams" >> BigramSource(s.bigram_min_count, s.pmi_threshold, s.bigram_top_n),
            "wiki_title": titles["candidates"],
        }
        written = [
            _written(pcoll | f"Json_{name}" >> beam.Map(Candidate.to_json), name, work)
            for name, pcoll in candidates.items()
        ]
        stats = (
            (wiki["stats"], pv["stats"], titles["stats"])
            | "AllStats" >> beam.Flatten()
            | "StatsJson" >> beam.MapTuple(lambda k, n: json.dumps([k, n]))
        )
        written.append(_written(stats, "stats", work))
        return (
            written
            | "AllWritten" >> beam.Flatten()
            | "ListWritten" >> Gather(ToListFn())
            | "WriteList"
            >> beam.Map(
                lambda files, path: fs.write_text_atomic(path, json.dumps(sorted(files))),
                fs.join(work, OUTPUTS),
            )
        )
