"""Shard files: the staging files of phase 1, and the final tar + Parquet + stats of phase 2.

Phase 1 (download) writes ``shards/_staging/{NNNNN}-{digest}.tar``, the shard's tar with every
success (what the final tar is when the trim removes nothing), then ``_staging/{NNNNN}.parquet``:
every attempted row of the shard with its outcome, without images; the Parquet, written last,
marks the staging complete (:mod:`pipeline.download.phases` names the tar after the rows). Phase 2 (finalize) reads the Parquet, applies the per-query trim and writes the
img2dataset layout: ``{NNNNN}.tar`` (members in key order, fixed mtime/owner so the bytes depend
only on the content; a hard link to the staging tar when nothing was trimmed, so the images are
written once), ``{NNNNN}.parquet`` (one row per attempted sample) and ``{NNNNN}_stats.json``,
written last: its presence with the right digest marks the shard complete. Every file goes to a
temporary name first.
"""

from __future__ import annotations

import hashlib
import json
import math
import tarfile
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import fs
from pipeline.arrow_rows import table_from_rows

SHARD_DIGITS = 5  # img2dataset's oom_shard_count
TAR_MTIME = 0  # a fixed mtime keeps tars byte-identical across runs

# img2dataset's columns first (same names and types), then ours.
FINAL_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("url", pa.string()),
        ("caption", pa.string()),
        ("status", pa.string()),
        ("error_message", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("original_width", pa.int32()),
        ("original_height", pa.int32()),
        ("exif", pa.string()),
        ("sha256", pa.string()),
        ("uid", pa.string()),
        ("page_url", pa.string()),
        ("source_file", pa.string()),
        ("matched_query_ids", pa.list_(pa.int64())),
        ("matched_queries", pa.list_(pa.string())),
        ("selected_for", pa.list_(pa.int64())),
        ("host", pa.string()),
        ("http_status", pa.int32()),
        ("bytes", pa.int64()),
        ("seconds", pa.float64()),
        ("retries", pa.int32()),
        ("redirects", pa.int32()),
        ("final_url", pa.string()),
    ]
)
STAGING_SCHEMA = FINAL_SCHEMA  # the images are in the staging tar
# Columns that vary between two runs of the same input (timings); excluded from digests.
VOLATILE_COLUMNS = ("seconds", "retries")


def shard_name(shard: int) -> str:
    return f"{shard:0{SHARD_DIGITS}d}"


def key_digits(samples_per_shard: int) -> int:
    """Digits of the row part of a key: img2dataset's ``ceil(log10(number_sample_per_shard))``."""
    return max(1, math.ceil(math.log10(samples_per_shard)))


def make_key(shard: int, row: int, samples_per_shard: int) -> str:
    """img2dataset's key: ``shard * 10**k + row``, zero-padded to ``k + 5`` digits."""
    k = key_digits(samples_per_shard)
    return f"{shard * 10**k + row:0{k + SHARD_DIGITS}d}"


def write_table_atomic(path: str, table: pa.Table) -> None:
    """Write a Parquet file to a temporary name and rename it into place."""
    buf = pa.BufferOutputStream()  # one write to the file instead of many small Python calls
    pq.write_table(table, buf, compression="zstd")
    with fs.open_write_atomic(path) as f:
        f.write(buf.getvalue())


def write_staging(
    path: str, tar_path: str, rows: list[dict], ext: str, image_digest: str = ""
) -> None:
    """Phase 1 output: the successes' tar, then all rows of one shard in key order, no images.

    ``image_digest`` names the image options the images were made with; a re-run with other
    options must not reuse them.
    """
    rows = sorted(rows, key=lambda r: r["key"])
    with fs.open_write_atomic(tar_path) as f:
        tar_bytes_stream(f, rows, ext)
    schema = STAGING_SCHEMA.with_metadata({"wit_image_options": image_digest})
    write_table_atomic(path, table_from_rows(rows, schema))


def read_staging(path: str) -> pa.Table:
    with fs.open_read(path) as f:
        return pq.read_table(f)


def staging_image_digest(table: pa.Table) -> str:
    """The image-options digest a staging table was written with."""
    meta = table.schema.metadata or {}
    return meta.get(b"wit_image_options", b"").decode()


