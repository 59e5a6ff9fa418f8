"""Shard streaming: split across ranks and workers (by the manifest's samples when there is one),
resampling, corrupt samples counted, shards behind an fsspec URL."""

from __future__ import annotations

import io
import random
import tarfile
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from clip_model.data import (
    ShardStream,
    StreamConfig,
    iter_tar,
    list_shards,
    read_manifests,
    shards_for,
)
from pipeline.demo_world.eval_images import write_shards
from pipeline.download.manifest import write_manifest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class ByteTok:
    """Minimal tokenizer for loader tests: bytes of the caption."""

    def __call__(self, texts):
        out = torch.zeros(len(texts), 16, dtype=torch.long)
        for i, t in enumerate(texts):
            b = list(t.encode()[:15]) + [255]
            out[i, : len(b)] = torch.tensor(b)
        return out


@pytest.mark.parametrize("n_shards,world,workers", [(8, 2, 2), (9, 2, 2), (5, 1, 3), (16, 4, 2)])
def test_shards_are_split_without_overlap_across_ranks_and_workers(n_shards, world, workers):
    shards = [f"/s/{i:05d}.tar" for i in range(n_shards)]
    slots = world * workers
    for epoch in range(3):
        parts = [shards_for(shards, epoch, 7, slot, slots) for slot in range(slots)]
        flat = [s for p in parts for s in p]
        assert sorted(flat) == shards  # every shard exactly once
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert (
        shards_for(shards, 0, 7, 0, slots) != shards_for(shards, 1, 7, 0, slots)
        or n_shards <= slots
    )


def test_fewer_shards_than_workers_are_resampled():
    shards = ["/s/00000.tar", "/s/00001.tar"]
    picks = [shards_for(shards, epoch, 0, slot, 6) for epoch in range(5) for slot in range(6)]
    assert all(len(p) == 1 and p[0] in shards for p in picks)
    assert {p[0] for p in picks} == set(shards)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    write_shards(str(d), samples=32, per_shard=4, short_side=48)
    return d


def test_loader_reads_each_sample_once_per_epoch_across_ranks_and_workers(shard_dir):
    shards = list_shards(str(shard_dir / "*.tar"))
    assert len(shards) == 8
    seen: dict[tuple[int, int], list[str]] = {}
    for rank in range(2):
        cfg = StreamConfig(
            shards, batch_size=1, image_size=32, seed=3, rank=rank, world=2, shuffle_buffer=4
        )
        loader = DataLoader(ShardStream(cfg, ByteTok()), batch_size=None, num_workers=2)
        for i, batch in enumerate(loader):
            if batch["epoch"] == 0:
                seen.setdefault((rank, batch["worker"]), []).extend(batch["keys"])
            if i >= 24:
                break
    keys = [k for ks in seen.values() for k in ks]
    assert len(seen) == 4 and sorted(keys) == sorted(set(keys)) and len(keys) == 32
    shards_of = [{k[:5] for k in ks} for ks in seen.values()]
    for i, a in enumerate(shards_of):
        for b in shards_of[i + 1 :]:
            assert not a & b  # no shard read by two (rank, worker) slots in an epoch


def _tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_corrupt_samples_are_counted_not_fatal(tmp_path, shard_dir):
    good = dict(iter_tar(str(shard_dir / "00000.tar"), Counter()))
    jpg = next(iter(good.values()))["jpg"]
    _tar(tmp_path / "00000.tar", {
        "a.jpg": jpg, "a.txt": b"a red circle",
        "b.jpg": b"not an image at all", "b.txt": b"a blue square",
        "c.jpg": jpg,  # no caption
        "d.txt": b"caption without image",
        "e.jpg": jpg, "e.txt": b"   ",
        "f.jpg": jpg, "f.txt": b"two green stars",
    })  # fmt: skip
    cfg = StreamConfig([str(tmp_path / "00000.tar")], batch_size=2, image_size=32, shuffle_buffer=1)
    batch = next(iter(ShardStream(cfg, ByteTok())))
    assert batch["images"].shape == (2, 3, 32, 32) and batch["images"].dtype == torch.uint8
    assert sorted(batch["keys"]) == ["a", "f"]
    counts = batch["counts"]
    assert counts["bad_image"] == counts["missing_caption"] == 1
    assert counts["missing_image"] == counts["empty_caption"] == 1


