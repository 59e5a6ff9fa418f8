"""Each composite transform on a real (small) pipeline with known answers."""

import gzip
import math

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from pipeline.beam_runner import make_pipeline
from pipeline.config import RunConfig
from pipeline.demo_world.mediawiki import DumpPage, write_multistream
from queries.sources import Candidate, count_rows, shard_counts
from queries.stage import plan_splits
from queries.transforms import (
    BigramSource,
    PageviewCounts,
    ReadWikiCounts,
    TitleSource,
    UnigramSource,
)


def _pipeline():
    return make_pipeline(RunConfig(workers=1), "test-queries")


def _rows(tables, label: str):
    """The (key, count) rows of ``(shard, counts)`` count tables."""
    return tables | f"Rows{label}" >> beam.FlatMap(lambda shard_counts: count_rows(shard_counts[1]))


def _tables(rows, n_shards: int = 2):
    """(key, count) rows as the ``(shard, counts)`` tables ReadWikiCounts hands over."""
    return list(shard_counts(dict(rows), n_shards))


def _as_tuple(c: Candidate):
    return (c.query, c.source, c.count, None if c.pmi is None else round(c.pmi, 9), c.views)


@pytest.fixture
def dump(tmp_path):
    pages = [
        DumpPage("New York", "New York is big. New York is old.<ref>York York</ref>", 1),
        DumpPage("It", "Is it? {{Infobox|is=is}}It is.", 2),
        DumpPage("Big Apple", "#REDIRECT [[New York]]", 3, redirect="New York"),
        DumpPage("Talk:It", "is is is", 4, ns=1),
        DumpPage("York (disambiguation)", "York may be {{disambiguation}}", 5),
    ]
    path = str(tmp_path / "d.xml.bz2")
    write_multistream(path, pages, pages_per_stream=1)
    return path


def test_read_wiki_counts(dump):
    with _pipeline() as p:
        out = (
            p
            | beam.Create(plan_splits([dump], 200))
            | ReadWikiCounts(max_page_bytes=1 << 20, lower=True, n_shards=3)
        )
        assert_that(_rows(out["unigrams"], "U"), equal_to(UNIGRAMS), label="unigrams")
        assert_that(_rows(out["bigrams"], "B"), equal_to(BIGRAMS), label="bigrams")
        assert_that(
            out["titles"],
            equal_to(
                [
                    ("New York", "article"),
                    ("It", "article"),
                    ("Big Apple", "redirect"),
                    ("York (disambiguation)", "disambiguation"),
                ]
            ),
            label="titles",
        )
        stats = out["stats"] | beam.Filter(lambda kv: kv[0].startswith("page:"))
        assert_that(
            stats,
            equal_to(
                [
                    ("page:article", 2),
                    ("page:redirect", 1),
                    ("page:other_namespace", 1),
                    ("page:disambiguation", 1),
                ]
            ),
            label="stats",
        )


def test_read_wiki_counts_bigram_floor_and_small_bundles(dump):
    with _pipeline() as p:
        out = (
            p
            | beam.Create(plan_splits([dump], 200))
            | ReadWikiCounts(1 << 20, True, max_entries=2, bigram_floor=2)
        )
        assert_that(
            _rows(out["bigrams"], "B"), equal_to([("new york", 2), ("york is", 2)]), label="bigrams"
        )
        n = _rows(out["unigrams"], "U") | beam.Values() | beam.CombineGlobally(sum)
        assert_that(n, equal_to([12]), label="n")


UNIGRAMS = [("new", 2), ("york", 2), ("is", 4), ("big", 1), ("old", 1), ("it", 2)]  # N = 12
BIGRAMS = [
    ("new york", 2),
    ("york is", 2),
    ("is big", 1),
    ("is old", 1),
    ("is it", 1),
    ("it is", 1),
]


def test_unigram_source_threshold():
    with _pipeline() as p:
        out = p | beam.Create(_tables(UNIGRAMS)) | UnigramSource(min_count=2) | beam.Map(_as_tuple)
        assert_that(
            out, equal_to([(w, "wiki_unigram", c, None, None) for w, c in UNIGRAMS if c >= 2])
        )


@pytest.mark.parametrize(
    "threshold, top_n, expected",
    [
        (0.0, 0, {"new york": math.log(6), "york is": math.log(3)}),  # min count 2 drops the rest
        (math.log(4), 0, {"new york": math.log(6)}),  # threshold between ln 3 and ln 6
        (100.0, 1, {"new york": math.log(6)}),  # top N ignores the threshold
    ],
)
def test_bigram_source_exact_pmi(threshold, top_n, expected):
    with _pipeline() as p:
        out = (
            (p | "U" >> beam.Create(_tables(UNIGRAMS)), p | "B" >> beam.Create(_tables(BIGRAMS)))
            | BigramSource(min_count=2, threshold=threshold, top_n=top_n)
            | beam.Map(_as_tuple)
        )
        want = [(q, "wiki_bigram", 2, round(v, 9), None) for q, v in expected.items()]
        assert_that(out, equal_to(want))


def test_pageview_counts_and_title_source(tmp_path):
    hours = [
        "en Paris 600 0\nen.m Paris 500 0\nen Big_Apple 1700 0\nen Rome 10 0\nen Special:Search 5000 0\n"
        "en York_(disambiguation) 2000 0\nen Nowhere 3000 0\nen Mercury_(planet) 1300 0\nbroken line\n",
        "en Paris 1 0\nen Rome 2 0\nen Mercury_(element) 1800 0\nen Mercury 100 0\n",
    ]
    paths = []
    for i, text in enumerate(hours):
        path = tmp_path / f"pageviews-20240101-{i:02d}0000.gz"
        path.write_bytes(gzip.compress(text.encode()))
        paths.append(str(path))
    dump_titles = [
        ("Paris", "article"),
        ("Big Apple", "redirect"),
        ("Rome", "article"),
        ("York (disambiguation)", "disambiguation"),
    ]
    dump_titles += [
        ("Mercury (planet)", "article"),
        ("Mercury (element)", "article"),
        ("Mercury", "article"),
    ]
    with _pipeline() as p:
        pv = p | beam.Create(paths) | PageviewCounts(["en", "en.m"], ["Special"], hour_min=2)
        titles = (pv["views"], p | "Dump" >> beam.Create(dump_titles)) | TitleSource(
            1000, True, True, "lower"
        )
        assert_that(
            titles["candidates"] | beam.Map(_as_tuple),
            equal_to(
                [
                    (
                        "paris",
                        "wiki_title",
                        None,
                        None,
                        1100,
                    ),  # 1 view in hour 2 is under the hour minimum
                    ("big apple", "wiki_title", None, None, 1700),  # a redirect's own views
                    (
                        "mercury",
                        "wiki_title",
                        None,
                        None,
                        3100,
                    ),  # (planet) + (element); 'Mercury' < 1000
                ]
            ),
            label="titles",
        )
        assert_that(
            titles["stats"],
            equal_to(
                [
                    ("title:kept", 4),
                    ("title:below_min_views", 2),
                    ("title:disambiguation", 1),
                    ("title:not_in_dump", 1),
                ]
            ),
            label="title_stats",
        )
        line_stats = pv["stats"] | beam.Filter(lambda kv: kv[0].startswith("pageview"))
        assert_that(
            line_stats,
            equal_to(
                [
                    ("pageview_line:kept", 11),
                    ("pageview_line:excluded_namespace", 1),
                    ("pageview_line:malformed", 1),
                    ("pageview_title:below_hour_min", 1),
                    ("pageview_file:read", 2),
                ]
            ),
            label="line_stats",
        )
