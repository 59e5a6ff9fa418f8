"""URLs of the demo image server: one scheme shared by the generator, the server and the tests.

``http://127.0.0.1:{port}/img/{image_id}.{ext}`` serves the image of :func:`scene.scene_for`;
``http://127.0.0.1:{port}/f/{mode}/{image_id}.{ext}`` serves the same id through a fault mode;
``http://127.0.0.1:{port}/v/{variant}/{image_id}.{ext}`` serves a copy of it made by one of
:data:`VARIANTS` (the planted duplicates, :mod:`pipeline.demo_world.variants`).
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

VARIANTS = (
    "copy",  # the same bytes as /img/{id}.{ext}: the image at a second URL
    "jpeg50",  # re-encoded as JPEG at quality 50 (.jpg only)
    "jpeg80",
    "webp60",  # re-encoded as WebP at quality 60 (.webp only)
    "webp90",
    "scale50",  # resized to 50% of its width and height
    "scale75",
    "scale150",
    "trim1",  # 1% trimmed off every side
    "trim2",
)

_PATH = re.compile(
    r"^/(?:img|f/(?P<mode>[a-z0-9_]+))/(?P<id>[A-Za-z0-9_-]+)\.(?P<ext>jpg|png|webp)$"
)


_VARIANT_PATH = re.compile(
    r"^/v/(?P<variant>[a-z0-9]+)/(?P<id>[A-Za-z0-9_-]+)\.(?P<ext>jpg|png|webp)$"
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


def variant_ext(variant: str, ext: str) -> str:
    """The extension of a copy made by ``variant`` of an image in ``ext``: a re-encoding's own
    format, else the original's."""
    return {"jpeg": "jpg", "webp": "webp"}.get(variant[:4], ext)


def variant_url(port: int, image_id: int | str, ext: str, variant: str) -> str:
    """Absolute URL of a copy made by ``variant`` (one of :data:`VARIANTS`) of an image in
    ``ext``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    return f"{base_url(port)}/v/{variant}/{image_id}.{variant_ext(variant, ext)}"


def parse_variant_path(path: str) -> tuple[str, str, str] | None:
    """``(variant, image_id, ext)`` for a copy's path, or None if it is not one (an unknown
    variant, or a re-encoding under another format's extension)."""
    m = _VARIANT_PATH.match(path)
    if not m or m.group("variant") not in VARIANTS:
        return None
    if variant_ext(m.group("variant"), m.group("ext")) != m.group("ext"):
        return None
    return m.group("variant"), m.group("id"), m.group("ext")
