"""Downloaded shards built in a test: demo-world images, planted duplicates, captions in several
languages, and failures, written with the download's own shard writer."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace

from pipeline.demo_world import scene as S
from pipeline.demo_world import variants
from pipeline.download import shard_writer as sw
from pipeline.download.images import ImageOptions, process_image
from pipeline.download.manifest import write_manifest
from pipeline.select.normalize import uid_for

OPTIONS = ImageOptions(
    image_size=256, resize_mode="keep_ratio", output_format="jpg", quality=90, min_image_size=64,
    max_aspect_ratio=4, max_pixels=89_000_000, threads=0,
)  # fmt: skip
FOREIGN = {
    "de": "ein roter Kreis auf blauem Hintergrund in der Mitte des Bildes",
    "fr": "un cercle rouge sur un fond bleu au milieu de l'image",
    "es": "un círculo rojo sobre un fondo azul en el centro de la imagen",
}


def distinct_scenes(n: int, seed: int = 0) -> list[int]:
    """Image ids whose scenes differ from each other in colour and background (no look-alikes)."""
    ids, seen = [], set()
    i = 0
    while len(ids) < n:
        sc = S.scene_for(i, seed)
        if (sc.colour, sc.background) not in seen:
            seen.add((sc.colour, sc.background))
            ids.append(i)
        i += 1
    return ids


# The test's copy kinds, as the demo server makes them (pipeline.demo_world.variants).
VARIANT_OF = {"reencoded": "jpeg50", "resized": "scale75", "trimmed": "trim2"}


def served(image_id: int, variant: str = "original", seed: int = 0) -> bytes:
    """The bytes a server would send for ``image_id``: the original or a modified copy."""
    if variant == "original":
        return S.image_bytes(image_id, seed, S.scene_for(image_id, seed).fmt)
    return variants.image_bytes(image_id, seed, VARIANT_OF[variant], "jpg")


def caption_for(image_id: int, seed: int = 0) -> str:
    """The demo world's English description of the image."""
    import random

    return S.describe(S.scene_for(image_id, seed), random.Random(image_id))


def success(url: str, caption: str, body: bytes, queries: list[int]) -> dict:
    """A success row as the download writes it (image resized and re-encoded like a shard's)."""
    res = process_image(body, OPTIONS)
    assert res.status == "success", res
    return {
        "url": url,
        "caption": caption,
        "status": "success",
        "width": res.width,
        "height": res.height,
        "original_width": res.original_width,
        "original_height": res.original_height,
        "sha256": hashlib.sha256(body).hexdigest(),
        "uid": uid_for(url, caption),
        "matched_query_ids": queries,
        "matched_queries": [f"q{q}" for q in queries],
        "selected_for": queries,
        "bytes": len(body),
        "image": res.data,
    }


def failure(url: str, caption: str, queries: list[int], reason: str = "http_404") -> dict:
    """A row the download could not fetch."""
    return {
        "url": url,
        "caption": caption,
        "status": "failed_to_download",
        "error_message": reason,
        "uid": uid_for(url, caption),
        "matched_query_ids": queries,
        "matched_queries": [f"q{q}" for q in queries],
        "selected_for": queries,
    }


def write_shards(out: str, rows: list[dict], per_shard: int) -> str:
    """``<out>/shards/{NNNNN}.tar/.parquet/_stats.json`` + manifest, rows in order of ``rows``."""
    shards_dir = os.path.join(out, "shards")
    os.makedirs(shards_dir, exist_ok=True)
    for shard, lo in enumerate(range(0, len(rows), per_shard)):
        chunk = [
            replace_key(r, sw.make_key(shard, i, per_shard))
            for i, r in enumerate(rows[lo : lo + per_shard])
        ]
        sw.write_final(shards_dir, shard, chunk, "jpg")
    write_manifest(shards_dir)
    return shards_dir


def replace_key(row: dict, key: str) -> dict:
    """The row with its shard key and every shard column (absent ones null)."""
    return {**dict.fromkeys(sw.FINAL_SCHEMA.names), **row, "key": key}


