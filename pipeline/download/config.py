"""Configuration of the downloader and shard writer (section ``download``)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import ConfigError, opt


@dataclass(frozen=True)
class DownloadConfig:
    """HTTP politeness and safety, image processing, and shard layout."""

    concurrency: int = opt(64, "concurrent requests per worker process")
    per_host: int = opt(16, "concurrent requests per host")
    timeout: float = opt(10.0, "total seconds allowed per request (connect + read)")
    retries: int = opt(2, "retries for 429/503/connection errors, with exponential backoff and jitter")
    max_bytes: int = opt(20_000_000, "largest body accepted, in bytes")
    user_agent: str = opt("wit-builder/0.1 (+https://github.com/wit-builder/wit-builder)", "User-Agent header")
    allow_hosts: list = opt([], "host[:port] entries allowed even when they resolve to private/loopback addresses")
    respect_opt_out: bool = opt(True, "honour X-Robots-Tag noai / noimageai")
    image_size: int = opt(256, "target image side in pixels")
    resize_mode: str = opt("keep_ratio", "resize like img2dataset", choices=("no", "keep_ratio", "center_crop", "border"))
    output_format: str = opt("jpg", "encoded image format in the shards", choices=("jpg", "webp", "png"))
    quality: int = opt(90, "JPEG/WebP quality")
    samples_per_shard: int = opt(1000, "samples per {NNNNN}.tar shard")
    retry_failed: bool = opt(False, "re-fetch only failed samples with retryable reasons")

    def validate(self) -> None:
        for key in ("concurrency", "per_host", "max_bytes", "image_size", "samples_per_shard"):
            if getattr(self, key) < 1:
                raise ConfigError(f"download.{key}", f"must be >= 1, got {getattr(self, key)}")
        if self.timeout <= 0:
            raise ConfigError("download.timeout", f"must be > 0, got {self.timeout}")
        if not 1 <= self.quality <= 100:
            raise ConfigError("download.quality", f"must be within 1-100, got {self.quality}")
