"""Configuration of the downloader and shard writer (section ``download``)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import ConfigError, at_least, opt


@dataclass(frozen=True)
class DownloadConfig:
    """HTTP politeness and safety, image processing, and shard layout."""

    concurrency: int = opt(64, "concurrent requests per worker")
    per_host: int = opt(16, "concurrent requests per host")
    timeout: float = opt(10.0, "total seconds allowed per request (connect + headers + body)")
    connect_timeout: float = opt(5.0, "seconds allowed to open a connection")
    read_timeout: float = opt(5.0, "seconds allowed between two reads of the response")
    retries: int = opt(
        2, "retries for 429/503/connection errors, with exponential backoff and jitter"
    )
    backoff: float = opt(0.5, "first retry delay in seconds; doubles per retry, with jitter")
    retry_after_max: float = opt(
        10.0, "longest Retry-After (seconds) honoured; longer ones give up"
    )
    max_redirects: int = opt(5, "redirect hops followed (each one re-checked for safety)")
    max_bytes: int = opt(20_000_000, "largest body accepted, in bytes")
    max_pixels: int = opt(
        50_000_000, "largest image (width*height) decoded; bigger ones are decompression bombs"
    )
    user_agent: str = opt(
        "wit-builder/0.1 (+https://github.com/wit-builder/wit-builder)", "User-Agent header"
    )
    allow_hosts: list = opt(
        [], "host[:port] entries allowed even when they resolve to private/loopback addresses"
    )
    respect_opt_out: bool = opt(True, "honour X-Robots-Tag noai / noimageai")
    dns_ttl: int = opt(300, "seconds a DNS answer is cached per worker")
    image_threads: int = opt(
        0,
        "extra decode/resize/encode threads per worker (0: on the worker's event-loop thread; "
        "--workers is the knob for cores, threads keep a worker's sockets served while it decodes)",
    )
    image_size: int = opt(256, "target image side in pixels")
    resize_mode: str = opt(
        "keep_ratio",
        "resize like img2dataset",
        choices=("no", "keep_ratio", "center_crop", "border"),
    )
    output_format: str = opt(
        "jpg", "encoded image format in the shards", choices=("jpg", "webp", "png")
    )
    quality: int = opt(90, "JPEG/WebP quality")
    min_image_size: int = opt(
        64,
        "drop images whose shorter side is smaller than this (image_too_small): tracking "
        "pixels, spacers, icons; 0 = keep all",
    )
    max_aspect_ratio: float = opt(
        4.0,
        "drop images whose long/short side ratio exceeds this (aspect_ratio_too_large): "
        "banners and strips; 0 = no limit (keep_ratio output stays within 16 target squares)",
    )
    samples_per_shard: int = opt(1000, "samples per {NNNNN}.tar shard")
    shards_in_flight: int = opt(
        2,
        "shards a worker fetches at once, sharing its concurrency: the next shard's requests "
        "take the slots the previous shard's last slow requests leave free",
    )
    retry_failed: bool = opt(False, "re-fetch only failed samples with retryable reasons")

    def validate(self) -> None:
        at_least(
            self,
            "download",
            1,
            "concurrency",
            "per_host",
            "max_bytes",
            "max_pixels",
            "image_size",
            "samples_per_shard",
            "shards_in_flight",
        )
        for key in ("timeout", "connect_timeout", "read_timeout"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"download.{key}", f"must be > 0, got {getattr(self, key)}")
        at_least(
            self,
            "download",
            0,
            "retries",
            "max_redirects",
            "min_image_size",
            "dns_ttl",
            "image_threads",
        )
        if self.backoff < 0 or self.retry_after_max < 0 or self.max_aspect_ratio < 0:
            raise ConfigError(
                "download.backoff", "backoff, retry_after_max and max_aspect_ratio must be >= 0"
            )
        if 0 < self.max_aspect_ratio < 1:
            raise ConfigError(
                "download.max_aspect_ratio",
                f"must be 0 (no limit) or >= 1 (every ratio is), got {self.max_aspect_ratio}",
            )
        if not 1 <= self.quality <= 100:
            raise ConfigError("download.quality", f"must be within 1-100, got {self.quality}")
        if not self.user_agent.strip():
            raise ConfigError("download.user_agent", "must not be empty")
        for entry in self.allow_hosts:
            if not isinstance(entry, str) or not entry.strip() or "/" in entry:
                raise ConfigError(
                    "download.allow_hosts", f"expected host or host:port, got {entry!r}"
                )
