"""The demo server's fault modes: one ``_f_<mode>`` method per :data:`urls.FAULT_MODES` entry.

:class:`FaultModes` is mixed into :class:`pipeline.demo_world.server.DemoServer`, whose image
rendering (``_image``, ``_image_response``), options, per-URL state and streaming guard
(``_peer_may_leave``) the handlers use; each handler answers one request the way a hostile or
broken server would.
"""

from __future__ import annotations

import asyncio
import socket
import struct

from aiohttp import web

from pipeline.demo_world.hostile_bodies import _html_not_image, bomb_png, pixel_jpeg, strip_png

CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
USER_AGENT_TOKEN = "wit-builder"  # the product token of the project's downloader


def _abort_with_reset(request: web.BaseRequest) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0), as a crashed or hostile peer does."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


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


class FaultModes:
    """Fault handlers, ``async def _f_<mode>(self, request, image_id, ext)``."""

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