def read_tar_images(tar_path: str, ext: str) -> dict[str, bytes]:
    """key -> image bytes of the ``{key}.{ext}`` members of a shard tar."""
    suffix = "." + ext
    images = {}
    with fs.open_read(tar_path) as f, tarfile.open(fileobj=f, mode="r|") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(suffix):
                images[member.name[: -len(suffix)]] = tar.extractfile(member).read()
    return images


def apply_trim(rows: list[dict], kept: set[str] | None) -> list[dict]:
    """Mark successes whose uid is not in ``kept`` as ``trimmed`` (image dropped); None keeps all."""
    if kept is None:
        return rows
    out = []
    for r in rows:
        if r["status"] == "success" and r["uid"] not in kept:
            r = {
                **r,
                "status": "trimmed",
                "error_message": "over_cap_after_download",
                "image": None,
            }
        out.append(r)
    return out


def sample_json(row: dict) -> bytes:
    """The ``{key}.json`` member: the Parquet row as img2dataset writes its meta, less timings.

    Timings and retry counts stay in the Parquet only, so a tar depends on content alone. Written
    without indentation: Python's C encoder only serves ``indent=None``, and it is much faster.
    """
    meta = {k: row[k] for k in FINAL_SCHEMA.names if k not in VOLATILE_COLUMNS}
    return json.dumps(meta, ensure_ascii=False).encode("utf-8")


def _header_template() -> bytes:
    info = tarfile.TarInfo("x")
    info.mtime = TAR_MTIME
    info.mode = 0o444
    info.uname = info.gname = "bigdata"  # what webdataset's TarWriter writes
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


_HEADER = _header_template()
_NAME, _SIZE, _CHKSUM = slice(0, 100), slice(124, 136), slice(148, 156)  # USTAR field offsets


def member_header(name: str, size: int) -> bytes:
    """The USTAR header ``tarfile`` writes for a member of ``_HEADER``'s kind (byte-identical).

    ``TarInfo.tobuf`` is a large share of writing a shard; only the name, the size and the
    checksum differ between members, so they are patched into one template.
    """
    raw = name.encode("utf-8")
    if len(raw) > 100 or size >= 8**11:  # long names need the prefix field: let tarfile do it
        info = tarfile.TarInfo.frombuf(_HEADER, "utf-8", "surrogateescape")
        info.name, info.size = name, size
        return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    h = bytearray(_HEADER)
    h[_NAME] = raw.ljust(100, b"\0")
    h[_SIZE] = b"%011o\0" % size
    h[_CHKSUM] = b" " * 8
    h[_CHKSUM] = b"%06o\0 " % sum(h)
    return bytes(h)


def tar_bytes_stream(f, rows: list[dict], ext: str) -> None:
    """Write the successes of ``rows`` (already in key order) as a webdataset tar to ``f``.

    The bytes are what ``tarfile`` writes for the same members (a test compares them): USTAR
    headers, data padded to 512-byte blocks, two zero blocks, padding to a 10240-byte record.
    The shard is assembled in memory and written at once (a shard is tens of MB at most).
    """
    chunks: list[bytes] = []
    size = 0

    def member(name: str, data: bytes) -> None:
        nonlocal size
        pad = -len(data) % tarfile.BLOCKSIZE
        chunks.extend((member_header(name, len(data)), data, b"\0" * pad))
        size += tarfile.BLOCKSIZE + len(data) + pad

    for r in rows:
        if r["status"] != "success":
            continue
        member(f"{r['key']}.{ext}", r["image"])
        member(f"{r['key']}.txt", (r["caption"] or "").encode("utf-8"))
        member(f"{r['key']}.json", sample_json(r))
    size += 2 * tarfile.BLOCKSIZE
    chunks.append(b"\0" * (2 * tarfile.BLOCKSIZE + (-size % tarfile.RECORDSIZE)))
    f.write(b"".join(chunks))


