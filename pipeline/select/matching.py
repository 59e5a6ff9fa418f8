"""Whole-token multi-pattern matching of captions against the query list, a batch at a time.

Captions and queries go through the same :func:`tokens`: NFKC, the case policy, then the query
tokenizer's words (letters, marks and digits; an apostrophe or hyphen between two of them joins
them: ``don't``, ``t-shirt``). A query matches a caption where its tokens occur as consecutive
tokens of the caption, so ``cat`` never matches ``category`` or ``cat-like``, and ``red car``
matches ``a red  car.``. Unlike the query counts, digit-only tokens stay tokens, so ``apollo 11``
can match.

The query list becomes a trie over token ids held in a few numpy arrays (a 500k-query list takes
tens of MB, where an automaton of Python objects took hundreds per worker). A batch of captions
is tokenised by Arrow (ASCII captions) or the regex rule (the rest), its tokens are mapped to the
trie's token ids, and every start position walks the trie one token per step for the whole batch
at once: the cost per caption is a few vectorised operations, not a Python call.
"""

from __future__ import annotations

import functools
import io
import json
import threading
from dataclasses import dataclass
from itertools import chain
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import fs
from pipeline.memory import release_memory
from queries.tokenize import WORD, prepare

_ASCII_SEPARATORS = r"[^A-Za-z0-9]+"


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
    """``" tok1 tok2 "``: a text's tokens joined by single spaces, padded (the matching key)."""
    return " " + " ".join(tokens(text, lower)) + " "


