"""The four query sources as plain Python: page counting, PMI, title policy, WordNet entries.

Beam wiring lives in :mod:`queries.transforms`; everything here tests (and benchmarks) without it.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import math
import os
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from queries import tokenize, wikitext
from queries.dump_reader import DumpFile, Record, Skip

SOURCES = ("wiki_unigram", "wiki_bigram", "wiki_title", "wordnet")
_QUALIFIER = re.compile(r"\s+\([^()]*\)$")


@dataclass(frozen=True)
class Candidate:
    """A query proposed by one source, with that source's evidence."""

    query: str
    source: str
    count: int | None = None
    pmi: float | None = None
    views: int | None = None
    synsets: tuple[str, ...] = ()
    rank_key: float = 0.0  # higher is better within the source

    def to_json(self) -> str:
        d = dict(self.__dict__, synsets=list(self.synsets))
        return json.dumps(d, ensure_ascii=False, sort_keys=True)

    @staticmethod
    def from_json(line: str) -> Candidate:
        d = json.loads(line)
        return Candidate(**dict(d, synsets=tuple(d.get("synsets", ()))))


class TextCounter:
    """Counts words, bigrams and page outcomes of dump records; drained in pieces to bound memory.

    Pages: only namespace 0. Redirects (``<redirect>`` or ``#REDIRECT``) and disambiguation pages
    are counted and their titles reported, but their text is not counted: a redirect has none, and
    a disambiguation page is a list of links rather than prose.
    """

    def __init__(self, lower: bool = True, max_entries: int = 500_000):
        self.lower = lower
        self.max_entries = max_entries
        self.unigrams: Counter = Counter()
        self.bigrams: Counter = Counter()
        self.stats: Counter = Counter()

    def add(self, rec: Record) -> tuple[str, str] | None:
        """Count one record; returns ``(title, kind)`` for namespace-0 pages."""
        if isinstance(rec, DumpFile):  # dump_file:read, dump_file:failed[:<problem>]
            self.stats.update(rec.stats())
            return None
        if isinstance(rec, Skip):
            self.stats[f"page:skipped:{rec.reason}"] += 1
            return None
        if rec.ns != 0:
            self.stats["page:other_namespace"] += 1
            return None
        if rec.redirect is not None or wikitext.is_redirect_text(rec.text):
            self.stats["page:redirect"] += 1
            return rec.title, "redirect"
        if wikitext.is_disambiguation(rec.title, rec.text):
            self.stats["page:disambiguation"] += 1
            return rec.title, "disambiguation"
        try:
            plain = wikitext.to_plain_text(rec.text)
        except Exception:  # mwparserfromhell gives up on some pathological markup
            self.stats["page:skipped:wikitext_error"] += 1
            return None
        runs = tokenize.word_runs(plain, self.lower)
        for run in runs:
            self.unigrams.update(run)
        self.bigrams.update(tokenize.bigrams(runs))
        self.stats["page:article"] += 1
        self.stats["text:wikitext_bytes"] += len(rec.text.encode("utf-8"))
        return rec.title, "article"

    @property
    def full(self) -> bool:
        """Whether the counts should be drained now."""
        return len(self.unigrams) + len(self.bigrams) >= self.max_entries

    def drain(self):
        """Yield ``((kind, key), count)`` for everything counted so far and reset."""
        for kind, counter in (("u", self.unigrams), ("b", self.bigrams), ("s", self.stats)):
            for key, n in counter.items():
                yield (kind, key), n
            counter.clear()

    def drain_shards(self, n_shards: int):
        """Yield ``((kind, shard), counts)``: everything counted so far in ``n_shards`` count
        tables per kind (:func:`shard_counts`; a key always lands in the same shard, on any
        machine), and reset."""
        for kind, counter in (("u", self.unigrams), ("b", self.bigrams), ("s", self.stats)):
            if counter:
                for shard, part in shard_counts(counter, n_shards):
                    yield (kind, shard), part
            counter.clear()


def shard_counts(counter: Counter, n_shards: int) -> Iterator[tuple[int, pa.Table]]:
    """``(shard, table)`` per non-empty shard: the counts as Arrow tables of ``key`` and ``n``,
    split by a stable hash of the key (CRC-32, not ``hash()``, which differs between processes).

    Tables, not dicts: a merge sums them in C++ (:func:`sum_counts`), and a runner moves their
    buffers instead of encoding every entry.
    """
    keys = list(counter)
    crc32 = zlib.crc32
    shards = np.fromiter((crc32(k.encode("utf-8")) for k in keys), np.int64, len(keys))
    shards %= n_shards
    order = np.argsort(shards, kind="stable")
    table = pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "n": np.fromiter(counter.values(), np.int64, len(keys)),
        }
    )
    cuts = np.flatnonzero(np.diff(shards[order])) + 1
    for start, end in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(order)].tolist()):
        yield int(shards[order[start]]), table.take(pa.array(order[start:end]))


def sum_counts(tables: list[pa.Table]) -> pa.Table:
    """Count tables (``key``, ``n``) summed per key into one (in no particular order)."""
    tables = [t for t in tables if t.num_rows]
    if len(tables) == 1:
        return tables[0]
    if not tables:
        return pa.table({"key": pa.array([], pa.string()), "n": pa.array([], pa.int64())})
    summed = pa.concat_tables(tables).group_by("key").aggregate([("n", "sum")])
    return pa.table({"key": summed.column("key"), "n": summed.column("n_sum")})


def count_rows(counts: pa.Table) -> Iterator[tuple[str, int]]:
    """The ``(key, n)`` rows of a count table."""
    return zip(counts.column("key").to_pylist(), counts.column("n").to_pylist())


