"""``wit select``'s end check: the pipeline's facts and the files it wrote must add up.

Every input file and every bucket reported exactly once; the matched pairs spilled equal the pairs
the bucket steps read back; no query got more pairs than its quota (in exact mode exactly
min(matches, quota)); the selection files are the planned parts, each once, and their rows add up
to what the decide step selected. A broken rule fails the stage (:class:`StageFailed`).
"""

from __future__ import annotations

import pyarrow.parquet as pq

from pipeline import fs
from pipeline.invariants import StageFailed, expect_each_once, expect_equal
from pipeline.select import balance

STAGE = "select"
DEDUP_REASONS = ("duplicate_uid", "duplicate_url")


def check_facts(facts: dict, n_files: int, buckets: int, mode: str, quota: int) -> None:
    """The per-file and per-bucket reports are complete and consistent with one another."""
    files, dedup = facts["files"], facts["dedup"]
    expect_each_once(STAGE, "input file reports", range(n_files), [f["file_index"] for f in files])
    expect_each_once(STAGE, "bucket counts", range(buckets), facts["counted_buckets"])
    expect_each_once(STAGE, "bucket decisions", range(buckets), facts["decided_buckets"])
    spilled = sum(f["counts"].get("matched", 0) for f in files)
    read_back = dedup.get("unique", 0) + sum(dedup.get(r, 0) for r in DEDUP_REASONS)
    expect_equal(STAGE, "matched pairs spilled vs read back from the buckets", spilled, read_back)
    counts, attributed = facts["counts"], facts["attributed"]
    over = {q: n for q, n in attributed.items() if n > counts.get(q, 0) or n > quota}
    if mode == "exact":  # each query admits exactly its `quota` smallest draws
        over.update({q: n for q, n in attributed.items() if n != min(counts.get(q, 0), quota)})
        missing = [q for q in counts if q not in attributed]
        if missing:
            raise StageFailed(STAGE, f"{len(missing)} matched queries selected nothing")
    if mode != "exact":  # probabilistic: the quota is an expectation, matches still bound it
        over = {q: n for q, n in attributed.items() if n > counts.get(q, 0)}
    if over:
        q, n = next(iter(sorted(over.items())))
        raise StageFailed(
            STAGE,
            f"{len(over)} queries selected more pairs than allowed (query {q}: {n} selected, "
            f"{counts.get(q, 0)} matches, quota {quota})",
        )


def check_parts(parts: list, selection_dir: str, selected: int, rows_per_part: int) -> None:
    """The selection files are the planned parts, each once, holding ``selected`` rows in all."""
    planned = balance.part_count(selected, rows_per_part) if selected else 0
    expected = [fs.join(selection_dir, f"part-{i:05d}.parquet") for i in range(planned)]
    expect_each_once(STAGE, "selection parts", expected, [path for path, _ in parts])
    on_disk = sorted(fs.glob(fs.join(selection_dir, "part-*.parquet")))
    expect_equal(STAGE, "selection files on disk", sorted(expected), on_disk)
    total = 0
    for path, rows in parts:
        with fs.open_read(path) as f:
            found = pq.ParquetFile(f).metadata.num_rows
        expect_equal(STAGE, f"rows in {path}", rows, found)
        total += found
    expect_equal(STAGE, "rows in the selection files vs pairs selected", selected, total)
