"""Assembly: normalisation, dedup with provenance, the weighted fill, stable ids, outputs."""

import json

import pyarrow.parquet as pq
import pytest

from queries import assemble
from queries.sources import Candidate

W = {"wiki_unigram": 0.5, "wiki_bigram": 0.2, "wiki_title": 0.12, "wordnet": 0.18}


def _cands():
    return [
        Candidate("paris", "wiki_unigram", count=500, rank_key=500),
        Candidate("york", "wiki_unigram", count=300, rank_key=300),
        Candidate("dog", "wiki_unigram", count=200, rank_key=200),
        Candidate("new york", "wiki_bigram", count=40, pmi=6.5, rank_key=6.5),
        Candidate("hot dog", "wiki_bigram", count=31, pmi=5.0, rank_key=5.0),
        Candidate("Paris", "wiki_title", views=9000, rank_key=9000),
        Candidate("New  York", "wiki_title", views=7000, rank_key=7000),
        Candidate("!!!", "wiki_title", views=5000, rank_key=5000),
        Candidate("dog", "wordnet", synsets=("dog.n.01", "frump.n.01"), rank_key=42),
        Candidate("hot dog", "wordnet", synsets=("frank.n.02",), rank_key=3),
        Candidate("canine", "wordnet", synsets=("canine.n.02",), rank_key=1),
    ]


def test_dedup_keeps_every_source_and_its_evidence():
    rows, facts = assemble.build_rows(_cands(), W, 100, "lower")
    by_q = {r["query"]: r for r in rows}
    assert set(by_q) == {"paris", "york", "dog", "new york", "hot dog", "canine"}  # '!!!' dropped
    assert by_q["paris"]["sources"] == ["wiki_unigram", "wiki_title"]
    assert (by_q["paris"]["count"], by_q["paris"]["views"]) == (500, 9000)
    assert by_q["new york"]["sources"] == ["wiki_bigram", "wiki_title"]
    assert (by_q["new york"]["count"], by_q["new york"]["pmi"], by_q["new york"]["views"]) == (
        40,
        6.5,
        7000,
    )
    assert by_q["dog"]["synsets"] == ["dog.n.01", "frump.n.01"] and by_q["dog"]["count"] == 200
    assert by_q["hot dog"]["sources"] == ["wiki_bigram", "wordnet"] and by_q["hot dog"][
        "synsets"
    ] == ["frank.n.02"]
    assert facts["dropped"]["wiki_title"] == 1
    assert [r["rank"] for r in rows] == list(range(1, 7))


def test_weighted_round_robin_order_and_prefix_stability():
    rows, _ = assemble.build_rows(_cands(), W, 100, "lower")
    # next pick: the source with the lowest (taken + 1) / weight -- unigram 2, 4, 6; bigram 5, 10;
    # wordnet 5.6, 11.1; title 8.3. WordNet's best ('dog') comes before the unigrams' third; the
    # unigram and title sources then find only queries already taken and are used up
    assert [(r["query"], r["source"]) for r in rows] == [
        ("paris", "wiki_unigram"),
        ("york", "wiki_unigram"),
        ("new york", "wiki_bigram"),
        ("dog", "wordnet"),
        ("hot dog", "wiki_bigram"),
        ("canine", "wordnet"),
    ]
    for k in range(1, 6):
        prefix, _ = assemble.build_rows(_cands(), W, k, "lower")
        assert prefix == rows[:k]


def test_weights_shape_the_mix():
    cands = [
        Candidate(f"u{i}", "wiki_unigram", count=1000 - i, rank_key=1000 - i) for i in range(100)
    ]
    cands += [Candidate(f"w{i}", "wordnet", rank_key=100 - i) for i in range(100)]
    rows, _ = assemble.build_rows(
        cands, {"wiki_unigram": 3, "wiki_bigram": 0, "wiki_title": 0, "wordnet": 1}, 40, "lower"
    )
    assert sum(r["source"] == "wiki_unigram" for r in rows) == 30
    rows, _ = assemble.build_rows(
        cands, {"wiki_unigram": 1, "wiki_bigram": 0, "wiki_title": 0, "wordnet": 0}, 500, "lower"
    )
    assert len(rows) == 100  # a weight of 0 leaves a source out


def test_case_preserve():
    rows, _ = assemble.build_rows(
        [Candidate("Paris", "wiki_title", views=5, rank_key=5)], W, 10, "preserve"
    )
    assert rows[0]["query"] == "Paris"


def test_query_id_is_stable_and_from_the_query_only():
    assert assemble.query_id("new york") == assemble.query_id("new york")
    assert assemble.query_id("new york") != assemble.query_id("new york city")
    assert 0 <= assemble.query_id("x") < 2**63
    rows_a, _ = assemble.build_rows(_cands(), W, 100, "lower")
    rows_b, _ = assemble.build_rows(list(reversed(_cands())), {**W, "wordnet": 5}, 100, "lower")
    assert {r["query"]: r["query_id"] for r in rows_a} == {
        r["query"]: r["query_id"] for r in rows_b
    }
    assert assemble.query_id("new york") == 0x7FFF_FFFF_FFFF_FFFF & int.from_bytes(
        __import__("hashlib").blake2b(b"new york", digest_size=8).digest(), "big"
    )


def test_outputs_and_report(tmp_path):
    cands = _cands()
    rows, facts = assemble.build_rows(cands, W, 100, "lower")
    rep = assemble.report(cands, rows, facts, {"min_count": 100}, {"page:article": 3})
    paths = assemble.write_outputs(rows, rep, str(tmp_path))
    table = pq.read_table(paths["parquet"])
    assert table.column_names == list(assemble.COLUMNS)
    assert str(table.schema.field("query_id").type) == "int64"
    assert str(table.schema.field("sources").type) == "list<element: string>"
    assert table.to_pylist() == rows
    assert open(paths["txt"]).read().splitlines() == [r["query"] for r in rows]
    rep = json.loads(open(paths["report"]).read())
    assert rep["sources"]["wiki_title"]["candidates"] == 3
    assert rep["sources"]["wiki_title"]["dropped_punctuation_only"] == 1
    assert (
        rep["sources"]["wiki_title"]["in_list"] == 2
        and rep["sources"]["wiki_title"]["admitted_by"] == 0
    )
    assert rep["sources"]["wordnet"]["only_this_source"] == 1
    assert (
        rep["overlaps"]["wiki_unigram&wiki_title"] == 1
        and rep["overlaps"]["wiki_bigram&wordnet"] == 1
    )
    assert rep["length"]["words"] == {"1": 4, "2": 2}
    assert rep["thresholds"] == {"min_count": 100} and rep["input_stats"] == {"page:article": 3}


@pytest.mark.parametrize("target", [1, 3])
def test_target_size_caps_the_list(target):
    rows, _ = assemble.build_rows(_cands(), W, target, "lower")
    assert len(rows) == target
