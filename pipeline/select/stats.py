"""Concentration statistics of per-query counts (how unbalanced a selection is)."""

from __future__ import annotations

import math
from typing import Iterable


def gini(values: Iterable[float]) -> float:
    """Gini coefficient of non-negative values: 0 all equal, towards 1 one value holds all."""
    xs = sorted(float(v) for v in values)
    n, total = len(xs), sum(xs)
    if n == 0 or total <= 0:
        return 0.0
    weighted = sum(i * x for i, x in enumerate(xs, start=1))
    return 2.0 * weighted / (n * total) - (n + 1.0) / n


def top_share(values: Iterable[float], fraction: float = 0.01) -> float:
    """Share of the total held by the largest ``fraction`` of values (at least one value)."""
    xs = sorted((float(v) for v in values), reverse=True)
    total = sum(xs)
    if not xs or total <= 0:
        return 0.0
    k = max(1, math.ceil(len(xs) * fraction))
    return sum(xs[:k]) / total
