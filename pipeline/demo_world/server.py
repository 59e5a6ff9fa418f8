"""The demo world's image server: real HTTP on 127.0.0.1, with hostile cases on demand.

``GET /img/{id}.{ext}`` serves :func:`scene.image_bytes` for the world's seed; the URL's extension
picks the format. ``GET /f/{mode}/{id}.{ext}`` serves the same image through one of
:data:`urls.FAULT_MODES` (404s, 429/503 with Retry-After, stalls, resets, truncated or non-image
bodies, huge bodies, a decompression bomb, redirect chains and loops, opt-out headers, a tracking
pixel, a long strip that upscales to gigabytes, a malformed status line), so the downloader meets
the web's failures without leaving the machine. ``GET /page/{n}.html`` serves a
small HTML page of ``<img>`` tags, so the host also looks like a web site.

The server runs in a background thread with its own event loop (:func:`serve`), or in the
foreground: ``python -m pipeline.demo_world.server --seed 0 --port 8000``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import html
import io
import json
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

from aiohttp import web

from pipeline import fs
from pipeline.demo_world import scene, urls

CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
USER_AGENT_TOKEN = "wit-builder"  # the product token of the project's downloader
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


class ByteLRU:
    """A least-recently-used map of encoded images, bounded by the sum of their lengths."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._items: collections.OrderedDict[tuple[str, str], bytes] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple[str, str]) -> bytes | None:
        data = self._items.get(key)
        if data is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return data

    def put(self, key: tuple[str, str], data: bytes) -> None:
        if len(data) > self.max_bytes or key in self._items:
            return
        self._items[key] = data
        self.bytes += len(data)
        while self.bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self.bytes -= len(old)


@functools.lru_cache(maxsize=4)
def bomb_png(side: int) -> bytes:
    """A valid black 1-bit PNG of side x side pixels: ~100 KB on the wire for 30000 px a side."""
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then one bit per pixel
    per_block = 500
    full, rest = divmod(side, per_block)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    # A full flush resets the compressor, so every block of zero rows deflates to the same bytes:
    # deflate one and repeat it, instead of compressing 100+ MB (a second per bomb).
    block = comp.compress(row * per_block) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = comp.compress(row * rest) + comp.flush(zlib.Z_FINISH)
    adler = 1
    for _ in range(full):
        adler = zlib.adler32(row * per_block, adler)
    adler = zlib.adler32(row * rest, adler)
    idat = b"\x78\xda" + block * full + tail + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, grayscale
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


@functools.lru_cache(maxsize=4)
def strip_png(width: int, height: int) -> bytes:
    """A grey RGB PNG of width x height pixels: a few hundred bytes for a 20000x2 strip."""
    row = b"\x00" + b"\x80\x80\x80" * width  # filter byte 0, then grey pixels
    idat = zlib.compress(row * height, 9)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


