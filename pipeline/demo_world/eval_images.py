"""The demo world's side of the bundled trainer: a held-out labelled image folder, the demo's own
zero-shot tasks on it, and shards drawn straight from the generator.

The held-out images are drawn with ids in a namespace the world never uses (``heldout-{i}``), so
a model trained on the demo shards has never seen them. They are written as a labelled image
folder, ``<out>/eval_images/<colour>_<shape>/heldout-{i}.jpg``, which the trainer's generic
zero-shot evaluation reads like any other (``wit eval --image-folder out/demo/eval_images``). On
top of that, the demo scores what only the generator knows: the colour and the shape on their own
(class probabilities summed over the other attribute) and the background colour, each with
prompts in the captions' phrasing, the single prompt and the paper's 80 templates.

    python -m pipeline.demo_world.eval_images --out out/demo   # write <out>/eval_images
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tarfile
from dataclasses import replace

import torch

from clip_model import zero_shot as Z
from pipeline import fs
from pipeline.demo_world import scene as S
from pipeline.layout import Layout

FOLDER = "eval_images"
META = "_meta.json"


def demo_scene(image_id: int | str, seed: int, short_side: int = 256) -> S.Scene:
    """A demo scene scaled like the downloader's output (short side 256), as a JPEG."""
    sc = S.scene_for(image_id, seed)
    s = short_side / min(sc.width, sc.height)
    return replace(sc, width=round(sc.width * s), height=round(sc.height * s), fmt="jpg")


def folder_name(colour: str, shape: str) -> str:
    """The class folder of a colour + shape (the prompts read it with ``_`` as a space)."""
    return f"{colour}_{shape}"


def query_names(out: str) -> set[str] | None:
    """The queries of ``<out>/queries/queries.parquet``, or None before the queries stage."""
    path = Layout(out).queries_parquet
    if not fs.exists(path):
        return None
    import pyarrow.parquet as pq

    return set(pq.read_table(path, columns=["query"]).column("query").to_pylist())


def world_seed(out: str, default: int = 0) -> int:
    """The seed the demo world under ``out`` was generated with."""
    path = Layout(out).world_manifest
    return int(json.loads(fs.read_text(path)).get("seed", default)) if fs.exists(path) else default


def demo_classes(names: set[str] | None) -> list[tuple[str, str]]:
    """(colour, shape) classes; those named in the query list when it names at least two."""
    classes = [(c, s) for c in S.COLOURS for s in S.SHAPES]
    if names:
        kept = [(c, s) for c, s in classes if f"{c} {s}" in names]
        if len(kept) >= 2:
            return kept
    return classes


def demo_templates() -> tuple[str, ...]:
    """Prompts in the demo captions' own phrasing, averaged over position and background.

    The paper engineers prompts per dataset ("a photo of a {}, a type of pet."); a model trained
    only on the demo's captions reads this phrasing, while "a photo of a {}." is foreign to it.
    """
    wheres = ("in the middle", "on the left", "on the right", "at the top", "at the bottom")
    return (
        ("a {}",)
        + tuple(f"one {{}} {w}" for w in wheres)
        + tuple(f"one {{}} on a {b} background" for b in S.COLOURS)
    )


def write_eval_folder(root: str, seed: int, n_images: int, classes: list[tuple[str, str]]) -> int:
    """Write ``n_images`` held-out images of ``classes`` as a labelled folder (kept when a previous
    call wrote the same one); returns the number of images."""
    meta = {"seed": seed, "images": n_images, "classes": sorted(map(list, classes))}
    meta_path = os.path.join(root, META)
    if os.path.exists(meta_path) and json.loads(fs.read_text(meta_path)) == meta:
        return n_images
    wanted, written, i = set(classes), 0, 0
    for colour, shape in classes:
        os.makedirs(os.path.join(root, folder_name(colour, shape)), exist_ok=True)
    while written < n_images:
        image_id = f"heldout-{i}"
        i += 1
        sc = demo_scene(image_id, seed)
        if (sc.colour, sc.shape) not in wanted:
            continue
        path = os.path.join(root, folder_name(sc.colour, sc.shape), f"{image_id}.jpg")
        fs.write_bytes_atomic(path, S.encode(S.render(sc, image_id, seed), "jpg"))
        written += 1
    fs.write_text_atomic(meta_path, json.dumps(meta) + "\n")
    return written


