"""The per-query trim after download: back to the cap when the selection over-sampled.

The selection may hold ``cap * oversample`` pairs per query so that the shards still reach the cap
after failed downloads. Once every shard is fetched, each query keeps at most ``cap`` of its
successful pairs: those with the smallest stable hash of (query id, uid), so the decision depends
only on the data, never on download order or worker count. A pair survives if any query in its
``selected_for`` keeps it; pairs selected for no query are kept. The others become ``trimmed``.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections import defaultdict
from collections.abc import Iterable

from pipeline import fs
from pipeline.layout import Layout


def rank(query_id: int, uid: str) -> int:
    """Stable rank of a pair within a query (smaller is kept first)."""
    digest = hashlib.blake2b(f"{query_id}:{uid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank_entries(shard: int, successes: Iterable[tuple[str, list]]):
    """``(query_id, (rank, uid, shard))`` for each query of each successful pair."""
    for uid, selected_for in successes:
        for q in selected_for or ():
            yield int(q), (rank(int(q), uid), uid, shard)


def kept_uids(successes: Iterable[tuple[str, list]], cap: int | None) -> set[str]:
    """Uids that survive the trim (the plain-Python form of the Beam transform)."""
    per_query: dict[int, list] = defaultdict(list)
    kept: set[str] = set()
    for uid, selected_for in successes:
        if not selected_for or cap is None:
            kept.add(uid)
            continue
        for q in selected_for:
            per_query[int(q)].append((rank(int(q), uid), uid))
    for entries in per_query.values():
        kept.update(uid for _, uid in heapq.nsmallest(cap, entries))
    return kept


def read_cap(out: str) -> int | None:
    """The selection's per-query cap from ``config.json`` (or ``reports/balance.json``), if known."""
    layout = Layout(out)
    if fs.exists(layout.config_json):
        try:
            cap = json.loads(fs.read_text(layout.config_json)).get("select", {}).get("cap")
            if cap:
                return int(cap)
        except (ValueError, TypeError):
            pass
    balance = fs.join(layout.reports, "balance.json")
    if fs.exists(balance):
        try:
            cap = json.loads(fs.read_text(balance)).get("cap")
            return int(cap) if cap else None
        except (ValueError, TypeError):
            return None
    return None
