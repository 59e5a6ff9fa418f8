"""Configuration of candidate extraction, matching and balancing (section ``select``)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from pipeline.config import ConfigError, opt


@dataclass(frozen=True)
class SelectConfig:
    """Candidate inputs, filters, and the per-query cap."""

    wat: list = opt(
        [],
        "Common Crawl WAT files or globs (*.warc.wat.gz, any Beam filesystem); with no input at all, wit shards generates example ones",
    )
    tables: list = opt(
        [], "URL/caption tables or globs (.parquet, .csv, .tsv, .jsonl, optionally .gz)"
    )
    url_columns: list = opt(
        ["url", "URL"],
        "table columns that may hold the image URL (first present wins; see --table-header)",
    )
    caption_columns: list = opt(
        ["caption", "TEXT", "text", "alt"],
        "table columns that may hold the caption (first present wins; see --table-header)",
    )
    table_header: str = opt(
        "auto",
        "CSV/TSV header: yes (the first row names the columns), no (column 1 URL, column 2 "
        "caption), auto (a header naming --url-columns and --caption-columns, else a two-field "
        "first row holding one http(s) URL; anything else: the file fails, table_missing_columns)",
        choices=("auto", "yes", "no"),
    )
    use_title: bool = opt(False, "WAT: use an image's title attribute when it has no alt text")
    queries_file: str = opt(
        "", "query list (Parquet with query, query_id); empty: <out>/queries/queries.parquet"
    )
    match_case: str = opt(
        "auto",
        "case policy of matching: auto follows the query list (lower-case list -> fold case)",
        choices=("auto", "lower", "preserve"),
    )
    cap: int = opt(20000, "at most this many pairs per query")
    mode: str = opt(
        "probabilistic",
        "balancing: MetaCLIP's probabilistic sampling or exact per-query top-cap by hash",
        choices=("probabilistic", "exact"),
    )
    oversample: float = opt(
        1.0,
        "select cap*oversample per query to allow for download failures (trimmed back after download)",
    )
    min_caption_chars: int = opt(5, "drop captions shorter than this")
    max_caption_chars: int = opt(1000, "drop captions longer than this")
    skip_extensions: list = opt(
        ["svg", "svgz", "gif", "ico", "cur", "pdf"],
        "drop image URLs whose path ends in one of these extensions",
    )
    language_filter: str = opt(
        "",
        "optional 'module:function' called with each caption; False drops the pair (reason: language)",
    )
    dedup_url: bool = opt(False, "also keep only one caption per image URL (the smallest uid)")
    spill_buckets: int = opt(
        0,
        "hash buckets of the matched pairs; each step holds one bucket in memory at a time"
        " (0: one per ~30k estimated candidates, at least 32)",
    )
    selection_shard_rows: int = opt(10000, "rows per selection/*.parquet file (about)")

    def validate(self) -> None:
        """Raise ConfigError for values no run could use."""
        if self.cap < 1:
            raise ConfigError("select.cap", f"must be >= 1, got {self.cap}")
        if self.oversample < 1:
            raise ConfigError("select.oversample", f"must be >= 1, got {self.oversample}")
        if self.min_caption_chars < 0 or self.max_caption_chars < self.min_caption_chars:
            raise ConfigError("select.max_caption_chars", "must be >= min_caption_chars >= 0")
        if self.spill_buckets < 0:
            raise ConfigError(
                "select.spill_buckets", f"must be >= 0 (0: automatic), got {self.spill_buckets}"
            )
        if self.selection_shard_rows < 1:
            raise ConfigError(
                "select.selection_shard_rows", f"must be >= 1, got {self.selection_shard_rows}"
            )
        if not self.url_columns or not self.caption_columns:
            raise ConfigError(
                "select.url_columns", "url_columns and caption_columns must not be empty"
            )
        if self.language_filter:
            self._check_hook()

    def _check_hook(self) -> None:
        module, _, name = self.language_filter.partition(":")
        try:
            func = getattr(importlib.import_module(module), name) if name else None
        except (ImportError, AttributeError) as e:
            raise ConfigError(
                "select.language_filter", f"cannot import {self.language_filter!r}: {e}"
            ) from None
        if not callable(func):
            raise ConfigError(
                "select.language_filter",
                f"expected 'module:function', got {self.language_filter!r}",
            )

    def inputs(self, out: str = "") -> list[str]:
        """External input files (for the stage fingerprint)."""
        return [*self.wat, *self.tables, *([self.queries_file] if self.queries_file else [])]