def _marginal(probs: torch.Tensor, groups: list[str], labels: list[str]) -> dict:
    """Accuracy of an attribute (colour or shape) from class probabilities summed per attribute."""
    names = sorted(set(groups))
    onehot = torch.zeros(len(groups), len(names))
    onehot[torch.arange(len(groups)), torch.tensor([names.index(g) for g in groups])] = 1
    idx = torch.tensor([names.index(lab) if lab in names else -1 for lab in labels])
    return Z._scores(Z.topk_accuracy(probs @ onehot, idx), len(names))


def _background(model, tokenizer, feats, scenes, device, prompt_sets: dict) -> dict:
    """Zero-shot background colour: prompts in the captions' phrasing averaged over the foreground
    (every colour x shape), and the generic prompts with class names '<colour> background'."""
    colours = list(S.COLOURS)
    labels = torch.tensor([colours.index(sc.background) for sc in scenes])
    out = {}
    for tname, templates in prompt_sets.items():
        if tname == "demo":
            names = colours
            templates = tuple(
                f"one {c} {s} on a {{}} background" for c in S.COLOURS for s in S.SHAPES
            )
        else:
            names = [f"{c} background" for c in colours]
        classifier = Z.build_classifier(model, tokenizer, names, templates, device)
        acc = Z.topk_accuracy(feats @ classifier, labels)
        out[f"background/{tname}"] = {
            **Z._scores(acc, len(names)), "images": len(scenes), "templates": len(templates),
        }  # fmt: skip
    return out


def evaluate(
    model,
    tokenizer,
    root: str,
    seed: int,
    device: str,
    templates,
    batch: int = 256,
    workers: int = 2,
) -> dict:
    """The demo's tasks on its held-out folder: colour + shape (the folder's classes), colour and
    shape alone, background; for the demo prompts, the single prompt and ``templates``."""
    folder = Z.scan_folder(root)
    model.eval()
    feats, kept, _ = Z.image_features(model, folder.paths, device, batch, workers)
    paths = [folder.paths[i] for i in kept.tolist()]
    scenes = [S.scene_for(os.path.splitext(os.path.basename(p))[0], seed) for p in paths]
    labels = torch.tensor(folder.labels)[kept]
    classes = [tuple(f.split("_", 1)) for f in folder.folders]
    prompt_sets = {"demo": demo_templates(), "single": Z.SIMPLE_TEMPLATES}
    if tuple(templates) != Z.SIMPLE_TEMPLATES:
        prompt_sets["ensemble"] = tuple(templates)
    scale = float(model.logit_scale.detach().exp())
    results = {}
    for tname, temps in prompt_sets.items():
        classifier = Z.build_classifier(model, tokenizer, folder.classnames, temps, device)
        scores = Z.classify(feats, labels, classifier, folder.classnames)
        results[f"colour_shape/{tname}"] = {**scores, "templates": len(temps)}
        probs = (scale * feats @ classifier).softmax(dim=1)
        results[f"colour/{tname}"] = _marginal(
            probs, [c for c, _ in classes], [sc.colour for sc in scenes]
        )
        results[f"shape/{tname}"] = _marginal(
            probs, [s for _, s in classes], [sc.shape for sc in scenes]
        )
    results.update(_background(model, tokenizer, feats, scenes, device, prompt_sets))
    return results


