"""``shards/manifest.json`` on the shards the download stage writes (with failures and a trim)."""

from __future__ import annotations

import json
import os
import tarfile

import pyarrow.parquet as pq
import pytest

from clip_model.data import list_shards, read_manifests
from pipeline.config import RunConfig
from pipeline.demo_world import scene
from pipeline.demo_world.server import serve
from pipeline.demo_world.urls import image_url
from pipeline.download import stage
from pipeline.download.config import DownloadConfig
from pipeline.download.manifest import MANIFEST, write_manifest
from tests.download_helpers import selection_row, write_selection

pytestmark = pytest.mark.timeout(120)
N = 60


@pytest.fixture(scope="module")
def shards_dir(tmp_path_factory):
    """A download of 60 pairs (some failing), over-sampled 2x and trimmed back to the cap."""
    out = str(tmp_path_factory.mktemp("manifest"))
    faults = {3: "404", 11: "bomb", 17: "noai"}
    with serve(0, prerender=tuple(range(N))) as srv:
        rows = [
            selection_row(
                image_url(srv.port, i, scene.scene_for(i, 0).fmt, faults.get(i)),
                f"picture {i}",
                {i % 3: f"q{i % 3}"},
            )
            for i in range(N)
        ]
        write_selection(out, rows, per_part=30, cap=12, oversample=2.0)
        cfg = DownloadConfig(samples_per_shard=20, allow_hosts=[f"127.0.0.1:{srv.port}"])
        stage.run(RunConfig(out=out, workers=1, progress=False), cfg)
    return os.path.join(out, "shards")


def _tar_samples(path: str) -> int:
    with tarfile.open(path) as tar:
        return len({m.name.split(".")[0] for m in tar.getmembers() if m.name.endswith(".jpg")})


def test_manifest_lists_every_final_shard_with_its_samples_and_bytes(shards_dir):
    manifest = write_manifest(shards_dir)
    assert json.loads(open(os.path.join(shards_dir, MANIFEST)).read()) == manifest
    names = sorted(n for n in os.listdir(shards_dir) if n.endswith(".tar"))
    assert (
        [e["name"] for e in manifest["shards"]] == names == ["00000.tar", "00001.tar", "00002.tar"]
    )
    for entry in manifest["shards"]:
        path = os.path.join(shards_dir, entry["name"])
        table = pq.read_table(path.replace(".tar", ".parquet")).to_pylist()
        assert entry["samples"] == _tar_samples(path)  # successes left in the tar after the trim
        assert entry["samples"] == sum(r["status"] == "success" for r in table)
        assert entry["bytes"] == os.path.getsize(path)
    trimmed = sum(r["status"] == "trimmed" for n in names
                  for r in pq.read_table(os.path.join(shards_dir, n[:-4] + ".parquet")).to_pylist())  # fmt: skip
    assert trimmed > 0  # the trim rebuilt some tars: the manifest counts what is left
    assert manifest["total_samples"] == sum(e["samples"] for e in manifest["shards"])
    assert manifest["total_bytes"] == sum(e["bytes"] for e in manifest["shards"])
    assert not [n for n in os.listdir(shards_dir) if ".tmp" in n]


def test_the_trainer_reads_the_manifest_for_its_epoch_length(shards_dir):
    manifest = write_manifest(shards_dir)
    shards = list_shards(os.path.join(shards_dir, "*.tar"))
    sizes = read_manifests(shards)
    assert sizes.total(shards) == manifest["total_samples"] and not sizes.missing


def test_without_stats_the_parquet_then_the_tar_give_the_count(shards_dir, tmp_path):
    import shutil

    for name in ("00000.tar", "00000.parquet", "00001.tar"):
        shutil.copy(os.path.join(shards_dir, name), tmp_path / name)
    manifest = write_manifest(str(tmp_path))
    expected = [_tar_samples(os.path.join(shards_dir, n)) for n in ("00000.tar", "00001.tar")]
    assert [e["samples"] for e in manifest["shards"]] == expected
