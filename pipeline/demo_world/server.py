"""The demo world's image server: real HTTP on 127.0.0.1, with hostile cases on demand.

``GET /img/{id}.{ext}`` serves :func:`scene.image_bytes` for the world's seed; the URL's extension
picks the format. ``GET /f/{mode}/{id}.{ext}`` serves the same image through one of
:data:`urls.FAULT_MODES` (404s, 429/503 with Retry-After, stalls, resets, truncated or non-image
bodies, huge bodies, a decompression bomb, redirect chains and loops, opt-out headers, a tracking
pixel, a long strip that upscales to gigabytes, a malformed status line), so the downloader meets
the web's failures without leaving the machine. ``GET /v/{variant}/{id}.{ext}`` serves a copy of
the image (the same bytes, re-encoded, resized or trimmed: :mod:`pipeline.demo_world.variants`),
the duplicates the generator plants. ``GET /page/{n}.html`` serves a
small HTML page of ``<img>`` tags, so the host also looks like a web site.

The server runs in a background thread with its own event loop (:func:`serve`), or in a process
of its own (:mod:`pipeline.demo_world.server_process`, also its command line). The fault
handlers are in :mod:`pipeline.demo_world.faults`, the hostile bodies they send in
:mod:`pipeline.demo_world.hostile_bodies`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import html
import json
import random
import re
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

from aiohttp import web

from pipeline import fs
from pipeline.demo_world import scene, urls, variants
from pipeline.demo_world.byte_cache import ByteLRU
from pipeline.demo_world.faults import CONTENT_TYPES, FaultModes

IMAGES_PER_PAGE = 8
STATS_PATH = "/_demo/stats"  # JSON of DemoServer.stats(), for a server in another process
_PAGE = re.compile(r"^/page/(?P<n>[0-9]{1,9})\.html$")


@dataclass(frozen=True)
class ServerOptions:
    """Timing, size and cache knobs of the demo server (tests shrink the timings)."""

    slow_seconds: float = 3.0  # slow_first_byte: delay before the status line
    drip_interval: float = 0.5  # slow_drip: pause between chunks
    drip_bytes: int = 16  # slow_drip: bytes per chunk (an image takes minutes)
    oversized_bytes: int = 64 << 20  # oversized: body length streamed, without Content-Length
    bomb_side: int = 30_000  # bomb: declared width and height (900M pixels)
    strip_width: int = 20_000  # strip: a PNG this wide ...
    strip_height: int = 2  # ... and this high (an upscaling bomb under keep_ratio)
    redirect_hops: int = 3  # redirect: 302s before the real image
    cache_bytes: int = 512 << 20  # LRU of encoded images, bounded by total bytes
    render_threads: int = 4  # Pillow releases the GIL while drawing and encoding
    prerender: tuple = ()  # ids or (id, ext) pairs rendered before the server accepts requests
    shutdown_timeout: float = 0.5  # how long stop() lets open responses finish

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and value < 0:
                raise ValueError(f"server option {f.name} must be >= 0, got {value}")
        if min(self.render_threads, self.bomb_side, self.strip_width, self.strip_height) < 1:
            raise ValueError(
                "server options render_threads, bomb_side, strip_width and strip_height must be >= 1"
            )
        object.__setattr__(self, "prerender", tuple(self.prerender))

    @classmethod
    def from_kwargs(cls, **options) -> ServerOptions:
        """Options from keyword arguments; an unknown name raises ValueError naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown server option(s) {unknown}; known: {sorted(known)}")
        return cls(**options)


def page_html(n: int, seed: int) -> str:
    """A small web page showing demo images ``n * 8 .. n * 8 + 7`` with alt texts."""
    tags = []
    for image_id in range(n * IMAGES_PER_PAGE, (n + 1) * IMAGES_PER_PAGE):
        s = scene.scene_for(image_id, seed)
        alt = html.escape(scene.describe(s, random.Random(f"{seed}:{image_id}:page")), quote=True)
        tags.append(f'<figure><img src="/img/{image_id}.{s.fmt}" alt="{alt}"></figure>')
    nav = f'<a href="/page/{n + 1}.html">next</a>'
    if n > 0:
        nav = f'<a href="/page/{n - 1}.html">previous</a> ' + nav
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Shapes, page {n}</title>'
        f"</head><body><h1>Shapes, page {n}</h1>\n"
        + "\n".join(tags)
        + f"\n<p>{nav}</p></body></html>\n"
    )


