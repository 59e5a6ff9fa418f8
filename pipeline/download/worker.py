"""Download shards' rows: fetch concurrently, process each image as it arrives, emit rows.

:class:`ShardDownloader` owns an event loop, running on a thread of its own, and one
:class:`~pipeline.download.fetch.Fetcher` for the life of a worker (a Beam ``DoFn.setup``).
:meth:`ShardDownloader.download` runs a whole shard through the loop at once, so hundreds of
requests are in flight, and may be called from several threads: shards fetched at the same time
share the loop and its concurrency limit, so the next shard's requests take the slots that the
last slow requests of the previous one leave free. Each image is decoded and re-encoded as soon
as its body arrives, so memory holds only the images in flight, not the shard.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from yarl import URL

from pipeline import memory
from pipeline.download import fetch, images
from pipeline.download.shard_writer import make_key

SELECTION_COLUMNS = (
    "uid",
    "url",
    "caption",
    "page_url",
    "source_file",
    "matched_query_ids",
    "matched_queries",
    "selected_for",
)


@dataclass(frozen=True)
class ShardTask:
    """One output shard: its index and the selection rows it covers (in selection order)."""

    shard: int
    slices: tuple  # ((selection part path, first row, end row), ...)
    samples_per_shard: int

    @property
    def size(self) -> int:
        return sum(stop - start for _, start, stop in self.slices)


def host_of(url: str) -> str | None:
    try:
        u = URL(url)
        return f"{u.host}:{u.port}" if u.explicit_port else u.host
    except (ValueError, TypeError):
        return None


def base_row(sel: dict, key: str) -> dict:
    """A shard row for a selection row, before its outcome is known."""
    row = {c: sel.get(c) for c in SELECTION_COLUMNS}
    row.update(
        key=key,
        status=None,
        error_message=None,
        width=None,
        height=None,
        original_width=None,
        original_height=None,
        exif=None,
        sha256=None,
        host=host_of(sel["url"] or ""),
        http_status=None,
        bytes=0,
        seconds=0.0,
        retries=0,
        redirects=0,
        final_url=None,
        image=None,
    )
    return row


def outcome_row(row: dict, res: fetch.FetchResult, opts: images.ImageOptions) -> dict:
    """Fill a row from a fetch result, decoding and re-encoding the image on success."""
    row = dict(row)
    row.update(
        http_status=res.http_status,
        bytes=res.nbytes,
        seconds=round(res.seconds, 4),
        retries=res.retries,
        redirects=res.redirects,
        final_url=res.final_url,
    )
    if not res.ok:
        row.update(status="failed_to_download", error_message=res.reason)
        return row
    img = images.process_image(res.body, opts)
    row.update(
        status=img.status,
        error_message=img.reason,
        original_width=img.original_width,
        original_height=img.original_height,
        sha256=hashlib.sha256(res.body).hexdigest(),
    )
    if img.status == "success":
        row.update(width=img.width, height=img.height, exif=img.exif, image=img.data)
    return row


class ShardDownloader:
    """Downloads lists of selection rows; ``setup()`` once per worker, ``close()`` at the end."""

    def __init__(
        self,
        fetch_opts: fetch.FetchOptions,
        image_opts: images.ImageOptions,
        resolver_factory: Callable | None = None,
    ):
        self.fetch_opts = fetch_opts
        self.image_opts = image_opts
        self.resolver_factory = resolver_factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._fetcher: fetch.Fetcher | None = None
        self._gate: asyncio.Semaphore | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def setup(self) -> None:
        """Start the event loop's thread and the shared HTTP session."""
        with self._lock:
            if self._loop is not None:
                return
            memory.keep_freed_memory()
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=loop.run_forever, name="wit-download-loop", daemon=True
            )
            self._thread.start()
            if self.image_opts.threads > 0:
                self._pool = ThreadPoolExecutor(
                    self.image_opts.threads, thread_name_prefix="wit-image"
                )
            resolver = self.resolver_factory() if self.resolver_factory else None
            self._fetcher = fetch.Fetcher(self.fetch_opts, resolver)
            # One bound for every shard in flight: the coroutines that hold bodies or wait for
            # a connection, not just the sockets.
            self._gate = asyncio.Semaphore(self.fetch_opts.concurrency)
            asyncio.run_coroutine_threadsafe(self._fetcher.__aenter__(), loop).result()
            self._loop = loop

    def close(self) -> None:
        """Close the session, stop the loop and its thread."""
        with self._lock:
            if self._loop is None:
                return
            loop, self._loop = self._loop, None
            asyncio.run_coroutine_threadsafe(
                self._fetcher.__aexit__(None, None, None), loop
            ).result()
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join()
            loop.close()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            self._fetcher = self._thread = None

    def download(
        self, rows: list[dict], on_done: Callable[[dict], None] | None = None
    ) -> list[dict]:
        """Fetch and process ``rows`` (each with ``key`` and ``url``); returns them with outcomes.

        Blocks the calling thread; ``on_done`` is called on the loop's thread.
        """
        self.setup()
        return asyncio.run_coroutine_threadsafe(self._download(rows, on_done), self._loop).result()

    async def _download(self, rows: list[dict], on_done) -> list[dict]:
        loop = asyncio.get_running_loop()

        async def one(row: dict) -> dict:
            async with self._gate:
                res = await self._fetcher.fetch(row["url"] or "")
                if self._pool is None or not res.ok:
                    out = outcome_row(row, res, self.image_opts)
                else:  # decode off the loop so sockets keep being served meanwhile
                    out = await loop.run_in_executor(
                        self._pool, outcome_row, row, res, self.image_opts
                    )
            if on_done is not None:
                on_done(out)
            return out

        return list(await asyncio.gather(*(one(r) for r in rows)))


def rows_for_task(task: ShardTask, read_slice: Callable[[str, int, int], list[dict]]) -> list[dict]:
    """The shard rows of a task, keyed like img2dataset (shard * 10**k + row)."""
    out, i = [], 0
    for path, start, stop in task.slices:
        for sel in read_slice(path, start, stop):
            out.append(base_row(sel, make_key(task.shard, i, task.samples_per_shard)))
            i += 1
    return out


class Progress:
    """Counts outcomes and calls ``report(done, successes)`` at most every ``interval`` seconds."""

    def __init__(self, report: Callable[[int, int], None], interval: float = 0.5):
        self.done = 0
        self.successes = 0
        self._report = report
        self._interval = interval
        self._last = 0.0

    def __call__(self, row: dict) -> None:
        self.done += 1
        self.successes += row["status"] == "success"
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._report(self.done, self.successes)

    def flush(self) -> None:
        self._report(self.done, self.successes)
