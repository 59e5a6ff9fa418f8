"""The exact k-th largest float32 score of a dataset, from two passes of per-shard histograms.

A float32 maps to a 32-bit key that sorts like the float (:func:`sort_keys`). Pass 1 counts the
scores of every shard by the key's high 16 bits; summed, the counts locate the bin holding the
k-th largest score and its rank inside that bin. Pass 2 counts, in every shard, the low 16 bits
of the scores in that bin; summed, they give the exact key. No process holds more than one
shard's scores and two 65,536-bin histograms.
"""

from __future__ import annotations

import math

import numpy as np

BINS = 1 << 16


def sort_keys(scores) -> np.ndarray:
    """uint32 keys ordered like the float32 scores (negative floats have their bits flipped)."""
    bits = np.asarray(scores, dtype=np.float32).view(np.uint32)
    negative = (bits & np.uint32(0x80000000)) != 0
    return np.where(negative, ~bits, bits | np.uint32(0x80000000)).astype(np.uint32)


def key_to_score(key: int) -> float:
    """The float32 value of a sort key."""
    bits = key & 0x7FFFFFFF if key & 0x80000000 else ~key & 0xFFFFFFFF
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


def high_counts(scores) -> dict[int, int]:
    """Pass 1 of a shard: {high 16 bits of the key: scores}."""
    high = sort_keys(scores) >> np.uint32(16)
    values, counts = np.unique(high, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def low_counts(scores, high: int) -> dict[int, int]:
    """Pass 2 of a shard: {low 16 bits of the key: scores} of the scores whose high bits are
    ``high``."""
    keys = sort_keys(scores)
    low = keys[(keys >> np.uint32(16)) == np.uint32(high)] & np.uint32(0xFFFF)
    values, counts = np.unique(low, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def top_count(n: int, fraction: float) -> int:
    """How many of ``n`` scores the top ``fraction`` keeps (at least one when there are any)."""
    return min(n, max(1 if n else 0, math.ceil(fraction * n - 1e-9)))


def locate(counts: dict[int, int], rank: int) -> tuple[int, int]:
    """(bin, rank inside it) of the ``rank``-th largest (1-based) of the histogram's values."""
    above = 0
    for b in sorted(counts, reverse=True):
        if above + counts[b] >= rank:
            return b, rank - above
        above += counts[b]
    raise ValueError(f"rank {rank} is beyond the {above} counted values")


def kth_largest(high: dict[int, int], low: dict[int, int], high_bin: int, rank: int) -> float:
    """The k-th largest score from pass 1's bin and pass 2's counts inside it."""
    low_bin, _ = locate(low, rank)
    return key_to_score((high_bin << 16) | low_bin)


def histogram(high: dict[int, int], lo: float = -1.0, hi: float = 1.0, bins: int = 40) -> list:
    """``{lo, hi, count}`` bins of the scores over [lo, hi], from pass 1's counts (each pass-1
    bin, a narrow range of floats, goes whole to the bin of its smallest value)."""
    edges = np.linspace(lo, hi, bins + 1)
    counts = np.zeros(bins, dtype=np.int64)
    for b, n in high.items():
        value = key_to_score(b << 16)
        i = int(np.clip(np.searchsorted(edges, value, side="right") - 1, 0, bins - 1))
        counts[i] += n
    return [
        {"lo": round(float(edges[i]), 4), "hi": round(float(edges[i + 1]), 4), "count": int(c)}
        for i, c in enumerate(counts)
    ]
