"""Whole-token query matching: semantics, case policy, and the once-per-process automaton."""

from __future__ import annotations

import pytest

from pipeline.select import matching
from pipeline.select.matching import Matcher, match_text, tokens
from queries.tokenize import WORD
from tests.select_helpers import write_queries

QUERIES = [
    "cat",
    "red car",
    "don't stop",
    "new york city",
    "new york",
    "york",
    "t-shirt",
    "café",
    "c++",
    "ö",
]


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(enumerate(QUERIES), lower=True)


def names(m: Matcher, caption: str) -> list[str]:
    return sorted(m.names[i] for i in m.match(caption))


@pytest.mark.parametrize(
    "caption, expected",
    [
        ("a cat on a mat", ["cat"]),
        ("category of things", []),  # no match inside a longer token
        ("concatenate", []),
        ("Cat!", ["cat"]),  # case folded, punctuation is a boundary
        ("cats", []),  # no stemming: whole tokens only
        ("the cat's toy", []),  # apostrophes stay inside tokens
        ("a red car.", ["red car"]),
        ("a red  \t car", ["red car"]),  # multiword across normalised whitespace
        (
            "a red-car",
            [],
        ),  # a hyphen between letters joins them into one word, as in the query list
        ("red carpet", []),
        ("bored car", []),
        ("Don't stop me", ["don't stop"]),
        ("don\u2019t stop", ["don't stop"]),  # typographic apostrophe folds to '
        ("dont stop", []),
        ("I love New York City!", ["new york", "new york city", "york"]),  # every match recorded
        ("a t-shirt", ["t-shirt"]),
        ("a t shirt", []),
        ("the cat - a photo", ["cat"]),  # a free-standing dash is a break
        ("cat-like eyes", []),
        ("CAFÉ au lait", ["café"]),
        ("cafe\u0301 noir", ["café"]),  # combining accent: NFKC composes it
        ("cafeteria", []),
        ("learn c++ now", ["c++"]),  # punctuation-only parts of a query vanish: "c"
        ("ö", ["ö"]),
        ("", []),
        ("cat_dog", ["cat"]),  # underscore separates tokens
        ("'cat'", ["cat"]),  # leading and trailing apostrophes are not part of a word
        ("--cat--", ["cat"]),
        ("ｃａｔ", ["cat"]),  # full-width letters: NFKC
    ],
)
def test_whole_token_semantics(matcher, caption, expected):
    assert names(matcher, caption) == expected


def test_tokens_ascii_fast_path_equals_regex_path():
    for text in [
        "Hello, World!",
        "a--b",
        "x_y z",
        "C3PO and R2-D2",
        "tab\there",
        "'quoted' word's",
    ]:
        fast = tokens(text)
        slow = WORD.findall(text.lower())
        assert fast == slow, text


def test_match_text_is_padded():
    assert match_text("  Red   CAR ") == " red car "
    assert match_text("Red Car", lower=False) == " Red Car "


def test_case_preserving_policy():
    m = Matcher([(1, "Apple"), (2, "apple")], lower=False)
    assert m.match("Apple pie") == (1,)
    assert m.match("apple pie") == (2,)


def test_same_pattern_from_two_queries_records_both():
    m = Matcher(
        [(5, "café"), (3, "cafe\u0301"), (4, "caf")]
    )  # NFKC makes the first two one pattern
    assert m.match("a café") == (3, 5)


def test_punctuation_only_query_is_skipped():
    m = Matcher([(1, "!!!"), (2, "dog")])
    assert m.skipped == 1 and m.match("!!! dog") == (2,)


def test_empty_query_list_matches_nothing():
    assert Matcher([]).match("anything at all") == ()


def test_get_matcher_builds_once_and_follows_list_case(tmp_path):
    matching.clear_cache()
    path = str(write_queries(tmp_path / "q.parquet", ["cat", "dog"]))
    first = matching.get_matcher(path)
    assert first is matching.get_matcher(path)  # cached per process
    assert first.lower and first.match("A CAT") == first.match("a cat") != ()
    mixed = str(write_queries(tmp_path / "mixed.parquet", ["Apple", "apple"]))
    assert not matching.get_matcher(mixed).lower  # a mixed-case list keeps case
    assert matching.get_matcher(mixed, "lower").lower


def test_inlined_ascii_path_agrees_with_the_general_path():
    import random

    rng = random.Random(3)
    alphabet = "abcd ABCD-_.,!?0123'\t"
    m = Matcher(enumerate(["ab", "cd", "ab cd", "a b", "12", "d'a", "bad", "a-b", "b-12"]))
    for _ in range(2000):
        caption = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        # a trailing non-ASCII token forces the general (regex, NFKC) path without adding matches
        assert m.match(caption) == m.match(caption + " \u00e9"), caption