class DemoServer(FaultModes):
    """The demo image server for one world seed, run in a background thread on 127.0.0.1."""

    def __init__(self, seed: int, port: int = 0, options: ServerOptions | None = None) -> None:
        self.seed = seed
        self.options = options or ServerOptions()
        self._requested_port = port
        self.port = 0
        self._cache = ByteLRU(self.options.cache_bytes)
        self._inflight: dict[tuple[str, str, str], asyncio.Future] = {}
        self._seen_once: set[str] = set()  # per-URL state of the *once fault modes
        self._counts: collections.Counter[str] = collections.Counter()
        self._renders = 0
        self._lock = threading.Lock()  # stats() reads from other threads
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._executor: ThreadPoolExecutor | None = None
        # One _f_<mode> method per fault mode: a mode added to urls.py without one fails here.
        self._faults = {
            mode: getattr(self, "_f_" + mode.replace("once", "_once")) for mode in urls.FAULT_MODES
        }

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:{port}``."""
        return urls.base_url(self.port)

    def url(self, image_id: int | str, ext: str, fault: str | None = None) -> str:
        """Absolute URL of an image on this server, optionally through a fault mode."""
        return urls.image_url(self.port, image_id, ext, fault)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> DemoServer:
        """Bind 127.0.0.1:port and serve in a background thread; raises if the port is taken."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._executor = ThreadPoolExecutor(
            self.options.render_threads, thread_name_prefix="demo-render"
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, args=(ready, failure), name="demo-server", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            self._executor.shutdown(wait=False)
            exc = failure[0]
            if isinstance(exc, OSError):  # say which port: the manifest's may be taken
                where = f"{urls.HOST}:{self._requested_port}"
                raise OSError(
                    exc.errno, f"demo server cannot listen on {where}: {exc.strerror}"
                ) from exc
            raise exc
        if self.options.prerender:
            self.warm(self.options.prerender)
        return self

    def _run_loop(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start_site())
        except BaseException as exc:  # reported to start() in the caller's thread
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    async def _start_site(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._dispatch)  # and HEAD
        # handler_cancellation: a client that hangs up stops its stalled or streaming response.
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=self.options.shutdown_timeout,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, urls.HOST, self._requested_port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        """Close the listening socket and open connections, and join the server thread."""
        if self._thread is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        with contextlib.suppress(Exception):
            fut.result(timeout=self.options.shutdown_timeout + 10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> DemoServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- images and cache --------------------------------------------------------------------

    def warm(self, ids: Iterable[int | str | tuple[int | str, str]]) -> int:
        """Render ids (their scene's format) or (id, ext) pairs into the cache; returns how many."""
        keys = []
        for item in ids:
            image_id, ext = (
                item if isinstance(item, tuple) else (item, scene.scene_for(item, self.seed).fmt)
            )
            keys.append((str(image_id), ext))
        if self._loop is None or self._thread is None:
            raise RuntimeError("start the server before warming its cache")
        fut = asyncio.run_coroutine_threadsafe(self._warm(keys), self._loop)
        return fut.result()

    async def _warm(self, keys: list[tuple[str, str]]) -> int:
        limit = asyncio.Semaphore(self.options.render_threads * 2)

        async def one(key: tuple[str, str]) -> None:
            async with limit:
                await self._image(*key)

        await asyncio.gather(*(one(k) for k in keys))
        return len(keys)

    async def _image(self, image_id: str, ext: str, variant: str = "") -> bytes:
        """Encoded bytes of one image (or of a copy made by ``variant``): from the cache, or
        rendered once in the thread pool."""
        key = (image_id, ext, variant)
        data = self._cache.get(key)
        if data is not None:
            return data
        fut = self._inflight.get(key)
        if fut is None:
            if variant:
                job = (variants.image_bytes, image_id, self.seed, variant, ext)
            else:
                job = (scene.image_bytes, image_id, self.seed, ext)
            fut = self._loop.run_in_executor(self._executor, *job)
            self._inflight[key] = fut
            fut.add_done_callback(functools.partial(self._rendered, key))
        # shield: a client that hangs up must not cancel a render that others wait for.
        return await asyncio.shield(fut)

    def _rendered(self, key: tuple[str, str, str], fut: asyncio.Future) -> None:
        self._inflight.pop(key, None)
        if not fut.cancelled() and fut.exception() is None:
            self._cache.put(key, fut.result())
            with self._lock:
                self._renders += 1

    def stats(self) -> dict:
        """Request counts per path kind and fault mode, plus cache figures."""
        with self._lock:
            counts = dict(self._counts)
            renders = self._renders
        faults = {k[2:]: v for k, v in counts.items() if k.startswith("f/")}
        return {
            "requests": sum(v for k, v in counts.items() if k != "disconnects"),
            "img": counts.get("img", 0),
            "variant": counts.get("variant", 0),
            "page": counts.get("page", 0),
            "not_found": counts.get("not_found", 0),
            "faults": faults,
            "fault_requests": sum(faults.values()),
            "disconnects": counts.get("disconnects", 0),
            "renders": renders,
            "cache": {
                "entries": len(self._cache),
                "bytes": self._cache.bytes,
                "hits": self._cache.hits,
                "misses": self._cache.misses,
            },
        }

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    # -- routing -----------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path == STATS_PATH:
            return web.json_response(self.stats())
        copy = urls.parse_variant_path(request.path)
        if copy is not None:
            self._count("variant")
            variant, image_id, ext = copy
            # an exact copy is the original's bytes: one render and one cache entry for both
            data = await self._image(image_id, ext, "" if variant == "copy" else variant)
            return web.Response(body=data, content_type=CONTENT_TYPES[ext])
        parsed = urls.parse_path(request.path)
        if parsed is None:
            page = _PAGE.match(request.path)
            if page:
                self._count("page")
                return web.Response(
                    text=page_html(int(page["n"]), self.seed), content_type="text/html"
                )
            self._count("not_found")
            return web.Response(status=404, text="not found\n")
        mode, image_id, ext = parsed
        if mode is None:
            self._count("img")
            return await self._image_response(image_id, ext)
        handler = self._faults.get(mode)
        if handler is None:
            self._count("not_found")
            return web.Response(status=404, text=f"unknown fault mode {mode}\n")
        self._count("f/" + mode)
        try:
            return await handler(request, image_id, ext)
        except asyncio.CancelledError:  # the client hung up while the handler waited
            self._count("disconnects")
            raise

    @contextlib.contextmanager
    def _peer_may_leave(self) -> Iterator[None]:
        """Around a streamed body: a client (or stop()) that closes the connection ends it quietly."""
        try:
            yield
        except ConnectionError:
            self._count("disconnects")

    async def _image_response(self, image_id: str, ext: str, **headers: str) -> web.Response:
        data = await self._image(image_id, ext)
        return web.Response(body=data, content_type=CONTENT_TYPES[ext], headers=headers)


@contextlib.contextmanager
def serve(seed: int, port: int = 0, **options) -> Iterator[DemoServer]:
    """Serve the world of ``seed`` on 127.0.0.1:port (0 = a free port) while the block runs."""
    server = DemoServer(seed, port, ServerOptions.from_kwargs(**options))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def read_manifest(world_dir: str) -> dict:
    """The world's ``manifest.json`` as a dict."""
    return json.loads(fs.read_bytes(fs.join(world_dir, "manifest.json")))


@contextlib.contextmanager
def serve_world(world_dir: str, port: int | None = None, **options) -> Iterator[DemoServer]:
    """Serve a generated world on the port its manifest names (or ``port``, if given)."""
    manifest = read_manifest(world_dir)
    with serve(
        int(manifest["seed"]), int(manifest["port"] if port is None else port), **options
    ) as server:
        yield server
