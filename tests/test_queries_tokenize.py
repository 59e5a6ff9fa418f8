"""The tokenizer's written rules, one case each, and the query normalisation."""

import pytest

from queries import tokenize


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The cat", ["the", "cat"]),  # lower-cased
        ("don't o'neill city's", ["don't", "o'neill", "city's"]),  # internal apostrophes join
        ("don\u2019t", ["don't"]),  # typographic apostrophe folded
        ("'quoted' parents'", ["quoted", "parents"]),  # edge apostrophes dropped
        ("well-known x- -y", ["well-known", "x", "y"]),  # internal hyphen joins, edge hyphen drops
        (
            "1999 3.14 mp3 1990s covid-19",
            ["mp3", "1990s", "covid-19"],
        ),  # digit-only runs are not words
        ("Straße Köln 東京 naïve", ["straße", "köln", "東京", "naïve"]),  # Unicode letters
        ("nai\u0308ve", ["naïve"]),  # NFKC composes decomposed accents
        (
            "\uff26\uff55\uff4c\uff4c ﬁne",
            ["full", "fine"],
        ),  # NFKC folds full-width forms, ligatures
        ("a\u2013b", ["a", "b"]),  # en dash splits
        ("snake_case", ["snake", "case"]),  # underscore is not a word character
    ],
)
def test_words(text, expected):
    assert tokenize.words(text) == expected


def test_preserve_case():
    assert tokenize.words("The the THE", lower=False) == ["The", "the", "THE"]


def test_runs_break_at_punctuation_digits_and_newlines():
    runs = tokenize.word_runs("New York is big, very big.\nNext line in 1999 again")
    assert runs == [
        ["new", "york", "is", "big"],
        ["very", "big"],
        ["next", "line", "in"],
        ["again"],
    ]
    assert tokenize.bigrams(runs) == [
        "new york",
        "york is",
        "is big",
        "very big",
        "next line",
        "line in",
    ]


def test_tabs_and_multiple_spaces_do_not_break():
    assert tokenize.bigrams(tokenize.word_runs("new \t  york")) == ["new york"]


@pytest.mark.parametrize(
    "raw, case, expected",
    [
        ("  New   York\tCity ", "lower", "new york city"),
        ("New York", "preserve", "New York"),
        ("\uff2e\uff39", "lower", "ny"),
        ("Rock \u2019n\u2019 Roll", "lower", "rock 'n' roll"),
    ],
)
def test_normalise_query(raw, case, expected):
    assert tokenize.normalise_query(raw, case) == expected


@pytest.mark.parametrize(
    "q, expected", [("", True), ("!!!", True), ("- -", True), ("a!", False), ("42", False)]
)
def test_punctuation_only(q, expected):
    assert tokenize.is_punctuation_only(q) is expected
