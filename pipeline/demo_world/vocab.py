"""English word lists for the demo world, drawn from real sources on the machine.

Common words and their corpus frequencies come from ``wordfreq``; nouns, adjectives and glosses
from WordNet 3.0's data files, read directly (much faster than nltk's ``all_synsets``). The derived lists are cached as JSON under ``~/.cache/wit-builder`` so later
generations start at once. :class:`Sampler` draws words with their real frequencies, so word
counts in generated text follow the Zipf curve of real English.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

CACHE_VERSION = 3
N_COMMON = 30000  # wordfreq's top English words used as the body of the text
_WORD = re.compile(r"^[a-z]+$")
# Web-frequency lists carry slurs and profanity that an encyclopedia's running text would not.
BLOCKED = frozenset(
    "fuck fucking fucked fucker fuckin shit shitty bitch bitches ass asshole dick cock pussy cunt "
    "whore slut porn porno nigga nigger faggot fag retard sexy sex nude naked tits boobs bastard "
    "damn rape dildo penis vagina anal cum horny xxx".split()
)


@dataclass(frozen=True)
class Vocab:
    """Word lists: ``words`` by descending frequency with ``freqs``; WordNet nouns, adjectives, glosses."""

    words: tuple[str, ...]
    freqs: tuple[float, ...]
    nouns: tuple[str, ...]  # WordNet noun lemmas that are also common words, most frequent first
    adjectives: tuple[str, ...]
    compounds: tuple[str, ...]  # multi-word WordNet nouns made of common words ("sea lion")
    glosses: dict[str, str]  # noun or compound -> the first clause of its first WordNet gloss


def _wordnet_dir() -> Path | None:
    from queries.wordnet_data import DEBIAN_DIR, default_target

    for d in (default_target() / "corpora" / "wordnet", DEBIAN_DIR):
        if (d / "data.noun").is_file() and (d / "data.adj").is_file():
            return d
    return None


def read_wordnet_data(path: Path) -> list[tuple[list[str], str]]:
    """(lemmas, gloss) of each synset in a WordNet ``data.*`` file, in file order."""
    synsets = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):  # the licence header
                continue
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            n = int(fields[3], 16)  # w_cnt is hexadecimal
            lemmas = [
                re.sub(r"\(.*\)$", "", w).replace("_", " ") for w in fields[4 : 4 + 2 * n : 2]
            ]
            synsets.append((lemmas, gloss.split(";")[0].strip()))
    return synsets


def build_vocab() -> Vocab:
    """Derive the word lists from wordfreq and WordNet (no cache)."""
    import wordfreq

    freq = wordfreq.get_frequency_dict("en")
    words = [w for w in wordfreq.top_n_list("en", N_COMMON) if _WORD.match(w) and w not in BLOCKED]
    common = set(words)
    nouns: dict[str, str] = {}
    compounds: dict[str, str] = {}
    adjectives: set[str] = set()
    wn = _wordnet_dir()
    if wn is not None:
        for lemmas, gloss in read_wordnet_data(wn / "data.noun"):
            for lemma in lemmas:
                parts = lemma.split(" ")
                if len(parts) == 1 and lemma in common and len(lemma) >= 3 and gloss:
                    nouns.setdefault(lemma, gloss)
                elif 2 <= len(parts) <= 3 and all(p in common for p in parts) and gloss:
                    compounds.setdefault(lemma, gloss)
        for lemmas, _ in read_wordnet_data(wn / "data.adj"):
            adjectives.update(x for x in lemmas if x in common and len(x) >= 3)
    else:  # no WordNet: still English, from wordfreq alone
        nouns = {w: "" for w in words[200:8000] if len(w) >= 4}
        adjectives = set(words[300:3000:7])
    by_freq = sorted(nouns, key=lambda w: (-freq.get(w, 0.0), w))
    glosses = {w: nouns[w] for w in by_freq if nouns[w]}
    glosses.update(sorted(compounds.items()))
    return Vocab(
        words=tuple(words),
        freqs=tuple(freq[w] for w in words),
        nouns=tuple(by_freq),
        adjectives=tuple(sorted(adjectives, key=lambda w: (-freq.get(w, 0.0), w))),
        compounds=tuple(sorted(compounds)),
        glosses=glosses,
    )


def _cache_path() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    from importlib.metadata import version

    # The lists depend on wordfreq's data and on whether WordNet is installed.
    key = f"v{CACHE_VERSION}-wordfreq{version('wordfreq')}-{'wn' if _wordnet_dir() else 'nown'}"
    return root / "wit-builder" / f"demo-vocab-{key}.json"


@lru_cache(maxsize=1)
def load_vocab() -> Vocab:
    """The vocabulary, from the cache file when present, else built and cached."""
    path = _cache_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Vocab(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    except (OSError, ValueError, TypeError):
        pass
    vocab = build_vocab()
    try:  # a read-only home only costs speed
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(vocab.__dict__), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
    return vocab


class Sampler:
    """Draws words with their real English frequencies (a Zipf curve), in cheap batches."""

    def __init__(self, vocab: Vocab, rng: np.random.Generator, batch: int = 65536):
        p = np.asarray(vocab.freqs, dtype=np.float64)
        self.words = vocab.words
        self.cdf = np.cumsum(p / p.sum())
        self.rng = rng
        self.batch = batch
        self._buf: list[str] = []
        self._pos = 0

    def take(self, n: int) -> list[str]:
        """The next ``n`` words."""
        if self._pos + n > len(self._buf):
            idx = np.searchsorted(self.cdf, self.rng.random(max(n, self.batch)), side="right")
            idx = np.minimum(idx, len(self.words) - 1)
            self._buf = self._buf[self._pos :] + [self.words[i] for i in idx.tolist()]
            self._pos = 0
        self._pos += n
        return self._buf[self._pos - n : self._pos]
