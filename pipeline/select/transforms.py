"""Beam wiring of ``wit select``: composite transforms over the plain functions of ``extract``.

``SelectPairs`` = ``ExtractCandidates`` (files -> spilled matches + per-file accounting)
-> ``CountMatches`` (per-bucket dedup and per-query counts, one dict per bucket, summed)
-> ``Thresholds`` (exact mode: per query over quota, its quota-th smallest draw)
-> ``DecideSelection`` (seeded per-pair decisions; selected rows written per bucket)
-> ``WriteSelection`` (uid-range parts gathered from the buckets, sorted, fixed writer options).

Elements between steps are per-bucket summaries and per-query draw lists, never rows or single
draws: the local runner keeps whole PCollections in its process, and per-element overhead is what
made the earlier per-draw wiring cost ~300 us per candidate.
"""

from __future__ import annotations

import json
import sys
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline import fs
from pipeline.select import balance, extract
from pipeline.select.matching import get_matcher


class ExtractFileFn(beam.DoFn):
    """Reads, filters and matches one input file; the automaton is built once per worker."""

    def __init__(self, settings: extract.Settings):
        self.settings = settings
        self.matcher = None

    def setup(self):
        # Module-level cache: every DoFn instance in this process shares one automaton.
        self.matcher = get_matcher(self.settings.queries_path, self.settings.case)

    def process(self, element):
        index, path = element
        started = time.time()
        report = extract.extract_file(path, index, self.settings, self.matcher)
        counts = report["counts"]
        for key, n in counts.items():
            Metrics.counter("select", key).inc(n)
        if self.settings.progress:
            secs = max(time.time() - started, 1e-6)
            print(
                f"[select] file {index}: {path}: {counts.get('units', 0):,} candidates, "
                f"{counts.get('matched', 0):,} matched, {counts.get('units', 0) / secs:,.0f}/s",
                file=sys.stderr,
                flush=True,
            )
        yield report


class ExtractCandidates(beam.PTransform):
    """``(index, path)`` -> per-file accounting dicts; matched pairs go to the spill buckets."""

    def __init__(self, settings: extract.Settings):
        super().__init__()
        self.settings = settings

    def expand(self, files):
        return (
            files
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadFilterMatch" >> beam.ParDo(ExtractFileFn(self.settings))
        )