def evaluate_run(model, tokenizer, out: str, seed: int, ev, templates, device, pairs: bool) -> dict:
    """The trainer's ``eval.extra_eval`` hook for the demo shards (configs/train_demo.yaml):
    write the held-out folder under ``out``, score the demo's tasks, and draw retrieval pairs from
    the generator when no shard was held out. Returns ``{"demo": ..., "demo_folder": ...,
    "headline": ..., "lines": [...]}`` (and ``"retrieval"``)."""
    root, seed = fs.join(out, FOLDER), world_seed(out, seed)
    write_eval_folder(root, seed, ev.zs_images, demo_classes(query_names(out)))
    demo = evaluate(
        model, tokenizer, root, seed, device, templates, ev.eval_batch_size, ev.eval_workers
    )
    head = demo["colour_shape/demo"]
    result = {
        "demo": demo,
        "demo_folder": root,
        "headline": {"task": "zero-shot top-1, demo held-out colour+shape", **head},
        "lines": [_line(demo)],
    }
    if pairs:  # no shard was held out: pairs the generator draws for the purpose
        images, texts = demo_pairs(ev.retrieval_pairs, seed, model.cfg.vision.image_size)
        image_f = Z.encode_images(model, images, device)
        text_f = Z.encode_texts(model, tokenizer, texts, device)
        result["retrieval"] = {**Z.retrieval(image_f, text_f), "source": "generated demo pairs"}
    return result


def _line(demo: dict) -> str:
    parts = [
        f"{name} {demo[f'{key}/demo']['top1']:.1%} (chance {demo[f'{key}/demo']['chance_top1']:.1%})"
        for key, name in (("colour_shape", "colour+shape"), ("colour", "colour"),
                          ("shape", "shape"), ("background", "background"))
    ]  # fmt: skip
    n = demo["colour_shape/demo"]["images"]
    return f"demo held-out images ({n}): top-1 " + ", ".join(parts)


def demo_pairs(n: int, seed: int, image_size: int) -> tuple[torch.Tensor, list[str]]:
    """Held-out generated (image, caption) pairs for retrieval when no shard is held out."""
    from clip_model import preprocess

    images, texts = [], []
    for i in range(n):
        image_id = f"heldout-pair-{i}"
        sc = demo_scene(image_id, seed)
        data = S.encode(S.render(sc, image_id, seed), "jpg")
        images.append(preprocess.eval_transform(preprocess.decode(data, image_size), image_size))
        texts.append(S.describe(sc, random.Random(f"{seed}:{image_id}")))
    return torch.stack(images), texts


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 0
    tar.addfile(info, io.BytesIO(data))


def write_shards(
    out_dir: str,
    samples: int,
    per_shard: int = 1000,
    seed: int = 0,
    short_side: int = 256,
    first_id: int = 0,
    first_shard: int = 0,
) -> list[str]:
    """Render ``samples`` demo images (ids from ``first_id``) with their captions into
    ``out_dir/{NNNNN}.tar`` (numbers from ``first_shard``; the downloader's member layout:
    ``{key}.jpg``, ``{key}.txt``, ``{key}.json``), for tests and benchmarks that need shards
    without a download; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    n_shards = (samples + per_shard - 1) // per_shard
    for shard in range(first_shard, first_shard + n_shards):
        path = os.path.join(out_dir, f"{shard:05d}.tar")
        with tarfile.open(path + ".tmp", "w") as tar:
            start = (shard - first_shard) * per_shard
            for i in range(start, min(samples, start + per_shard)):
                image_id = first_id + i
                sc = demo_scene(image_id, seed, short_side)
                key = f"{shard:05d}{i % per_shard:04d}"
                caption = S.describe(sc, random.Random(f"{seed}:{image_id}:alt"))
                meta = {"key": key, "caption": caption, "id": image_id}
                _add(tar, f"{key}.jpg", S.encode(S.render(sc, image_id, seed), "jpg"))
                _add(tar, f"{key}.txt", caption.encode())
                _add(tar, f"{key}.json", json.dumps(meta).encode())
        os.replace(path + ".tmp", path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Write ``<out>/eval_images`` for the demo world under ``--out``."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--out", default="out/demo")
    p.add_argument("--images", type=int, default=960)
    args = p.parse_args(argv)
    classes = demo_classes(query_names(args.out))
    root = os.path.join(args.out, FOLDER)
    n = write_eval_folder(root, world_seed(args.out), args.images, classes)
    print(f"{n} held-out images of {len(classes)} classes in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
