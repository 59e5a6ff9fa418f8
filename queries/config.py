"""Configuration of the query list builder (section ``queries``)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import ConfigError, at_least, opt
from queries.pageviews import DEFAULT_EXCLUDED_PREFIXES, DEFAULT_PROJECTS


@dataclass(frozen=True)
class QueriesConfig:
    """Inputs and thresholds of the four query sources and of the assembly."""

    wiki_dumps: list = opt(
        [],
        "MediaWiki XML export files or globs (*.xml.bz2, any Beam filesystem); empty: wit shards with no input at all generates example ones",
    )
    pageviews: list = opt(
        [],
        "Wikimedia hourly pageview files or globs (pageviews-*.gz); empty: wit shards with no input at all generates example ones",
    )
    min_count: int = opt(100, "unigrams: keep words occurring at least this many times")
    bigram_min_count: int = opt(30, "bigrams: ignore pairs seen fewer times than this")
    pmi_threshold: float = opt(8.0, "bigrams: keep pairs with PMI at least this (natural log)")
    bigram_top_n: int = opt(0, "bigrams: if > 0, keep the top N by PMI instead of the threshold")
    min_views: int = opt(1000, "titles: keep articles with at least this many total views")
    pageview_projects: list = opt(
        list(DEFAULT_PROJECTS),
        "titles: pageview domain codes counted (en = desktop, en.m = mobile English Wikipedia)",
    )
    pageview_excluded: list = opt(
        list(DEFAULT_EXCLUDED_PREFIXES), "titles: namespace prefixes whose pageviews are ignored"
    )
    pageview_hour_min: int = opt(
        1, "titles: drop a title's views in an hour where it had fewer than this"
    )
    titles_in_dump: bool = opt(
        True, "titles: keep only titles of namespace-0 articles or redirects found in the dumps"
    )
    title_strip_qualifier: bool = opt(
        True, "titles: drop a trailing qualifier, 'Mercury (planet)' -> 'mercury'"
    )
    wordnet: str = opt(
        "all",
        "WordNet: every lemma of every synset, or each synset's head word only",
        choices=("all", "head"),
    )
    case: str = opt(
        "lower", "case policy of queries (matching follows it)", choices=("lower", "preserve")
    )
    target_size: int = opt(50000, "size of the final list (500000 for the WIT scale)")
    source_weights: list = opt(
        [0.50, 0.20, 0.12, 0.18],
        "shares of the target for wiki_unigram, wiki_bigram, wiki_title, wordnet (0 leaves a source out)",
    )
    split_mb: int = opt(
        64, "dumps: size of the byte ranges a bz2 dump is read in, in parallel (MB)"
    )
    max_page_mb: int = opt(64, "dumps: pages larger than this are skipped and counted (MB)")

    def validate(self) -> None:
        at_least(
            self,
            "queries",
            1,
            "min_count",
            "bigram_min_count",
            "min_views",
            "target_size",
            "pageview_hour_min",
            "split_mb",
            "max_page_mb",
        )
        if self.bigram_top_n < 0:
            raise ConfigError("queries.bigram_top_n", f"must be >= 0, got {self.bigram_top_n}")
        if not self.pageview_projects:
            raise ConfigError(
                "queries.pageview_projects", "must name at least one domain code, e.g. en en.m"
            )
        self.weights()

    def weights(self) -> dict[str, float]:
        """``source_weights`` as {source: weight}."""
        from queries.sources import SOURCES

        try:
            values = [float(w) for w in self.source_weights]
        except (TypeError, ValueError):
            raise ConfigError(
                "queries.source_weights", f"expected 4 numbers, got {self.source_weights!r}"
            ) from None
        if len(values) != len(SOURCES) or any(v < 0 for v in values) or not any(values):
            raise ConfigError(
                "queries.source_weights",
                f"expected 4 weights >= 0 (not all 0) for {', '.join(SOURCES)}; got {self.source_weights!r}",
            )
        return dict(zip(SOURCES, values))

    def inputs(self, out: str = "") -> list[str]:
        """External input files (for the stage fingerprint)."""
        return [*self.wiki_dumps, *self.pageviews]
