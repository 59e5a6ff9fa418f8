"""``shards/manifest.json``: the samples and bytes of every final shard, for readers that must
know the dataset's size without opening a tar (the trainer's epoch length and its split of shards
across ranks and loader workers).

    {"format": "wit-builder shard manifest", "version": 1,
     "shards": [{"name": "00000.tar", "samples": 936, "bytes": 131766712}, ...],
     "num_shards": 12, "total_samples": 10515, "total_bytes": 1479823360}

``samples`` is the number of successes in the tar: the shard's ``_stats.json`` counts them after the
per-query trim; without stats, its Parquet's ``success`` rows; without either (shards made by other
tools), the tar's samples counted by reading it.
"""

from __future__ import annotations

import json
import re
import tarfile

from pipeline import fs
from pipeline.invariants import expect_equal

MANIFEST = "manifest.json"
FORMAT = "wit-builder shard manifest"
SHARD_TAR = re.compile(r"(\d+)\.tar")
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def _count_tar(path: str) -> int:
    """Samples (keys with an image member) in a tar, read from the start."""
    keys = set()
    with fs.open_read(path) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if member.isfile() and "." in name and name.split(".", 1)[1].lower() in IMAGE_EXTS:
                keys.add(member.name.rsplit(".", 1)[0])
    return len(keys)


def _successes(shards_dir: str, stem: str, tar_path: str) -> int:
    """Successes of one shard: from its stats, else its Parquet, else its tar."""
    stats = fs.join(shards_dir, f"{stem}_stats.json")
    if fs.exists(stats):
        return int(json.loads(fs.read_text(stats))["successes"])
    parquet = fs.join(shards_dir, f"{stem}.parquet")
    if fs.exists(parquet):
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        with fs.open_read(parquet) as f:
            status = pq.read_table(f, columns=["status"]).column("status")
        return int(pc.sum(pc.equal(status, "success")).as_py() or 0)
    return _count_tar(tar_path)


def write_manifest(shards_dir: str, **facts) -> dict:
    """Write ``<shards_dir>/manifest.json`` (atomically) for the final ``{NNNNN}.tar`` shards;
    ``facts`` (such as ``image_ext`` and ``samples_per_shard``) describe how they were made, so
    their readers need no other stage's configuration."""
    entries = []
    for path in fs.glob(fs.join(shards_dir, "*.tar")):
        name = path.replace("\\", "/").rsplit("/", 1)[-1]
        match = SHARD_TAR.fullmatch(name)
        if not match:  # staging and temporary files are not shards
            continue
        samples = _successes(shards_dir, match.group(1), path)
        entries.append({"name": name, "samples": samples, "bytes": fs.size(path)})
    manifest = {
        "format": FORMAT,
        "version": 1,
        "shards": entries,
        "num_shards": len(entries),
        "total_samples": sum(e["samples"] for e in entries),
        "total_bytes": sum(e["bytes"] for e in entries),
        **facts,
    }
    fs.write_text_atomic(fs.join(shards_dir, MANIFEST), json.dumps(manifest, indent=1) + "\n")
    return manifest


def check_manifest(stage: str, manifest: dict, planned: int, successes: int) -> None:
    """A stage's end check of the manifest it wrote: every planned shard and every sample kept
    (``successes``) is listed."""
    expect_equal(stage, "shards in manifest.json", planned, manifest["num_shards"])
    expect_equal(
        stage, "samples in manifest.json vs successes", successes, manifest["total_samples"]
    )
