"""Copies of demo images as they spread over the web: the same bytes, re-encoded, resized or
trimmed, each deterministic (the server draws a copy only from its name, id and the seed).

The copies stay within what a near-duplicate filter is meant to find: JPEG at quality 50 or
more, WebP at 60 or more, 0.5x to 1.5x the size, at most 2% trimmed off each side. The names
are :data:`pipeline.demo_world.urls.VARIANTS`.
"""

from __future__ import annotations

from PIL import Image

from pipeline.demo_world import scene, urls


def _scale(variant: str) -> float:
    return int(variant.removeprefix("scale")) / 100 if variant.startswith("scale") else 1.0


def _trim(variant: str) -> float:
    return int(variant.removeprefix("trim")) / 100 if variant.startswith("trim") else 0.0


def _quality(variant: str) -> int | None:
    return int(variant[4:]) if variant[:4] in ("jpeg", "webp") else None


def size(width: int, height: int, variant: str) -> tuple[int, int]:
    """Width and height of the copy made by ``variant`` of an image of this size."""
    w, h = round(width * _scale(variant)), round(height * _scale(variant))
    dx, dy = round(_trim(variant) * w), round(_trim(variant) * h)
    return w - 2 * dx, h - 2 * dy


def transform(img: Image.Image, variant: str) -> Image.Image:
    """The pixels of the copy (re-encodings change no pixels here, only their encoding)."""
    f, t = _scale(variant), _trim(variant)
    if f != 1.0:
        img = img.resize((round(img.width * f), round(img.height * f)), Image.BICUBIC)
    if t:
        dx, dy = round(t * img.width), round(t * img.height)
        img = img.crop((dx, dy, img.width - dx, img.height - dy))
    return img


def image_bytes(image_id: int | str, seed: int, variant: str, ext: str) -> bytes:
    """The encoded copy made by ``variant`` of image ``image_id`` in format ``ext`` (a
    re-encoding's own format wins); ``copy`` gives exactly :func:`scene.image_bytes`."""
    if variant not in urls.VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    ext = urls.variant_ext(variant, ext)
    if variant == "copy":
        return scene.image_bytes(image_id, seed, ext)
    img = scene.render(scene.scene_for(image_id, seed), image_id, seed)
    quality = _quality(variant)
    if quality is None:
        return scene.encode(transform(img, variant), ext)
    return scene.encode(img, ext, quality)
