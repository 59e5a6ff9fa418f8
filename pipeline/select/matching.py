"""Whole-token multi-pattern matching of captions against the query list (Aho-Corasick).

Captions and queries go through the same :func:`match_text`: NFKC, the case policy, then the
query tokenizer's words (letters, marks and digits; an apostrophe or hyphen between two of them
joins them: ``don't``, ``t-shirt``), joined by single spaces and padded with one space at each
end. A query matches where its padded form occurs in the padded caption, so ``cat`` never
matches ``category`` or ``cat-like``, and ``red car`` matches ``a red  car.``. Unlike the query
counts, digit-only tokens stay tokens, so ``apollo 11`` can match.
"""

from __future__ import annotations

import threading
from operator import itemgetter
from typing import Iterable

import ahocorasick

from pipeline import fs
from queries.tokenize import WORD, prepare

_VALUE = itemgetter(1)


def _byte_table(lower: bool) -> bytes:
    """bytes.translate table for ASCII text: separators -> space, optionally A-Z -> a-z."""
    table = bytearray(range(256))
    for c in range(128):
        ch = chr(c)
        if not ch.isalnum() and ch != "'":
            table[c] = 32
        elif lower and ch.isupper():
            table[c] = ord(ch.lower())
    return bytes(table)


# bytes.translate is several times faster than str.translate: the hot path of every caption.
_BYTES_LOWER, _BYTES_KEEP = _byte_table(True), _byte_table(False)


def tokens(text: str, lower: bool = True) -> list[str]:
    """The tokens of a caption or query under the matching rules (the query tokenizer's words)."""
    if text.isascii() and "'" not in text and "-" not in text:
        return (
            text.encode("ascii")
            .translate(_BYTES_LOWER if lower else _BYTES_KEEP)
            .decode("ascii")
            .split()
        )
    if not text.isascii():
        text = prepare(text)
    return WORD.findall(text.lower() if lower else text)


def match_text(text: str, lower: bool = True) -> str:
    """``" tok1 tok2 "``: the padded token string that patterns and captions are matched in."""
    return " " + " ".join(tokens(text, lower)) + " "


class Matcher:
    """An Aho-Corasick automaton over the padded queries.

    A pattern's value is its query id, or, for a pattern that several queries share (``t-shirt``
    and ``t shirt``), a float key of :attr:`groups` (a float never equals an int id). Ints keep the
    per-caption work in C: ``set(map(itemgetter(1), iter))`` then one sort.
    """

    def __init__(self, queries: Iterable[tuple[int, str]], lower: bool = True):
        self.lower = lower
        self.names: dict[int, str] = {}
        self.skipped = 0  # queries with no token (punctuation only): they can never match
        by_key: dict[str, list[int]] = {}
        for qid, query in queries:
            qid = int(qid)
            self.names[qid] = query
            key = match_text(query, lower)
            if key == "  ":
                self.skipped += 1
                continue
            by_key.setdefault(key, []).append(qid)
        self.groups: dict[float, tuple[int, ...]] = {}
        self.automaton = ahocorasick.Automaton()
        for key, group in by_key.items():
            if len(group) == 1:
                self.automaton.add_word(key, group[0])
            else:
                tag = len(self.groups) + 0.5
                self.groups[tag] = tuple(sorted(set(group)))
                self.automaton.add_word(key, tag)
        self._group_keys = frozenset(self.groups)
        if by_key:
            self.automaton.make_automaton()
        self.size = len(by_key)

    def match(self, caption: str) -> tuple[int, ...]:
        """Sorted ids of every query found in the caption (empty tuple if none)."""
        if not self.size:
            return ()
        if caption.isascii() and "'" not in caption and "-" not in caption:  # inlined match_text
            text = (
                caption.encode("ascii")
                .translate(_BYTES_LOWER if self.lower else _BYTES_KEEP)
                .decode("ascii")
            )
            # split/join only when needed: most captions have no run of separators inside
            text = f" {text.strip()} " if "  " not in text else f" {' '.join(text.split())} "
        else:
            text = match_text(caption, self.lower)
        hits = set(map(_VALUE, self.automaton.iter(text)))
        if not hits:
            return ()
        if self.groups and not hits.isdisjoint(self._group_keys):
            hits = {q for v in hits for q in (self.groups[v] if v in self.groups else (v,))}
        return tuple(sorted(hits))


def _is_text(t) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def read_queries(path: str) -> tuple[list[tuple[int, str]], bool]:
    """``([(query_id, query)], all_lower)`` from a queries.parquet on any filesystem.

    A file that is not such a list raises ValueError with a one-line reason (pyarrow's own
    messages run over several lines and name its internals).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with fs.open_read(path) as f:
            pf = pq.ParquetFile(f)
            schema = pf.schema_arrow
            missing = [c for c in ("query", "query_id") if c not in schema.names]
            if missing:
                have = ", ".join(schema.names) or "none"
                raise ValueError(f"no {' or '.join(missing)} column (columns: {have})")
            id_type, query_type = schema.field("query_id").type, schema.field("query").type
            if not pa.types.is_integer(id_type):
                raise ValueError(f"query_id must hold integers, not {id_type}")
            if not _is_text(query_type):
                raise ValueError(f"query must hold strings, not {query_type}")
            table = pf.read(columns=["query_id", "query"])
    except pa.ArrowException as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"not a readable Parquet file ({first})") from None
    pairs = list(zip(table.column("query_id").to_pylist(), table.column("query").to_pylist()))
    pairs = [(int(i), q) for i, q in pairs if q is not None and i is not None]
    return pairs, all(q == q.lower() for _, q in pairs)


_CACHE: dict[tuple[str, str, int], Matcher] = {}
_LOCK = threading.Lock()


def get_matcher(path: str, case: str = "auto") -> Matcher:
    """The matcher for a query file, built once per process (``DoFn.setup`` calls this).

    ``case``: ``lower`` folds case, ``preserve`` keeps it, ``auto`` folds when every query is
    lower-case (the query list's own policy).
    """
    key = (path, case, fs.size(path))  # the size guards against a file rewritten in place
    with _LOCK:
        if key not in _CACHE:
            pairs, all_lower = read_queries(path)
            lower = case == "lower" or (case == "auto" and all_lower)
            _CACHE[key] = Matcher(pairs, lower=lower)
        return _CACHE[key]


def clear_cache() -> None:
    """Forget built automata (tests rewrite query files in place)."""
    with _LOCK:
        _CACHE.clear()
