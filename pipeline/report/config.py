"""Configuration of the audit report (section ``report``)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import ConfigError, opt


@dataclass(frozen=True)
class ReportConfig:
    """What the HTML report shows."""

    sample_grid: int = opt(48, "downloaded images shown in the sample grid")

    def validate(self) -> None:
        if self.sample_grid < 0:
            raise ConfigError("report.sample_grid", f"must be >= 0, got {self.sample_grid}")
