"""The download stage as one composite Beam transform: fetch shards, trim per query, write shards."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.download import phases, trim
from pipeline.download.worker import ShardDownloader
from pipeline.portable import Spread

NS = "download"


class FetchShardFn(beam.DoFn):
    """Phase 1: one element = one shard, fetched concurrently through the worker's event loop.

    Up to ``shards_in_flight`` shards of a bundle are fetched at once (threads that share the
    worker's loop and its request limit), so a shard waiting on its last slow requests does not
    leave the worker idle. The shard number is emitted when the fetch starts and the bundle ends
    only once every shard it started is staged: what a shard fetched is read from its staging
    files after a GroupByKey, which no runner passes before the bundle is committed. Nothing is
    emitted from ``finish_bundle`` (Dask's runner drops those elements). Counters are updated on
    the DoFn's own thread, where Beam collects them.
    """

    def __init__(
        self,
        shards_dir,
        fetch_opts,
        image_opts,
        retry_failed=False,
        resolver_factory=None,
        shards_in_flight=2,
    ):
        self.shards_dir = shards_dir
        self.fetch_opts = fetch_opts
        self.image_opts = image_opts
        self.retry_failed = retry_failed
        self.resolver_factory = resolver_factory
        self.shards_in_flight = max(1, shards_in_flight)
        self.downloader = None
        self._shards = None
        self._pending: list = []
        self.samples = Metrics.counter(NS, "samples")
        self.successes = Metrics.counter(NS, "successes")
        self.failed_download = Metrics.counter(NS, "failed_to_download")
        self.failed_resize = Metrics.counter(NS, "failed_to_resize")
        self.bytes = Metrics.counter(NS, "bytes")
        self.shards_fetched = Metrics.counter(NS, "shards_fetched")
        self.shards_reused = Metrics.counter(NS, "shards_reused")
        self.latency = Metrics.distribution(NS, "latency_ms")

    def setup(self):
        # One session (connection pool, DNS cache) per worker, reused by every shard it handles.
        self.downloader = ShardDownloader(self.fetch_opts, self.image_opts, self.resolver_factory)
        self.downloader.setup()
        self._shards = ThreadPoolExecutor(self.shards_in_flight, thread_name_prefix="wit-shard")

    def teardown(self):
        if self._shards is not None:
            self._shards.shutdown(wait=True)
        if self.downloader is not None:
            self.downloader.close()

    def start_bundle(self):
        self._pending = []

    def process(self, task):
        self._pending.append(
            self._shards.submit(
                phases.fetch_shard, task, self.downloader, self.shards_dir, self.retry_failed
            )
        )
        yield task.shard
        while len(self._pending) >= self.shards_in_flight:
            done, _ = wait(self._pending, return_when=FIRST_COMPLETED)
            for future in done:
                self._pending.remove(future)
                self._staged(future)

    def finish_bundle(self):
        while self._pending:
            self._staged(self._pending.pop(0))

    def _staged(self, future) -> None:
        try:
            info, fresh = future.result()
        except BaseException:
            # A shard that failed fails the bundle, as it would inline; the bundle's other shards
            # finish first, so a retry of the bundle never races them for the same staging files.
            pending, self._pending = self._pending, []
            wait(pending)
            raise
        (self.shards_fetched if fresh else self.shards_reused).inc()
        for row in fresh:
            self.samples.inc()
            self.bytes.inc(row["bytes"] or 0)
            self.latency.update(int(1000 * (row["seconds"] or 0)))
            {"success": self.successes, "failed_to_download": self.failed_download}.get(
                row["status"], self.failed_resize
            ).inc()


class FinalizeShardFn(beam.DoFn):
    """Phase 2: write a shard's final tar/Parquet/stats from its staging file and the trim."""

    def __init__(self, shards_dir, ext, trimming, run_id=""):
        self.shards_dir = shards_dir
        self.ext = ext
        self.trimming = trimming
        self.run_id = run_id
        self.trimmed = Metrics.counter(NS, "trimmed")
        self.written = Metrics.counter(NS, "shards_written")

    def process(self, element):
        shard, grouped = element
        kept = set(grouped["kept"]) if self.trimming else None
        stats = phases.finalize_shard(self.shards_dir, shard, kept, self.ext, self.run_id)
        self.trimmed.inc(stats["trimmed"])
        self.written.inc(int(stats["written"]))
        yield shard, stats


def _staged(shards_dir: str, shard: int):
    info = phases.staged_info(shards_dir, shard)
    if info is None:
        Metrics.counter(NS, "staging_missing").inc()
        return
    yield info


def _kept_entries(ranked):
    _query, entries = ranked
    for _rank, uid, shard in entries:
        yield shard, uid


def _unselected(info):
    for uid, selected_for in info.successes:
        if not selected_for:  # selected for no query: nothing to trim against
            yield info.shard, uid


class TrimPerQuery(beam.PTransform):
    """Shard infos -> ``(shard, uid)`` of every success the trim keeps: per query, the ``cap``
    pairs of smallest stable rank (all of them when ``cap`` is None); a pair selected for no
    query is kept."""

    def __init__(self, cap: int | None):
        super().__init__()
        self.cap = cap

    def expand(self, infos):
        if not self.cap:
            return infos | "NoTrim" >> beam.FlatMap(
                lambda i: ((i.shard, u) for u, _ in i.successes)
            )
        kept = (
            infos
            | "RankPairs" >> beam.FlatMap(lambda i: trim.rank_entries(i.shard, i.successes))
            | "SmallestPerQuery" >> beam.combiners.Top.SmallestPerKey(self.cap)
            | "KeptByShard" >> beam.FlatMap(_kept_entries)
        )
        unselected = infos | "Unselected" >> beam.FlatMap(_unselected)
        return (kept, unselected) | "AllKept" >> beam.Flatten()


class DownloadShards(beam.PTransform):
    """Shard tasks -> (shard, stats): fetch (phase 1), per-query trim to ``cap``, final shard files."""

    def __init__(
        self,
        shards_dir,
        fetch_opts,
        image_opts,
        ext,
        cap=None,
        retry_failed=False,
        resolver_factory=None,
        shards_in_flight=2,
        run_id="",
    ):
        super().__init__()
        self.shards_dir = shards_dir
        self.fetch_opts = fetch_opts
        self.image_opts = image_opts
        self.ext = ext
        self.cap = cap
        self.run_id = run_id
        self.retry_failed = retry_failed
        self.resolver_factory = resolver_factory
        self.shards_in_flight = shards_in_flight

    def expand(self, tasks):
        shards_dir = self.shards_dir
        infos = (
            tasks
            | "Fetch"
            >> beam.ParDo(
                FetchShardFn(
                    shards_dir,
                    self.fetch_opts,
                    self.image_opts,
                    self.retry_failed,
                    self.resolver_factory,
                    self.shards_in_flight,
                )
            )
            | "Staged" >> Spread()
            | "ReadStaged" >> beam.FlatMap(lambda shard: _staged(shards_dir, shard))
        )
        by_shard = infos | "ByShard" >> beam.Map(lambda i: (i.shard, i.shard))
        kept = infos | "Trim" >> TrimPerQuery(self.cap)
        return (
            {"info": by_shard, "kept": kept}
            | "JoinKept" >> beam.CoGroupByKey()
            | "WriteShards"
            >> beam.ParDo(FinalizeShardFn(shards_dir, self.ext, bool(self.cap), self.run_id))
        )
