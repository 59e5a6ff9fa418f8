"""The two phases of the download stage as plain functions (the Beam transforms only wire them).

1. :func:`fetch_shard`: a shard's selection rows -> ``_staging/{NNNNN}-{digest}.tar`` (the
   successes) and ``_staging/{NNNNN}.parquet`` (all outcomes, written last). The tar's name carries
   the digest of the rows it was written from, so a Parquet is only ever read with its own tar,
   whatever moment a crash chose. Staging that exists and covers the same uids is reused, so a
   re-run fetches only the shards that never finished; with ``retry_failed`` it re-fetches only
   the rows that failed for a retryable reason and rewrites the staging files.
2. :func:`finalize_shard`: staging + the uids the trim kept -> final tar, Parquet and stats,
   skipped when the final files already hold the same content. With nothing trimmed the final
   tar is the staging tar, linked; otherwise it is rebuilt from the staging tar's kept members.

Shard membership comes from the position of each row in the selection (part files in name order,
rows in file order), never from download order, so every run cuts the same shards.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from pipeline import fs
from pipeline.download import shard_writer as sw
from pipeline.download.fetch import RETRYABLE_REASONS
from pipeline.download.worker import (
    SELECTION_COLUMNS,
    Progress,
    ShardDownloader,
    ShardTask,
    rows_for_task,
)

STAGING = "_staging"


@dataclass(frozen=True)
class ShardInfo:
    """What phase 1 learned about a shard: its successes (for the trim) and outcome counts."""

    shard: int
    rows: int
    successes: tuple = ()  # ((uid, (query ids it was selected for)), ...)
    fetched: int = 0  # rows fetched in this run (0 when the staging file was reused)
    counts: dict = field(default_factory=dict)


def staging_path(shards_dir: str, shard: int) -> str:
    return fs.join(shards_dir, STAGING, f"{sw.shard_name(shard)}.parquet")


def staging_tar_path(shards_dir: str, shard: int, rows: list[dict], image_digest: str) -> str:
    """The staging tar of a shard's staged ``rows`` (in key order): named by their digest."""
    token = sw.content_digest(rows, image_digest)
    return fs.join(shards_dir, STAGING, f"{sw.shard_name(shard)}-{token}.tar")


def _drop_other_tars(shards_dir: str, shard: int, keep: str) -> None:
    """Delete the shard's staging tars other than ``keep`` (left by a rewrite or a crash)."""
    for path in fs.glob(fs.join(shards_dir, STAGING, f"{sw.shard_name(shard)}-*.tar")):
        if path != keep:
            fs.delete(path)


def progress_path(shards_dir: str, shard: int) -> str:
    return fs.join(shards_dir, STAGING, f"{sw.shard_name(shard)}.progress.json")


def plan_tasks(parts: list[str], samples_per_shard: int) -> list[ShardTask]:
    """Cut the selection (parts in name order) into shards of ``samples_per_shard`` rows."""
    spans, total = [], 0
    for path in sorted(parts):
        with fs.open_read(path) as f:
            n = pq.ParquetFile(f).metadata.num_rows
        spans.append((path, total, total + n))
        total += n
    tasks = []
    for shard, lo in enumerate(range(0, total, samples_per_shard)):
        hi = min(lo + samples_per_shard, total)
        slices = tuple(
            (path, max(lo, a) - a, min(hi, b) - a) for path, a, b in spans if a < hi and b > lo
        )
        tasks.append(ShardTask(shard, slices, samples_per_shard))
    return tasks


@functools.lru_cache(maxsize=2)
def _selection_part(path: str, stamp: tuple):
    # Consecutive shards usually cut the same part: read it once per worker, not once per shard.
    with fs.open_read(path) as f:
        pf = pq.ParquetFile(f)
        names = [c for c in SELECTION_COLUMNS if c in pf.schema_arrow.names]
        return pf.read(columns=names)


def read_slice(path: str, start: int, stop: int) -> list[dict]:
    """Rows ``start:stop`` of a selection part, as dicts of the selection columns."""
    # keyed on the file's version, so a rewritten selection is read afresh
    return _selection_part(path, fs.version(path)).slice(start, stop - start).to_pylist()


def _info(shard: int, rows: list[dict], fetched: int) -> ShardInfo:
    counts: dict = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    successes = tuple(
        (r["uid"], tuple(r["selected_for"] or ())) for r in rows if r["status"] == "success"
    )
    return ShardInfo(shard, len(rows), successes, fetched, counts)


def _write_progress(shards_dir: str, shard: int, done: int, ok: int) -> None:
    if not fs.is_remote(shards_dir):  # a local progress bar only; Beam counters cover the rest
        fs.write_text_atomic(progress_path(shards_dir, shard), json.dumps({"done": done, "ok": ok}))


