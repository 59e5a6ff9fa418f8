"""Hostile bodies the demo server sends on purpose: a decompression bomb, a long strip that would
upscale to gigabytes, a tracking pixel, an HTML page served as an image."""

from __future__ import annotations

import functools
import html
import io
import struct
import zlib


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


def _html_not_image(image_id: str) -> bytes:
    return (
        "<!DOCTYPE html>\n<html><head><title>Image viewer</title></head><body>"
        f"<p>Log in to see image {html.escape(image_id)}.</p></body></html>\n"
    ).encode()
