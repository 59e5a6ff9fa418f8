"""Inequality measures and chart-ready series over per-query counts (plain numpy, no Beam)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.select.stats import gini, top_share  # noqa: F401 (one home for the balance rules)


def lorenz(counts: Sequence[float], points: int = 200) -> list[tuple[float, float]]:
    """Lorenz curve (share of entries, share of total), ascending, thinned to about ``points``."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(x)
    total = x.sum()
    if n == 0 or total <= 0:
        return [(0.0, 0.0), (1.0, 1.0)]
    cum = np.concatenate([[0.0], np.cumsum(x) / total])
    idx = np.unique(np.linspace(0, n, min(points, n + 1)).round().astype(int))
    return [(round(i / n, 5), round(float(cum[i]), 5)) for i in idx]


def rank_series(counts: Sequence[float], points: int = 160) -> list[tuple[int, int]]:
    """(rank, count) of the positive counts, largest first, sampled at log-spaced ranks."""
    x = np.sort(np.asarray(counts, dtype=np.int64))[::-1]
    x = x[x > 0]
    n = len(x)
    if n == 0:
        return []
    # log-spaced ranks keep the head and the tail of a long distribution equally visible
    ranks = np.unique(np.geomspace(1, n, min(points, n)).round().astype(int))
    return [(int(r), int(x[r - 1])) for r in ranks]


def histogram(values: Sequence[float], bins: int = 20, log: bool = False) -> list[dict]:
    """Bins ``{lo, hi, count}`` over the values; log-spaced edges when ``log`` and all > 0."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if len(v) == 0:
        return []
    lo, hi = float(v.min()), float(v.max())
    if hi == lo:  # one value: centre it in a window so the chart still reads as a histogram
        pad = max(1.0, abs(lo) * 0.1)
        lo, hi, log = lo - pad, hi + pad, False
    if log and lo > 0:
        edges = np.geomspace(lo, hi, bins + 1)
    else:
        edges = np.linspace(lo, hi, bins + 1)
    counts, edges = np.histogram(v, bins=edges)
    return [
        {"lo": float(edges[i]), "hi": float(edges[i + 1]), "count": int(c)}
        for i, c in enumerate(counts)
    ]


def summary(counts: Sequence[float]) -> dict:
    """Gini, top-1% share, total, queries with a positive count, max and median of counts."""
    x = np.asarray(counts, dtype=np.float64)
    return {
        "total": int(x.sum()) if len(x) else 0,
        "queries": int(len(x)),
        "nonzero": int((x > 0).sum()),
        "gini": round(gini(x), 4),
        "top1_share": round(top_share(x, 0.01), 4),
        "max": int(x.max()) if len(x) else 0,
        "median": float(np.median(x)) if len(x) else 0.0,
    }