def fetch_shard(
    task: ShardTask, downloader: ShardDownloader, shards_dir: str, retry_failed: bool = False
) -> tuple[ShardInfo, list[dict]]:
    """Phase 1 for one shard; returns its info and the rows fetched in this call."""
    wanted = rows_for_task(task, read_slice)
    path = staging_path(shards_dir, task.shard)
    digest = image_options_digest(downloader.image_opts)
    ext = downloader.image_opts.output_format
    existing = _read_matching_staging(shards_dir, task.shard, wanted, digest)
    if existing is not None and not (retry_failed and any(_retryable(r) for r in existing)):
        _drop_other_tars(
            shards_dir, task.shard, staging_tar_path(shards_dir, task.shard, existing, digest)
        )
        _write_progress(shards_dir, task.shard, len(existing), _ok(existing))
        return _info(task.shard, existing, 0), []
    todo = wanted if existing is None else [r for r in existing if _retryable(r)]
    done = (
        []
        if existing is None
        else _with_images(shards_dir, task.shard, existing, digest, ext, todo)
    )
    base = len(done)
    progress = Progress(
        lambda n, ok: _write_progress(shards_dir, task.shard, base + n, _ok(done) + ok)
    )
    fresh = downloader.download([_reset(r) for r in todo], progress) if todo else []
    progress.flush()
    rows = sorted(done + fresh, key=lambda r: r["key"])
    tar_path = staging_tar_path(shards_dir, task.shard, rows, digest)
    sw.write_staging(path, tar_path, rows, ext, digest)
    _drop_other_tars(shards_dir, task.shard, tar_path)
    return _info(task.shard, rows, len(fresh)), fresh


def _with_images(
    shards_dir: str, shard: int, existing: list[dict], digest: str, ext: str, todo: list[dict]
) -> list[dict]:
    """The staged rows that are not re-fetched, successes with their images from the staging tar.

    A success whose image the tar lacks (a damaged leftover) joins ``todo`` and is fetched again.
    """
    tar_path = staging_tar_path(shards_dir, shard, existing, digest)
    try:
        images = sw.read_tar_images(tar_path, ext)
    except Exception:  # unreadable: every staged success is fetched again
        images = {}
    done = []
    for r in existing:
        if _retryable(r):
            continue
        if r["status"] == "success":
            if r["key"] not in images:
                todo.append(r)
                continue
            r = {**r, "image": images[r["key"]]}
        done.append(r)
    return done


def _ok(rows: list[dict]) -> int:
    return sum(r["status"] == "success" for r in rows)


def _retryable(row: dict) -> bool:
    return row["status"] == "failed_to_download" and row["error_message"] in RETRYABLE_REASONS


def _reset(row: dict) -> dict:
    keep = {c: row[c] for c in (*SELECTION_COLUMNS, "key", "host")}
    blank = dict.fromkeys(sw.STAGING_SCHEMA.names)
    return {**blank, **keep, "bytes": 0, "seconds": 0.0, "retries": 0, "redirects": 0}


def image_options_digest(opts) -> str:
    """What the staged images depend on: every image option except the thread count."""
    values = {k: v for k, v in dataclasses.asdict(opts).items() if k != "threads"}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def _read_matching_staging(
    shards_dir: str, shard: int, wanted: list[dict], digest: str
) -> list[dict] | None:
    """The staging rows if the Parquet and its tar exist, were made with the same image options,
    and cover exactly the wanted (key, uid) pairs."""
    path = staging_path(shards_dir, shard)
    if not fs.exists(path):
        return None
    try:
        table = sw.read_staging(path)
        if (
            sw.staging_image_digest(table) != digest
            or table.schema.names != sw.STAGING_SCHEMA.names
        ):
            return None  # other image options, or staging of an older layout
        rows = table.to_pylist()
    except Exception:  # an unreadable leftover is redone, not trusted
        return None
    if [(r["key"], r["uid"]) for r in rows] != [(r["key"], r["uid"]) for r in wanted]:
        return None
    if not fs.exists(staging_tar_path(shards_dir, shard, rows, digest)):
        return None
    return rows


def staged_info(shards_dir: str, shard: int) -> ShardInfo | None:
    """What phase 1 staged for a shard, read back from its staging Parquet (None if it is gone:
    the shard is then not finalised, which the stage's end check reports)."""
    path = staging_path(shards_dir, shard)
    if not fs.exists(path):
        return None
    with fs.open_read(path) as f:
        rows = pq.read_table(f, columns=["uid", "status", "selected_for"]).to_pylist()
    return _info(shard, rows, 0)


def finalized_path(shards_dir: str, shard: int) -> str:
    """Phase 2's note that it handled a shard in a given run (read by the stage's end check)."""
    return fs.join(shards_dir, STAGING, f"{sw.shard_name(shard)}.finalized.json")


def finalize_shard(
    shards_dir: str, shard: int, kept: set[str] | None, ext: str, run_id: str = ""
) -> dict:
    """Phase 2 for one shard: trim and write the final files unless they are already current;
    then note ``run_id`` as the run that handled the shard."""
    stats = _finalize(shards_dir, shard, kept, ext)
    fs.write_text_atomic(finalized_path(shards_dir, shard), json.dumps({"run": run_id}))
    return stats


def _finalize(shards_dir: str, shard: int, kept: set[str] | None, ext: str) -> dict:
    table = sw.read_staging(staging_path(shards_dir, shard))
    staged = table.to_pylist()
    image_digest = sw.staging_image_digest(table)
    rows = sw.apply_trim(staged, kept)
    # The staged images' options are part of the content: other options, other shard bytes.
    digest = sw.content_digest(rows, ext + image_digest)
    if sw.final_is_current(shards_dir, shard, digest):
        return {**sw.shard_stats(rows), "written": False}
    tar_path = staging_tar_path(shards_dir, shard, staged, image_digest)
    if not any(r["status"] == "trimmed" for r in rows):  # the staging tar is the final tar
        stats = sw.write_final(shards_dir, shard, rows, ext, digest, tar_from=tar_path)
        return {**stats, "written": True}
    images = sw.read_tar_images(tar_path, ext)
    rows = [{**r, "image": images[r["key"]]} if r["status"] == "success" else r for r in rows]
    return {**sw.write_final(shards_dir, shard, rows, ext, digest), "written": True}
