"""Balancing decisions (exact and probabilistic) and the concentration statistics."""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter

import pytest

from pipeline.select import balance
from pipeline.select.stats import gini, top_share


def synthetic(n_pairs: int, n_queries: int, seed: int = 7) -> list[tuple[str, tuple[int, ...]]]:
    """(uid, matched query ids) with Zipf-like query popularity and 1-3 queries per pair."""
    rng = random.Random(seed)
    weights = [1.0 / (r + 1) for r in range(n_queries)]
    rows = []
    for _i in range(n_pairs):
        k = rng.choice((1, 1, 2, 3))
        qs = tuple(sorted(set(rng.choices(range(n_queries), weights, k=k))))
        rows.append((f"{rng.getrandbits(128):032x}", qs))
    return rows


def count(rows) -> Counter:
    c: Counter = Counter()
    for _, qs in rows:
        c.update(qs)
    return c


def exact_thresholds(rows, quota: int, seed: int) -> dict[int, int]:
    draws: dict[int, list[int]] = {}
    for uid, qs in rows:
        for q in qs:
            draws.setdefault(q, []).append(balance.draw(seed, q, uid))
    out = {}
    for q, ds in draws.items():
        limit = balance.thresholds_from_top(heapq.nsmallest(quota, ds), quota)
        if limit is not None:
            out[q] = limit
    return out


@pytest.fixture(scope="module")
def rows():
    return synthetic(30_000, 400)


def test_exact_mode_never_exceeds_the_cap_and_small_queries_keep_all(rows):
    quota, seed = 40, 3
    counts = count(rows)
    limits = exact_thresholds(rows, quota, seed)
    attributed: Counter = Counter()
    for uid, qs in rows:
        attributed.update(balance.admit_exact(uid, qs, limits, seed))
    assert any(n > quota for n in counts.values()) and any(n < quota for n in counts.values())
    for q, n in counts.items():
        assert attributed[q] == min(n, quota), q  # exactly the cap, or everything under it


def test_probabilistic_counts_are_within_sampling_error(rows):
    """Per query |selected - expected| <= 5 sigma; the sum of deviations <= 5 sigma of the sum."""
    quota, seed = 40, 11
    counts = count(rows)
    attributed: Counter = Counter()
    for uid, qs in rows:
        attributed.update(balance.admit_probabilistic(uid, qs, counts, quota, seed))
    total_dev, total_var = 0.0, 0.0
    for q, n in counts.items():
        exp, sigma = balance.expected(n, quota), balance.sampling_sigma(n, quota)
        if n <= quota:
            assert attributed[q] == n  # under the cap: all kept
            continue
        assert abs(attributed[q] - exp) <= 5 * sigma + 1e-9, (q, n, attributed[q])
        total_dev += attributed[q] - exp
        total_var += sigma**2
    assert abs(total_dev) <= 5 * math.sqrt(total_var)


def test_probabilistic_keep_probability_is_metaclip_formula():
    """A pair matching two capped queries is kept with 1 - (1-p1)(1-p2)."""
    counts, quota, seed = {1: 400, 2: 200}, 100, 5
    n = 40_000
    kept = sum(
        bool(balance.admit_probabilistic(f"{i:032x}", (1, 2), counts, quota, seed))
        for i in range(n)
    )
    p = 1 - (1 - 0.25) * (1 - 0.5)
    assert abs(kept - n * p) <= 5 * math.sqrt(n * p * (1 - p))


def test_decisions_do_not_depend_on_order_or_seed_reuse():
    uid = "ab" * 16
    assert balance.draw(0, 7, uid) == balance.draw(0, 7, uid)
    assert balance.draw(0, 7, uid) != balance.draw(1, 7, uid) != balance.draw(0, 8, uid)


@pytest.mark.parametrize(
    "cap, factor, expected", [(100, 1.0, 100), (100, 1.5, 150), (3, 1.34, 4), (7, 1.0, 7)]
)
def test_quota(cap, factor, expected):
    assert balance.quota(cap, factor) == expected


def test_parts_are_contiguous_uid_ranges():
    uids = sorted(f"{random.Random(i).getrandbits(128):032x}" for i in range(1000))
    parts = [balance.part_of(u, 7) for u in uids]
    assert parts == sorted(parts) and set(parts) == set(range(7))
    assert balance.part_count(0, 10) == 1 and balance.part_count(21, 10) == 3


@pytest.mark.parametrize(
    "values, g, top",
    [
        ([5, 5, 5, 5], 0.0, 0.25),
        ([0, 0, 0, 10], 0.75, 1.0),
        ([1, 2, 3, 4], 0.25, 0.4),
        ([], 0.0, 0.0),
    ],
)
def test_gini_and_top_share(values, g, top):
    assert gini(values) == pytest.approx(g)
    assert top_share(values) == pytest.approx(top)


def test_top_share_uses_one_percent():
    values = [100] * 2 + [1] * 198  # 200 values: the top 1% is 2 values
    assert top_share(values) == pytest.approx(200 / 398)