class SumCounts(beam.CombineFn):
    """Sums per-query count dicts (one per bucket) into one dict."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, counts):
        return extract.sum_counts(acc, counts)

    def merge_accumulators(self, accs):
        accs = iter(accs)
        total = next(accs, {})
        for acc in accs:
            extract.sum_counts(total, acc)
        return total

    def extract_output(self, acc):
        return acc


class SmallestDraws(beam.CombineFn):
    """Per query: the ``quota`` smallest draws of the per-bucket ascending lists."""

    def __init__(self, quota: int):
        self.quota = quota

    def create_accumulator(self):
        return []

    def add_input(self, acc, draws):
        return extract.merge_smallest([acc, draws], self.quota)

    def merge_accumulators(self, accs):
        return extract.merge_smallest(list(accs), self.quota)

    def extract_output(self, acc):
        return acc


def _bucket_summary(bucket: int, settings: extract.Settings, _barrier):
    yield extract.bucket_summary(settings.work_dir, bucket, settings.dedup_url)


class CountMatches(beam.PTransform):
    """Buckets -> ``counts`` (one dict: query_id -> matches) and ``dedup`` (a tally per bucket).

    ``barrier`` is any PCollection the buckets must wait for (the per-file reports: the spill
    files are complete when they are).
    """

    def __init__(self, settings: extract.Settings, barrier):
        super().__init__()
        self.settings, self.barrier = settings, barrier

    def expand(self, buckets):
        summaries = buckets | "DedupAndCount" >> beam.FlatMap(
            _bucket_summary, self.settings, beam.pvalue.AsList(self.barrier)
        )
        counts = (
            summaries
            | "BucketCounts" >> beam.Map(lambda s: s["counts"])
            | "SumCounts" >> beam.CombineGlobally(SumCounts())
        )
        dedup = summaries | "BucketDedup" >> beam.Map(lambda s: s["dedup"])
        return {"counts": counts, "dedup": dedup}


def _smallest_draws(bucket: int, settings: extract.Settings, counts: dict):
    over = {q for q, n in counts.items() if n > settings.quota}
    if not over:
        return
    rows, _ = extract.load_bucket(settings.work_dir, bucket, settings.dedup_url)
    yield from extract.smallest_draws(rows, settings.seed, over, settings.quota).items()


def _threshold(kv, quota: int):
    limit = balance.thresholds_from_top(kv[1], quota)
    if limit is not None:
        yield kv[0], limit


class Thresholds(beam.PTransform):
    """Buckets -> (query_id, threshold) for each query with more than ``quota`` matches."""

    def __init__(self, settings: extract.Settings, counts):
        super().__init__()
        self.settings, self.counts = settings, counts

    def expand(self, buckets):
        quota = self.settings.quota
        return (
            buckets
            | "SmallestPerBucket"
            >> beam.FlatMap(_smallest_draws, self.settings, beam.pvalue.AsSingleton(self.counts))
            # A hot query gets one list of <= quota draws per bucket, whatever its match count;
            # lifted, each worker merges its lists before the shuffle. (with_hot_key_fanout here
            # leaves bundles unexecuted on the local FnApiRunner when the result is a side input.)
            | "SmallestPerQuery" >> beam.CombinePerKey(SmallestDraws(quota))
            | "Threshold" >> beam.FlatMap(lambda kv: _threshold(kv, quota))
        )


class DecideSelection(beam.PTransform):
    """Buckets -> per-bucket tallies; each bucket's selected rows go to its ``selected`` file.

    Returns ``selected`` (total rows), ``attributed`` and ``kept`` (one dict each).
    """

    def __init__(self, settings: extract.Settings, counts, thresholds):
        super().__init__()
        self.settings, self.counts, self.thresholds = settings, counts, thresholds

    def expand(self, buckets):
        decided = buckets | "DecidePairs" >> beam.Map(
            extract.decide_bucket,
            self.settings,
            beam.pvalue.AsSingleton(self.counts),
            beam.pvalue.AsDict(self.thresholds),
        )
        return {
            "selected": decided
            | "Selected" >> beam.Map(lambda d: d["selected"])
            | "SumSelected" >> beam.CombineGlobally(sum),
            "attributed": decided
            | "Attributed" >> beam.Map(lambda d: d["attributed"])
            | "SumAttributed" >> beam.CombineGlobally(SumCounts()),
            "kept": decided
            | "Kept" >> beam.Map(lambda d: d["kept"])
            | "SumKept" >> beam.CombineGlobally(SumCounts()),
        }


class WriteSelection(beam.PTransform):
    """Total selected rows -> ``part-NNNNN.parquet`` files by uid range; yields (path, rows)."""

    def __init__(self, work_dir: str, out_dir: str, buckets: int, rows_per_part: int):
        super().__init__()
        self.work_dir, self.out_dir = work_dir, out_dir
        self.buckets, self.rows_per_part = buckets, rows_per_part

    def expand(self, total):
        work_dir, out_dir, buckets = self.work_dir, self.out_dir, self.buckets
        rows_per_part = self.rows_per_part

        def groups(n: int):
            return (
                extract.part_groups(balance.part_count(n, rows_per_part), rows_per_part)
                if n
                else []
            )

        return (
            total
            | "Parts" >> beam.FlatMap(groups)
            | "SpreadParts" >> beam.Reshuffle()
            | "WritePart"
            >> beam.FlatMapTuple(
                lambda first, end, parts: extract.write_parts_from_buckets(
                    work_dir, out_dir, buckets, first, end, parts
                )
            )
        )


class WriteFacts(beam.PTransform):
    """Collects the small side results, tagged by kind, into one JSON file for the reports."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def expand(self, tagged):
        path = self.path

        def write(items):
            facts: dict = {}
            for kind, value in items:
                facts.setdefault(kind, []).append(value)
            for values in facts.values():
                values.sort(key=lambda v: json.dumps(v, sort_keys=True))
            fs.write_text_atomic(path, json.dumps(facts, sort_keys=True) + "\n")
            return path

        return tagged | "ToList" >> beam.combiners.ToList() | "Write" >> beam.Map(write)


def _tag(pcoll, kind: str):
    return pcoll | f"Tag_{kind}" >> beam.Map(lambda v, k=kind: (k, v))


class SelectPairs(beam.PTransform):
    """The whole stage: input files -> selection parts + JSON facts for the reports in ``work_dir``."""

    def __init__(self, settings: extract.Settings, out_dir: str, rows_per_part: int):
        super().__init__()
        self.settings, self.out_dir, self.rows_per_part = settings, out_dir, rows_per_part

    def expand(self, files):
        s = self.settings
        reports = files | "Extract" >> ExtractCandidates(s)
        buckets = (
            files.pipeline
            | "Buckets" >> beam.Create(list(range(s.buckets)))
            | "SpreadBuckets" >> beam.Reshuffle()  # Create is one bundle: spread it over workers
        )
        stats = buckets | "Count" >> CountMatches(s, reports)
        if s.mode == "exact":
            thresholds = buckets | "Thresholds" >> Thresholds(s, stats["counts"])
        else:
            thresholds = files.pipeline | "NoThresholds" >> beam.Create([])
        decided = buckets | "Decide" >> DecideSelection(s, stats["counts"], thresholds)
        parts = decided["selected"] | "Write" >> WriteSelection(
            s.work_dir, self.out_dir, s.buckets, self.rows_per_part
        )
        facts = [
            _tag(reports, "files"),
            _tag(stats["dedup"], "dedup"),
            _tag(stats["counts"], "counts"),
            _tag(decided["attributed"], "attributed"),
            _tag(decided["kept"], "kept"),
            _tag(parts, "parts"),
        ]
        return (
            facts
            | "Facts" >> beam.Flatten()
            | "WriteFacts" >> WriteFacts(fs.join(s.work_dir, "facts.json"))
        )