def pairs_with_word_counts(pairs: pa.Table, words: pa.Table) -> Iterator[tuple[str, int, int, int]]:
    """``(bigram, c(xy), c(x), c(y))`` for each pair count whose two words both have counts."""
    if not pairs.num_rows or not words.num_rows:
        return
    keys = pairs.column("key").combine_chunks()
    parts = pc.split_pattern(keys, " ", max_splits=1)  # a word holds no space
    where_x = pc.index_in(pc.list_element(parts, 0), value_set=words.column("key"))
    where_y = pc.index_in(pc.list_element(parts, 1), value_set=words.column("key"))
    both = pc.and_(pc.is_valid(where_x), pc.is_valid(where_y))
    n = words.column("n").combine_chunks()
    yield from zip(
        keys.filter(both).to_pylist(),
        pairs.column("n").filter(both).to_pylist(),
        n.take(where_x.filter(both)).to_pylist(),
        n.take(where_y.filter(both)).to_pylist(),
    )


def pmi(c_xy: int, c_x: int, c_y: int, n: int) -> float:
    """Pointwise mutual information ``ln(c(xy) * N / (c(x) * c(y)))``, N = total word tokens."""
    return math.log(c_xy * n / (c_x * c_y))


def title_query(title: str, strip_qualifier: bool, case: str) -> str:
    """The query of an article title: ``Mercury (planet)`` -> ``mercury`` (qualifier stripped)."""
    if strip_qualifier:
        title = _QUALIFIER.sub("", title)
    return tokenize.normalise_query(title, case)


# --- WordNet -------------------------------------------------------------------------------------


def _lemma_frequencies(wn) -> Counter:
    """Tagged-sense frequency per lemma name from WordNet's ``index.sense`` (empty if absent)."""
    counts: Counter = Counter()
    try:
        f = wn.open("index.sense")
    except OSError:
        return counts
    with f:
        for line in f:
            parts = line.split()
            if len(parts) == 4 and parts[3].isdigit():
                counts[parts[0].split("%", 1)[0]] += int(parts[3])
    return counts


def _wordnet_dir() -> str | None:
    """nltk's WordNet directory found without importing nltk (its import alone takes seconds)."""
    import sys

    homes = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    homes += [
        str(Path.home() / "nltk_data"),
        *(os.path.join(sys.prefix, d) for d in ("nltk_data", "share/nltk_data", "lib/nltk_data")),
    ]
    homes += [
        "/usr/share/nltk_data",
        "/usr/local/share/nltk_data",
        "/usr/lib/nltk_data",
        "/usr/local/lib/nltk_data",
    ]
    for home in homes:
        root = os.path.join(home, "corpora", "wordnet")
        if os.path.isfile(os.path.join(root, "data.noun")):
            return root
    return None


def _wordnet_cache_path(root: str, mode: str) -> Path:
    stamp = [root]
    for name in ("data.noun", "index.sense"):
        p = Path(root) / name
        if p.exists():
            stamp.append(f"{name}:{p.stat().st_size}:{p.stat().st_mtime_ns}")
    key = hashlib.sha256("|".join(stamp).encode()).hexdigest()[:12]
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wit-builder"
    return base / f"wordnet-{mode}-{key}.json.gz"


def wordnet_entries(mode: str = "all") -> list[tuple[str, list[str], int]]:
    """``(name, synset names, tagged frequency)`` per WordNet name, all parts of speech.

    ``all``: every lemma name of every synset; ``head``: each synset's head word (the lemma its
    name is built from, as MetaCLIP takes it). ``_`` becomes a space. Cached on disk because
    walking all 117,659 synsets with nltk takes 20 s or more.
    """
    from queries.wordnet_data import load_wordnet

    root = _wordnet_dir()
    if root is None:
        load_wordnet()  # arranges Debian's files, or raises WordNetMissing naming both remedies
        import nltk

        root = str(nltk.data.find("corpora/wordnet"))
    cache = _wordnet_cache_path(root, mode)
    if cache.exists():
        try:
            return [tuple(e) for e in json.loads(gzip.decompress(cache.read_bytes()))]
        except (OSError, ValueError):
            pass
    wn = load_wordnet()
    names: dict[str, dict[str, list[str]]] = {"all": {}, "head": {}}
    for synset in wn.all_synsets():  # one walk fills both modes' caches
        for lemma in synset.lemma_names():
            names["all"].setdefault(lemma, []).append(synset.name())
        names["head"].setdefault(synset.name().split(".")[0], []).append(synset.name())
    freq = _lemma_frequencies(wn)
    result = {}
    for m, by_name in names.items():
        result[m] = sorted(
            (name.replace("_", " "), sorted(set(syns)), freq.get(name.lower(), 0))
            for name, syns in by_name.items()
        )
        _write_cache(_wordnet_cache_path(root, m), result[m])
    return result[mode]


def _write_cache(path: Path, entries: list) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(gzip.compress(json.dumps(entries).encode()))
        tmp.replace(path)
    except OSError:  # a read-only home only costs the next run the walk again
        pass


@functools.lru_cache(maxsize=4)
def wordnet_candidates(mode: str, case: str) -> tuple[Candidate, ...]:
    """WordNet candidates: names merged per normalised query (synsets united, frequencies summed).

    Ranked by WordNet's tagged-sense frequency (SemCor counts from ``index.sense``), then by the
    number of synsets (more senses, more common).
    """
    merged: dict[str, tuple[set, int]] = {}
    for name, synsets, freq in wordnet_entries(mode):
        q = tokenize.normalise_query(name, case)
        syns, total = merged.get(q, (set(), 0))
        merged[q] = (syns | set(synsets), total + freq)
    return tuple(
        Candidate(q, "wordnet", synsets=tuple(sorted(syns)), rank_key=freq + len(syns) / 1000.0)
        for q, (syns, freq) in sorted(merged.items())
    )