def shard_stats(rows: list[dict]) -> dict:
    """img2dataset-like ``_stats.json`` figures for one shard."""
    statuses = Counter(r["status"] for r in rows)
    reasons = Counter(r["error_message"] or "success" for r in rows if r["status"] != "trimmed")
    return {
        "count": len(rows),
        "successes": statuses.get("success", 0),
        "failed_to_download": statuses.get("failed_to_download", 0),
        "failed_to_resize": statuses.get("failed_to_resize", 0),
        "trimmed": statuses.get("trimmed", 0),
        "status_dict": dict(sorted(reasons.items())),
        "bytes": sum(r["bytes"] or 0 for r in rows),
    }


def content_digest(rows: list[dict], ext: str) -> str:
    """A digest of what a final shard must contain (statuses, hashes, format), for resume checks."""
    h = hashlib.sha256(ext.encode())
    for r in rows:
        h.update(f"{r['key']}|{r['uid']}|{r['status']}|{r['sha256']}\n".encode())
    return h.hexdigest()[:16]


def final_paths(shards_dir: str, shard: int) -> dict[str, str]:
    name = shard_name(shard)
    return {
        "tar": fs.join(shards_dir, f"{name}.tar"),
        "parquet": fs.join(shards_dir, f"{name}.parquet"),
        "stats": fs.join(shards_dir, f"{name}_stats.json"),
    }


def final_is_current(shards_dir: str, shard: int, digest: str) -> bool:
    """Whether the final files of a shard exist and were written from the same content."""
    paths = final_paths(shards_dir, shard)
    if not all(fs.exists(p) for p in paths.values()):
        return False
    try:
        return json.loads(fs.read_text(paths["stats"])).get("digest") == digest
    except ValueError:
        return False


def write_final(
    shards_dir: str,
    shard: int,
    rows: list[dict],
    ext: str,
    digest: str | None = None,
    tar_from: str | None = None,
) -> dict:
    """Write ``{NNNNN}.tar``, ``.parquet`` and ``_stats.json`` (last); returns the stats.

    The tar is built from the rows' ``image`` values, or is ``tar_from`` (a staging tar holding
    exactly the rows' successes) linked into place. ``digest`` (default: :func:`content_digest`)
    is recorded in the stats for resume checks.
    """
    rows = sorted(rows, key=lambda r: r["key"])
    paths = final_paths(shards_dir, shard)
    fs.delete(paths["stats"])  # until the new stats land, the shard reads as incomplete
    if tar_from is not None:
        fs.link_or_copy(tar_from, paths["tar"])
    else:
        with fs.open_write_atomic(paths["tar"]) as f:
            tar_bytes_stream(f, rows, ext)
    table = table_from_rows(rows, FINAL_SCHEMA)
    write_table_atomic(paths["parquet"], table)
    stats = {**shard_stats(rows), "digest": digest or content_digest(rows, ext)}
    fs.write_text_atomic(paths["stats"], json.dumps(stats, indent=4, sort_keys=True) + "\n")
    return stats


# ---- checks of the layout (the download's and the filter's end checks) ------------------------


def tar_member_problems(name: str, tar_path: str, successes: list[str], ext: str) -> list[str]:
    """What is wrong with a shard's tar given its successful keys: every success has exactly its
    image, caption and metadata members, and nothing else is there."""
    import tarfile

    wanted = sorted(f"{k}.{e}" for k in successes for e in (ext, "txt", "json"))
    with fs.open_read(tar_path) as f, tarfile.open(fileobj=f, mode="r|") as tar:
        names = sorted(m.name for m in tar)
    if names == wanted:
        return []
    return [
        f"shard {name}: {len(successes)} successes need {len(wanted)} tar members, the tar "
        f"holds {len(names)} ({len(set(wanted) - set(names))} missing)"
    ]


def stray_shards(shards_dir: str, planned: int) -> list[str]:
    """Shard names in ``shards_dir`` that no planned shard (``0..planned-1``) accounts for."""
    names = set()
    for pattern in ("[0-9]*.tar", "[0-9]*.parquet", "[0-9]*_stats.json"):
        names.update(
            p.rsplit("/", 1)[-1][:SHARD_DIGITS] for p in fs.glob(fs.join(shards_dir, pattern))
        )
    return sorted(n for n in names if not n.isdigit() or int(n) >= planned)
