"""Zero-shot classification (class names x prompt templates) and image-text retrieval recall@k.

On the demo world the held-out images are drawn by the demo generator from ids in a namespace the
world never uses (``"heldout-{i}"``), so the model has never seen them; their classes are the
scene's colour + shape (and colours and shapes on their own), named as in the dataset's captions.
"""

from __future__ import annotations

import random
from dataclasses import replace

import torch
import torch.nn.functional as F

from clip_model import transforms

SIMPLE_TEMPLATES = ("a photo of a {}.",)
# The 80 prompts of the paper's ImageNet ensemble (CLIP repository, Prompt_Engineering_for_ImageNet).
IMAGENET_TEMPLATES = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.",
    "a bright photo of the {}.", "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.", "a blurry photo of the {}.", "a photo of the {}.",
    "a good photo of the {}.", "a rendering of the {}.", "a {} in a video game.", "a photo of one {}.",
    "a doodle of a {}.", "a close-up photo of the {}.", "a photo of a {}.", "the origami {}.",
    "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.", "a origami {}.",
    "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.", "a photo of the clean {}.",
    "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.", "a photo of a weird {}.",
    "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.", "a embroidered {}.",
    "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.",
    "a dark photo of a {}.", "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.",
    "a photo of a cool {}.", "a photo of a small {}.", "a tattoo of the {}.",
)  # fmt: skip
assert len(IMAGENET_TEMPLATES) == 80


@torch.no_grad()
def encode_images(model, images: torch.Tensor, device: str, batch: int = 256) -> torch.Tensor:
    """(N, 3, S, S) uint8 -> (N, D) normalised features."""
    feats = [
        model.encode_image(
            transforms.normalize(images[i : i + batch].to(device)), normalize=True
        ).float()
        for i in range(0, len(images), batch)
    ]
    return torch.cat(feats).cpu()


@torch.no_grad()
def encode_texts(model, tokenizer, texts: list[str], device: str, batch: int = 512) -> torch.Tensor:
    """Captions -> (N, D) normalised features."""
    feats = [
        model.encode_text(tokenizer(texts[i : i + batch]).to(device), normalize=True).float()
        for i in range(0, len(texts), batch)
    ]
    return torch.cat(feats).cpu()


@torch.no_grad()
def build_classifier(
    model, tokenizer, classnames: list[str], templates, device: str
) -> torch.Tensor:
    """(D, C): per class, the normalised mean of its normalised prompt embeddings."""
    prompts = [t.format(name) for name in classnames for t in templates]
    emb = encode_texts(model, tokenizer, prompts, device, batch=2048)  # (C * T, D)
    emb = emb.view(len(classnames), len(templates), -1).mean(1)  # (C, D)
    return F.normalize(emb, dim=-1).T


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, float]:
    """Share of rows whose label is among the k highest logits."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices  # (N, k)
    hit = top == labels[:, None]
    return {k: float(hit[:, :k].any(1).float().mean()) for k in ks}


def _scores(acc: dict, classes: int) -> dict:
    """Top-1/top-5 accuracy with the chance levels of ``classes`` equally likely classes."""
    return {
        "top1": acc[1],
        "top5": acc[5],
        "classes": classes,
        "chance_top1": 1 / classes,
        "chance_top5": min(1.0, 5 / classes),
    }


def zero_shot(model, tokenizer, image_feats, labels, classnames, templates, device) -> dict:
    """Top-1/top-5 accuracy of the prompt classifier; chance is 1/C and 5/C."""
    classifier = build_classifier(model, tokenizer, classnames, templates, device)
    acc = topk_accuracy(image_feats @ classifier, labels)
    return _scores(acc, len(classnames))


def retrieval(image_feats: torch.Tensor, text_feats: torch.Tensor, ks=(1, 5)) -> dict:
    """Recall@k of pair i in both directions; ties (identical captions) do not count against."""
    sims = image_feats @ text_feats.T  # (N, N)
    diag = sims.diag()
    i2t = (sims > diag[:, None]).sum(1)  # rank of the true caption for each image
    t2i = (sims > diag[None, :]).sum(0)  # rank of the true image for each caption
    out = {"pairs": len(diag)}
    for k in ks:
        out[f"image_to_text_r{k}"] = float((i2t < k).float().mean())
        out[f"text_to_image_r{k}"] = float((t2i < k).float().mean())
        out[f"recall_at_{k}"] = (out[f"image_to_text_r{k}"] + out[f"text_to_image_r{k}"]) / 2
    return out


def demo_scene(image_id: str, seed: int, short_side: int = 256):
    """A held-out demo scene scaled like the downloader's output (short side 256)."""
    from pipeline.demo_world import scene as S

    sc = S.scene_for(image_id, seed)
    s = short_side / min(sc.width, sc.height)
    return replace(sc, width=round(sc.width * s), height=round(sc.height * s), fmt="jpg")


def demo_images(ids: list[str], seed: int, image_size: int) -> tuple[torch.Tensor, list]:
    """Render, JPEG-encode and decode held-out scenes like training images -> (N,3,S,S) uint8, scenes."""
    from pipeline.demo_world import scene as S

    tensors, scenes = [], []
    for image_id in ids:
        sc = demo_scene(image_id, seed)
        data = S.encode(S.render(sc, image_id, seed), "jpg")
        tensors.append(transforms.eval_transform(transforms.decode(data, image_size), image_size))
        scenes.append(sc)
    return torch.stack(tensors), scenes


