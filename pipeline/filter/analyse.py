"""Per input shard: read its rows and images once, and record each success's signatures.

For every success: the pHash and colour thumbnail of its image (or that it does not decode), the
language of its caption, and whatever the later steps key on (its sha256, its pHash band keys,
a reference for the CLIP scorer). The signatures go to ``_work/features/{NNNNN}.parquet``; only
keys and references travel between workers, never images.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import fs
from pipeline.arrow_rows import table_from_rows
from pipeline.download import shard_writer as sw
from pipeline.filter import language, phash
from pipeline.filter.dedup import Node

FEATURES_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("phash", pa.uint64()),
        ("thumb", pa.binary()),
        ("readable", pa.bool_()),
        ("language", pa.string()),
        ("language_score", pa.float32()),
    ]
)


@dataclass(frozen=True)
class Settings:
    """What every worker needs to know (picklable)."""

    shards_dir: str
    out_dir: str
    work_dir: str
    ext: str
    dedup_exact: bool
    dedup_near: bool
    bands: int
    distance: int
    thumb_diff: float
    clip: bool
    languages: tuple[str, ...]
    min_confidence: float
    reshard_samples: int
    examples: int
    run_id: str


@dataclass(frozen=True)
class InputShard:
    """One downloaded shard: its number, files and row count."""

    shard: int
    parquet: str
    tar: str
    rows: int


@dataclass(frozen=True)
class SampleRef:
    """One downloaded pair to score: where its image is and its caption."""

    shard: int
    key: str
    uid: str
    caption: str
    tar: str
    ext: str


@dataclass(frozen=True)
class Analysed:
    """What analysing one shard found (its facts; the keyed items go to their own steps)."""

    shard: int
    rows: int
    successes: int
    unreadable: int


def work_path(settings: Settings, kind: str, shard: int) -> str:
    """``_work/{kind}/{NNNNN}.parquet``: features, scores or decided rows of an input shard."""
    return fs.join(settings.work_dir, kind, f"{sw.shard_name(shard)}.parquet")


def read_rows(path: str) -> list[dict]:
    """The rows of a shard Parquet file, in key order."""
    with fs.open_read(path) as f:
        rows = pq.read_table(f).to_pylist()
    return sorted(rows, key=lambda r: r["key"])


def read_table(path: str) -> pa.Table:
    """A whole Parquet file."""
    with fs.open_read(path) as f:
        return pq.read_table(f)


def _features(row: dict, image: bytes | None, min_confidence: float) -> dict:
    code, probability = language.identify(row["caption"], min_confidence)
    out = {"key": row["key"], "language": code, "language_score": probability}
    try:
        if image is None:
            raise ValueError("no image member")
        sig = phash.signature(image)
        out.update(phash=sig.phash, thumb=sig.thumb, readable=True)
    except (OSError, ValueError, SyntaxError):  # Pillow's errors on bad image data
        out.update(phash=None, thumb=None, readable=False)
    return out


def analyse_shard(settings: Settings, inp: InputShard):
    """Write the shard's features file; yield its :class:`Analysed` facts and keyed items:
    ``("sha", (sha256, Node))``, ``("band", ((index, bits), (Node, pHash, thumb)))`` and
    ``("clip", [SampleRef, ...])``."""
    rows = read_rows(inp.parquet)
    successes = [r for r in rows if r["status"] == "success"]
    images = sw.read_tar_images(inp.tar, settings.ext) if successes else {}
    features = [_features(r, images.get(r["key"]), settings.min_confidence) for r in successes]
    sw.write_table_atomic(
        work_path(settings, "features", inp.shard), table_from_rows(features, FEATURES_SCHEMA)
    )
    unreadable = sum(1 for f in features if not f["readable"])
    yield "facts", Analysed(inp.shard, len(rows), len(successes), unreadable)
    for row, feat in zip(successes, features):
        if not feat["readable"]:
            continue
        node = Node(row["uid"], inp.shard, row["key"], row["sha256"] or "")
        if settings.dedup_exact and row["sha256"]:
            yield "sha", (row["sha256"], node)
        if settings.dedup_near:
            item = (node, feat["phash"], feat["thumb"])
            for key in phash.band_keys(feat["phash"], settings.bands, settings.distance):
                yield "band", (key, item)
    if settings.clip and successes:
        yield (
            "clip",
            [
                SampleRef(inp.shard, r["key"], r["uid"], r["caption"] or "", inp.tar, settings.ext)
                for r in successes
            ],
        )
