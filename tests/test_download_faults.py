"""Every fault mode of the demo image server ends as the right status and reason, without hanging."""

from __future__ import annotations

import pytest

from pipeline.demo_world.server import serve
from pipeline.demo_world.urls import FAULT_MODES, image_url
from pipeline.download import fetch, images
from pipeline.download.worker import ShardDownloader, base_row

pytestmark = pytest.mark.timeout(60)

EXPECTED = {
    "404": ("failed_to_download", "http_404"),
    "429": ("failed_to_download", "http_429"),
    "429once": ("success", None),
    "500": ("failed_to_download", "http_500"),
    "503": ("failed_to_download", "http_503"),
    "503once": ("success", None),
    "slow_first_byte": ("failed_to_download", "timeout"),
    "slow_drip": ("failed_to_download", "timeout"),
    "reset": ("failed_to_download", "connection_reset"),
    "truncated": ("failed_to_download", "truncated"),
    "wrong_type": ("failed_to_download", "wrong_content_type"),
    "html": ("failed_to_download", "not_an_image"),
    "oversized": ("failed_to_download", "too_large"),
    "bomb": ("failed_to_resize", "decompression_bomb"),
    "redirect": ("success", None),
    "redirect_loop": ("failed_to_download", "redirect_loop"),
    "redirect_private": ("failed_to_download", "refused_private_address"),
    "noai": ("failed_to_download", "opted_out"),
    "noimageai": ("failed_to_download", "opted_out"),
    "ua_noai": ("failed_to_download", "opted_out"),
    "pixel": ("failed_to_resize", "image_too_small"),
    "strip": ("failed_to_resize", "image_too_small"),  # 2 px high: under 64 before its ratio
    "bad_status": ("failed_to_download", "bad_http_response"),
}


def _options(port: int, **overrides) -> fetch.FetchOptions:
    values = dict(
        timeout=1.5,
        connect_timeout=1.0,
        read_timeout=1.0,
        retries=1,
        backoff=0.05,
        retry_after_max=2.0,
        max_bytes=1_000_000,
        user_agent="wit-builder/0.1 (+https://example.org)",
        allow_hosts=(f"127.0.0.1:{port}",),
    )
    values.update(overrides)
    return fetch.FetchOptions(**values)


def _download(port: int, modes, **overrides) -> dict[str, dict]:
    return _download_with_images(port, modes, images.ImageOptions(), **overrides)


def _download_with_images(port: int, modes, image_opts, **overrides) -> dict[str, dict]:
    rows = [
        base_row({"uid": m, "url": image_url(port, 5, "jpg", m), "caption": m}, m) for m in modes
    ]
    rows.append(
        base_row({"uid": "plain", "url": image_url(port, 5, "jpg"), "caption": "x"}, "plain")
    )
    downloader = ShardDownloader(_options(port, **overrides), image_opts)
    try:
        return {r["uid"]: r for r in downloader.download(rows)}
    finally:
        downloader.close()


@pytest.fixture(scope="module")
def outcomes():
    server_opts = dict(
        slow_seconds=3.0, drip_interval=0.3, oversized_bytes=4 << 20, prerender=((5, "jpg"),)
    )
    with serve(0, **server_opts) as server:
        yield _download(server.port, FAULT_MODES), server


def test_every_fault_mode_has_an_expectation():
    assert set(EXPECTED) == set(FAULT_MODES)
    named = fetch.REASONS | set(images.REASONS)
    for reason in (r for _, r in EXPECTED.values() if r):
        assert reason in named or (reason.startswith("http_") and "http_<status>" in named)


@pytest.mark.parametrize("mode", FAULT_MODES)
def test_fault_mode_outcome(outcomes, mode):
    rows, _ = outcomes
    row = rows[mode]
    assert (row["status"], row["error_message"]) == EXPECTED[mode]
    if row["status"] == "success":
        assert row["image"] and row["width"] and row["sha256"]
    else:
        assert row["image"] is None


def test_retries_and_redirects_are_recorded(outcomes):
    rows, _ = outcomes
    assert rows["plain"]["status"] == "success" and rows["plain"]["retries"] == 0
    assert rows["429once"]["retries"] == 1 and rows["503once"]["retries"] == 1
    assert rows["503"]["retries"] == 1  # retried once (Retry-After: 1 <= bound), then given up
    assert rows["redirect"]["redirects"] == 3
    assert rows["oversized"]["bytes"] == 0


def test_failed_redirects_record_the_hops_followed(outcomes):
    rows, _ = outcomes
    # /f/redirect_loop/5.jpg -> ?hop=1 -> back to the first URL: the second hop closes the loop.
    assert rows["redirect_loop"]["redirects"] == 2 and rows["redirect_loop"]["http_status"] == 302
    assert rows["redirect_private"]["redirects"] == 1  # refused at the hop to 10.0.0.1
    with serve(0) as server:
        rows = _download(server.port, ["redirect"], max_redirects=1)
    assert rows["redirect"]["error_message"] == "too_many_redirects"
    assert rows["redirect"]["redirects"] == 2 and rows["redirect"]["http_status"] == 302


def test_malformed_status_line_is_not_a_400():
    with serve(0, prerender=((5, "jpg"),)) as server:
        rows = _download(server.port, ["bad_status"])
    row = rows["bad_status"]
    assert row["error_message"] == "bad_http_response" and row["http_status"] is None


def test_strip_without_the_aspect_filter_is_bounded_not_upscaled():
    with serve(0) as server:
        rows = _download_with_images(
            server.port, ["strip"], images.ImageOptions(min_image_size=0, max_aspect_ratio=0)
        )
    row = rows["strip"]
    assert (row["status"], row["error_message"]) == ("failed_to_resize", "output_too_large")
    assert (row["original_width"], row["original_height"]) == (20_000, 2)


def test_junk_passes_when_the_filters_are_off():
    with serve(0) as server:
        rows = _download_with_images(
            server.port, ["pixel"], images.ImageOptions(min_image_size=0, max_aspect_ratio=0)
        )
    assert rows["pixel"]["status"] == "success" and rows["pixel"]["width"] == 256


def test_opt_out_can_be_disabled_and_scoped_to_other_agents():
    with serve(0, prerender=((5, "jpg"),)) as server:
        ignore = _download(server.port, ["noai", "ua_noai"], respect_opt_out=False)
        other_agent = _download(server.port, ["noai", "ua_noai"], user_agent="otherbot/1.0")
    assert ignore["noai"]["status"] == ignore["ua_noai"]["status"] == "success"
    assert other_agent["noai"]["error_message"] == "opted_out"
    assert (
        other_agent["ua_noai"]["status"] == "success"
    )  # "wit-builder: noai" is not about otherbot


def test_retry_after_beyond_the_bound_gives_up_at_once():
    with serve(0) as server:
        rows = _download(server.port, ["429"], retry_after_max=0.5)
    assert rows["429"]["error_message"] == "http_429" and rows["429"]["retries"] == 0
