"""Beam wiring of ``wit select``: composite transforms over the plain functions of ``extract``.

``SelectPairs`` = ``ExtractCandidates`` (files -> spilled matches + per-file accounting)
-> ``CountMatches`` (per-bucket dedup, per-query counts by a lifted combine)
-> ``DecideSelection`` (seeded per-pair decisions, counts as a side input)
-> ``WriteSelection`` (uid-range parts, sorted, fixed writer options).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline import fs
from pipeline.select import balance, extract
from pipeline.select.matching import get_matcher

HOT_KEY_FANOUT = 8


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


def _bucket_stats(bucket: int, settings: extract.Settings, _barrier):
    rows, removed = extract.load_bucket(settings.work_dir, bucket, settings.dedup_url)
    yield beam.pvalue.TaggedOutput("dedup", dict(removed, unique=len(rows)))
    for q, n in extract.bucket_counts(rows).items():
        yield q, n
    if settings.mode == "exact":
        for item in extract.bucket_draws(rows, settings.seed):
            yield beam.pvalue.TaggedOutput("draws", item)


class CountMatches(beam.PTransform):
    """Buckets -> ``counts`` (query_id, n), ``draws`` (query_id, draw), ``dedup`` tallies.

    ``barrier`` is any PCollection the buckets must wait for (the per-file reports: the spill
    files are complete when they are).
    """

    def __init__(self, settings: extract.Settings, barrier):
        super().__init__()
        self.settings, self.barrier = settings, barrier

    def expand(self, buckets):
        out = buckets | "DedupAndCount" >> beam.FlatMap(
            _bucket_stats, self.settings, beam.pvalue.AsList(self.barrier)
        ).with_outputs("dedup", "draws", main="partial_counts")
        counts = out.partial_counts | "SumPerQuery" >> beam.CombinePerKey(sum)
        return {"counts": counts, "draws": out.draws, "dedup": out.dedup}


def _decide_bucket(bucket: int, settings: extract.Settings, counts: dict, thresholds: dict):
    rows, _ = extract.load_bucket(settings.work_dir, bucket, settings.dedup_url)
    attributed: Counter = Counter()
    kept: Counter = Counter()
    for row in extract.decide(rows, settings, counts, thresholds):
        attributed.update(row["selected_for"])
        kept.update(row["matched_query_ids"])
        yield row
    for q, n in attributed.items():
        yield beam.pvalue.TaggedOutput("attributed", (q, n))
    for q, n in kept.items():
        yield beam.pvalue.TaggedOutput("kept", (q, n))


class DecideSelection(beam.PTransform):
    """Buckets -> selected rows, plus per-query ``attributed`` and ``kept`` counts."""

    def __init__(self, settings: extract.Settings, counts, draws):
        super().__init__()
        self.settings, self.counts, self.draws = settings, counts, draws

    def expand(self, buckets):
        quota = self.settings.quota
        thresholds = (
            self.draws
            | "SmallestDrawsPerQuery"
            >> beam.CombinePerKey(
                beam.combiners.TopCombineFn(quota, reverse=True)
            ).with_hot_key_fanout(HOT_KEY_FANOUT)
            | "Threshold" >> beam.FlatMap(lambda kv: _threshold(kv, quota))
        )
        out = buckets | "DecidePairs" >> beam.FlatMap(
            _decide_bucket,
            self.settings,
            beam.pvalue.AsDict(self.counts),
            beam.pvalue.AsDict(thresholds),
        ).with_outputs("attributed", "kept", main="selected")
        return {
            "selected": out.selected,
            "attributed": out.attributed | "SumAttributed" >> beam.CombinePerKey(sum),
            "kept": out.kept | "SumKept" >> beam.CombinePerKey(sum),
        }


def _threshold(kv, quota: int):
    limit = balance.thresholds_from_top(kv[1], quota)
    if limit is not None:
        yield kv[0], limit


class WriteSelection(beam.PTransform):
    """Selected rows -> ``part-NNNNN.parquet`` files by uid range; yields (path, rows)."""

    def __init__(self, out_dir: str, rows_per_part: int):
        super().__init__()
        self.out_dir, self.rows_per_part = out_dir, rows_per_part

    def expand(self, selected):
        total = selected | "CountSelected" >> beam.combiners.Count.Globally()
        rows_per_part, out_dir = self.rows_per_part, self.out_dir
        return (
            selected
            | "KeyByPart"
            >> beam.Map(
                lambda row, n: (
                    balance.part_of(row["uid"], balance.part_count(n, rows_per_part)),
                    row,
                ),
                beam.pvalue.AsSingleton(total),
            )
            | "GroupParts" >> beam.GroupByKey()
            | "WritePart"
            >> beam.MapTuple(lambda part, rows: extract.write_part(out_dir, part, rows))
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
        decided = buckets | "Decide" >> DecideSelection(s, stats["counts"], stats["draws"])
        parts = decided["selected"] | "Write" >> WriteSelection(self.out_dir, self.rows_per_part)
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
