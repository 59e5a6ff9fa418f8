"""Beam wiring of ``wit select``: composite transforms over the plain functions of ``extract``.

``SelectPairs`` = ``ExtractCandidates`` (files -> spilled matches + per-file accounting)
-> ``CountMatches`` (per-bucket dedup and per-query counts, summed from the buckets' files)
-> ``Thresholds`` (exact mode: per query over quota, its quota-th smallest draw)
-> ``DecideSelection`` (seeded per-pair decisions; selected rows written per bucket)
-> ``WriteSelection`` (uid-range parts gathered from the buckets, sorted, fixed writer options).

Elements between steps are per-bucket tallies and, in exact mode, per-query arrays of at most
``quota`` draws, never rows or single draws: the local runner keeps whole PCollections in its
process, and per-element overhead is what made an earlier per-draw wiring several times slower
per candidate. Per-query counts go from the buckets' files to the step files directly.

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
import numpy as np
from apache_beam.metrics import Metrics

from pipeline.portable import Gather, Release, Spread, ToListFn, sum_into
from pipeline.select import balance, bucket_steps, extract, selection_parts, work_files


class ExtractFileFn(beam.DoFn):
    """Reads, filters and matches one input file with the saved query trie, loaded once per
    worker process (on first use: it exists once the step before this one ran)."""

    def __init__(self, settings: extract.Settings):
        self.settings = settings

    def process(self, element):
        index, path = element
        started = time.time()
        # module-level cache: every DoFn instance in this process shares one mapping
        matcher = extract.query_matcher(self.settings)
        report = extract.extract_file(path, index, self.settings, matcher)
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


def _with_trie(files: list, settings: extract.Settings) -> list:
    extract.save_query_trie(settings)
    return sorted(files)


class ExtractCandidates(beam.PTransform):
    """``(index, path)`` -> per-file accounting dicts; matched pairs go to the spill buckets.

    The query trie is built once, by one worker, before any file is read (the files are
    gathered, the trie saved, and the files spread again): the workers map the saved trie
    instead of each building its own.
    """

    def __init__(self, settings: extract.Settings):
        super().__init__()
        self.settings = settings

    def expand(self, files):
        return (
            files
            | "AllFiles" >> Gather(ToListFn())
            | "BuildQueryTrie" >> beam.Map(_with_trie, self.settings)
            | "Files" >> beam.FlatMap(lambda listed: listed)
            | "SpreadFiles" >> Spread()
            | "ReadFilterMatch" >> beam.ParDo(ExtractFileFn(self.settings))
        )


class SmallestDraws(beam.CombineFn):
    """Per query: the ``quota`` smallest draws of the per-bucket ascending arrays."""

    def __init__(self, quota: int):
        self.quota = quota

    def create_accumulator(self):
        return np.zeros(0, np.int64)

    def add_input(self, acc, draws):
        return bucket_steps.merge_smallest([acc, draws], self.quota)

    def merge_accumulators(self, accs):
        return bucket_steps.merge_smallest(list(accs), self.quota)

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
    return pcoll | f"Save_{step}" >> beam.Map(lambda r: work_files.save_step(work_dir, step, r))


class CountMatches(beam.PTransform):
    """gate -> one dict: ``dedup`` (tallies summed) and ``buckets``, saved as step ``count``
    with the per-query ``counts`` summed from the buckets' files. The buckets are read once the
    gate (the gathered per-file reports: the spill files are complete when they are) exists."""

    def __init__(self, settings: extract.Settings):
        super().__init__()
        self.settings = settings

    def expand(self, gate):
        s = self.settings
        return (
            gate
            | "AfterExtract" >> Release(range(s.buckets))
            | "DedupAndCount"
            >> beam.Map(lambda b: bucket_steps.bucket_summary(s.work_dir, b, s.dedup_url))
            | "SumCounts" >> Gather(MergeBuckets())
            | "Save_count" >> beam.Map(bucket_steps.save_counts, s)
        )


def _threshold(kv, quota: int):
    """(query, its smallest draws) -> (query, threshold), or (query, None) when fewer than
    ``quota`` draws fell under its cutoff (the saving step completes those)."""
    query, smallest = kv
    yield query, (int(smallest[quota - 1]) if len(smallest) >= quota else None)


class Thresholds(beam.PTransform):
    """counts -> ``{"thresholds": ...}`` for the queries with more than ``quota`` matches,
    saved as step ``thresholds``; the buckets are read once the counts are."""

    def __init__(self, settings: extract.Settings):
        super().__init__()
        self.settings = settings

    def expand(self, counts):
        s = self.settings
        quota = s.quota
        return (
            counts
            | "AfterCounts" >> Release(range(s.buckets))
            | "SmallestPerBucket" >> beam.FlatMap(bucket_steps.smallest_under_cutoff, s)
            # A hot query gets one array of <= quota draws per bucket, those under its cutoff;
            # lifted, each worker merges its arrays before the shuffle.
            | "SmallestPerQuery" >> beam.CombinePerKey(SmallestDraws(quota))
            | "Threshold" >> beam.FlatMap(_threshold, quota)
            | "AllThresholds" >> Gather(ToListFn())
            | "Save_thresholds" >> beam.Map(bucket_steps.save_thresholds, s)
        )


class DecideSelection(beam.PTransform):
    """gate -> one dict: ``selected`` (rows) and ``buckets``, saved as step ``decide`` with the
    per-query ``attributed`` and ``kept`` summed from the buckets' files; each bucket's selected
    rows go to its file.

    The buckets are decided once the gate (the saved thresholds, or the saved counts in
    probabilistic mode) exists.
    """

    def __init__(self, settings: extract.Settings):
        super().__init__()
        self.settings = settings

    def expand(self, gate):
        s = self.settings
        return (
            gate
            | "AfterThresholds" >> Release(range(s.buckets))
            | "DecidePairs" >> beam.Map(bucket_steps.decide_saved_bucket, s)
            | "SumDecisions" >> Gather(MergeBuckets())
            | "Save_decide" >> beam.Map(bucket_steps.save_decisions, s)
        )


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
                selection_parts.part_groups(balance.part_count(n, rows_per_part), rows_per_part)
                if n
                else []
            )

        written = (
            decided
            | "Parts" >> beam.FlatMap(lambda d: groups(d["selected"]))
            | "SpreadParts" >> Spread()
            | "WritePart"
            >> beam.FlatMapTuple(
                lambda first, end, n_parts: selection_parts.write_parts_from_buckets(
                    work_dir, out_dir, buckets, first, end, n_parts
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
