"""Configuration of the demo world generator (section ``demo_world``)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import ConfigError, opt


@dataclass(frozen=True)
class DemoWorldConfig:
    """How big the offline demo world is and how its image server behaves."""

    demo_size: str = opt(
        "demo",
        "size preset: tiny (unit tests), demo (~20k candidates), bench (millions)",
        choices=("tiny", "demo", "bench"),
    )
    demo_scale: float = opt(1.0, "multiplier on the size preset's counts")
    demo_port: int = opt(
        0, "port of the demo image server on 127.0.0.1; 0 picks a free port at generation"
    )
    demo_fault_rate: float = opt(
        0.05, "share of image URLs that hit one of the server's fault modes"
    )
    demo_serve: bool = opt(
        False, "after generating, serve the images on 127.0.0.1 until interrupted"
    )

    def validate(self) -> None:
        if self.demo_scale <= 0:
            raise ConfigError("demo_world.demo_scale", f"must be > 0, got {self.demo_scale}")
        if not 0 <= self.demo_port <= 65535:
            raise ConfigError(
                "demo_world.demo_port", f"must be a TCP port (0-65535), got {self.demo_port}"
            )
        if not 0 <= self.demo_fault_rate <= 1:
            raise ConfigError(
                "demo_world.demo_fault_rate", f"must be within [0, 1], got {self.demo_fault_rate}"
            )
