"""URL/caption tables in the shapes real datasets ship, pointing at the demo image server.

``laion.parquet`` has LAION-400M's columns, ``datacomp.parquet`` DataComp's metadata columns,
``cc12m.tsv`` is CC12M's headerless ``url<TAB>caption``, and ``captions.csv`` / ``captions.jsonl``
/ ``captions-extra.jsonl.gz`` are the plain ``url,caption`` files people export. Captions come from
the same machinery as WAT alt texts; each table takes its own run of image ids, overlapping its
neighbours (and the WAT files) a little, as sources overlap on the real web, and a few rows show
planted copies of earlier images or captions in other languages (:mod:`pipeline.demo_world.plant`).
Rows are written in batches, so bench-sized tables stream to disk.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import fs
from pipeline.demo_world import scene, urls, variants
from pipeline.demo_world.plant import Planter
from pipeline.demo_world.wat import Captioner
from pipeline.demo_world.wiki import cached_scene

BATCH = 50_000
SHA256_ROWS = 16  # DataComp's sha256 needs the image bytes, each rendered: the first rows only
# name -> share of the table rows
TABLES = {
    "laion.parquet": 0.3,
    "cc12m.tsv": 0.25,
    "datacomp.parquet": 0.15,
    "captions.csv": 0.1,
    "captions.jsonl": 0.1,
    "captions-extra.jsonl.gz": 0.1,
}


@dataclass(frozen=True)
class Row:
    """One (image, caption) pair of a table: row ``slot`` of the table's run of ids shows image
    ``image_id`` (the slot's own, or a planted copy of another, made by ``variant``)."""

    slot: int
    image_id: int
    url: str
    caption: str
    variant: str = ""

    def size(self, seed: int) -> tuple[int, int]:
        """Width and height of the image the URL serves."""
        s = cached_scene(self.image_id, seed)
        return (
            variants.size(s.width, s.height, self.variant) if self.variant else (s.width, s.height)
        )

    def image_bytes(self, seed: int) -> bytes:
        """The bytes the URL serves (rendered: costly)."""
        if self.variant:
            ext = self.url.rsplit(".", 1)[1]
            return variants.image_bytes(self.image_id, seed, self.variant, ext)
        return scene.image_bytes(self.image_id, seed)


class RowMaker:
    """Rows for a run of image ids: absolute URLs (some through fault modes), captions with noise,
    and the planted copies and foreign captions of :mod:`pipeline.demo_world.plant`."""

    def __init__(
        self, cap: Captioner, port: int, fault_rate: float, rng: random.Random, planter: Planter
    ):
        self.cap, self.port, self.fault_rate, self.rng = cap, port, fault_rate, rng
        self.planter = planter
        self.faults = 0

    def row(self, slot: int) -> Row:
        """The row of slot ``slot``: image ``slot``, or a planted copy of an earlier image."""
        copy = self.planter.next_copy()
        if copy is not None:
            text = self.cap.noisy(self.cap.caption(copy.image_id, self.rng), self.rng).strip()
            return Row(slot, copy.image_id, copy.url, text, copy.variant)
        ext = self.cap.scene_of(slot).fmt
        fault = None
        if self.rng.random() < self.fault_rate:
            fault = urls.FAULT_MODES[self.faults % len(urls.FAULT_MODES)]
            self.faults += 1
        url = urls.image_url(self.port, slot, ext, fault=fault)
        foreign = fault is None and self.planter.maybe_foreign(slot, self.cap)
        if foreign:
            return Row(slot, slot, url, foreign)
        text = self.cap.caption(slot, self.rng)
        if self.rng.random() < 0.05:
            text = self.cap.unmatched(slot, self.rng)
        else:
            if self.rng.random() < 0.05:
                text = f'"{text.split(" - ")[0]}", she said'  # commas and quotes for the CSV
            if fault is None:
                self.planter.maybe_group(slot)
        return Row(slot, slot, url, self.cap.noisy(text, self.rng).strip())

    def batches(self, ids: range) -> Iterator[list[Row]]:
        """Rows of ``ids`` in lists of at most BATCH, made as they are written."""
        for start in range(ids.start, ids.stop, BATCH):
            yield [self.row(i) for i in range(start, min(ids.stop, start + BATCH))]


def _laion(rows: list[Row], seed: int, rng: random.Random) -> pa.Table:
    sizes = [r.size(seed) for r in rows]
    return pa.table(
        {
            "SAMPLE_ID": pa.array([2_000_000 + r.slot for r in rows], pa.int64()),
            "URL": [r.url for r in rows],
            "TEXT": [r.caption for r in rows],
            "HEIGHT": pa.array([None if rng.random() < 0.03 else h for _, h in sizes], pa.int64()),
            "WIDTH": pa.array([None if rng.random() < 0.03 else w for w, _ in sizes], pa.int64()),
            "LICENSE": [
                rng.choice(("?", "?", "?", "?", "creativecommons.org/licenses/by/4.0"))
                for _ in rows
            ],
            "NSFW": [rng.choices(("UNLIKELY", "UNSURE", "NSFW"), (95, 4, 1))[0] for _ in rows],
            "similarity": pa.array([round(rng.uniform(0.28, 0.45), 6) for _ in rows], pa.float64()),
        }
    )


def _datacomp(rows: list[Row], seed: int, first: bool) -> pa.Table:
    sizes = [r.size(seed) for r in rows]
    digests = [
        hashlib.sha256(r.image_bytes(seed)).hexdigest() if first and i < SHA256_ROWS else None
        for i, r in enumerate(rows)
    ]
    return pa.table(
        {
            "uid": [hashlib.md5(r.url.encode()).hexdigest() for r in rows],
            "url": [r.url for r in rows],
            "text": [r.caption for r in rows],
            "original_width": pa.array([w for w, _ in sizes], pa.int64()),
            "original_height": pa.array([h for _, h in sizes], pa.int64()),
            "sha256": pa.array(digests, pa.string()),
        }
    )


def _write_parquet(path: str, batches: Iterator[pa.Table]) -> None:
    with fs.open_write_atomic(path) as f:
        writer = None
        for table in batches:
            writer = writer or pq.ParquetWriter(f, table.schema, compression="snappy")
            writer.write_table(table)
        if writer:
            writer.close()


def _write_text(path: str, batches: Iterator[list[Row]], fmt: str, gz: bool = False) -> None:
    with fs.open_write_atomic(path) as raw:
        f = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if gz else raw
        for rows in batches:
            buf = io.StringIO()
            if fmt == "tsv":  # CC12M's captions never hold tabs or newlines
                buf.writelines(f"{r.url}\t{' '.join(r.caption.split())}\n" for r in rows)
            elif fmt == "csv":
                w = csv.writer(buf, lineterminator="\n")
                if f.tell() == 0:
                    w.writerow(("url", "caption"))
                w.writerows((r.url, r.caption) for r in rows)
            else:
                buf.writelines(
                    json.dumps({"url": r.url, "caption": r.caption}, ensure_ascii=False) + "\n"
                    for r in rows
                )
            f.write(buf.getvalue().encode("utf-8"))
        if gz:
            f.close()


def write_tables(
    out_dir: str,
    cap: Captioner,
    port: int,
    fault_rate: float,
    first_id: int,
    n_rows: int,
    planter: Planter,
) -> tuple[dict, int]:
    """Every table under ``out_dir``; returns ({file name: {rows, first_id, last_id}}, fault URLs)."""
    rng = random.Random(f"tables:{cap.seed}")
    maker = RowMaker(cap, port, fault_rate, rng, planter)
    out, start = {}, first_id
    for name, share in TABLES.items():
        n = max(1, round(n_rows * share))
        ids = range(start, start + n)
        path = fs.join(out_dir, name)
        batches = maker.batches(ids)
        if name == "laion.parquet":
            _write_parquet(path, (_laion(b, cap.seed, rng) for b in batches))
        elif name == "datacomp.parquet":
            _write_parquet(path, (_datacomp(b, cap.seed, i == 0) for i, b in enumerate(batches)))
        else:
            _write_text(path, batches, name.split(".")[1], gz=name.endswith(".gz"))
        out[name] = {"rows": n, "first_id": ids.start, "last_id": ids.stop - 1}
        start = ids.stop - n // 10  # neighbouring tables share a tenth of their images
    return out, maker.faults
