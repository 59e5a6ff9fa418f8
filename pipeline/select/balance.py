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

TWO63 = float(1 << 63)


def draw(seed: int, query_id: int, uid: str) -> int:
    """The pair's 63-bit lottery number for one query (fits Beam's signed 64-bit int coder)."""
    h = hashlib.blake2b(f"{seed}:{query_id}:{uid}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big") >> 1


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
