"""URL/caption tables in the shapes real datasets ship, pointing at the demo image server.

``laion.parquet`` has LAION-400M's columns, ``datacomp.parquet`` DataComp's metadata columns,
``cc12m.tsv`` is CC12M's headerless ``url<TAB>caption``, and ``captions.csv`` / ``captions.jsonl``
/ ``captions-extra.jsonl.gz`` are the plain ``url,caption`` files people export. Captions come from
the same machinery as WAT alt texts; each table takes its own run of image ids, overlapping its
neighbours (and the WAT files) a little, as sources overlap on the real web. Rows are written in
batches, so bench-sized tables stream to disk.
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
from pipeline.demo_world import scene, urls
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
    """One (image, caption) pair of a table."""

    image_id: int
    url: str
    caption: str


class RowMaker:
    """Rows for a run of image ids: absolute URLs (some through fault modes), captions with noise."""

    def __init__(self, cap: Captioner, port: int, fault_rate: float, rng: random.Random):
        self.cap, self.port, self.fault_rate, self.rng = cap, port, fault_rate, rng
        self.faults = 0

    def row(self, image_id: int) -> Row:
        """The row of image ``image_id``."""
        ext = self.cap.scene_of(image_id).fmt
        fault = None
        if self.rng.random() < self.fault_rate:
            fault = urls.FAULT_MODES[self.faults % len(urls.FAULT_MODES)]
            self.faults += 1
        text = self.cap.caption(image_id, self.rng)
        if self.rng.random() < 0.05:
            text = self.cap.unmatched(image_id, self.rng)
        elif self.rng.random() < 0.05:
            text = f'"{text.split(" - ")[0]}", she said'  # commas and quotes for the CSV writer
        return Row(
            image_id,
            urls.image_url(self.port, image_id, ext, fault=fault),
            self.cap.noisy(text, self.rng).strip(),
        )

    def batches(self, ids: range) -> Iterator[list[Row]]:
        """Rows of ``ids`` in lists of at most BATCH, made as they are written."""
        for start in range(ids.start, ids.stop, BATCH):
            yield [self.row(i) for i in range(start, min(ids.stop, start + BATCH))]


def _laion(rows: list[Row], seed: int, rng: random.Random) -> pa.Table:
    sizes = [cached_scene(r.image_id, seed) for r in rows]
    return pa.table(
        {
            "SAMPLE_ID": pa.array([2_000_000 + r.image_id for r in rows], pa.int64()),
            "URL": [r.url for r in rows],
            "TEXT": [r.caption for r in rows],
            "HEIGHT": pa.array(
                [None if rng.random() < 0.03 else s.height for s in sizes], pa.int64()
            ),
            "WIDTH": pa.array(
                [None if rng.random() < 0.03 else s.width for s in sizes], pa.int64()
            ),
            "LICENSE": [
                rng.choice(("?", "?", "?", "?", "creativecommons.org/licenses/by/4.0"))
                for _ in rows
            ],
            "NSFW": [rng.choices(("UNLIKELY", "UNSURE", "NSFW"), (95, 4, 1))[0] for _ in rows],
            "similarity": pa.array([round(rng.uniform(0.28, 0.45), 6) for _ in rows], pa.float64()),
        }
    )


def _datacomp(rows: list[Row], seed: int, first: bool) -> pa.Table:
    sizes = [cached_scene(r.image_id, seed) for r in rows]
    digests = [
        hashlib.sha256(scene.image_bytes(r.image_id, seed)).hexdigest()
        if first and i < SHA256_ROWS
        else None
        for i, r in enumerate(rows)
    ]
    return pa.table(
        {
            "uid": [hashlib.md5(r.url.encode()).hexdigest() for r in rows],
            "url": [r.url for r in rows],
            "text": [r.caption for r in rows],
            "original_width": pa.array([s.width for s in sizes], pa.int64()),
            "original_height": pa.array([s.height for s in sizes], pa.int64()),
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
    out_dir: str, cap: Captioner, port: int, fault_rate: float, first_id: int, n_rows: int
) -> tuple[dict, int]:
    """Every table under ``out_dir``; returns ({file name: {rows, first_id, last_id}}, fault URLs)."""
    rng = random.Random(f"tables:{cap.seed}")
    maker = RowMaker(cap, port, fault_rate, rng)
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
