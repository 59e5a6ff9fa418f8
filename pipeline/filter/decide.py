"""Per input shard: every row's verdict, from its features, its score and its duplicate group.

Each filter decides on its own, over all successes (the top fraction of CLIP scores is of every
scored pair, whatever the other filters drop), and a success is kept only if every enabled filter
keeps it. A dropped success becomes status ``filtered`` with the first of its reasons (in
:data:`REASONS` order) as ``error_message`` and all of them in ``filter_reasons``; rows that were
not successes keep their status and reason. Nothing is removed: the filtered shards hold one row
per row of the downloaded shards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from pipeline.arrow_rows import table_from_rows
from pipeline.download import shard_writer as sw
from pipeline.filter import analyse, dedup
from pipeline.filter.analyse import InputShard, Settings

FILTERED = "filtered"
IMAGE_UNREADABLE = "image_unreadable"
LANGUAGE_EXCLUDED = "language_excluded"
CLIP_SCORE_BELOW = "clip_score_below"
CLIP_SCORE_NOT_IN_TOP = "clip_score_not_in_top"
# Every reason a success can be filtered for, in the order error_message picks the first.
REASONS = (
    IMAGE_UNREADABLE,
    dedup.DUPLICATE_EXACT,
    dedup.DUPLICATE_NEAR,
    LANGUAGE_EXCLUDED,
    CLIP_SCORE_BELOW,
    CLIP_SCORE_NOT_IN_TOP,
)
FILTER_COLUMNS = [
    ("source_shard", pa.int32()),
    ("source_key", pa.string()),
    ("phash", pa.string()),
    ("duplicate_of", pa.string()),
    ("duplicate_group_size", pa.int32()),
    ("clip_score", pa.float32()),
    ("language", pa.string()),
    ("language_score", pa.float32()),
    ("filter_reasons", pa.list_(pa.string())),
]
OUTPUT_SCHEMA = pa.schema(list(sw.FINAL_SCHEMA) + [pa.field(n, t) for n, t in FILTER_COLUMNS])
DECIDED_SCHEMA = OUTPUT_SCHEMA  # the decided rows are the output rows before resharding


@dataclass(frozen=True)
class ClipCut:
    """The CLIP filter's global figures: how many pairs were scored and the thresholds."""

    scored: int = 0
    min_score: float = -1.0
    top_fraction: float = 1.0
    top_count: int = 0  # pairs the top fraction asks for
    top_threshold: float | None = None  # the top_count-th largest score
    high_counts: dict = field(default_factory=dict)  # pass-1 histogram (for the report)


@dataclass(frozen=True)
class Decided:
    """What deciding one input shard wrote: rows, the positions of kept successes, counts."""

    shard: int
    rows: int
    kept: tuple[int, ...]  # row positions (key order) of the successes that stay successes
    counts: dict  # {status or filtered:<reason>: rows}


def _score(value) -> float | None:
    return None if value is None else float(np.float32(value))


def reasons_for(feat: dict, score, drop, settings: Settings, cut: ClipCut | None) -> list[str]:
    """Every reason the filters give to drop one success (empty: kept)."""
    out = []
    if not feat["readable"] or (settings.clip and score is None):
        out.append(IMAGE_UNREADABLE)
    if drop is not None:
        out.append(drop.reason)
    if settings.languages and feat["language"] not in settings.languages:
        out.append(LANGUAGE_EXCLUDED)
    if cut is not None and score is not None:
        if score < cut.min_score:
            out.append(CLIP_SCORE_BELOW)
        if cut.top_threshold is not None and score < cut.top_threshold:
            out.append(CLIP_SCORE_NOT_IN_TOP)
    return sorted(out, key=REASONS.index)


def decided_row(row: dict, shard: int, feat, score, drop, reasons) -> dict:
    """The output row of one input row (before it gets its key in the filtered shards)."""
    out = {**row, "source_shard": shard, "source_key": row["key"], "filter_reasons": reasons}
    if feat is not None:
        out.update(
            phash=None if feat["phash"] is None else f"{feat['phash']:016x}",
            language=feat["language"],
            language_score=feat["language_score"],
            clip_score=score,
        )
    if drop is not None:
        out.update(duplicate_of=drop.keeper.uid, duplicate_group_size=drop.group_size)
    if reasons:
        out.update(status=FILTERED, error_message=reasons[0])
    return out


def read_scores(settings: Settings, shard: int) -> dict[str, float | None]:
    """key -> CLIP score of a shard's successes (empty when CLIP scoring is off)."""
    if not settings.clip:
        return {}
    t = analyse.read_table(analyse.work_path(settings, "scores", shard))
    return dict(zip(t.column("key").to_pylist(), t.column("score").to_pylist()))


def decide_shard(settings: Settings, inp: InputShard, drops: list, cut: ClipCut | None) -> Decided:
    """Write ``_work/decided/{NNNNN}.parquet`` (every row with its verdict); return its facts."""
    rows = analyse.read_rows(inp.parquet)
    t = analyse.read_table(analyse.work_path(settings, "features", inp.shard))
    features = {f["key"]: f for f in t.to_pylist()}
    scores = read_scores(settings, inp.shard)
    by_key = {d.node.key: d for d in drops}
    out, kept, counts = [], [], {}
    for position, row in enumerate(rows):
        feat = features.get(row["key"]) if row["status"] == "success" else None
        score, drop = _score(scores.get(row["key"])), by_key.get(row["key"])
        reasons = reasons_for(feat, score, drop, settings, cut) if feat is not None else []
        if row["status"] == "success" and feat is None:
            reasons = [IMAGE_UNREADABLE]  # a success the analysis never saw: cannot vouch for it
        new = decided_row(row, inp.shard, feat, score, drop, reasons)
        if new["status"] == "success":
            kept.append(position)
        label = f"{FILTERED}:{reasons[0]}" if reasons else new["status"]
        counts[label] = counts.get(label, 0) + 1
        out.append(new)
    sw.write_table_atomic(
        analyse.work_path(settings, "decided", inp.shard), table_from_rows(out, DECIDED_SCHEMA)
    )
    return Decided(inp.shard, len(rows), tuple(kept), dict(sorted(counts.items())))
