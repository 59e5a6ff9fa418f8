"""Configuration of the query list builder (section ``queries``)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import ConfigError, opt


@dataclass(frozen=True)
class QueriesConfig:
    """Inputs and thresholds of the four query sources and of the assembly."""

    wiki_dumps: list = opt([], "MediaWiki XML export files or globs (*.xml.bz2, any Beam filesystem); empty: the demo world's")
    pageviews: list = opt([], "Wikimedia hourly pageview files or globs (pageviews-*.gz); empty: the demo world's")
    min_count: int = opt(100, "unigrams: keep words occurring at least this many times")
    bigram_min_count: int = opt(30, "bigrams: ignore pairs seen fewer times than this")
    pmi_threshold: float = opt(8.0, "bigrams: keep pairs with PMI at least this (natural log)")
    bigram_top_n: int = opt(0, "bigrams: if > 0, keep the top N by PMI instead of the threshold")
    min_views: int = opt(1000, "titles: keep articles with at least this many total views")
    wordnet: str = opt("all", "WordNet: every lemma of every synset, or each synset's head word only", choices=("all", "head"))
    case: str = opt("lower", "case policy of queries (matching follows it)", choices=("lower", "preserve"))
    target_size: int = opt(50000, "size of the final list (500000 for the WIT scale)")

    def validate(self) -> None:
        for key in ("min_count", "bigram_min_count", "min_views", "target_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"queries.{key}", f"must be >= 1, got {getattr(self, key)}")
        if self.bigram_top_n < 0:
            raise ConfigError("queries.bigram_top_n", f"must be >= 0, got {self.bigram_top_n}")

    def inputs(self) -> list[str]:
        return [*self.wiki_dumps, *self.pageviews]
