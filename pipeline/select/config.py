"""Configuration of candidate extraction, matching and balancing (section ``select``)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import ConfigError, opt


@dataclass(frozen=True)
class SelectConfig:
    """Candidate inputs, filters, and the per-query cap."""

    wat: list = opt([], "Common Crawl WAT files or globs (*.warc.wat.gz, any Beam filesystem); empty: the demo world's")
    tables: list = opt([], "URL/caption tables or globs (.parquet, .csv, .tsv, .jsonl, optionally .gz)")
    url_column: str = opt("url", "column holding the image URL in --tables")
    caption_column: str = opt("caption", "column holding the caption in --tables")
    cap: int = opt(20000, "at most this many pairs per query")
    mode: str = opt("probabilistic", "balancing: MetaCLIP's probabilistic sampling or exact per-query top-cap by hash", choices=("probabilistic", "exact"))
    oversample: float = opt(1.0, "select cap*oversample per query to allow for download failures (trimmed back after download)")
    min_caption_chars: int = opt(5, "drop captions shorter than this")
    max_caption_chars: int = opt(1000, "drop captions longer than this")
    selection_shard_rows: int = opt(10000, "rows per selection/*.parquet file")

    def validate(self) -> None:
        if self.cap < 1:
            raise ConfigError("select.cap", f"must be >= 1, got {self.cap}")
        if self.oversample < 1:
            raise ConfigError("select.oversample", f"must be >= 1, got {self.oversample}")
        if self.min_caption_chars < 0 or self.max_caption_chars < self.min_caption_chars:
            raise ConfigError("select.max_caption_chars", "must be >= min_caption_chars >= 0")

    def inputs(self) -> list[str]:
        return [*self.wat, *self.tables]
