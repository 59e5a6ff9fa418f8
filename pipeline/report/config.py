"""Configuration of the audit report (section ``report``)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import ConfigError, opt


@dataclass(frozen=True)
class ReportConfig:
    """What the HTML report shows."""

    sample_grid: int = opt(48, "downloaded images shown in the sample grid")
    thumbnail_px: int = opt(160, "longest side of the sample grid's thumbnails, in pixels")
    table_rows: int = opt(
        0, "queries in the report's searchable table, most matches first (0: every query)"
    )

    def validate(self) -> None:
        if self.sample_grid < 0:
            raise ConfigError("report.sample_grid", f"must be >= 0, got {self.sample_grid}")
        if not 16 <= self.thumbnail_px <= 1024:
            raise ConfigError(
                "report.thumbnail_px", f"must be within 16-1024, got {self.thumbnail_px}"
            )
        if self.table_rows < 0:
            raise ConfigError("report.table_rows", f"must be >= 0, got {self.table_rows}")
