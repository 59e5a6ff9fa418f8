"""Verify, decode, orient, flatten, resize and re-encode one downloaded image (Pillow).

Decoding is the main CPU cost of a download, so it is kept cheap: JPEGs are decoded at a reduced
DCT scale with ``Image.draft`` (1/2, 1/4 or 1/8 of full size, never below the target), and
downscaling uses Pillow's box filter, which is area averaging (img2dataset's ``INTER_AREA``) and
cheaper than the antialiased bilinear filter. ``reducing_gap`` (an integer-factor ``reduce``
before resampling) was measured and left out: with JPEG draft doing the large factors, it saved
next to nothing on web-like sizes.
Pillow releases the GIL while decoding, resizing and encoding, so the worker threads of one
process use several cores. Resize modes follow img2dataset: ``keep_ratio`` (shorter side = size),
``center_crop`` (then crop the centre square), ``border`` (longer side = size, padded white to a
square) and ``no``.

Every image's cost is bounded before any pixel is decoded or produced, whatever a server sends:
the source by ``max_pixels``, the output of ``keep_ratio`` by :func:`output_limit` (a 20000x2
strip would otherwise upscale to 2,560,000x256), ``center_crop`` resamples only the source
region its square shows, and no output exceeds its format's largest side. Only the raster
formats of the web are opened (:data:`WEB_FORMATS`): Pillow's other plugins never see a body
(EPS would run Ghostscript on it).
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

EXT_TO_PIL = {"jpg": "JPEG", "webp": "WEBP", "png": "PNG"}
ORIENTATION_TAG = 0x0112
# The formats a body may be decoded as (Pillow names; MPO, a JPEG variant, comes with JPEG).
# Not TIFF: browsers do not show it, and libtiff's CCITT and JPEG decoders corrupt the heap (the
# process aborts) on some damaged files.
WEB_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "ICO", "AVIF")
# The largest side each output format can encode (libjpeg's JPEG_MAX_DIMENSION, WebP's 14 bits).
FORMAT_MAX_SIDE = {"jpg": 65_500, "webp": 16_383, "png": 2**31 - 1}
# keep_ratio output holds at most this many target squares (a 16:1 strip), or max_aspect_ratio
# squares when that is larger: the bound that makes an upscaled strip a failure, not gigabytes.
OUTPUT_SQUARES = 16
# What Pillow raises on bad bytes (AVIF's decoder: RuntimeError; an EXIF/TIFF tag of the wrong
# type: TypeError), besides its usual OSError and ValueError.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, RuntimeError, TypeError)
# Every reason process_image can record, with its status (the README's table lists them).
REASONS = {
    "not_an_image": "failed_to_download",
    "decompression_bomb": "failed_to_resize",
    "image_too_small": "failed_to_resize",
    "aspect_ratio_too_large": "failed_to_resize",
    "output_too_large": "failed_to_resize",
    "truncated_image": "failed_to_resize",
    "decode_error": "failed_to_resize",
    "encode_error": "failed_to_resize",
    "out_of_memory": "failed_to_resize",
}


@dataclass(frozen=True)
class ImageOptions:
    """How images are checked and re-encoded."""

    image_size: int = 256
    resize_mode: str = "keep_ratio"
    output_format: str = "jpg"
    quality: int = 90
    min_image_size: int = 64  # tracking pixels, spacers and icons are below it
    max_aspect_ratio: float = 4.0  # banners and strips are above it; 0 = no limit
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


def _fail(reason: str, size: tuple[int, int] | None = None) -> ImageResult:
    w, h = size if size else (None, None)
    return ImageResult(REASONS[reason], reason, original_width=w, original_height=h)


def target_size(width: int, height: int, size: int, mode: str) -> tuple[int, int]:
    """Size after resizing (before any crop or border), like img2dataset's albumentations calls."""
    if mode == "no":
        return width, height
    side = min(width, height) if mode in ("keep_ratio", "center_crop") else max(width, height)
    scale = size / side
    return max(1, round(width * scale)), max(1, round(height * scale))


