"""Page counting, PMI, title policy and WordNet entries, without Beam."""

import math

import pytest

from queries.dump_reader import Page, Skip
from queries.sources import (
    TextCounter,
    pmi,
    shard_counts,
    sum_counts,
    title_query,
    wordnet_candidates,
    wordnet_entries,
)


def _page(title, text, ns=0, redirect=None):
    return Page(title=title, ns=ns, page_id=1, redirect=redirect, text=text)


def test_text_counter_counts_words_bigrams_and_outcomes():
    c = TextCounter()
    assert c.add(_page("NY", "New York is big. New York is old.{{Infobox|x=ignored words}}")) == (
        "NY",
        "article",
    )
    assert c.add(_page("Talk:NY", "new new", ns=1)) is None
    assert c.add(_page("Big Apple", "#REDIRECT [[NY]]")) == ("Big Apple", "redirect")
    assert c.add(_page("NYC", "x", redirect="NY")) == ("NYC", "redirect")
    assert c.add(_page("York (disambiguation)", "york york")) == (
        "York (disambiguation)",
        "disambiguation",
    )
    assert c.add(Skip("bad_utf8", "f")) is None
    assert c.unigrams == {"new": 2, "york": 2, "is": 2, "big": 1, "old": 1}
    assert c.bigrams == {"new york": 2, "york is": 2, "is big": 1, "is old": 1}
    drained = dict(c.drain())
    assert drained[("s", "page:article")] == 1 and drained[("s", "page:redirect")] == 2
    assert (
        drained[("s", "page:disambiguation")] == 1 and drained[("s", "page:other_namespace")] == 1
    )
    assert drained[("s", "page:skipped:bad_utf8")] == 1
    assert not c.unigrams and not c.stats  # drained


def test_text_counter_preserve_case_and_fullness():
    c = TextCounter(lower=False, max_entries=3)
    c.add(_page("A", "The the"))
    assert c.unigrams == {"The": 1, "the": 1} and c.bigrams == {"The the": 1} and c.full


def _as_dict(table) -> dict:
    return dict(zip(table.column("key").to_pylist(), table.column("n").to_pylist()))


def test_drain_shards_is_stable_and_complete():
    c = TextCounter()
    c.add(_page("A", "alpha beta gamma delta alpha"))
    shards = {k: _as_dict(t) for k, t in c.drain_shards(4)}
    assert {k for k, _ in shards} == {"u", "b", "s"}
    merged = {w: n for (kind, _), part in shards.items() if kind == "u" for w, n in part.items()}
    assert merged == {"alpha": 2, "beta": 1, "gamma": 1, "delta": 1} and not c.unigrams
    again = {i: _as_dict(t) for i, t in shard_counts({"alpha": 5, "beta": 1}, 4)}
    # the same key, the same shard, every time
    assert [("alpha" in again.get(i, {}), "beta" in again.get(i, {})) for i in range(4)] == [
        ("alpha" in shards.get(("u", i), {}), "beta" in shards.get(("u", i), {})) for i in range(4)
    ]


def test_count_tables_sum_to_the_counter_of_everything():
    import random
    from collections import Counter

    rng = random.Random(4)
    parts = [Counter(rng.choices("abcdefghij", k=rng.randrange(0, 40))) for _ in range(9)]
    tables = [t for part in parts for _, t in shard_counts(part, 3)]
    assert _as_dict(sum_counts(tables)) == dict(sum(parts, Counter()))
    assert _as_dict(sum_counts([])) == {} and _as_dict(sum_counts(tables[:1])) == _as_dict(
        tables[0]
    )


def test_pmi_exact_values():
    assert pmi(2, 2, 2, 12) == pytest.approx(math.log(6))
    assert pmi(2, 2, 4, 12) == pytest.approx(math.log(3))
    assert pmi(1, 10, 10, 100) == pytest.approx(0.0)


@pytest.mark.parametrize(
    "title, strip, case, expected",
    [
        ("Mercury (planet)", True, "lower", "mercury"),
        ("Mercury (planet)", False, "lower", "mercury (planet)"),
        ("The Beatles", True, "preserve", "The Beatles"),
        ("(Untitled)", True, "lower", "(untitled)"),  # nothing before the qualifier: kept whole
    ],
)
def test_title_query(title, strip, case, expected):
    assert title_query(title, strip, case) == expected


@pytest.fixture(scope="module")
def wordnet_all():
    return wordnet_entries("all")


def test_wordnet_all_lemmas(wordnet_all):
    names = {name: synsets for name, synsets, _ in wordnet_all}
    assert len(names) == 148730  # WordNet 3.0's distinct lemma names
    assert "hot dog" in names and "hot_dog" not in names  # underscores as spaces
    assert {"dog.n.01", "frump.n.01"} <= set(names["dog"])  # every POS and synset of a lemma
    assert "run.v.01" in names["run"] and "run.n.01" in names["run"]


def test_wordnet_head_words():
    heads = {name for name, _, _ in wordnet_entries("head")}
    assert len(heads) == 86555  # synset head words (MetaCLIP reports 86,654 from its own build)
    assert "dog" in heads and "domestic dog" not in heads  # dog.n.01's other lemmas are not heads


def test_wordnet_candidates_merge_case_and_rank(wordnet_all):
    cands = {c.query: c for c in wordnet_candidates("all", "lower")}
    assert "be" in cands and "Be" not in cands
    assert {"be.v.01", "beryllium.n.01"} <= set(cands["be"].synsets)  # 'Be' and 'be' merged
    assert cands["person"].rank_key > cands["hot dog"].rank_key  # tagged frequency ranks
