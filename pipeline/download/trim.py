"""The per-query trim after download: back to the cap when the selection over-sampled.

The selection may hold ``cap * oversample`` pairs per query so that the shards still reach the cap
after failed downloads. Once every shard is fetched, each query keeps at most ``cap`` of its
successful pairs: those with the smallest stable hash of (query id, uid), so the decision depends
only on the data, never on download order or worker count. A pair survives if any query in its
``selected_for`` keeps it; pairs selected for no query are kept. The others become ``trimmed``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def rank(query_id: int, uid: str) -> int:
    """Stable rank of a pair within a query (smaller is kept first)."""
    digest = hashlib.blake2b(f"{query_id}:{uid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank_entries(shard: int, successes: Iterable[tuple[str, list]]):
    """``(query_id, (rank, uid, shard))`` for each query of each successful pair."""
    for uid, selected_for in successes:
        for q in selected_for or ():
            yield int(q), (rank(int(q), uid), uid, shard)