def demo_pairs(n: int, seed: int, image_size: int) -> tuple[torch.Tensor, list[str]]:
    """Held-out generated (image, caption) pairs for retrieval when no shard is held out."""
    from pipeline.demo_world import scene as S

    ids = [f"heldout-pair-{i}" for i in range(n)]
    images, scenes = demo_images(ids, seed, image_size)
    texts = [S.describe(sc, random.Random(f"{seed}:{i}")) for i, sc in zip(ids, scenes)]
    return images, texts


def demo_templates() -> tuple[str, ...]:
    """Prompts in the demo captions' own phrasing, averaged over position and background.

    The paper engineers prompts per dataset ("a photo of a {}, a type of pet."); a model trained
    only on the demo's captions reads this phrasing, while "a photo of a {}." is foreign to it.
    """
    from pipeline.demo_world import scene as S

    wheres = ("in the middle", "on the left", "on the right", "at the top", "at the bottom")
    return (
        ("a {}",)
        + tuple(f"one {{}} {w}" for w in wheres)
        + tuple(f"one {{}} on a {b} background" for b in S.COLOURS)
    )


def demo_classes(query_names: set[str] | None) -> list[tuple[str, str]]:
    """(colour, shape) classes; those named in the dataset's query list when it names at least two."""
    from pipeline.demo_world import scene as S

    classes = [(c, s) for c in S.COLOURS for s in S.SHAPES]
    if query_names:
        kept = [(c, s) for c, s in classes if f"{c} {s}" in query_names]
        if len(kept) >= 2:
            return kept
    return classes


def _marginal(probs: torch.Tensor, groups: list[str], labels: list[str]) -> dict:
    """Accuracy of an attribute (colour or shape) from class probabilities summed per attribute."""
    names = sorted(set(groups))
    onehot = torch.zeros(len(groups), len(names))
    onehot[torch.arange(len(groups)), torch.tensor([names.index(g) for g in groups])] = 1
    idx = torch.tensor([names.index(lab) if lab in names else -1 for lab in labels])
    acc = topk_accuracy(probs @ onehot, idx)
    return _scores(acc, len(names))


def evaluate_demo(
    model, tokenizer, seed: int, n_images: int, device: str, query_names=None, ensemble: bool = True
) -> dict:
    """Zero-shot colour+shape accuracy on held-out demo images, plus colour and shape alone
    (class probabilities summed over the other attribute), for each prompt set."""
    classes = demo_classes(query_names)
    names = [f"{c} {s}" for c, s in classes]
    images, scenes = demo_images(
        [f"heldout-{i}" for i in range(n_images)], seed, model.cfg.vision.image_size
    )
    keep = [i for i, sc in enumerate(scenes) if (sc.colour, sc.shape) in classes]
    feats = encode_images(model, images[keep], device)
    labels = torch.tensor([classes.index((scenes[i].colour, scenes[i].shape)) for i in keep])
    prompt_sets = {"demo": demo_templates(), "single": SIMPLE_TEMPLATES}
    if ensemble:
        prompt_sets["ensemble"] = IMAGENET_TEMPLATES
    scale = float(model.logit_scale.detach().exp())
    results = {}
    for tname, templates in prompt_sets.items():
        logits = feats @ build_classifier(model, tokenizer, names, templates, device)  # (N, C)
        acc = topk_accuracy(logits, labels)
        c = len(names)
        results[f"colour_shape/{tname}"] = {
            "top1": acc[1], "top5": acc[5], "classes": c, "chance_top1": 1 / c,
            "chance_top5": min(1.0, 5 / c), "images": len(keep), "templates": len(templates),
        }  # fmt: skip
        probs = (scale * logits).softmax(dim=1)
        results[f"colour/{tname}"] = _marginal(
            probs, [c for c, _ in classes], [scenes[i].colour for i in keep]
        )
        results[f"shape/{tname}"] = _marginal(
            probs, [s for _, s in classes], [scenes[i].shape for i in keep]
        )
    results.update(
        _background(
            model, tokenizer, scenes, encode_images(model, images, device), device, ensemble
        )
    )
    return results


def _background(model, tokenizer, scenes, feats, device, ensemble: bool) -> dict:
    """Zero-shot background colour: prompts in the captions' phrasing averaged over the foreground
    (every colour x shape), and the generic prompts with class names '<colour> background'."""
    from pipeline.demo_world import scene as S

    colours = list(S.COLOURS)
    labels = torch.tensor([colours.index(sc.background) for sc in scenes])
    demo = tuple(f"one {c} {s} on a {{}} background" for c in S.COLOURS for s in S.SHAPES)
    sets = {
        "demo": (colours, demo),
        "single": ([f"{c} background" for c in colours], SIMPLE_TEMPLATES),
    }
    if ensemble:
        sets["ensemble"] = ([f"{c} background" for c in colours], IMAGENET_TEMPLATES)
    out = {}
    for tname, (names, templates) in sets.items():
        acc = topk_accuracy(
            feats @ build_classifier(model, tokenizer, names, templates, device), labels
        )
        c = len(names)
        out[f"background/{tname}"] = {
            "top1": acc[1], "top5": acc[5], "classes": c, "chance_top1": 1 / c,
            "chance_top5": min(1.0, 5 / c), "images": len(scenes), "templates": len(templates),
        }  # fmt: skip
    return out
