"""The output layout every stage writes into (``make shards OUT=<dir>``)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import fs


@dataclass(frozen=True)
class Layout:
    """Paths under one output directory; names are a contract between stages."""

    out: str

    @property
    def world(self) -> str:
        return fs.join(self.out, "world")

    @property
    def queries(self) -> str:
        return fs.join(self.out, "queries")

    @property
    def selection(self) -> str:
        return fs.join(self.out, "selection")

    @property
    def shards(self) -> str:
        return fs.join(self.out, "shards")

    @property
    def filtered(self) -> str:
        return fs.join(self.out, "filtered")

    @property
    def reports(self) -> str:
        return fs.join(self.out, "reports")

    @property
    def train(self) -> str:
        return fs.join(self.out, "train")

    @property
    def config_json(self) -> str:
        return fs.join(self.out, "config.json")

    @property
    def queries_parquet(self) -> str:
        return fs.join(self.queries, "queries.parquet")

    @property
    def world_manifest(self) -> str:
        return fs.join(self.world, "manifest.json")