def output_size(width: int, height: int, opts: ImageOptions) -> tuple[int, int]:
    """Size of the encoded output (after any crop or border)."""
    if opts.resize_mode in ("center_crop", "border"):
        return opts.image_size, opts.image_size
    return target_size(width, height, opts.image_size, opts.resize_mode)


def output_limit(opts: ImageOptions) -> int:
    """The most pixels a resize may produce: OUTPUT_SQUARES (or max_aspect_ratio) target squares."""
    return int(max(OUTPUT_SQUARES, opts.max_aspect_ratio) * opts.image_size**2)


def output_problem(width: int, height: int, opts: ImageOptions) -> str | None:
    """``output_too_large`` if the output of a (width x height) source would break a bound."""
    tw, th = output_size(width, height, opts)
    if max(tw, th) > FORMAT_MAX_SIDE[opts.output_format]:
        return "output_too_large"
    if opts.resize_mode != "no" and tw * th > output_limit(opts):
        return "output_too_large"
    return None


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
            img = Image.open(io.BytesIO(data), formats=WEB_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return _fail("decompression_bomb")
    except (UnidentifiedImageError, *DECODE_ERRORS):
        return _fail("not_an_image")
    w, h = img.size
    if w < 1 or h < 1:
        return _fail("not_an_image")
    if w * h > opts.max_pixels:
        return _fail("decompression_bomb", (w, h))
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


def _crop_box(w: int, h: int, size: int) -> tuple[float, float, float, float]:
    """The source region that center_crop's square shows (img2dataset: resize, then crop)."""
    tw, th = target_size(w, h, size, "center_crop")
    sx, sy = w / tw, h / th
    left, top = (tw - size) // 2, (th - size) // 2
    return left * sx, top * sy, (left + size) * sx, (top + size) * sy


def _resize(img: Image.Image, opts: ImageOptions) -> Image.Image:
    size, mode = opts.image_size, opts.resize_mode
    w, h = img.size
    tw, th = target_size(w, h, size, mode)
    # Downscale: area averaging (box), like img2dataset's INTER_AREA; upscale: lanczos.
    resample = Image.Resampling.BOX if tw < w else Image.Resampling.LANCZOS
    if mode == "center_crop":
        # Resample only the square's source region: the same pixels as resizing the whole image
        # and cropping, without the whole resized image (a long strip's is gigabytes).
        if (w, h) != (size, size):
            img = img.resize((size, size), resample, box=_crop_box(w, h, size))
        return img
    if (tw, th) != (w, h):
        img = img.resize((tw, th), resample)
    if mode == "border" and (tw, th) != (size, size):
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
    problem = _check_shape(ow, oh, opts) or output_problem(ow, oh, opts)
    if problem:
        return _fail(problem, (ow, oh))
    try:
        if opts.use_draft and img.format == "JPEG" and opts.resize_mode != "no":
            # Decode at the smallest DCT scale that is still >= the resize target.
            tw, th = target_size(img.size[0], img.size[1], opts.image_size, opts.resize_mode)
            img.draft("RGB", (tw, th))
        img.load()
        if orientation != 1:
            img = ImageOps.exif_transpose(img)
        out = _resize(_flatten(img), opts)
    except Image.DecompressionBombError:  # a frame or tile larger than the header said
        return _fail("decompression_bomb", (ow, oh))
    except DECODE_ERRORS as e:
        return _fail(
            "truncated_image" if "truncated" in str(e).lower() else "decode_error", (ow, oh)
        )
    except MemoryError:
        return _fail("out_of_memory", (ow, oh))
    try:
        encoded = encode(out, opts.output_format, opts.quality)
    except (OSError, ValueError):  # the encoder refused these pixels: not a decoding fault
        return _fail("encode_error", (ow, oh))
    except MemoryError:
        return _fail("out_of_memory", (ow, oh))
    return ImageResult("success", None, encoded, out.size[0], out.size[1], ow, oh, exif)
