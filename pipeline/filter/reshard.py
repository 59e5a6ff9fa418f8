"""The filtered shards: the decided rows cut into shards of ``reshard_samples`` successes.

Rows keep their global order (input shard, then key). Output shard ``j`` holds the successes
``j * S .. (j + 1) * S - 1`` of that order and the other rows between them (a shard ends right
after its last success; the rows after the last success go to the last shard), so every input
row lands in exactly one output shard. Each output shard is a list of slices of input shards,
planned once the kept rows of every input shard are known, and written in img2dataset's layout
with new keys: ``{NNNNN}.tar`` (successes), ``{NNNNN}.parquet`` (every row) and
``{NNNNN}_stats.json`` (last, naming the run that wrote it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pipeline import fs
from pipeline.arrow_rows import table_from_rows
from pipeline.download import shard_writer as sw
from pipeline.filter import analyse
from pipeline.filter.analyse import Settings
from pipeline.filter.decide import FILTERED, OUTPUT_SCHEMA, Decided


@dataclass(frozen=True)
class OutputTask:
    """One filtered shard: the row slices ``(input shard, start, stop)`` it takes, in order."""

    shard: int
    slices: tuple[tuple[int, int, int], ...]
    key_rows: int  # the largest row count of any output shard: sizes the keys' row digits

    @property
    def rows(self) -> int:
        return sum(stop - start for _, start, stop in self.slices)


def _cut_points(decided: list[Decided], per_shard: int) -> list[tuple[int, int]]:
    """(input shard, row position + 1) right after every ``per_shard``-th kept row."""
    cuts, seen = [], 0
    for d in decided:
        for position in d.kept:
            seen += 1
            if seen % per_shard == 0:
                cuts.append((d.shard, position + 1))
    return cuts


def plan(decided: list[Decided], per_shard: int) -> list[OutputTask]:
    """The output shards for the decided input shards (at least one, even with no success)."""
    decided = sorted(decided, key=lambda d: d.shard)
    total_kept = sum(len(d.kept) for d in decided)
    cuts = _cut_points(decided, per_shard)
    if cuts and total_kept % per_shard == 0:
        cuts = cuts[:-1]  # the rows after the last success join the last full shard
    cut_at: dict[int, list[int]] = {}
    for shard, position in cuts:
        cut_at.setdefault(shard, []).append(position)
    groups: list[list[tuple[int, int, int]]] = [[]]
    for d in decided:
        start = 0
        for position in cut_at.get(d.shard, []):
            if position > start:
                groups[-1].append((d.shard, start, position))
            groups.append([])
            start = position
        if d.rows > start:
            groups[-1].append((d.shard, start, d.rows))
    key_rows = max(1, max(sum(b - a for _, a, b in g) for g in groups))
    return [OutputTask(i, tuple(g), key_rows) for i, g in enumerate(groups)]


def _rows_of(settings: Settings, task: OutputTask) -> list[dict]:
    """The task's decided rows in order, with the images of its successes."""
    rows: list[dict] = []
    for shard, start, stop in task.slices:
        t = analyse.read_table(analyse.work_path(settings, "decided", shard)).slice(
            start, stop - start
        )
        part = t.to_pylist()
        if any(r["status"] == "success" for r in part):
            images = sw.read_tar_images(
                fs.join(settings.shards_dir, f"{sw.shard_name(shard)}.tar"), settings.ext
            )
            for r in part:
                r["image"] = images.get(r["source_key"]) if r["status"] == "success" else None
        rows.extend(part)
    return rows


def write_output(settings: Settings, task: OutputTask) -> dict:
    """Write one filtered shard's tar, Parquet and stats (last); returns the stats."""
    rows = _rows_of(settings, task)
    for i, r in enumerate(rows):
        r["key"] = sw.make_key(task.shard, i, task.key_rows)
        if r["status"] == "success" and r["image"] is None:
            raise ValueError(f"the image of {r['source_key']} is not in its shard's tar")
    paths = sw.final_paths(settings.out_dir, task.shard)
    fs.delete(paths["stats"])  # until the new stats land, the shard reads as incomplete
    with fs.open_write_atomic(paths["tar"]) as f:
        sw.tar_bytes_stream(f, rows, settings.ext)
    sw.write_table_atomic(paths["parquet"], table_from_rows(rows, OUTPUT_SCHEMA))
    stats = {
        **sw.shard_stats(rows),
        FILTERED: sum(1 for r in rows if r["status"] == FILTERED),
        "digest": sw.content_digest(rows, settings.ext),
        "run": settings.run_id,
        "slices": [list(s) for s in task.slices],
    }
    fs.write_text_atomic(paths["stats"], json.dumps(stats, indent=4, sort_keys=True) + "\n")
    return {"shard": task.shard, **stats}
