"""Hostile image bodies: every resize is bounded before it runs, junk is dropped by default, and
every failure carries the reason that names it."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image, ImageChops, ImageStat

from pipeline.config import ConfigError, build_section
from pipeline.demo_world import scene
from pipeline.demo_world.hostile_bodies import pixel_jpeg, strip_png
from pipeline.download import images
from pipeline.download.config import DownloadConfig

pytestmark = pytest.mark.timeout(60)

NO_FILTERS = dict(min_image_size=0, max_aspect_ratio=0)


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _gradient(w: int, h: int) -> Image.Image:
    """An RGB image whose pixels differ, so that a wrong crop or scale shows."""
    x = Image.linear_gradient("L").resize((w, h))
    y = x.transpose(Image.Transpose.ROTATE_90).resize((w, h))
    return Image.merge("RGB", (x, y, ImageChops.invert(x)))


def test_upscaling_bomb_is_refused_before_any_pixel_is_produced():
    data = strip_png(20_000, 2)
    assert len(data) < 1024
    res = images.process_image(data, images.ImageOptions(**NO_FILTERS))
    assert (res.status, res.reason) == ("failed_to_resize", "output_too_large")
    assert (res.original_width, res.original_height) == (20_000, 2)


def test_output_bound_follows_the_aspect_filter_and_the_target_side():
    opts = images.ImageOptions(**NO_FILTERS)
    assert images.output_limit(opts) == 16 * 256 * 256
    # 16:1 is the widest keep_ratio output without an aspect filter; wider is refused.
    assert images.process_image(_encode(_gradient(1600, 100), "PNG"), opts).status == "success"
    wide = images.process_image(_encode(_gradient(1700, 100), "PNG"), opts)
    assert wide.reason == "output_too_large"
    # A looser aspect filter widens the bound with it: what it admits can be resized.
    loose = images.ImageOptions(min_image_size=0, max_aspect_ratio=20)
    res = images.process_image(_encode(_gradient(1700, 100), "PNG"), loose)
    assert (res.status, res.width, res.height) == ("success", 4352, 256)


def test_center_crop_of_a_long_strip_is_one_square_not_the_whole_strip():
    opts = images.ImageOptions(resize_mode="center_crop", **NO_FILTERS)
    res = images.process_image(strip_png(60_000, 2), opts)
    assert (res.status, res.width, res.height) == ("success", 256, 256)


@pytest.mark.parametrize("size", [(800, 600), (333, 1000), (300, 300), (100, 90)])
def test_center_crop_shows_the_pixels_of_resize_then_crop(size):
    src = _gradient(*size)
    opts = images.ImageOptions(resize_mode="center_crop", output_format="png", **NO_FILTERS)
    ours = Image.open(io.BytesIO(images.process_image(_encode(src, "PNG"), opts).data))
    tw, th = images.target_size(*size, 256, "center_crop")
    resample = Image.Resampling.BOX if tw < size[0] else Image.Resampling.LANCZOS
    left, top = (tw - 256) // 2, (th - 256) // 2
    whole = src.resize((tw, th), resample).crop((left, top, left + 256, top + 256))
    diff = ImageStat.Stat(ImageChops.difference(ours.convert("RGB"), whole)).mean
    assert max(diff) < 2.0  # the same region, resampled once: rounding at the edges only


@pytest.mark.parametrize(
    "fmt, size, ok",
    [("jpg", (65_500, 1), True), ("jpg", (65_501, 1), False), ("webp", (16_384, 2), False)],
)
def test_output_beyond_the_format_limit_is_named_not_a_decode_error(fmt, size, ok):
    opts = images.ImageOptions(resize_mode="no", output_format=fmt, **NO_FILTERS)
    res = images.process_image(_encode(Image.new("RGB", size), "PNG"), opts)
    assert (res.status == "success") is ok
    if not ok:
        assert (res.status, res.reason) == ("failed_to_resize", "output_too_large")


def test_tracking_pixel_and_strips_are_dropped_by_default():
    res = images.process_image(pixel_jpeg(), images.ImageOptions())
    assert (res.status, res.reason) == ("failed_to_resize", "image_too_small")
    banner = images.process_image(_encode(_gradient(728, 90), "PNG"), images.ImageOptions())
    assert banner.reason == "aspect_ratio_too_large"
    kept = images.process_image(_encode(_gradient(1024, 256), "PNG"), images.ImageOptions())
    assert kept.status == "success"  # a 4:1 panorama is kept
    off = images.process_image(pixel_jpeg(), images.ImageOptions(**NO_FILTERS))
    assert (off.status, off.width, off.height) == ("success", 256, 256)


def test_default_filters_keep_every_demo_image_and_match_the_config():
    cfg = DownloadConfig()
    opts = images.ImageOptions()
    assert (cfg.min_image_size, cfg.max_aspect_ratio) == (
        opts.min_image_size,
        opts.max_aspect_ratio,
    )
    assert (cfg.min_image_size, cfg.max_aspect_ratio) == (64, 4.0)
    for w, h in scene.SIZES:
        data = _encode(_gradient(w, h), "JPEG")
        assert images.process_image(data, opts).status == "success", (w, h)


def test_aspect_ratio_between_zero_and_one_is_a_configuration_error():
    with pytest.raises(ConfigError, match="--max-aspect-ratio"):
        build_section("download", {"max_aspect_ratio": 0.5})
    assert build_section("download", {"max_aspect_ratio": 0}).max_aspect_ratio == 0


def test_only_web_raster_formats_are_decoded():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n"
    assert images.process_image(eps, images.ImageOptions()).reason == "not_an_image"
    tiff = _encode(_gradient(300, 200), "TIFF")
    assert images.process_image(tiff, images.ImageOptions()).reason == "not_an_image"
    for fmt in ("GIF", "BMP", "WEBP", "PNG", "ICO", "AVIF"):
        res = images.process_image(_encode(_gradient(300, 200), fmt), images.ImageOptions())
        assert res.status == "success", fmt


def test_every_reason_has_its_status():
    assert set(images.REASONS.values()) == {"failed_to_download", "failed_to_resize"}
    res = images.process_image(b"\x89PNG\r\n\x1a\n" + b"\0" * 40, images.ImageOptions())
    assert (res.status, res.reason) == ("failed_to_download", "not_an_image")


def test_the_readme_lists_every_failure_reason():
    from pathlib import Path

    from pipeline.download import fetch

    readme = Path(__file__).resolve().parent.parent.joinpath("README.md").read_text()
    table = readme[readme.index("| status | reason | what happened |") :].split("\n\n", 1)[0]
    listed = set()
    for row in table.splitlines()[2:]:
        listed.update(re.findall(r"`([a-z0-9_<> ]+)`", row.split("|")[2]))
    assert listed == set(fetch.REASONS) | set(images.REASONS) | {"over_cap_after_download"}