@functools.lru_cache(maxsize=1)
def pixel_jpeg() -> bytes:
    """A 1x1 white JPEG, as tracking pixels are served."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (255, 255, 255)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


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


def _html_not_image(image_id: str) -> bytes:
    return (
        "<!DOCTYPE html>\n<html><head><title>Image viewer</title></head><body>"
        f"<p>Log in to see image {html.escape(image_id)}.</p></body></html>\n"
    ).encode()


def _abort_with_reset(request: web.BaseRequest) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0), as a crashed or hostile peer does."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class DemoServer:
    """The demo image server for one world seed, run in a background thread on 127.0.0.1."""

    def __init__(self, seed: int, port: int = 0, options: ServerOptions | None = None) -> None:
        self.seed = seed
        self.options = options or ServerOptions()
        self._requested_port = port
        self.port = 0
        self._cache = ByteLRU(self.options.cache_bytes)
        self._inflight: dict[tuple[str, str], asyncio.Future] = {}
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

    async def _image(self, image_id: str, ext: str) -> bytes:
        """Encoded bytes of one image: from the cache, or rendered once in the thread pool."""
        key = (image_id, ext)
        data = self._cache.get(key)
        if data is not None:
            return data
        fut = self._inflight.get(key)
        if fut is None:
            fut = self._loop.run_in_executor(
                self._executor, scene.image_bytes, image_id, self.seed, ext
            )
            self._inflight[key] = fut
            fut.add_done_callback(functools.partial(self._rendered, key))
        # shield: a client that hangs up must not cancel a render that others wait for.
        return await asyncio.shield(fut)

    def _rendered(self, key: tuple[str, str], fut: asyncio.Future) -> None:
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

    # -- fault modes (one method per urls.FAULT_MODES entry) -----------------------------------

    async def _f_404(self, request, image_id, ext):
        return web.Response(status=404, text="not found\n")

    async def _f_429(self, request, image_id, ext):
        return web.Response(status=429, text="slow down\n", headers={"Retry-After": "1"})

    async def _f_429_once(self, request, image_id, ext):
        if self._first_time(request):
            return await self._f_429(request, image_id, ext)
        return await self._image_response(image_id, ext)

    async def _f_500(self, request, image_id, ext):
        return web.Response(status=500, text="internal server error\n")

    async def _f_503(self, request, image_id, ext):
        return web.Response(status=503, text="unavailable\n", headers={"Retry-After": "1"})

    async def _f_503_once(self, request, image_id, ext):
        if self._first_time(request):
            return await self._f_503(request, image_id, ext)
        return await self._image_response(image_id, ext)

    def _first_time(self, request: web.Request) -> bool:
        if request.path in self._seen_once:
            return False
        self._seen_once.add(request.path)
        return True

    async def _f_slow_first_byte(self, request, image_id, ext):
        await asyncio.sleep(self.options.slow_seconds)
        return await self._image_response(image_id, ext)

    async def _f_slow_drip(self, request, image_id, ext):
        data = await self._image(image_id, ext)
        resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPES[ext]})
        resp.content_length = len(data)
        await resp.prepare(request)
        step = max(1, self.options.drip_bytes)
        with self._peer_may_leave():
            for start in range(0, len(data), step):
                await resp.write(data[start : start + step])
                await asyncio.sleep(self.options.drip_interval)
            await resp.write_eof()
        return resp

    async def _f_reset(self, request, image_id, ext):
        data = await self._image(image_id, ext)
        resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPES[ext]})
        resp.content_length = len(data)
        await resp.prepare(request)
        with self._peer_may_leave():
            await resp.write(data[: len(data) // 2])
        _abort_with_reset(request)
        return resp

    async def _f_truncated(self, request, image_id, ext):
        data = await self._image(image_id, ext)
        resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPES[ext]})
        resp.content_length = len(data)
        resp.force_close()  # the connection ends with the short body: a clean FIN, no more bytes
        await resp.prepare(request)
        with self._peer_may_leave():
            await resp.write(data[: len(data) // 2])
        if request.transport is not None:
            request.transport.close()
        return resp

    async def _f_wrong_type(self, request, image_id, ext):
        data = await self._image(image_id, ext)
        return web.Response(body=data, headers={"Content-Type": "text/plain"})

    async def _f_html(self, request, image_id, ext):
        return web.Response(body=_html_not_image(image_id), headers={"Content-Type": "image/jpeg"})

    async def _f_oversized(self, request, image_id, ext):
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        # No Content-Length: only a cap while reading stops it. HTTP/1.0 has no chunked encoding,
        # so there the body simply runs until the connection closes.
        if request.version >= (1, 1):
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        block = b"\xff\xd8\xff\xe0" + bytes(64 * 1024 - 4)  # a JPEG start, then filler
        sent = 0
        with self._peer_may_leave():
            while sent < self.options.oversized_bytes:
                piece = block[: self.options.oversized_bytes - sent]
                await resp.write(piece)
                sent += len(piece)
            await resp.write_eof()
        return resp

    async def _f_bomb(self, request, image_id, ext):
        data = await self._loop.run_in_executor(self._executor, bomb_png, self.options.bomb_side)
        return web.Response(body=data, headers={"Content-Type": "image/png"})

    async def _f_redirect(self, request, image_id, ext):
        hop = _hop(request)
        if hop + 1 >= self.options.redirect_hops:
            return _found(request, f"/img/{image_id}.{ext}")
        return _found(request, f"{request.path}?hop={hop + 1}")

    async def _f_redirect_loop(self, request, image_id, ext):
        # Two URLs that point at each other, for ever.
        return _found(request, request.path if _hop(request) else f"{request.path}?hop=1")

    async def _f_redirect_private(self, request, image_id, ext):
        return web.Response(
            status=302, headers={"Location": f"http://10.0.0.1/img/{image_id}.{ext}"}
        )

    async def _f_pixel(self, request, image_id, ext):
        return web.Response(body=pixel_jpeg(), headers={"Content-Type": "image/jpeg"})

    async def _f_strip(self, request, image_id, ext):
        data = strip_png(self.options.strip_width, self.options.strip_height)
        return web.Response(body=data, headers={"Content-Type": "image/png"})

    async def _f_bad_status(self, request, image_id, ext):
        # Written on the socket by hand: aiohttp's own responses always have a valid status line.
        data = await self._image(image_id, ext)
        head = f"HTTP/1.1 2x0 OK\r\nContent-Type: {CONTENT_TYPES[ext]}\r\n"
        head += f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        if request.transport is not None:
            request.transport.write(head.encode() + data)
            request.transport.close()
        return web.Response()  # never sent: the connection is closed

    async def _f_noai(self, request, image_id, ext):
        return await self._image_response(image_id, ext, **{"X-Robots-Tag": "noai"})

    async def _f_noimageai(self, request, image_id, ext):
        return await self._image_response(image_id, ext, **{"X-Robots-Tag": "noimageai"})

    async def _f_ua_noai(self, request, image_id, ext):
        return await self._image_response(
            image_id, ext, **{"X-Robots-Tag": f"{USER_AGENT_TOKEN}: noai"}
        )


def _hop(request: web.Request) -> int:
    try:
        return int(request.query.get("hop", "0"))
    except ValueError:
        return 0


def _found(request: web.Request, path_qs: str) -> web.Response:
    """A 302 to an absolute URL on the host the client asked for."""
    return web.Response(
        status=302, headers={"Location": f"{request.scheme}://{request.host}{path_qs}"}
    )


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


class ServerProcess:
    """Handle on a demo server running in a child process (its own GIL, for benchmarks)."""

    def __init__(self, proc: subprocess.Popen, port: int, seed: int) -> None:
        self.proc = proc
        self.port = port
        self.seed = seed

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:{port}``."""
        return urls.base_url(self.port)

    def url(self, image_id: int | str, ext: str, fault: str | None = None) -> str:
        """Absolute URL of an image on this server, optionally through a fault mode."""
        return urls.image_url(self.port, image_id, ext, fault)

    def stats(self) -> dict:
        """The child's :meth:`DemoServer.stats`, read over HTTP."""
        with urllib.request.urlopen(self.base_url + STATS_PATH, timeout=10) as r:
            return json.loads(r.read())


