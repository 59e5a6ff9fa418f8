"""Beam wiring of ``wit select``: composite transforms over the plain functions of ``extract``.

``SelectPairs`` = ``ExtractCandidates`` (files -> spilled matches + per-file accounting)
-> ``CountMatches`` (per-bucket dedup and per-query counts, one dict per bucket, summed)
-> ``Thresholds`` (exact mode: per query over quota, its quota-th smallest draw)
-> ``DecideSelection`` (seeded per-pair decisions; selected rows written per bucket)
-> ``WriteSelection`` (uid-range parts gathered from the buckets, sorted, fixed writer options).

Elements between steps are per-bucket summaries and per-query draw lists, never rows or single
draws: the local runner keeps whole PCollections in its process, and per-element overhead is what
made an earlier per-draw wiring several times slower per candidate.

Each bucket step starts only when the step before it is complete everywhere (:class:`Release`,
after a GroupByKey), and what every bucket needs from that step (the per-query counts, the
thresholds) is saved to one file under the work directory that the bucket steps read, instead
of a side input: see :mod:`pipeline.portable` for why. The driver reads the same files to check
the run and write the reports.
"""

from __future__ import annotations

import sys
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.portable import Gather, Release, Spread, ToListFn, sum_into
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
        return files | "ReadFilterMatch" >> beam.ParDo(ExtractFileFn(self.settings))


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


class MergeBuckets(beam.CombineFn):
    """Per-bucket result dicts -> one: dicts of counts summed, numbers summed, buckets listed."""

    def create_accumulator(self):
        return {"buckets": []}

    def add_input(self, acc, result):
        for key, value in result.items():
            if key == "bucket":
                acc["buckets"].append(value)
            elif isinstance(value, dict):
                sum_into(acc.setdefault(key, {}), value)
            else:
                acc[key] = acc.get(key, 0) + value
        return acc

    def merge_accumulators(self, accs):
        merged = self.create_accumulator()
        for acc in accs:
            merged["buckets"].extend(acc["buckets"])
            self.add_input(merged, {k: v for k, v in acc.items() if k != "buckets"})
        return merged

    def extract_output(self, acc):
        acc["buckets"].sort()
        return acc


def _save(pcoll, work_dir: str, step: str):
    """Save a step's one merged element for the later steps and the driver; passes it on."""
    return pcoll | f"Save_{step}" >> beam.Map(lambda r: extract.save_step(work_dir, step, r))


class CountMatches(beam.PTransform):
    """gate -> one dict: ``counts`` (query_id -> matches), ``dedup`` (tallies summed) and
    ``buckets``, saved as step ``count``. The buckets are read once the gate (the gathered
    per-file reports: the spill files are complete when they are) exists."""

    def __init__(self, settings: extract.Settings):
        super().__init__()
        self.settings = settings

    def expand(self, gate):
        s = self.settings
        merged = (
            gate
            | "AfterExtract" >> Release(range(s.buckets))
            | "DedupAndCount"
            >> beam.Map(lambda b: extract.bucket_summary(s.work_dir, b, s.dedup_url))
            | "SumCounts" >> Gather(MergeBuckets())
        )
        return _save(merged, s.work_dir, "count")


def _smallest_draws(bucket: int, settings: extract.Settings):
    counts = extract.load_step(settings.work_dir, "count")["counts"]
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
    """counts -> ``{"thresholds": {query_id: threshold}}`` for the queries with more than
    ``quota`` matches, saved as step ``thresholds``; the buckets are read once the counts are."""

    def __init__(self, settings: extract.Settings):
        super().__init__()
        self.settings = settings

    def expand(self, counts):
        s = self.settings
        quota = s.quota
        merged = (
            counts
            | "AfterCounts" >> Release(range(s.buckets))
            | "SmallestPerBucket" >> beam.FlatMap(_smallest_draws, s)
            # A hot query gets one list of <= quota draws per bucket, whatever its match count;
            # lifted, each worker merges its lists before the shuffle.
            | "SmallestPerQuery" >> beam.CombinePerKey(SmallestDraws(quota))
            | "Threshold" >> beam.FlatMap(lambda kv: _threshold(kv, quota))
            | "AllThresholds" >> Gather(ToListFn())
            | "AsDict" >> beam.Map(lambda kvs: {"thresholds": dict(kvs)})
        )
        return _save(merged, s.work_dir, "thresholds")


class DecideSelection(beam.PTransform):
    """gate -> one dict: ``selected`` (rows), ``attributed`` and ``kept`` (per query) and
    ``buckets``, saved as step ``decide``; each bucket's selected rows go to its file.

    The buckets are decided once the gate (the saved thresholds, or the saved counts in
    probabilistic mode) exists.
    """

    def __init__(self, settings: extract.Settings):
        super().__init__()
        self.settings = settings

    def expand(self, gate):
        s = self.settings
        merged = (
            gate
            | "AfterThresholds" >> Release(range(s.buckets))
            | "DecidePairs" >> beam.Map(extract.decide_saved_bucket, s)
            | "SumDecisions" >> Gather(MergeBuckets())
        )
        return _save(merged, s.work_dir, "decide")


class WriteSelection(beam.PTransform):
    """The decide step's result -> ``part-NNNNN.parquet`` files by uid range; one element
    ``{"parts": [[path, rows], ...]}``, saved as step ``write``."""

    def __init__(self, work_dir: str, out_dir: str, buckets: int, rows_per_part: int):
        super().__init__()
        self.work_dir, self.out_dir = work_dir, out_dir
        self.buckets, self.rows_per_part = buckets, rows_per_part

    def expand(self, decided):
        work_dir, out_dir, buckets = self.work_dir, self.out_dir, self.buckets
        rows_per_part = self.rows_per_part

        def groups(n: int):
            return (
                extract.part_groups(balance.part_count(n, rows_per_part), rows_per_part)
                if n
                else []
            )

        written = (
            decided
            | "Parts" >> beam.FlatMap(lambda d: groups(d["selected"]))
            | "SpreadParts" >> Spread()
            | "WritePart"
            >> beam.FlatMapTuple(
                lambda first, end, parts: extract.write_parts_from_buckets(
                    work_dir, out_dir, buckets, first, end, parts
                )
            )
            | "AllParts" >> Gather(ToListFn())
            | "AsDict" >> beam.Map(lambda parts: {"parts": sorted(parts)})
        )
        return _save(written, work_dir, "write")


class SelectPairs(beam.PTransform):
    """The whole stage: input files -> selection parts; each step saves its merged result under
    ``<work>/steps/`` (files, count, thresholds, decide, write) for the driver's reports and checks.

    The steps form one chain, each starting once the one before it is complete, so the last step
    depends on every other (Dask's runner computes only what the last step needs).
    """

    def __init__(self, settings: extract.Settings, out_dir: str, rows_per_part: int):
        super().__init__()
        self.settings, self.out_dir, self.rows_per_part = settings, out_dir, rows_per_part

    def expand(self, files):
        s = self.settings
        reports = (
            files
            | "Extract" >> ExtractCandidates(s)
            | "FileReports" >> Gather(ToListFn())
            | "AsDict" >> beam.Map(lambda reports: {"files": reports})
        )
        counts = _save(reports, s.work_dir, "files") | "Count" >> CountMatches(s)
        gate = counts | "Thresholds" >> Thresholds(s) if s.mode == "exact" else counts
        decided = gate | "Decide" >> DecideSelection(s)
        return decided | "Write" >> WriteSelection(
            s.work_dir, self.out_dir, s.buckets, self.rows_per_part
        )