def demo_rows(distinct: int = 24, seed: int = 0) -> tuple[list[dict], dict]:
    """Rows of ``distinct`` different images, plus planted duplicates, foreign captions and
    failures; returns (rows, truth): the uids of each planted group (the original first), of the
    foreign captions with their language, and of the distinct images."""
    ids = distinct_scenes(distinct + len(FOREIGN), seed)
    ids, foreign_ids = ids[:distinct], ids[distinct:]
    rows, truth = [], {"exact": [], "near": [], "foreign": {}, "distinct": []}
    for n, i in enumerate(ids):
        cap = caption_for(i, seed)
        row = success(f"http://a.example/{i}.{S.scene_for(i, seed).fmt}", cap, served(i), [n % 5])
        rows.append(row)
        truth["distinct"].append(row["uid"])
    for n, i in enumerate(ids[:3]):  # the same bytes at a second URL with another caption
        row = success(
            f"http://mirror.example/{i}", caption_for(i, seed) + " (mirror)", served(i), [0]
        )
        rows.append(row)
        truth["exact"].append([truth["distinct"][n], row["uid"]])
    for n, i in enumerate(ids[3:6], start=3):  # re-encoded, resized and trimmed copies elsewhere
        group = [truth["distinct"][n]]
        for variant in ("reencoded", "resized", "trimmed"):
            row = success(
                f"http://{variant}.example/{i}.jpg", caption_for(i, seed), served(i, variant), [1]
            )
            rows.append(row)
            group.append(row["uid"])
        truth["near"].append(group)
    for (lang, text), i in zip(FOREIGN.items(), foreign_ids):
        row = success(f"http://{lang}.example/{i}.jpg", text, served(i), [2])
        rows.append(row)
        truth["foreign"][row["uid"]] = lang
    for k in range(4):
        rows.append(failure(f"http://gone.example/{k}.jpg", f"a missing picture {k}", [3]))
    return rows, truth


def scene_pairs(n: int, side: int, offset: int = 0, seed: int = 0):
    """(uint8 images (n, 3, side, side), captions) of demo scenes drawn at ``side`` pixels."""
    import random

    import torch

    from clip_model.preprocess import to_uint8_tensor

    images, captions = [], []
    for i in range(offset, offset + n):
        sc = replace(S.scene_for(i, seed), width=side, height=side)
        images.append(to_uint8_tensor(S.render(sc, i, seed)))
        captions.append(S.describe(sc, random.Random(i)))
    return torch.stack(images), captions


def train_tiny_checkpoint(path: str, steps: int = 150, seed: int = 0) -> None:
    """A few CPU seconds of contrastive training of a very small CLIP on demo scenes, saved in
    the trainer's checkpoint layout (``model``, ``config``, ``tokenizer``)."""
    import torch

    from clip_model.loss import clip_loss
    from clip_model.model import CLIP, CLIPConfig, TextConfig, VisionConfig
    from clip_model.preprocess import normalize
    from clip_model.tokenizer import TrainedBPE

    torch.manual_seed(seed)
    images, captions = scene_pairs(384, 32, seed=seed)
    tokenizer = TrainedBPE.train(captions, 256, context_length=16)
    cfg = CLIPConfig(
        embed_dim=64,
        vision=VisionConfig(image_size=32, patch_size=8, width=64, layers=2),
        text=TextConfig(
            context_length=16, vocab_size=tokenizer.vocab_size, width=64, heads=1, layers=2
        ),
        quick_gelu=False,
    )
    model = CLIP(cfg)
    tokens = tokenizer(captions)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(captions), (64,), generator=gen)
        img, txt, scale = model(normalize(images[idx]), tokens[idx])
        loss = clip_loss(img, txt, scale, gather=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.clamp_logit_scale()
    blob = {
        "model": model.state_dict(),
        "config": {"model": cfg.to_dict()},
        "tokenizer": tokenizer.to_json(),
    }
    torch.save(blob, path)
