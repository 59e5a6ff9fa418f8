"""``wit queries`` end to end on the tiny demo world, and its configuration errors."""

import json

import pyarrow.parquet as pq
import pytest

from pipeline.config import ConfigError, RunConfig, build_section
from pipeline.demo_world import stand_in
from queries.config import QueriesConfig
from queries.sources import SOURCES
from queries.stage import run

TINY = dict(min_count=5, bigram_min_count=3, pmi_threshold=2.0, min_views=50, target_size=3000)


@pytest.mark.slow
def _tiny(tiny_out, **kw) -> QueriesConfig:
    """The tiny world's dumps and pageviews as explicit inputs, as ``wit shards`` gives them."""
    files = stand_in.inputs(str(tiny_out / "world"))
    return QueriesConfig(**TINY, wiki_dumps=files["wiki_dumps"], pageviews=files["pageviews"], **kw)


def test_tiny_world_end_to_end(tiny_out):
    summary = run(RunConfig(out=str(tiny_out), workers=2), _tiny(tiny_out))
    rows = pq.read_table(tiny_out / "queries" / "queries.parquet").to_pylist()
    assert summary["queries"] == len(rows) == 3000
    assert set(summary["per_source"]) == set(SOURCES) and all(summary["per_source"].values())
    for r in rows:  # every query carries the evidence of each of its sources
        assert r["source"] in r["sources"]
        if "wiki_unigram" in r["sources"]:
            assert r["count"] >= TINY["min_count"]
        if "wiki_bigram" in r["sources"]:
            assert r["pmi"] >= TINY["pmi_threshold"] and r["count"] >= TINY["bigram_min_count"]
        if "wiki_title" in r["sources"]:
            assert r["views"] >= TINY["min_views"]
        assert bool(r["synsets"]) == ("wordnet" in r["sources"])
        assert r["query"] == " ".join(r["query"].lower().split())
    assert len({r["query"] for r in rows}) == len({r["query_id"] for r in rows}) == len(rows)
    assert (tiny_out / "queries" / "queries.txt").read_text().splitlines() == [
        r["query"] for r in rows
    ]
    rep = json.loads((tiny_out / "queries" / "report.json").read_text())
    assert rep["input_stats"]["page:article"] > 0 and rep["input_stats"]["page:redirect"] > 0
    assert rep["input_stats"]["pageview_line:other_project"] > 0
    assert all(rep["sources"][s]["examples"] for s in SOURCES)
    by_source = {s: [r for r in rows if r["source"] == s] for s in SOURCES}
    assert [r["count"] for r in by_source["wiki_unigram"]] == sorted(
        (r["count"] for r in by_source["wiki_unigram"]), reverse=True
    )


def test_no_inputs_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as e:
        run(RunConfig(out=str(tmp_path)), QueriesConfig())
    assert e.value.key == "queries.wiki_dumps"
    with pytest.raises(ConfigError) as e:
        run(
            RunConfig(out=str(tmp_path)),
            QueriesConfig(wiki_dumps=[str(tmp_path / "nope-*.xml.bz2")]),
        )
    assert e.value.key == "queries.wiki_dumps" and "nope-" in str(e.value)


@pytest.mark.parametrize(
    "values, key",
    [
        ({"min_count": 0}, "queries.min_count"),
        ({"bigram_top_n": -1}, "queries.bigram_top_n"),
        ({"source_weights": [1, 2]}, "queries.source_weights"),
        ({"source_weights": ["a", 1, 1, 1]}, "queries.source_weights"),
        ({"source_weights": [0, 0, 0, 0]}, "queries.source_weights"),
        ({"wordnet": "some"}, "queries.wordnet"),
        ({"pageview_projects": []}, "queries.pageview_projects"),
    ],
)
def test_bad_config(values, key):
    with pytest.raises(ConfigError) as e:
        build_section("queries", values)
    assert e.value.key == key


def test_cli_flags_reach_the_config():
    from pipeline.cli import parse

    _, configs, _ = parse(
        [
            "queries",
            "--wiki-dumps",
            "a.xml.bz2",
            "b.xml.bz2",
            "--source-weights",
            "1",
            "0",
            "0",
            "1",
            "--wordnet",
            "head",
        ]
    )
    cfg = configs["queries"]
    assert cfg.wiki_dumps == ["a.xml.bz2", "b.xml.bz2"] and cfg.wordnet == "head"
    assert cfg.weights() == {
        "wiki_unigram": 1.0,
        "wiki_bigram": 0.0,
        "wiki_title": 0.0,
        "wordnet": 1.0,
    }


def test_missing_wordnet_is_a_config_error_naming_both_remedies(tiny_out, tmp_path, monkeypatch):
    """No WordNet on nltk's path and no Debian files: the real lookup fails with both remedies."""
    import nltk

    from queries import sources, wordnet_data

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "no_nltk_data")])
    monkeypatch.setattr(wordnet_data, "DEBIAN_DIR", tmp_path / "no_debian_wordnet")
    monkeypatch.setattr(sources, "_wordnet_dir", lambda: None)
    sources.wordnet_candidates.cache_clear()
    try:
        with pytest.raises(ConfigError) as e:
            run(RunConfig(out=str(tiny_out)), _tiny(tiny_out))
    finally:
        sources.wordnet_candidates.cache_clear()
    assert e.value.key == "queries.wordnet"
    assert "nltk.download" in str(e.value) and "wordnet-base" in str(e.value)
