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


# -- batches: the trie against a brute force, the token hash, the saved trie -----------------------


def brute_force(queries: list[tuple[int, str]], caption: str, lower: bool = True) -> tuple:
    """Every query whose tokens occur as consecutive tokens of the caption (the matching rule)."""
    words = tokens(caption, lower)
    spans = {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}
    return tuple(
        sorted(
            {
                q
                for q, text in queries
                if tokens(text, lower) and " ".join(tokens(text, lower)) in spans
            }
        )
    )


def _random_text(rng, alphabet: str, longest: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, longest)))


@pytest.mark.parametrize("lower", [True, False])
def test_match_batch_finds_what_the_brute_force_finds(lower):
    import random

    import pyarrow as pa

    rng = random.Random(11)
    alphabet = "ab cA-'.\t\u2019é\u0301ｃ1"
    queries = [(rng.getrandbits(62), _random_text(rng, alphabet, 8)) for _ in range(300)]
    queries += [(queries[0][0], "ab"), (7, "ab c"), (8, "a-b"), (9, "c c c")]  # repeated id, ...
    captions = [_random_text(rng, alphabet, 30) for _ in range(3000)]
    m = Matcher(queries, lower=lower)
    rows, found = m.match_batch(pa.array(captions))
    got = [[] for _ in captions]
    for r, q in zip(rows.tolist(), m.trie.ids[found].tolist()):
        got[r].append(q)
    names = {q: text for q, text in queries}  # the last text of a repeated id names it
    want = [brute_force(list(names.items()), c, lower) for c in captions]
    assert [tuple(g) for g in got] == want
    assert sum(map(len, want)) > 1000
    assert all(m.match(c) == w for c, w in zip(captions[:200], want))


def test_tokenize_batch_is_tokens_text_by_text():
    import random

    from pipeline.select.matching import tokenize_batch

    rng = random.Random(2)
    texts = [_random_text(rng, "aB1 ,.-'_\t\u00e9\u2019ﬁ", 20) for _ in range(2000)]
    for lower in (True, False):
        flat, rows = tokenize_batch(texts, lower)
        got = [[] for _ in texts]
        for r, t in zip(rows.tolist(), flat.to_pylist()):
            got[r].append(t)
        assert got == [tokens(t, lower) for t in texts]


def test_token_ids_need_equal_tokens_not_only_equal_hashes(monkeypatch):
    import numpy as np

    def by_length(strings, chunk=0):  # every token of one length shares a hash
        return np.array([len(s.encode()) for s in strings.to_pylist()], np.uint64)

    m = Matcher([(1, "cat"), (2, "dog house")])
    assert m.match("a dog house, a cat") == (1, 2)
    monkeypatch.setattr(matching, "token_hashes", by_length)
    clash = Matcher([(1, "cat"), (2, "dog house")])  # dog/cat clash: the Arrow lookup is used
    assert len(clash.trie.vocab_order) == 0
    assert clash.match("a dog house, a cat") == (1, 2) and clash.match("a cow") == ()
    single = Matcher([(1, "cat"), (2, "house")])  # unique hashes: "cow" hashes like "cat"
    assert len(single.trie.vocab_order) == 2
    assert single.match("a cow in a mouse") == () and single.match("a cat house") == (1, 2)


def test_a_saved_trie_matches_like_the_built_one(tmp_path):
    import numpy as np
    import pyarrow as pa

    from pipeline.select.matching import TokenTrie

    m = Matcher(enumerate(QUERIES))
    m.trie.save(str(tmp_path / "trie"))
    loaded = TokenTrie.load(str(tmp_path / "trie"))
    assert isinstance(loaded.codes, np.memmap) and loaded.size == m.size
    captions = pa.array(["I love New York City!", "a t-shirt", "CAFÉ au lait", "nothing"])
    for got, want in zip(loaded.match_batch(captions), m.match_batch(captions)):
        assert got.tolist() == want.tolist()
