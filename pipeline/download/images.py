"""Verify, decode, orient, flatten, resize and re-encode one downloaded image (Pillow).

Decoding is the main CPU cost of a download, so it is kept cheap: JPEGs are decoded at a reduced
DCT scale with ``Image.draft`` (1/2, 1/4 or 1/8 of full size, never below the target), and
downscaling uses Pillow's box filter, which is area averaging (img2dataset's ``INTER_AREA``) and
about 30% cheaper than the antialiased bilinear filter. ``reducing_gap`` (an integer-factor
``reduce`` before resampling) was measured and left out: with JPEG draft doing the large factors,
it saved under 1% of an image's cost on the demo's web-like sizes.
Pillow releases the GIL while decoding, resizing and encoding, so the worker threads of one
process use several cores. Resize modes follow img2dataset: ``keep_ratio`` (shorter side = size),
``center_crop`` (then crop the centre square), ``border`` (longer side = size, padded white to a
square) and ``no``.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

EXT_TO_PIL = {"jpg": "JPEG", "webp": "WEBP", "png": "PNG"}
ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ImageOptions:
    """How images are checked and re-encoded."""

    image_size: int = 256
    resize_mode: str = "keep_ratio"
    output_format: str = "jpg"
    quality: int = 90
    min_image_size: int = 0
    max_aspect_ratio: float = 0.0  # 0 = no limit
    max_pixels: int = 50_000_000
    use_draft: bool = True  # JPEG DCT scaling; off only to measure what it saves
    threads: int = 0  # extra threads for process_image (0: run on the event loop thread)


@dataclass(frozen=True)
class ImageResult:
    """The outcome of processing one image: encoded bytes and sizes, or a status and reason."""

    status: str  # success | failed_to_download | failed_to_resize
    reason: str | None = None
    data: bytes | None = None
    width: int | None = None
    height: int | None = None
    original_width: int | None = None
    original_height: int | None = None
    exif: str | None = None


def _fail(status: str, reason: str, size: tuple[int, int] | None = None) -> ImageResult:
    w, h = size if size else (None, None)
    return ImageResult(status, reason, original_width=w, original_height=h)


def target_size(width: int, height: int, size: int, mode: str) -> tuple[int, int]:
    """Size after resizing (before any crop or border), like img2dataset's albumentations calls."""
    if mode == "no":
        return width, height
    side = min(width, height) if mode in ("keep_ratio", "center_crop") else max(width, height)
    scale = size / side
    return max(1, round(width * scale)), max(1, round(height * scale))


def _exif_json(img: Image.Image) -> tuple[str, int]:
    """EXIF tags as a JSON object of strings (img2dataset's ``exif`` column) and the orientation."""
    try:
        exif = img.getexif()
    except Exception:  # malformed EXIF must not fail an otherwise good image
        return "{}", 1
    if not exif:
        return "{}", 1
    from PIL import ExifTags

    tags = {}
    for tag, value in exif.items():
        if isinstance(value, bytes):
            continue
        tags[f"Image {ExifTags.TAGS.get(tag, tag)}"] = str(value).strip()
    orientation = exif.get(ORIENTATION_TAG, 1)
    return json.dumps(tags, sort_keys=True), orientation if isinstance(orientation, int) else 1


def _open(data: bytes, opts: ImageOptions) -> Image.Image | ImageResult:
    """Open and verify the header; a bad body or a decompression bomb becomes a failure."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return _fail("failed_to_resize", "decompression_bomb")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return _fail("failed_to_download", "not_an_image")
    w, h = img.size
    if w < 1 or h < 1:
        return _fail("failed_to_download", "not_an_image")
    if w * h > opts.max_pixels:
        return _fail("failed_to_resize", "decompression_bomb", (w, h))
    return img


def _check_shape(w: int, h: int, opts: ImageOptions) -> str | None:
    if opts.min_image_size and min(w, h) < opts.min_image_size:
        return "image_too_small"
    if opts.max_aspect_ratio and max(w, h) / min(w, h) > opts.max_aspect_ratio:
        return "aspect_ratio_too_large"
    return None


def _flatten(img: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white (as img2dataset does)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def _resize(img: Image.Image, opts: ImageOptions) -> Image.Image:
    size, mode = opts.image_size, opts.resize_mode
    w, h = img.size
    tw, th = target_size(w, h, size, mode)
    if (tw, th) != (w, h):
        # Downscale: area averaging (box), like img2dataset's INTER_AREA; upscale: lanczos.
        resample = Image.Resampling.BOX if tw < w else Image.Resampling.LANCZOS
        img = img.resize((tw, th), resample)
    if mode == "center_crop" and (tw, th) != (size, size):
        left, top = (tw - size) // 2, (th - size) // 2
        img = img.crop((left, top, left + size, top + size))
    elif mode == "border" and (tw, th) != (size, size):
        canvas = Image.new("RGB", (size, size), (255, 255, 255))
        canvas.paste(img, ((size - tw) // 2, (size - th) // 2))
        img = canvas
    return img


def encode(img: Image.Image, fmt: str, quality: int) -> bytes:
    """Encode RGB pixels as jpg, webp or png bytes."""
    buf = io.BytesIO()
    if fmt == "jpg":
        img.save(buf, "JPEG", quality=quality)
    elif fmt == "webp":
        img.save(buf, "WEBP", quality=quality, method=2)
    else:
        img.save(buf, "PNG", compress_level=3)
    return buf.getvalue()


def process_image(data: bytes, opts: ImageOptions) -> ImageResult:
    """Decode ``data``, apply orientation, flatten alpha, filter, resize and encode."""
    img = _open(data, opts)
    if isinstance(img, ImageResult):
        return img
    ow, oh = img.size
    exif, orientation = _exif_json(img)
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: width and height swap
        ow, oh = oh, ow
    problem = _check_shape(ow, oh, opts)
    if problem:
        return _fail("failed_to_resize", problem, (ow, oh))
    try:
        if opts.use_draft and img.format == "JPEG" and opts.resize_mode != "no":
            # Decode at the smallest DCT scale that is still >= the resize target.
            tw, th = target_size(img.size[0], img.size[1], opts.image_size, opts.resize_mode)
            img.draft("RGB", (tw, th))
        img.load()
        if orientation != 1:
            img = ImageOps.exif_transpose(img)
        out = _resize(_flatten(img), opts)
        encoded = encode(out, opts.output_format, opts.quality)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        reason = "truncated_image" if "truncated" in str(e).lower() else "decode_error"
        return _fail("failed_to_resize", reason, (ow, oh))
    except MemoryError:
        return _fail("failed_to_resize", "out_of_memory", (ow, oh))
    return ImageResult("success", None, encoded, out.size[0], out.size[1], ow, oh, exif)
