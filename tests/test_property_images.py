"""Property tests of the image path: any body a server sends (random sizes, aspect ratios, modes,
formats, EXIF, truncations, flipped bytes) ends as a named outcome within a bounded memory.

Each case runs in a child process under an address-space limit (:mod:`tests.hostile_worker`):
an image that made the resize allocate gigabytes fails the case instead of the machine.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.demo_world.hostile_bodies import bomb_png, pixel_jpeg, strip_png
from pipeline.download import images

pytestmark = pytest.mark.timeout(300)

# A case may use this much memory above its starting RSS: a few copies of the largest source
# drawn here (2M pixels, 4 bytes each) and of the largest output; the upscaled strip that this
# tier exists for needed 2.5 GB.
PEAK_MB = 160
MAX_SOURCE_PIXELS = 2_000_000
FORMAT_MODES = {
    "JPEG": ("L", "RGB", "CMYK"),
    "PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I"),
    "WEBP": ("RGB", "RGBA"),
    "GIF": ("L", "P"),
    "BMP": ("1", "L", "P", "RGB"),
    "TIFF": ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"),
}
FORMAT_MAX_SIDE = {"JPEG": 65_500, "WEBP": 16_383, "GIF": 65_535}
FILTERS_OFF = {"min_image_size": 0, "max_aspect_ratio": 0}
CI = settings(
    max_examples=250,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def sizes(draw) -> tuple[int, int]:
    """Ordinary sizes, tiny ones, and long strips either way round, all under 2M pixels."""
    kind = draw(st.sampled_from(["ordinary", "tiny", "strip"]))
    if kind == "ordinary":
        w, h = draw(st.integers(16, 1600)), draw(st.integers(16, 1200))
    elif kind == "tiny":
        w, h = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    else:
        w, h = draw(st.integers(2_000, 70_000)), draw(st.integers(1, 4))
    if draw(st.booleans()):
        w, h = h, w
    return w, h


@st.composite
def bodies(draw) -> bytes:
    """An encoded image, perhaps with EXIF, then perhaps truncated or with bytes flipped."""
    fmt = draw(st.sampled_from(sorted(FORMAT_MODES)))
    mode = draw(st.sampled_from(FORMAT_MODES[fmt]))
    w, h = draw(sizes())
    limit = FORMAT_MAX_SIDE.get(fmt, 2**31)
    w, h = min(w, limit), min(h, limit)
    colour = draw(st.integers(0, 255))
    img = Image.new(mode, (w, h), colour if mode not in ("RGB", "RGBA", "CMYK") else None)
    if mode in ("RGB", "RGBA", "CMYK"):
        img = Image.new(mode, (w, h), tuple(draw(st.integers(0, 255)) for _ in mode))
    kwargs = {}
    if fmt in ("JPEG", "PNG", "WEBP", "TIFF") and draw(st.booleans()):
        exif = Image.Exif()
        exif[images.ORIENTATION_TAG] = draw(st.sampled_from([1, 2, 3, 5, 6, 8, 0, 9, 65535]))
        kwargs["exif"] = exif.tobytes()
        if draw(st.booleans()):  # junk after a valid header: a malformed EXIF block
            kwargs["exif"] = kwargs["exif"][:8] + draw(st.binary(min_size=1, max_size=64))
    buf = io.BytesIO()
    try:
        img.save(buf, fmt, **kwargs)
    except (SyntaxError, ValueError, OSError):  # an encoder that refuses junk EXIF: none then
        buf = io.BytesIO()
        img.save(buf, fmt)
    data = buf.getvalue()
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    elif damage == "flip":
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        data = bytes(data)
    return data


options = st.fixed_dictionaries(
    {
        "resize_mode": st.sampled_from(["keep_ratio", "center_crop", "border", "no"]),
        "output_format": st.sampled_from(["jpg", "webp", "png"]),
        "image_size": st.sampled_from([64, 256]),
        "min_image_size": st.sampled_from([0, 64]),
        "max_aspect_ratio": st.sampled_from([0.0, 4.0]),
        "max_pixels": st.sampled_from([50_000_000, 1_000_000]),
    }
)


def _check(result: dict, opts: images.ImageOptions) -> None:
    """A named outcome within the memory bound, and an output the options allow."""
    assert "error" not in result, result.get("traceback", result.get("error"))
    assert result["peak_mb"] <= PEAK_MB, result
    out = result["outcome"]
    if out["status"] != "success":
        assert out["reason"] in images.REASONS and out["status"] == images.REASONS[out["reason"]]
        assert out["reason"] != "out_of_memory", out  # the address-space limit was reached
        return
    (w, h), (ow, oh) = out["size"], out["original"]
    assert out["nbytes"] > 0 and min(ow, oh) >= opts.min_image_size
    assert max(w, h) <= images.FORMAT_MAX_SIDE[opts.output_format]
    if opts.max_aspect_ratio:
        assert max(ow, oh) / min(ow, oh) <= opts.max_aspect_ratio
    if opts.resize_mode == "no":
        assert (w, h) == (ow, oh) and w * h <= opts.max_pixels
    else:
        assert w * h <= images.output_limit(opts)


@CI
@given(data=bodies(), opts=options)
@example(data=strip_png(20_000, 2), opts={**FILTERS_OFF, "resize_mode": "keep_ratio"})
@example(data=strip_png(60_000, 1), opts={**FILTERS_OFF, "resize_mode": "center_crop"})
@example(data=strip_png(1, 60_000), opts={**FILTERS_OFF, "resize_mode": "border"})
@example(data=strip_png(70_000, 1), opts={**FILTERS_OFF, "resize_mode": "no"})
@example(data=bomb_png(30_000), opts={})
@example(data=pixel_jpeg(), opts={})
def test_any_body_ends_named_within_bounded_memory(worker, data, opts):
    _check(worker.run("image", data, options=opts), images.ImageOptions(**opts))


@settings(CI, max_examples=40)
@given(
    data=st.binary(max_size=4096),
    prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"]),
)
def test_random_bytes_are_not_an_image_or_a_named_failure(worker, data, prefix):
    _check(worker.run("image", prefix + data), images.ImageOptions())
