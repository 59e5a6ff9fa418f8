"""Wikitext to prose: what is removed, what is kept; redirect and disambiguation detection."""

import pytest

from queries import tokenize
from queries.wikitext import is_disambiguation, is_redirect_text, to_plain_text


def _words(wikitext):
    return tokenize.words(to_plain_text(wikitext))


@pytest.mark.parametrize(
    "wikitext, expected",
    [
        ("[[capital city|capital]] of [[France]]", ["capital", "of", "france"]),  # link text kept
        ("a{{Infobox|name=Zzz|x={{nested|yyy}}}}b", ["ab"]),  # templates, nested, removed
        ("fact.<ref>{{cite web|title=Zzz}} ref words</ref> next", ["fact", "next"]),  # refs removed
        ('x<ref name="a" /> y', ["x", "y"]),
        ('{| class="wikitable"\n| cell one || cell two\n|}\nafter', ["after"]),  # tables removed
        ("[[File:P.jpg|thumb|A [[view]] of it]] text", ["text"]),  # files with captions removed
        ("[[Image:P.jpg|left]] [[Media:a.ogg]] text", ["text"]),
        ("text [[Category:Cities in France]]", ["text"]),  # categories removed
        ("text [[fr:Paris]] [[de:Paris]] [[zh-yue:巴黎]]", ["text"]),  # interlanguage removed
        (
            "see [[:Category:Cities|the cities]]",
            ["see", "the", "cities"],
        ),  # visible category link kept
        ("'''bold''' and ''italic'' <small>small</small>", ["bold", "and", "italic", "small"]),
        (
            "[https://example.org the site] here",
            ["the", "site", "here"],
        ),  # external link title kept
        ("a <!-- hidden words --> b __NOTOC__", ["a", "b"]),  # comments, magic words removed
        ("x <math>e^{i pi}</math> <gallery>a.jpg|cap</gallery> y", ["x", "y"]),
        ("AT&amp;T &nbsp;", ["at", "t"]),  # entities decoded
    ],
)
def test_plain_text(wikitext, expected):
    assert _words(wikitext) == expected


def test_headings_and_list_items_break_runs():
    runs = tokenize.word_runs(to_plain_text("intro\n== History ==\nbody\n* one\n* two"))
    assert runs == [["intro"], ["history"], ["body"], ["one"], ["two"]]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("#REDIRECT [[Paris]]", True),
        ("  #redirect: [[Paris]]", True),
        ("Paris #REDIRECT [[x]]", False),
    ],
)
def test_redirect(text, expected):
    assert is_redirect_text(text) is expected


@pytest.mark.parametrize(
    "title, text, expected",
    [
        ("Mercury (disambiguation)", "x", True),
        ("Mercury", "'''Mercury''' may refer to:\n{{Disambiguation}}", True),
        ("Smith", "{{hndis|Smith}}", True),
        ("Springfield", "{{geodis}}", True),
        ("Paris", "{{Infobox settlement}} Paris is a city.", False),
    ],
)
def test_disambiguation(title, text, expected):
    assert is_disambiguation(title, text) is expected
