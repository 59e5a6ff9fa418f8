"""Assembly of the query list: normalise, dedup across sources, fill the size target, write outputs.

Priority across sources: a weighted round robin over each source's own ranking (unigrams by
count, bigrams by PMI, titles by views, WordNet by tagged-sense frequency). The next query always
comes from the source furthest below its weighted share (``taken / weight``; ties in recipe order
unigram, bigram, title, WordNet), skipping queries already in the list, until the target size is
reached or every source is used up. Default weights 0.50/0.20/0.12/0.18 are the shares of MetaCLIP's
500k reimplementation of the recipe (251k unigrams, 100k bigrams, 61k titles, 87k WordNet), so every
target size keeps the recipe's mix instead of being all unigrams, and the list is *prefix-stable*:
its first k rows are exactly the list a target of k would give. ``rank`` is that admission order
(1-based) and ``source`` the source that admitted the query; ``sources`` lists every source that
proposed it, with each one's evidence (count, pmi, views, synsets).
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections import Counter
from dataclasses import dataclass, field

from queries import tokenize
from queries.sources import SOURCES, Candidate

COLUMNS = ("query", "query_id", "sources", "source", "count", "pmi", "views", "synsets", "rank")


def query_id(query: str) -> int:
    """Stable int64 id of a normalised query: the first 63 bits of its BLAKE2b hash."""
    digest = hashlib.blake2b(query.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass
class Merged:
    """One query with the evidence of every source that proposed it."""

    query: str
    sources: set = field(default_factory=set)
    count: int | None = None
    pmi: float | None = None
    views: int | None = None
    synsets: tuple = ()

    def add(self, c: Candidate) -> None:
        self.sources.add(c.source)
        if c.count is not None and (self.count is None or c.source == "wiki_unigram"):
            self.count = c.count  # a unigram's own count wins over a bigram's
        if c.pmi is not None:
            self.pmi = c.pmi
        if c.views is not None:
            self.views = (self.views or 0) + c.views
        if c.synsets:
            self.synsets = tuple(sorted(set(self.synsets) | set(c.synsets)))


def normalise_candidates(
    cands: list[Candidate], case: str
) -> tuple[dict[str, list[Candidate]], Counter]:
    """Per source, candidates with normalised queries, best first; counts of what was dropped."""
    by_source: dict[str, dict[str, Candidate]] = {s: {} for s in SOURCES}
    dropped: Counter = Counter()
    for c in cands:
        q = tokenize.normalise_query(c.query, case)
        if tokenize.is_punctuation_only(q):
            dropped[c.source] += 1
            continue
        seen = by_source[c.source].get(q)
        if seen is None or c.rank_key > seen.rank_key:
            by_source[c.source][q] = Candidate(**dict(c.__dict__, query=q))
    ranked = {
        s: sorted(d.values(), key=lambda c: (-c.rank_key, c.query)) for s, d in by_source.items()
    }
    return ranked, dropped


def fill_target(
    ranked: dict[str, list[Candidate]], weights: dict[str, float], target: int
) -> list[tuple[str, str]]:
    """``(query, admitting source)`` in admission order: the weighted round robin described above."""
    order: list[tuple[str, str]] = []
    chosen: set[str] = set()
    pos = {s: 0 for s in SOURCES}
    heap = [
        (1 / weights[s], i, s, 0)
        for i, s in enumerate(SOURCES)
        if weights.get(s, 0) > 0 and ranked[s]
    ]
    heapq.heapify(heap)
    while heap and len(order) < target:
        _, i, s, taken = heapq.heappop(heap)
        lst = ranked[s]
        while pos[s] < len(lst) and lst[pos[s]].query in chosen:
            pos[s] += 1
        if pos[s] == len(lst):
            continue  # this source is used up
        q = lst[pos[s]].query
        chosen.add(q)
        order.append((q, s))
        heapq.heappush(heap, ((taken + 2) / weights[s], i, s, taken + 1))
    return order


def build_rows(
    cands: list[Candidate], weights: dict[str, float], target: int, case: str
) -> tuple[list[dict], dict]:
    """The final rows (in rank order) and the facts the report needs."""
    ranked, dropped = normalise_candidates(cands, case)
    merged: dict[str, Merged] = {}
    for s in SOURCES:
        for c in ranked[s]:
            merged.setdefault(c.query, Merged(c.query)).add(c)
    order = fill_target(ranked, weights, target)
    rows, ids = [], {}
    for rank, (q, s) in enumerate(order, 1):
        m = merged[q]
        qid = query_id(q)
        if qid in ids:
            raise RuntimeError(f"query_id collision between {ids[qid]!r} and {q!r}")
        ids[qid] = q
        rows.append(
            {
                "query": q,
                "query_id": qid,
                "sources": [x for x in SOURCES if x in m.sources],
                "source": s,
                "count": m.count,
                "pmi": m.pmi,
                "views": m.views,
                "synsets": list(m.synsets),
                "rank": rank,
            }
        )
    return rows, {"ranked": ranked, "dropped": dropped, "merged": merged}


def _length_histogram(queries: list[str]) -> dict:
    words = Counter(min(len(q.split()), 5) for q in queries)
    chars = sorted(len(q) for q in queries) or [0]
    return {
        "words": {("5+" if k == 5 else str(k)): words[k] for k in sorted(words)},
        "chars": {"min": chars[0], "median": chars[len(chars) // 2], "max": chars[-1]},
    }


def report(
    cands: list[Candidate], rows: list[dict], facts: dict, thresholds: dict, stats: dict
) -> dict:
    """``report.json``: per-source counts before/after dedup, overlaps, thresholds, lengths, examples."""
    ranked, merged = facts["ranked"], facts["merged"]
    raw = Counter(c.source for c in cands)
    in_list = Counter(s for r in rows for s in r["sources"])
    primary = Counter(r["source"] for r in rows)
    per_source = {}
    for s in SOURCES:
        only = sum(1 for c in ranked[s] if merged[c.query].sources == {s})
        per_source[s] = {
            "candidates": raw[s],
            "dropped_punctuation_only": facts["dropped"][s],
            "after_normalisation": len(ranked[s]),
            "only_this_source": only,
            "in_list": in_list[s],
            "admitted_by": primary[s],
            "examples": [r["query"] for r in rows if r["source"] == s][:10],
        }
    overlaps = {}
    for i, a in enumerate(SOURCES):
        for b in SOURCES[i + 1 :]:
            overlaps[f"{a}&{b}"] = sum(
                1 for m in merged.values() if a in m.sources and b in m.sources
            )
    return {
        "queries": len(rows),
        "distinct_candidates": len(merged),
        "sources": per_source,
        "overlaps": overlaps,
        "thresholds": thresholds,
        "length": _length_histogram([r["query"] for r in rows]),
        "input_stats": dict(sorted(stats.items())),
    }


def write_outputs(rows: list[dict], rep: dict, out_dir: str) -> dict[str, str]:
    """Write ``queries.parquet``, ``queries.txt`` and ``report.json`` atomically."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline import fs

    schema = pa.schema(
        [
            ("query", pa.string()),
            ("query_id", pa.int64()),
            ("sources", pa.list_(pa.string())),
            ("source", pa.string()),
            ("count", pa.int64()),
            ("pmi", pa.float64()),
            ("views", pa.int64()),
            ("synsets", pa.list_(pa.string())),
            ("rank", pa.int64()),
        ]
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    paths = {
        "parquet": fs.join(out_dir, "queries.parquet"),
        "txt": fs.join(out_dir, "queries.txt"),
        "report": fs.join(out_dir, "report.json"),
    }
    fs.makedirs(out_dir)
    fs.write_bytes_atomic(paths["parquet"], buf.getvalue())
    fs.write_text_atomic(paths["txt"], "".join(r["query"] + "\n" for r in rows))
    fs.write_text_atomic(paths["report"], json.dumps(rep, indent=2, ensure_ascii=False) + "\n")
    return paths
