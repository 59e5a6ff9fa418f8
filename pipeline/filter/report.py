"""``reports/filter.json``: what the filters removed, why, and what that did to the balance.

Read from the filtered shards' Parquet files one shard at a time (aggregates only, plus a few
examples) and from what the pipeline's steps saved (duplicate groups, CLIP score histogram and
thresholds). Images are referenced, not embedded: ``source_tar`` + ``source_key`` name the
downloaded image of every example, so the report can draw thumbnails of dropped pairs too.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pyarrow.parquet as pq

from pipeline import fs
from pipeline.download import shard_writer as sw
from pipeline.filter import quantile
from pipeline.filter.decide import FILTERED, REASONS, ClipCut
from pipeline.select.stats import gini, top_share

COLUMNS = (
    "uid", "caption", "status", "error_message", "filter_reasons", "selected_for", "source_shard",
    "source_key", "clip_score", "language", "language_score", "duplicate_of",
    "duplicate_group_size", "phash", "url",
)  # fmt: skip


class _Scan:
    """Aggregates over the filtered shards' rows."""

    def __init__(self, shards_dir: str, examples: int):
        self.shards_dir, self.examples = shards_dir, examples
        self.status = Counter()
        self.first_reason = Counter()
        self.any_reason = Counter()
        self.languages = Counter()
        self.kept_languages = Counter()
        self.before = Counter()  # query id -> successes before filtering
        self.after = Counter()
        self.lost: dict[int, Counter] = {}
        self.picked: dict[str, list] = {r: [] for r in REASONS}

    def add(self, rows: list[dict]) -> None:
        for r in rows:
            self.status[r["status"]] += 1
            if r["status"] not in ("success", FILTERED):
                continue
            self.languages[r["language"] or "und"] += 1
            queries = r["selected_for"] or []
            self.before.update(queries)
            if r["status"] == "success":
                self.kept_languages[r["language"] or "und"] += 1
                self.after.update(queries)
                continue
            reason = r["error_message"]
            self.first_reason[reason] += 1
            self.any_reason.update(r["filter_reasons"] or [])
            for q in queries:
                self.lost.setdefault(q, Counter())[reason] += 1
            if len(self.picked.get(reason, ())) < self.examples:
                self.picked.setdefault(reason, []).append(self._example(r))

    def _example(self, r: dict) -> dict:
        tar = fs.join(self.shards_dir, f"{sw.shard_name(r['source_shard'])}.tar")
        return {k: r[k] for k in COLUMNS if k != "status"} | {"source_tar": tar}


def per_query(scan: _Scan, names: dict[int, str]) -> list[dict]:
    """Per query with downloads: successes before and after filtering, and what each filter took."""
    out = []
    for q in sorted(scan.before, key=lambda q: (-scan.before[q], q)):
        lost = scan.lost.get(q, Counter())
        out.append(
            {
                "query_id": q,
                "query": names.get(q),
                "downloaded": scan.before[q],
                "kept": scan.after.get(q, 0),
                "lost": dict(sorted(lost.items())),
            }
        )
    return out


def _balance(counts: list[int]) -> dict:
    return {
        "queries": len(counts),
        "pairs": sum(counts),
        "gini": round(gini(counts), 4),
        "top1_share": round(top_share(counts, 0.01), 4),
    }


def clip_section(cut: ClipCut | None, description: str) -> dict:
    """The CLIP score's figures: thresholds, the pass-1 histogram over the scores' range."""
    if cut is None:
        return {"enabled": False}
    section = {k: v for k, v in dataclasses.asdict(cut).items() if k != "high_counts"}
    section.update(enabled=True, weights=description)
    if cut.high_counts:
        values = [quantile.key_to_score(b << 16) for b in cut.high_counts]
        lo, hi = min(values), max(values)
        section["histogram"] = quantile.histogram(cut.high_counts, lo, hi + 1e-6, 30)
    return section


def duplicates_section(summary: dict | None, shards_dir: str) -> dict:
    """The duplicate groups' counts, each example member with the tar that holds its image."""
    if summary is None:
        return {"enabled": False, "groups": 0}
    largest = [
        [{**m, "source_tar": fs.join(shards_dir, f"{sw.shard_name(m['shard'])}.tar")} for m in g]
        for g in summary["largest"]
    ]
    return {**summary, "enabled": True, "largest": largest}


def build(
    out_dir: str, shards_dir: str, tasks: list, names: dict, extra: dict, examples: int
) -> dict:
    """The report's data: totals, per reason, languages, duplicates, CLIP, per query, examples."""
    scan = _Scan(shards_dir, examples)
    for task in tasks:
        with fs.open_read(sw.final_paths(out_dir, task.shard)["parquet"]) as f:
            scan.add(pq.read_table(f, columns=list(COLUMNS)).to_pylist())
    queries = per_query(scan, names)
    kept = scan.status.get("success", 0)
    filtered = scan.status.get(FILTERED, 0)
    return {
        "totals": {
            "rows": sum(scan.status.values()),
            "successes_before": kept + filtered,
            "kept": kept,
            "filtered": filtered,
            "by_status": dict(sorted(scan.status.items())),
        },
        "reasons": {
            "first": {r: scan.first_reason.get(r, 0) for r in REASONS},
            "any": {r: scan.any_reason.get(r, 0) for r in REASONS},
        },
        "languages": {
            "before": dict(scan.languages.most_common()),
            "kept": dict(scan.kept_languages.most_common()),
        },
        "balance": {
            "before": _balance([q["downloaded"] for q in queries]),
            "after": _balance([q["kept"] for q in queries]),
            "queries_emptied": sum(1 for q in queries if q["downloaded"] and not q["kept"]),
        },
        "per_query": queries,
        "examples": {r: v for r, v in scan.picked.items() if v},
        **extra,
    }


def write(path: str, data: dict) -> None:
    """Write the report JSON (compact when it lists many queries)."""
    indent = 1 if len(data["per_query"]) <= 20_000 else None
    fs.write_text_atomic(path, json.dumps(data, indent=indent, default=str) + "\n")
