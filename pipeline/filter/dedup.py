"""Duplicate groups: exact (same sha256) and near (pHash bucket + colour check), then one keeper.

Candidate pairs come only from buckets (images sharing a sha256, or a pHash band key, see
:func:`pipeline.filter.phash.band_keys`); inside a bucket every pair is compared with NumPy.
A bucket reports each near pair once (in the bucket of the first key the pair shares) and only a
spanning forest of what it found, so the edges stay few. The groups are the connected components
of all edges; each keeps its smallest image (by uid, then shard and key) and drops the others,
whatever order the edges arrived in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from pipeline.filter import phash as ph

DUPLICATE_EXACT = "duplicate_exact"
DUPLICATE_NEAR = "duplicate_near"
PAIRS_PER_CHUNK = 1 << 22  # hash comparisons held at once while scanning a bucket


@dataclass(frozen=True, order=True)
class Node:
    """One downloaded image: ordered so that the smallest uid is the one a group keeps."""

    uid: str
    shard: int
    key: str
    sha256: str


@dataclass(frozen=True)
class Drop:
    """A duplicate that its group's keeper replaces."""

    node: Node
    keeper: Node
    reason: str  # DUPLICATE_EXACT or DUPLICATE_NEAR
    group_size: int


def exact_edges(nodes) -> list[tuple[Node, Node]]:
    """Edges from the smallest of images with one sha256 to each of the others."""
    nodes = sorted(set(nodes))
    return [(nodes[0], other) for other in nodes[1:]]


def _near_pairs(hashes: np.ndarray, distance: int):
    """Chunks (i, j) of index arrays, i < j, of the hash pairs within ``distance`` bits."""
    n = len(hashes)
    step = max(1, PAIRS_PER_CHUNK // max(1, n))
    for start in range(0, n, step):
        block = hashes[start : start + step]  # (C,)
        d = np.bitwise_count(block[:, None] ^ hashes[None, :])  # (C, n)
        rows, cols = np.nonzero(d <= distance)
        rows = rows + start
        later = rows < cols
        yield rows[later], cols[later]


def bucket_edges(
    index: int, items: list, bands: int, distance: int, max_thumb_diff: float
) -> list[tuple[Node, Node]]:
    """Spanning edges of the near-duplicate pairs that bucket ``index`` is first to share.

    ``items``: (Node, pHash, thumbnail) of the images whose key ``index`` has the bucket's bits.
    """
    items = sorted(items, key=lambda it: it[0])
    hashes = np.array([h for _, h, _ in items], dtype=np.uint64)
    values = ph.band_matrix(hashes, bands)  # (n, bands)
    thumbs = np.frombuffer(b"".join(t for _, _, t in items), dtype=np.uint8)
    thumbs = thumbs.reshape(len(items), ph.THUMB_BYTES)
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in _near_pairs(hashes, distance):
        mine = ph.first_shared_keys(values[i], values[j], bands, distance) == index
        i, j = i[mine], j[mine]  # the pairs no other bucket reports
        diff = np.abs(thumbs[i].astype(np.int16) - thumbs[j]).mean(axis=1)  # (P,)
        for a, b in zip(i[diff <= max_thumb_diff].tolist(), j[diff <= max_thumb_diff].tolist()):
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)  # the smaller index (smaller Node) stays root
    return [(items[root(i)][0], items[i][0]) for i in range(len(items)) if root(i) != i]


def groups(edges) -> list[list[Node]]:
    """Connected components of the edges, each sorted (keeper first), largest groups first."""
    parent: dict[Node, Node] = {}

    def root(x: Node) -> Node:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[Node, list[Node]] = {}
    for node in parent:
        members.setdefault(root(node), []).append(node)
    out = [sorted(m) for m in members.values()]
    return sorted(out, key=lambda m: (-len(m), m[0]))


def drops(components: list[list[Node]], exact: bool = True) -> list[Drop]:
    """Every member of a group but its keeper, with why: the keeper's exact bytes (when exact
    duplicates are looked for), or a look-alike."""
    out = []
    for members in components:
        keeper = members[0]
        for node in members[1:]:
            same = exact and node.sha256 == keeper.sha256
            reason = DUPLICATE_EXACT if same else DUPLICATE_NEAR
            out.append(Drop(node, keeper, reason, len(members)))
    return out


def summary(components: list[list[Node]], examples: int, exact: bool = True) -> dict:
    """Counts of the groups and the ``examples`` largest, for the report."""
    sizes = Counter(len(m) for m in components)
    reasons = Counter(d.reason for d in drops(components, exact))
    return {
        "groups": len(components),
        "images_in_groups": sum(len(m) for m in components),
        "dropped": dict(sorted(reasons.items())),
        "group_sizes": {str(k): v for k, v in sorted(sizes.items())},
        "largest": [
            [{"uid": n.uid, "shard": n.shard, "key": n.key, "sha256": n.sha256} for n in m]
            for m in components[:examples]
        ],
    }
