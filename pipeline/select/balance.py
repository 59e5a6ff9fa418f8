"""Per-query balancing decisions from a seeded, stable hash: the same on any runner or worker count.

A pair that matches queries ``Q`` gets, for each ``q`` in ``Q``, a 63-bit draw
``blake2b(seed, q, uid)``. ``probabilistic`` (MetaCLIP): ``q`` admits the pair when
``draw < p_q * 2**63`` with ``p_q = min(1, quota / count_q)``, so the pair is kept with probability
``1 - prod_q (1 - p_q)``. ``exact``: ``q`` admits the ``quota`` pairs of smallest draw, i.e. those at
or below its threshold (the quota-th smallest draw). ``selected_for`` lists the admitting queries.
"""

from __future__ import annotations

import hashlib
import math
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TWO63 = float(1 << 63)


def draw(seed: int, query_id: int, uid: str) -> int:
    """The pair's 63-bit lottery number for one query (fits Beam's signed 64-bit int coder)."""
    h = hashlib.blake2b(f"{seed}:{query_id}:{uid}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big") >> 1


def draws(seed: int, query_ids: np.ndarray, uids) -> np.ndarray:
    """:func:`draw` of many (query, uid) pairs (``uids``: an Arrow string array aligned with
    ``query_ids``), as int64: the messages are assembled by Arrow, one hash call per pair."""
    if not len(query_ids):
        return np.zeros(0, np.int64)
    unique, inverse = np.unique(query_ids, return_inverse=True)
    prefixes = pa.array([f"{seed}:{q}:" for q in unique.tolist()], pa.string())
    messages = pc.binary_join_element_wise(prefixes.take(pa.array(inverse)), uids, "")
    blake2b = hashlib.blake2b
    digests = b"".join(
        [blake2b(m, digest_size=8).digest() for m in messages.cast(pa.binary()).to_pylist()]
    )
    return (np.frombuffer(digests, ">u8") >> np.uint64(1)).astype(np.int64)


def probabilistic_bound(count: int, quota_: int) -> int:
    """The integer ``b`` with ``draw < b`` exactly when :func:`admit_probabilistic` admits a
    draw of a query with ``count > quota_`` matches (its float comparison, made exact)."""
    return math.ceil(quota_ / count * TWO63)


def probabilistic_bounds(counts: np.ndarray, quota_: int) -> np.ndarray:
    """:func:`probabilistic_bound` of many counts (all over ``quota_``): numpy's float64
    arithmetic is Python's, and every ceiling below 2**63 converts to int64 exactly."""
    return np.ceil(quota_ / counts.astype(np.int64) * TWO63).astype(np.int64)


def threshold_cutoff(count: int, quota_: int) -> int:
    """A draw value below which a query with ``count`` matches has its ``quota_`` smallest draws,
    all but certainly: draws are uniform, so the number at or below this cutoff is binomial with
    mean ``quota_ + 8 sqrt(quota_) + 32``. The select steps check, and complete the rare query
    for which fewer than ``quota_`` draws fell below it."""
    share = (quota_ + 8 * math.sqrt(quota_) + 32) / max(count, 1)
    return (1 << 63) - 1 if share >= 1 else int(share * TWO63)


def quota(cap: int, oversample: float) -> int:
    """Pairs to select per query: the cap times the over-sampling factor (rounded down)."""
    return max(cap, int(math.floor(cap * oversample + 1e-9)))


def admit_probabilistic(
    uid: str, query_ids: Sequence[int], counts: Mapping[int, int], quota_: int, seed: int
) -> tuple[int, ...]:
    """Queries whose independent draw admits the pair (MetaCLIP's sampling)."""
    admitted = []
    for q in query_ids:
        n = counts.get(q, 0)
        if n <= quota_ or draw(seed, q, uid) < quota_ / n * TWO63:
            admitted.append(q)
    return tuple(admitted)


def admit_exact(
    uid: str, query_ids: Sequence[int], thresholds: Mapping[int, int], seed: int
) -> tuple[int, ...]:
    """Queries that keep the pair among their ``quota`` smallest draws.

    ``thresholds`` holds only queries with at least ``quota`` matches; the others keep everything.
    """
    admitted = []
    for q in query_ids:
        limit = thresholds.get(q)
        if limit is None or draw(seed, q, uid) <= limit:
            admitted.append(q)
    return tuple(admitted)


def thresholds_from_top(top: Sequence[int], quota_: int) -> int | None:
    """The admission threshold of a query from its smallest draws (None: the query keeps all)."""
    return max(top) if len(top) >= quota_ else None


def expected(count: int, quota_: int) -> float:
    """Expected pairs attributed to a query after balancing, in either mode."""
    return float(min(count, quota_))


def sampling_sigma(count: int, quota_: int) -> float:
    """Standard deviation of a query's attributed count in probabilistic mode (binomial)."""
    if count <= quota_:
        return 0.0
    p = quota_ / count
    return math.sqrt(count * p * (1 - p))


def part_of(uid: str, parts: int) -> int:
    """Output file of a pair: contiguous ranges of the uniform uid hash (so files stay sorted)."""
    return (int(uid[:8], 16) * parts) >> 32


def part_count(selected: int, rows_per_part: int) -> int:
    """Number of selection files for ``selected`` rows."""
    return max(1, math.ceil(selected / rows_per_part))