def test_truncated_shard_is_counted_and_its_readable_part_used(tmp_path, shard_dir):
    full = (shard_dir / "00000.tar").read_bytes()
    with tarfile.open(shard_dir / "00000.tar") as tar:
        cut = tar.getmembers()[7]  # inside the third sample's members
    (tmp_path / "00000.tar").write_bytes(full[: cut.offset_data + cut.size // 2])
    cfg = StreamConfig([str(tmp_path / "00000.tar")], batch_size=2, image_size=32, shuffle_buffer=1)
    stream = iter(ShardStream(cfg, ByteTok()))
    batches = [next(stream) for _ in range(3)]
    assert all(len(b["keys"]) == 2 for b in batches)
    assert Counter(batches[-1]["counts"])["shard_read_error"] >= 1


def test_unusable_shards_raise_instead_of_hanging(tmp_path):
    _tar(tmp_path / "00000.tar", {"a.png": b"garbage", "a.txt": b"x", "b.json": b"{}"})
    cfg = StreamConfig([str(tmp_path / "00000.tar")], batch_size=2, image_size=32)
    with pytest.raises(RuntimeError, match="no usable sample"):
        next(iter(ShardStream(cfg, ByteTok())))


@pytest.mark.parametrize("world,workers", [(2, 2), (1, 3), (4, 2)])
def test_manifest_sizes_balance_samples_across_slots(world, workers):
    rng = random.Random(5)
    shards = [f"/s/{i:05d}.tar" for i in range(13)]
    sizes = {s: rng.choice((50, 100, 1000)) for s in shards}
    slots = world * workers
    for epoch in range(3):
        parts = [shards_for(shards, epoch, 7, slot, slots, sizes) for slot in range(slots)]
        assert sorted(s for p in parts for s in p) == shards  # every shard once per epoch
        loads = [sum(sizes[s] for s in p) for p in parts]
        assert max(loads) - min(loads) <= max(sizes.values())  # greedy bound: one shard at most

    def spread(parts):
        loads = [sum(sizes[s] for s in p) for p in parts]
        return max(loads) - min(loads)

    by_count = [shards_for(shards, 0, 7, slot, slots) for slot in range(slots)]
    by_size = [shards_for(shards, 0, 7, slot, slots, sizes) for slot in range(slots)]
    assert spread(by_size) <= spread(by_count)


def test_resampling_follows_the_manifest_sizes():
    shards = ["/s/00000.tar", "/s/00001.tar"]
    sizes = {shards[0]: 1, shards[1]: 0}  # an empty shard is never drawn
    picks = [shards_for(shards, e, 0, slot, 4, sizes) for e in range(10) for slot in range(4)]
    assert all(p == [shards[0]] for p in picks)


def test_manifest_gives_samples_per_shard_and_names_the_missing(tmp_path):
    paths = write_shards(str(tmp_path / "a"), samples=10, per_shard=4, short_side=32)
    manifest = write_manifest(str(tmp_path / "a"))  # no stats here: samples counted in the tars
    assert [e["samples"] for e in manifest["shards"]] == [4, 4, 2]
    other = write_shards(str(tmp_path / "b"), samples=3, per_shard=3, short_side=32)
    sizes = read_manifests([*paths, *other])
    assert sizes.samples == dict(zip(paths, [4, 4, 2]))
    assert sizes.missing == tuple(other) and sizes.total(paths) == 10
    assert sizes.total([*paths, *other]) is None


def test_shards_behind_an_fsspec_url_stream_like_local_ones(shard_dir):
    import fsspec

    mem = fsspec.filesystem("memory")
    for path in sorted(shard_dir.glob("*.tar"))[:2]:
        mem.pipe(f"/clip_data_test/{path.name}", path.read_bytes())
    shards = list_shards("memory://clip_data_test/*.tar")
    assert [s.split("clip_data_test/")[1] for s in shards] == ["00000.tar", "00001.tar"]
    assert all(s.startswith("memory://") for s in shards)
    cfg = StreamConfig(shards, batch_size=8, image_size=32, shuffle_buffer=1)
    batch = next(iter(ShardStream(cfg, ByteTok())))
    assert sorted(k[:5] for k in batch["keys"]) == ["00000"] * 4 + ["00001"] * 4
