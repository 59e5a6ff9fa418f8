"""URLs of the demo image server: one scheme shared by the generator, the server and the tests.

``http://127.0.0.1:{port}/img/{image_id}.{ext}`` serves the image of :func:`scene.scene_for`;
``http://127.0.0.1:{port}/f/{mode}/{image_id}.{ext}`` serves the same id through a fault mode.
"""

from __future__ import annotations

import re

HOST = "127.0.0.1"

FAULT_MODES = (
    "404",  # not found
    "429",  # too many requests, always, with Retry-After: 1
    "429once",  # 429 with Retry-After on the first request of this URL, then the image
    "500",
    "503",  # service unavailable, always, with Retry-After: 1
    "503once",  # 503 on the first request of this URL, then the image
    "slow_first_byte",  # headers only after a long delay
    "slow_drip",  # body trickles a few bytes at a time
    "reset",  # connection reset mid-response
    "truncated",  # Content-Length larger than the body sent
    "wrong_type",  # image bytes served as text/plain
    "html",  # an HTML page with status 200 and Content-Type: image/jpeg
    "oversized",  # a body far larger than any sane image (streams until the client stops)
    "bomb",  # a small PNG that declares a huge pixel count (decompression bomb)
    "redirect",  # a chain of 302s that ends at the real image
    "redirect_loop",  # 302s that never end
    "redirect_private",  # 302 to a private address (10.0.0.1), which a safe client refuses
    "noai",  # the image with X-Robots-Tag: noai
    "noimageai",  # the image with X-Robots-Tag: noimageai
    "ua_noai",  # the image with X-Robots-Tag scoped to the project's user agent: "wit-builder: noai"
    "pixel",  # a 1x1 JPEG: a tracking pixel, a valid image that is junk
    "strip",  # a tiny PNG of 20000x2 pixels: resized to a 256 px short side it would be 2.5 GB
    "bad_status",  # a malformed HTTP status line ("HTTP/1.1 2x0 OK") before a JPEG
)

_PATH = re.compile(
    r"^/(?:img|f/(?P<mode>[a-z0-9_]+))/(?P<id>[A-Za-z0-9_-]+)\.(?P<ext>jpg|png|webp)$"
)


def base_url(port: int) -> str:
    return f"http://{HOST}:{port}"


def image_url(port: int, image_id: int | str, ext: str, fault: str | None = None) -> str:
    """Absolute URL of an image on the demo server, optionally through a fault mode."""
    if fault is None:
        return f"{base_url(port)}/img/{image_id}.{ext}"
    if fault not in FAULT_MODES:
        raise ValueError(f"unknown fault mode {fault!r}")
    return f"{base_url(port)}/f/{fault}/{image_id}.{ext}"


def parse_path(path: str) -> tuple[str | None, str, str] | None:
    """``(fault or None, image_id, ext)`` for a server path, or None if it is not an image path."""
    m = _PATH.match(path)
    if not m:
        return None
    return m.group("mode"), m.group("id"), m.group("ext")