def _as_strings(texts) -> pa.Array:
    """One string array (chunks combined, dictionaries decoded)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not isinstance(texts, pa.Array):
        texts = pa.array(list(texts), pa.string())
    if pa.types.is_dictionary(texts.type):
        texts = texts.dictionary_decode()
    return texts if texts.type == pa.string() else texts.cast(pa.string())


def tokenize_batch(texts, lower: bool) -> tuple[pa.Array, np.ndarray]:
    """Every token of every text and the index of its text: a text's tokens are adjacent and in
    order. Texts that :func:`tokens` reads on its ASCII path are split by Arrow with the same
    rule (runs of ASCII letters and digits); the rest go through :func:`tokens` itself."""
    texts = _as_strings(texts)
    if not len(texts):
        return pa.array([], pa.string()), np.zeros(0, np.int64)
    simple = pc.and_(
        pc.string_is_ascii(texts), pc.invert(pc.match_substring_regex(texts, "['-]"))
    ).to_numpy(zero_copy_only=False)
    flats, rows = [], []
    if simple.any():
        where = np.flatnonzero(simple)
        sub = texts if len(where) == len(texts) else texts.take(where)
        sub = pc.ascii_lower(sub) if lower else sub
        # words separated by spaces only: a plain split (a regex split is several times slower)
        spaced = pc.invert(pc.match_substring_regex(sub, r"[^A-Za-z0-9 ]")).to_numpy(False)
        for part, split in ((spaced, False), (~spaced, True)):
            if part.any():
                flat, parents = _split(sub if part.all() else sub.filter(pa.array(part)), split)
                flats.append(flat)
                rows.append(where[np.flatnonzero(part)[parents]])
    if not simple.all():
        where = np.flatnonzero(~simple)
        lists = [tokens(t, lower) for t in texts.take(where).to_pylist()]
        flats.append(pa.array(list(chain.from_iterable(lists)), pa.string()))
        rows.append(np.repeat(where, np.fromiter(map(len, lists), np.int64, len(lists))))
    flat = flats[0] if len(flats) == 1 else pa.concat_arrays(flats)
    return flat, np.concatenate(rows).astype(np.int64, copy=False)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """Distinct values, ascending (a sort: numpy's hash-based ``unique`` is slower on int64)."""
    values = np.sort(values)
    if len(values) > 1:
        values = values[np.concatenate([[True], values[1:] != values[:-1]])]
    return values


_HASH_BASE = np.uint64(0x100000001B3)  # odd: its powers mod 2**64 never vanish
_HASH_LENGTH = np.uint64(0x9E3779B97F4A7C15)


def _powers(n: int) -> np.ndarray:
    powers = np.full(max(n, 1), _HASH_BASE, np.uint64)
    powers[0] = 1
    return np.cumprod(powers, dtype=np.uint64)  # wraps around mod 2**64, as intended


def token_hashes(strings: pa.Array, chunk: int = 65_536) -> np.ndarray:
    """A 64-bit polynomial hash of each string's UTF-8 bytes (and its length), from Arrow's
    buffers in a few numpy passes: how a batch's tokens are looked up in the vocabulary."""
    strings = _as_strings(strings)
    if len(strings) > chunk:  # the passes take 32 bytes per byte hashed
        parts = [token_hashes(strings.slice(a, chunk)) for a in range(0, len(strings), chunk)]
        return np.concatenate(parts)
    n = len(strings)
    if not n:
        return np.zeros(0, np.uint64)
    buffers = strings.buffers()
    offsets = np.frombuffer(buffers[1], np.int32, n + 1, strings.offset * 4).astype(np.int64)
    lengths = np.diff(offsets)
    hashes = np.zeros(n, np.uint64)
    filled = np.flatnonzero(lengths)
    if len(filled):
        first, total = offsets[0], offsets[-1] - offsets[0]
        data = np.frombuffer(buffers[2], np.uint8, total, first).astype(np.uint64)
        starts = offsets[:-1][filled] - first
        position = np.arange(total) - np.repeat(starts, lengths[filled])
        terms = data * _powers(int(lengths.max()))[position]
        hashes[filled] = np.add.reduceat(terms, starts)
    return hashes ^ (lengths.astype(np.uint64) * _HASH_LENGTH)


def _split(texts: pa.Array, regex: bool) -> tuple[pa.Array, np.ndarray]:
    """The non-empty pieces of each text between separators, and the index of their text."""
    lists = (
        pc.split_pattern_regex(texts, _ASCII_SEPARATORS) if regex else pc.split_pattern(texts, " ")
    )
    flat = pc.list_flatten(lists)
    keep = pc.greater(pc.binary_length(flat), 0)
    parents = pc.list_parent_indices(lists).to_numpy()
    return flat.filter(keep), parents[keep.to_numpy(zero_copy_only=False)]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concat(arange(s, s + n) for s, n in zip(starts, lengths))`` without a Python loop."""
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, np.int64)
    ends = np.cumsum(lengths)
    return np.arange(total, dtype=np.int64) - np.repeat(ends - lengths - starts, lengths)


@dataclass(frozen=True)
class QueryTable:
    """The query list as arrays: ``ids`` ascending and unique, ``names[i]`` the text of ``ids[i]``
    (the last one given, for a repeated id). A query's index in ``ids`` is how the select steps
    refer to it."""

    ids: np.ndarray  # int64, ascending
    names: pa.Array  # string, aligned with ids

    @staticmethod
    def from_arrays(ids: np.ndarray, texts: pa.Array) -> tuple[QueryTable, np.ndarray]:
        """The table of (id, text) rows, and each row's query index."""
        ids = np.asarray(ids, np.int64)
        unique, first_from_end = np.unique(ids[::-1], return_index=True)
        last = len(ids) - 1 - first_from_end
        table = QueryTable(unique, _as_strings(texts).take(pa.array(last)))
        return table, np.searchsorted(unique, ids)

    def index_of(self, query_ids) -> np.ndarray:
        """Query indices of known ids (int64 array)."""
        return np.searchsorted(self.ids, np.asarray(query_ids, np.int64))


def query_keys(texts, lower: bool, chunk: int = 65_536) -> pa.Array:
    """Each text's matching key: its tokens joined by single spaces ("" when it has none)."""
    texts = _as_strings(texts)
    parts = []
    for start in range(0, len(texts), chunk):
        part = texts.slice(start, chunk)
        flat, rows = tokenize_batch(part, lower)
        counts = np.bincount(rows, minlength=len(part))
        order = pa.array(np.argsort(rows, kind="stable"))  # a text's tokens together, in order
        offsets = pa.array(np.r_[0, np.cumsum(counts)].astype(np.int32))
        parts.append(pc.binary_join(pa.ListArray.from_arrays(offsets, flat.take(order)), " "))
    return pa.concat_arrays(parts) if parts else pa.array([], pa.string())


_TRIE_ARRAYS = (
    "ids", "vocab_hash", "vocab_order", "root_child", "codes", "child", "has_child",
    "key_of_node", "key_queries", "key_start", "key_len",
)  # fmt: skip


@dataclass(frozen=True)
class TokenTrie:
    """The query list's keys as a trie over token ids, in numpy arrays.

    Nodes are token-id prefixes of the keys (root 0). ``root_child[token]`` is the node one
    token below the root; deeper edges are the sorted ``codes`` ``parent * len(vocab) + token``
    with their ``child`` nodes. A node that ends a key (``key_of_node``) lists the queries of that
    key, ``key_queries[key_start[k] : key_start[k] + key_len[k]]``, as indices into ``ids``
    (several queries can share a key: ``café`` and ``cafe\u0301``).
    """

    lower: bool
    size: int  # distinct keys
    skipped: int  # queries with no token (punctuation only): they can never match
    vocab: pa.Array  # the tokens of the keys; a token's id is its position
    vocab_hash: np.ndarray  # token_hashes(vocab), ascending (empty: two tokens share a hash)
    vocab_order: np.ndarray  # the token id of each vocab_hash
    ids: np.ndarray  # query ids, ascending
    root_child: np.ndarray
    codes: np.ndarray
    child: np.ndarray
    has_child: np.ndarray
    key_of_node: np.ndarray
    key_queries: np.ndarray
    key_start: np.ndarray
    key_len: np.ndarray

    @staticmethod
    def build(ids: np.ndarray, texts, lower: bool) -> TokenTrie:
        """The trie of the (id, text) rows of two aligned arrays."""
        table, query_of_row = QueryTable.from_arrays(ids, texts)
        keys = query_keys(texts, lower)
        has = pc.greater(pc.binary_length(keys), 0).to_numpy(zero_copy_only=False)
        encoded = keys.filter(pa.array(has)).dictionary_encode()
        size, n = len(encoded.dictionary), max(1, len(table.ids))
        key_of = encoded.indices.to_numpy().astype(np.int64)
        pairs = sorted_unique(key_of * n + query_of_row[has])
        key_ids, key_queries = pairs // n, (pairs % n).astype(np.int32)
        key_len = np.bincount(key_ids, minlength=size).astype(np.int32)
        key_tokens = pc.split_pattern(encoded.dictionary, " ")  # a key's tokens hold no space
        tokens = pc.list_flatten(key_tokens).dictionary_encode()
        length = pc.list_value_length(key_tokens).to_numpy().astype(np.int64)
        arrays = _trie_arrays(
            tokens.indices.to_numpy().astype(np.int64), length, len(tokens.dictionary)
        )
        hashes = token_hashes(tokens.dictionary)
        order = np.argsort(hashes, kind="stable").astype(np.int32)
        if len(hashes) > 1 and (np.diff(hashes[order]) == 0).any():
            order = np.zeros(0, np.int32)  # the lookup falls back to Arrow's hash table
        return TokenTrie(
            vocab_hash=hashes[order],
            vocab_order=order,
            lower=lower,
            size=size,
            skipped=int((~has).sum()),
            vocab=tokens.dictionary,
            ids=table.ids,
            key_queries=key_queries,
            key_start=(np.cumsum(key_len) - key_len).astype(np.int32),
            key_len=key_len,
            **arrays,
        )

    def save(self, directory: str) -> None:
        """Write the trie as ``.npy`` files and an Arrow file (readable by :meth:`load`)."""
        for name in _TRIE_ARRAYS:
            with fs.open_write_atomic(fs.join(directory, f"{name}.npy")) as f:
                np.save(f, getattr(self, name), allow_pickle=False)
        with fs.open_write_atomic(fs.join(directory, "vocab.arrow")) as f:
            with pa.ipc.new_file(f, pa.schema([("token", pa.string())])) as writer:
                writer.write_batch(pa.record_batch([self.vocab], names=["token"]))
        meta = {"lower": self.lower, "size": self.size, "skipped": self.skipped}
        fs.write_text_atomic(fs.join(directory, "trie.json"), json.dumps(meta))

    @staticmethod
    def load(directory: str) -> TokenTrie:
        """A saved trie; local files are memory-mapped, so every process on a machine shares
        one copy of the arrays (the page cache's)."""
        arrays = {name: _load_array(fs.join(directory, f"{name}.npy")) for name in _TRIE_ARRAYS}
        path = fs.join(directory, "vocab.arrow")
        if fs.is_remote(path):
            with fs.open_read(path) as f:
                source = pa.BufferReader(f.read())
        else:
            source = pa.memory_map(path)
        vocab = pa.ipc.open_file(source).read_all().column("token").combine_chunks()
        meta = json.loads(fs.read_text(fs.join(directory, "trie.json")))
        return TokenTrie(vocab=vocab, **meta, **arrays)

    def _token_ids(self, flat: pa.Array) -> np.ndarray:
        """The trie's id of each token (-1: in no query)."""
        encoded = flat.dictionary_encode()
        unique = encoded.dictionary
        if len(self.vocab_order):
            hashes = token_hashes(unique)
            at = np.minimum(np.searchsorted(self.vocab_hash, hashes), len(self.vocab_hash) - 1)
            candidate = self.vocab_order[at].astype(np.int64)
            hit = np.flatnonzero(self.vocab_hash[at] == hashes)
            lookup = np.full(len(unique), -1, np.int64)
            if len(hit):  # equal hashes are not enough: the tokens must be equal
                take = pa.array(hit)
                same = pc.equal(unique.take(take), self.vocab.take(pa.array(candidate[hit])))
                hit = hit[same.to_numpy(zero_copy_only=False)]
                lookup[hit] = candidate[hit]
        else:
            lookup = pc.fill_null(pc.index_in(unique, value_set=self.vocab), -1).to_numpy()
        return lookup[encoded.indices.to_numpy()].astype(np.int64, copy=False)

    def match_batch(self, captions) -> tuple[np.ndarray, np.ndarray]:
        """``(row, query)`` of every query found in every caption: row (position in
        ``captions``) ascending, then query index ascending (so query id ascending), no repeats."""
        empty = np.zeros(0, np.int64)
        if not self.size:
            return empty, empty
        flat, rows = tokenize_batch(captions, self.lower)
        if not len(flat):
            return empty, empty
        tid = self._token_ids(flat)
        starts, nodes = self._walk(tid, rows)
        keys = self.key_of_node[nodes].astype(np.int64)
        found = keys >= 0
        starts, keys = starts[found], keys[found]
        lengths = self.key_len[keys].astype(np.int64)
        queries = self.key_queries[_ranges(self.key_start[keys].astype(np.int64), lengths)]
        n = max(1, len(self.ids))
        pairs = sorted_unique(np.repeat(rows[starts], lengths) * n + queries)
        return pairs // n, pairs % n

    def _walk(self, tid: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every (start token, node) such that the tokens from start spell the node's prefix."""
        v, end = max(1, len(self.vocab)), len(tid)
        start = np.flatnonzero(tid >= 0)
        node = self.root_child[tid[start]].astype(np.int64)
        step = node >= 0
        start, node = start[step], node[step]
        found_starts, found_nodes = [start], [node]
        pos = start + 1
        while len(start) and len(self.codes):
            step = self.has_child[node] & (pos < end)
            start, node, pos = start[step], node[step], pos[step]
            step = (rows[pos] == rows[start]) & (tid[pos] >= 0)  # same caption, known token
            start, node, pos = start[step], node[step], pos[step]
            code = node * v + tid[pos]
            at = np.minimum(np.searchsorted(self.codes, code), len(self.codes) - 1)
            step = self.codes[at] == code
            start, node, pos = start[step], self.child[at[step]].astype(np.int64), pos[step] + 1
            found_starts.append(start)
            found_nodes.append(node)
        return np.concatenate(found_starts), np.concatenate(found_nodes)


def _trie_arrays(key_tokens: np.ndarray, length: np.ndarray, vocab: int) -> dict:
    """The trie's node arrays from each key's token ids (``length`` tokens each, concatenated)."""
    v, size = max(1, vocab), len(length)
    start = np.cumsum(length) - length
    node = np.zeros(size, np.int64)
    codes, children = [], []
    next_node, depth = 1, 0
    alive = np.arange(size)
    while True:
        alive = alive[length[alive] > depth]
        if not len(alive):
            break
        code = node[alive] * v + key_tokens[start[alive] + depth]
        unique, inverse = np.unique(code, return_inverse=True)
        codes.append(unique)
        children.append(np.arange(next_node, next_node + len(unique)))
        node[alive] = next_node + inverse
        next_node += len(unique)
        depth += 1
    codes_all = np.concatenate(codes) if codes else np.zeros(0, np.int64)
    child_all = np.concatenate(children) if children else np.zeros(0, np.int64)
    # per depth the codes ascend and every depth's parents are newer nodes: sorted overall
    root = codes_all < v
    root_child = np.full(v, -1, np.int32)
    root_child[codes_all[root]] = child_all[root]
    has_child = np.zeros(next_node, bool)
    has_child[codes_all[~root] // v] = True
    key_of_node = np.full(next_node, -1, np.int32)
    key_of_node[node] = np.arange(size, dtype=np.int32)
    return {
        "root_child": root_child,
        "codes": codes_all[~root],
        "child": child_all[~root].astype(np.int32),
        "has_child": has_child,
        "key_of_node": key_of_node,
    }


def _load_array(path: str) -> np.ndarray:
    if fs.is_remote(path):
        with fs.open_read(path) as f:
            return np.load(io.BytesIO(f.read()), allow_pickle=False)
    return np.load(path, mmap_mode="r", allow_pickle=False)


class Matcher:
    """Whole-token matching against a query list: :meth:`match_batch` finds every query in a
    batch of captions. The trie is built on first use (a driver that only checks the list and
    names its queries never builds it)."""

    def __init__(self, queries: Iterable[tuple[int, str]] = (), lower: bool = True):
        pairs = [(int(i), q) for i, q in queries]
        ids = np.array([i for i, _ in pairs], np.int64)
        self._rows = (ids, pa.array([q for _, q in pairs], pa.string()))
        self._path, self.lower = None, lower

    @classmethod
    def from_arrays(cls, ids: np.ndarray, texts, lower: bool = True) -> Matcher:
        """A matcher of the (id, text) rows of two aligned arrays."""
        matcher = cls.__new__(cls)
        matcher._rows, matcher.lower = (np.asarray(ids, np.int64), _as_strings(texts)), lower
        matcher._path = None
        return matcher

    @classmethod
    def from_file(cls, path: str, lower: bool) -> Matcher:
        """A matcher of a query file that reads the file again when it needs the queries, so
        that it holds only their counts in between (a driver that only checks the list)."""
        matcher = cls.__new__(cls)
        matcher._rows, matcher._path, matcher.lower = None, path, lower
        return matcher

    def _queries(self) -> tuple[np.ndarray, pa.Array]:
        return self._rows if self._rows is not None else read_query_arrays(self._path)[:2]

    @classmethod
    def from_trie(cls, trie: TokenTrie) -> Matcher:
        """A matcher of a built (or loaded) trie; it has no query names."""
        matcher = cls.__new__(cls)
        matcher._rows, matcher._path, matcher.lower, matcher.trie = None, None, trie.lower, trie
        return matcher

    @functools.cached_property
    def trie(self) -> TokenTrie:
        """The query trie, built on first use."""
        return TokenTrie.build(*self._queries(), self.lower)

    @functools.cached_property
    def _key_counts(self) -> tuple[int, int]:
        if "trie" in self.__dict__:
            return self.trie.size, self.trie.skipped
        keys = query_keys(self._queries()[1], self.lower)
        empty = pc.equal(pc.binary_length(keys), 0)
        counts = pc.count_distinct(keys.filter(pc.invert(empty))).as_py(), pc.sum(empty).as_py()
        del keys, empty
        release_memory()
        return counts[0], counts[1] or 0

    @property
    def size(self) -> int:
        """Distinct keys of the list (0: no query can ever match)."""
        return self._key_counts[0]

    @property
    def skipped(self) -> int:
        """Queries with no token (punctuation only): they can never match."""
        return self._key_counts[1]

    @functools.cached_property
    def names(self) -> dict[int, str]:
        """Query id -> query text (the last one given for a repeated id)."""
        ids, texts = self._queries()
        return dict(zip(ids.tolist(), texts.to_pylist()))

    def match_batch(self, captions) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`TokenTrie.match_batch`."""
        return self.trie.match_batch(captions)

    def match(self, caption: str) -> tuple[int, ...]:
        """Sorted ids of every query found in one caption (empty tuple if none)."""
        _, queries = self.match_batch(pa.array([caption], pa.string()))
        return tuple(self.trie.ids[queries].tolist())


def _is_text(t) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def read_query_arrays(path: str) -> tuple[np.ndarray, pa.Array, bool]:
    """``(query ids, query texts, all lower-case)`` of a queries.parquet on any filesystem.

    A file that is not such a list raises ValueError with a one-line reason (pyarrow's own
    messages run over several lines and name its internals).
    """
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
    table = table.filter(pc.and_(pc.is_valid(table["query_id"]), pc.is_valid(table["query"])))
    texts = _as_strings(table.column("query"))
    ids = table.column("query_id").to_numpy().astype(np.int64)
    del table
    release_memory()  # the Parquet reader's buffers
    return ids, texts, _all_lower(texts)


def _all_lower(texts: pa.Array) -> bool:
    """Whether every text equals its ``str.lower()`` (ASCII by Arrow, the rest by Python)."""
    ascii_ = pc.string_is_ascii(texts)
    plain = texts.filter(ascii_)
    if len(plain) and not pc.all(pc.equal(plain, pc.ascii_lower(plain))).as_py():
        return False
    return all(t == t.lower() for t in texts.filter(pc.invert(ascii_)).to_pylist())


_CACHE: dict[tuple, object] = {}
_LOCK = threading.Lock()


def _cached(key: tuple, build):
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def get_matcher(path: str, case: str = "auto") -> Matcher:
    """The matcher for a query file, built once per process (``DoFn.setup`` calls this).

    ``case``: ``lower`` folds case, ``preserve`` keeps it, ``auto`` folds when every query is
    lower-case (the query list's own policy).
    """

    def build():
        _, _, all_lower = read_query_arrays(path)  # also checks that the list is readable
        return Matcher.from_file(path, case == "lower" or (case == "auto" and all_lower))

    # the version guards against a file rewritten in place
    return _cached(("matcher", path, case, fs.version(path)), build)


def query_table(path: str) -> QueryTable:
    """The query list's ids and names as arrays, read once per process (no trie)."""

    def build():
        ids, texts, _ = read_query_arrays(path)
        return QueryTable.from_arrays(ids, texts)[0]

    return _cached(("table", path, fs.version(path)), build)


def clear_cache() -> None:
    """Forget built matchers (tests rewrite query files in place)."""
    with _LOCK:
        _CACHE.clear()
