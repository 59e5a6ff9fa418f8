"""Streaming webdataset shards into training batches.

We read the tars with a small ``tarfile`` iterator rather than the ``webdataset`` pipeline because
the trainer needs three things webdataset does not give: every sample whose members are missing or
undecodable is *counted by reason* (webdataset's default handlers drop them silently, and
open_clip's loader hangs when no key matches), an exact *data position* to resume from, and a split
of shards across ranks and workers that we can state and test. The tar members follow the same
grouping rule as webdataset (key = member name up to the first dot of its basename), and any
fsspec URL works (``gs://``, ``s3://``, local paths), through the same :mod:`files` layer as the
checkpoints.

The shard manifest (``manifest.json`` beside the shards: samples and bytes per shard) gives the
epoch length without opening a shard, and lets :func:`shards_for` balance ranks and workers by
samples instead of guessing (webdataset's loaders need the length passed in by hand).

Each loader worker owns a deterministic list of shards per epoch (see :func:`shards_for`), runs
them through its own shuffle buffer, and yields whole batches tagged with its position: the
number of raw samples it has drawn from the buffer in the current epoch. The buffer's order
depends only on the seed, never on image content, so resuming replays the raw stream without
decoding it and continues with the very batch an uninterrupted run would have produced.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import random
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import IterableDataset, get_worker_info

from clip_model import files, preprocess

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
TEXT_EXTS = ("txt",)
MANIFEST = "manifest.json"


def list_shards(spec: str | list[str]) -> list[str]:
    """Expand comma-separated paths, globs and fsspec URLs into a sorted list of .tar shards."""
    specs = spec if isinstance(spec, list) else [s for s in spec.replace("\n", ",").split(",")]
    out: list[str] = []
    for s in (s.strip() for s in specs):
        if s:
            out.extend(files.glob(s) if any(c in s for c in "*?[") else [s])
    return sorted(dict.fromkeys(o for o in out if o.endswith(".tar")))


@dataclass(frozen=True)
class ShardSizes:
    """Samples per shard from the manifests beside the shards; ``missing``: shards none lists."""

    samples: dict[str, int]
    missing: tuple[str, ...]
    manifests: tuple[str, ...]

    def total(self, shards: list[str]) -> int | None:
        """Samples in ``shards`` (one epoch), or None when a shard is not in a manifest."""
        if any(s not in self.samples for s in shards):
            return None
        return sum(self.samples[s] for s in shards)


def read_manifests(shards: list[str]) -> ShardSizes:
    """Read ``manifest.json`` in each folder holding shards (written by the download stage)."""
    samples: dict[str, int] = {}
    found = []
    for folder in sorted({files.dirname(s) for s in shards}):
        path = files.join(folder, MANIFEST)
        if not files.exists(path):
            continue
        found.append(path)
        for entry in json.loads(files.read_text(path))["shards"]:
            samples[files.join(folder, entry["name"])] = int(entry["samples"])
    sizes = {s: samples[s] for s in shards if s in samples}
    missing = tuple(s for s in shards if s not in samples)
    return ShardSizes(sizes, missing, tuple(found))


def _seeded(*parts) -> random.Random:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _balanced(order: list[str], sizes: dict[str, int], slots: int) -> list[list[str]]:
    """Largest shard first to the least-loaded slot (ties: the earlier shard in ``order``)."""
    ranked = sorted(range(len(order)), key=lambda i: (-sizes.get(order[i], 0), i))
    heap = [(0, slot) for slot in range(slots)]
    parts: list[list[str]] = [[] for _ in range(slots)]
    for i in ranked:
        load, slot = heapq.heappop(heap)
        parts[slot].append(order[i])
        heapq.heappush(heap, (load + sizes.get(order[i], 0), slot))
    return parts


def shards_for(
    shards: list[str], epoch: int, seed: int, slot: int, slots: int, sizes: dict | None = None
) -> list[str]:
    """The shards worker ``slot`` (= rank * workers_per_rank + worker) reads in ``epoch``.

    With at least as many shards as slots, every shard goes to exactly one slot per epoch: a
    seeded permutation dealt round-robin, or, with ``sizes`` (samples per shard), dealt to the
    least-loaded slot so that slots get about the same number of samples. With fewer shards than
    slots, each slot resamples one shard per epoch (with replacement, weighted by samples when
    known), so no worker idles.
    """
    if not shards:
        return []
    order = sorted(shards)
    if len(order) < slots:
        weights = [sizes.get(s, 0) for s in order] if sizes else None
        if weights is not None and not any(weights):
            weights = None
        return _seeded(seed, epoch, slot, "resample").choices(order, weights=weights)
    _seeded(seed, epoch, "perm").shuffle(order)
    if not sizes:
        return order[slot::slots]
    return _balanced(order, sizes, slots)[slot]


def iter_tar(url: str, counts: Counter) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) groups of consecutive members; a broken tar ends that shard, counted."""
    key, group = None, {}
    try:
        with files.open_read(url) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                base = os.path.basename(member.name)
                if "." not in base or base.startswith("."):
                    continue
                k = os.path.join(os.path.dirname(member.name), base.split(".", 1)[0])
                ext = base.split(".", 1)[1].lower()
                if k != key and group:
                    yield key, group
                    group = {}
                key = k
                group[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        counts["shard_read_error"] += 1
        counts[f"shard_read_error:{type(e).__name__}"] += 1
    if group:
        yield key, group


@dataclass
class Position:
    """Where a worker stands: epoch and raw samples drawn from its shuffle buffer in that epoch."""

    epoch: int = 0
    drawn: int = 0


def shuffled(items: Iterator, size: int, rng: random.Random) -> Iterator:
    """A shuffle buffer of ``size`` items (size <= 1: no shuffling)."""
    buf: list = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        i = rng.randrange(size)
        buf[i], item = item, buf[i]
        yield item
    rng.shuffle(buf)
    yield from buf


@dataclass
class Sample:
    """A decoded training pair."""

    image: torch.Tensor  # (3, S, S) uint8
    text: str
    key: str


def decode_sample(key: str, group: dict[str, bytes], size: int, rng, counts: Counter, train: bool):
    """A :class:`Sample`, or None with the reason counted."""
    img_ext = next((e for e in IMAGE_EXTS if e in group), None)
    txt_ext = next((e for e in TEXT_EXTS if e in group), None)
    if img_ext is None:
        counts["missing_image"] += 1
        return None
    if txt_ext is None:
        counts["missing_caption"] += 1
        return None
    text = group[txt_ext].decode("utf-8", errors="replace").strip()
    if not text:
        counts["empty_caption"] += 1
        return None
    try:
        img = preprocess.decode(group[img_ext], size)
        tensor = (
            preprocess.train_transform(img, size, rng)
            if train
            else preprocess.eval_transform(img, size)
        )
    except Exception:  # PIL raises many types on corrupt bytes; the sample is data, not a crash
        counts["bad_image"] += 1
        return None
    return Sample(tensor, text, key)


@dataclass
class StreamConfig:
    """What one rank's stream reads and how."""

    shards: list[str]
    batch_size: int  # per rank
    image_size: int
    seed: int = 0
    rank: int = 0
    world: int = 1
    shuffle_buffer: int = 1000
    start: dict = field(default_factory=dict)  # logical worker -> Position, for resume
    worker_offset: int = 0  # rotates logical workers so a resumed round-robin continues in order
    sizes: dict | None = None  # samples per shard (manifest): balances slots by samples


class ShardStream(IterableDataset):
    """Endless batches of (uint8 images, token ids) for one rank; use with ``batch_size=None``."""

    def __init__(self, cfg: StreamConfig, tokenizer):
        super().__init__()
        self.cfg, self.tokenizer = cfg, tokenizer

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        logical = (wid + self.cfg.worker_offset) % nw
        slot, slots = self.cfg.rank * nw + logical, self.cfg.world * nw
        pos = self.cfg.start.get(logical, Position())
        counts: Counter = Counter()
        torch.set_num_threads(1)  # workers decode; leave the cores' BLAS threads to the model
        batch: list[Sample] = []
        for epoch in range(pos.epoch, 1 << 30):
            drawn = pos.drawn if epoch == pos.epoch else 0
            good = 0
            stream = self._raw(epoch, slot, slots, counts)
            for i, (key, group) in enumerate(stream):
                if i < drawn:  # resume: replay the raw stream without decoding
                    good += 1
                    continue
                rng = _seeded(self.cfg.seed, epoch, slot, key, "aug")
                s = decode_sample(key, group, self.cfg.image_size, rng, counts, train=True)
                if s is not None:
                    batch.append(s)
                    good += 1
                if len(batch) == self.cfg.batch_size:
                    yield self._collate(batch, logical, Position(epoch, i + 1), counts)
                    batch = []
            if not good:  # fail loudly instead of spinning forever over unusable shards
                raise RuntimeError(
                    f"worker slot {slot}: no usable sample in epoch {epoch}: {dict(counts)}"
                )

    def _raw(self, epoch: int, slot: int, slots: int, counts: Counter):
        rng = _seeded(self.cfg.seed, epoch, slot, "shuffle")

        def samples():
            picked = shards_for(self.cfg.shards, epoch, self.cfg.seed, slot, slots, self.cfg.sizes)
            for url in picked:
                counts["shards_opened"] += 1
                yield from iter_tar(url, counts)

        return shuffled(samples(), self.cfg.shuffle_buffer, rng)

    def _collate(self, batch: list[Sample], logical: int, pos: Position, counts: Counter) -> dict:
        return {
            "images": torch.stack([s.image for s in batch]),  # (B, 3, S, S) uint8
            "texts": self.tokenizer([s.text for s in batch]),  # (B, T) int64
            "keys": [s.key for s in batch],
            "worker": logical,
            "epoch": pos.epoch,
            "drawn": pos.drawn,
            "counts": dict(counts),
        }


def make_loader(cfg: StreamConfig, tokenizer, workers: int, pin_memory: bool = False):
    """A DataLoader over :class:`ShardStream` (batches are assembled inside the workers)."""
    from torch.utils.data import DataLoader

    kwargs = {"prefetch_factor": 4, "persistent_workers": False} if workers else {}
    return DataLoader(
        ShardStream(cfg, tokenizer),
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        **kwargs,
    )


def read_pairs(url: str, size: int, limit: int, counts: Counter | None = None) -> list[Sample]:
    """Up to ``limit`` decoded pairs of one shard with eval transforms (for retrieval)."""
    counts = Counter() if counts is None else counts
    out = []
    for key, group in iter_tar(url, counts):
        s = decode_sample(key, group, size, None, counts, train=False)
        if s is not None:
            out.append(s)
        if len(out) >= limit:
            break
    return out


def captions(shards: list[str], limit: int) -> Iterator[str]:
    """Captions of the first ``limit`` samples across shards (to train the BPE)."""
    n, counts = 0, Counter()
    for url in shards:
        for _, group in iter_tar(url, counts):
            if "txt" in group:
                yield group["txt"].decode("utf-8", errors="replace")
                n += 1
                if n >= limit:
                    return