@contextlib.contextmanager
def serve_process(seed: int, port: int = 0, **options) -> Iterator[ServerProcess]:
    """Like :func:`serve`, but in a child process (``python -m pipeline.demo_world.server``)."""
    ServerOptions.from_kwargs(**options)  # bad options fail here, not in the child
    cmd = [
        sys.executable,
        "-m",
        "pipeline.demo_world.server",
        "--seed",
        str(seed),
        "--port",
        str(port),
    ]
    for name, value in options.items():
        if name == "prerender":
            ids = (".".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in value)
            cmd += ["--prerender-ids", ",".join(ids)]
        else:
            cmd += ["--" + name.replace("_", "-"), str(value)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # printed once the socket is bound (and prerendered)
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if m is None:
            raise RuntimeError(f"demo server process did not start (exit code {proc.wait()})")
        yield ServerProcess(proc, int(m.group(1)), seed)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.demo_world.server",
        description="Serve the demo images on 127.0.0.1 in the foreground until interrupted.",
    )
    p.add_argument("--seed", type=int, default=0, help="world seed (ignored with --world)")
    p.add_argument("--port", type=int, default=None, help="default: the manifest's, else 0 (free)")
    p.add_argument(
        "--world", default=None, help="a generated world: serve its manifest's seed and port"
    )
    p.add_argument("--prerender", type=int, default=0, help="render images 0..N-1 before serving")
    p.add_argument(
        "--prerender-ids", default="", help="ids or id.ext, comma-separated, to render first"
    )
    # One flag per numeric option: --slow-seconds, --drip-interval, --oversized-bytes, ...
    for f in fields(ServerOptions):
        if f.name != "prerender":
            p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    return p


def main(argv: list[str] | None = None) -> int:
    """Serve the demo images in the foreground until interrupted (SIGINT or SIGTERM)."""
    args = _parser().parse_args(argv)
    options = {
        f.name: getattr(args, f.name) for f in fields(ServerOptions) if f.name != "prerender"
    }
    ids = [tuple(i.split(".", 1)) if "." in i else i for i in args.prerender_ids.split(",") if i]
    options["prerender"] = tuple(ids) + tuple(range(args.prerender))
    if args.world:
        ctx = serve_world(args.world, args.port, **options)
    else:
        ctx = serve(args.seed, args.port or 0, **options)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly on SIGTERM too
    try:
        with ctx as server:
            print(f"serving demo images of seed {server.seed} on {server.base_url}", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
