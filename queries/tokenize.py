"""The word tokenizer behind the unigram and bigram counts, and the query normalisation.

Rules (also in the README):

- Text is NFKC-normalised first, so full-width forms, ligatures and composed/decomposed accents
  count as one word.
- A word is a run of Unicode letters, combining marks and digits (``\\p{L}\\p{M}\\p{N}``) that
  contains at least one letter. Digit-only runs (``1999``, ``3.14``) are not words: they act as
  breaks, like punctuation. Mixed runs stay (``mp3``, ``1990s``, ``covid-19``).
- An apostrophe (``'`` or ``’``, written ``'``) or hyphen *between* two word characters joins them:
  ``don't``, ``o'neill``, ``city's``, ``well-known``. Leading or trailing apostrophes and hyphens
  are not part of a word and, like other punctuation, end a run of words (``'quoted'`` ->
  ``quoted``, ``parents'`` -> ``parents``). Dashes (– —) split words.
- Case: with the ``lower`` policy words are lower-cased (``str.lower``) before counting, so
  ``The`` and ``the`` are one word; ``preserve`` counts them apart.
- Bigrams are two words next to each other with only spaces or tabs between them: any other
  character (punctuation, a digit-only run, a line break) ends the run of words, so no bigram
  spans a sentence, a clause or a paragraph break.
"""

from __future__ import annotations

import unicodedata

import regex

_WORD = r"[\p{L}\p{M}\p{N}]+(?:['\-][\p{L}\p{M}\p{N}]+)*"
WORD = regex.compile(_WORD)  # the word rule, also the token rule of caption matching
# a word, or one "break": any run of characters that is neither a word character nor blank
_SCAN = regex.compile(rf"({_WORD})|[^\p{{L}}\p{{M}}\p{{N}} \t]+")
_HAS_LETTER = regex.compile(r"\p{L}")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u02bc": "'", "\u2018": "'"})
_PUNCT_ONLY = regex.compile(r"^[^\p{L}\p{N}]*$")


def prepare(text: str) -> str:
    """NFKC plus typographic apostrophes folded to ``'``: the form every rule applies to."""
    return unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)


def word_runs(text: str, lower: bool = True) -> list[list[str]]:
    """Runs of adjacent words: every word of ``text`` in order, split where a break occurs."""
    text = prepare(text)
    if lower:
        text = text.lower()
    runs: list[list[str]] = []
    run: list[str] = []
    for m in _SCAN.finditer(text):
        word = m.group(1)
        if word is not None and _HAS_LETTER.search(word):
            run.append(word)
        elif run:  # punctuation, line break or a digit-only run ends the run
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    return runs


def words(text: str, lower: bool = True) -> list[str]:
    """All words of ``text`` in order."""
    return [w for run in word_runs(text, lower) for w in run]


def bigrams(runs: list[list[str]]) -> list[str]:
    """Adjacent word pairs within each run, as ``"x y"``."""
    return [f"{a} {b}" for run in runs for a, b in zip(run, run[1:])]


def normalise_query(text: str, case: str = "lower") -> str:
    """A query's canonical form: NFKC, ``'`` apostrophes, single spaces, lower-case by default."""
    text = " ".join(prepare(text).split())
    return text.lower() if case == "lower" else text


def is_punctuation_only(query: str) -> bool:
    """True for empty strings and strings with no letter or digit."""
    return bool(_PUNCT_ONLY.match(query))
