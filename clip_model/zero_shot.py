"""Zero-shot classification on any labelled image folder, and image-text retrieval recall@k.

A labelled image folder has the layout torchvision's ``ImageFolder`` reads (ImageNet's validation
set is usually kept this way): ``<root>/<class>/*.{jpg,jpeg,png,webp}``, classes in folder-name
order. The prompts name each class by a class-names file (one name per line in folder order,
``folder<TAB>name`` lines, or a JSON object ``{folder: name}``), else by its folder name with
``_`` read as a space; the templates are the paper's 80 (``openai``), the single
``"a photo of a {}."`` (``simple``), or a file with one template per line (``{}`` marks the name).
A class's classifier is the normalised mean of its normalised prompt embeddings, as in the paper.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clip_model import files, preprocess

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")
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


TEMPLATE_SETS = {"openai": IMAGENET_TEMPLATES, "simple": SIMPLE_TEMPLATES}


@dataclass(frozen=True)
class ImageFolder:
    """The images of a labelled folder, their labels and the class names for the prompts."""

    root: str
    paths: list[str]
    labels: list[int]
    folders: list[str]  # one per class, sorted
    classnames: list[str]


def read_class_names(path: str, folders: list[str]) -> list[str]:
    """Class names for ``folders`` from a text or JSON file; ValueError when they do not match."""
    text = files.read_text(path)
    if path.endswith(".json"):
        mapping = json.loads(text)
        names = [mapping.get(f) for f in folders]
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if lines and all("\t" in ln for ln in lines):
            mapping = dict(ln.split("\t", 1) for ln in lines)
            names = [mapping.get(f) for f in folders]
        else:
            if len(lines) != len(folders):
                raise ValueError(
                    f"{path} has {len(lines)} class names for {len(folders)} class folders"
                )
            names = lines
    missing = [f for f, n in zip(folders, names) if not n]
    if missing:
        raise ValueError(f"{path} names no class for folder(s) {', '.join(missing[:5])}")
    return [n.strip() for n in names]


def scan_folder(root: str, class_names: str = "") -> ImageFolder:
    """List ``<root>/<class>/*`` images; ValueError when there is no class folder or no image."""
    if not files.isdir(root):
        raise ValueError(f"{root!r} is not a folder")
    class_dirs = [p for p in files.listdir(root) if files.isdir(p)]
    folders = sorted(files.basename(p) for p in class_dirs)
    paths, labels = [], []
    for label, folder in enumerate(folders):
        for path in files.listdir(files.join(root, folder)):
            if os.path.splitext(path)[1].lower() in IMAGE_EXTS:
                paths.append(path)
                labels.append(label)
    if not paths:
        raise ValueError(f"no <class>/<image>{{{','.join(IMAGE_EXTS)}}} files under {root!r}")
    names = read_class_names(class_names, folders) if class_names else None
    names = names or [f.replace("_", " ") for f in folders]
    return ImageFolder(root, paths, labels, folders, names)


def read_templates(spec: str) -> tuple[str, ...]:
    """``openai`` (80 prompts), ``simple``, or the path of a file with one template per line."""
    if spec in TEMPLATE_SETS:
        return TEMPLATE_SETS[spec]
    lines = [ln.strip() for ln in files.read_text(spec).splitlines() if ln.strip()]
    bad = [ln for ln in lines if "{}" not in ln]
    if not lines or bad:
        raise ValueError(f"{spec}: every line must be a template with {{}}; bad: {bad[:3]}")
    return tuple(lines)


class _Images(torch.utils.data.Dataset):
    """Decoded images with eval transforms; an unreadable file gives None (counted by the caller)."""

    def __init__(self, paths: list[str], size: int):
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            img = preprocess.decode(files.read_bytes(self.paths[i]), self.size)
            return i, preprocess.eval_transform(img, self.size)
        except Exception:  # PIL raises many types on corrupt bytes; the image is data, not a crash
            return i, None


def _collate(items):
    good = [(i, x) for i, x in items if x is not None]
    bad = [i for i, x in items if x is None]
    idx = torch.tensor([i for i, _ in good], dtype=torch.long)
    images = torch.stack([x for _, x in good]) if good else None
    return idx, images, bad


@torch.no_grad()
def image_features(
    model, paths: list[str], device: str, batch: int = 256, workers: int = 2
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(N_ok, D) normalised features of the readable images, their indices, unreadable paths."""
    loader = torch.utils.data.DataLoader(
        _Images(paths, model.cfg.vision.image_size),
        batch_size=batch,
        num_workers=workers,
        collate_fn=_collate,
    )
    feats, kept, bad = [], [], []
    for idx, images, failed in loader:
        bad.extend(paths[i] for i in failed)
        if images is not None:
            feats.append(encode_images(model, images, device, batch))
            kept.append(idx)
    dim = model.cfg.embed_dim
    return (
        torch.cat(feats) if feats else torch.empty(0, dim),
        torch.cat(kept) if kept else torch.empty(0, dtype=torch.long),
        bad,
    )


@torch.no_grad()
def encode_images(model, images: torch.Tensor, device: str, batch: int = 256) -> torch.Tensor:
    """(N, 3, S, S) uint8 -> (N, D) normalised features."""
    feats = [
        model.encode_image(
            preprocess.normalize(images[i : i + batch].to(device)), normalize=True
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


def retrieval(image_feats: torch.Tensor, text_feats: torch.Tensor, ks=(1, 5, 10)) -> dict:
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


def per_class_accuracy(logits: torch.Tensor, labels: torch.Tensor, classnames: list[str]) -> dict:
    """Top-1 accuracy and image count of each class (classes without images are left out)."""
    hit = logits.argmax(dim=1) == labels
    out = {}
    for c, name in enumerate(classnames):
        mask = labels == c
        if mask.any():
            out[name] = {"top1": float(hit[mask].float().mean()), "images": int(mask.sum())}
    return out


def classify(image_feats, labels, classifier, classnames: list[str]) -> dict:
    """Top-1/top-5, per-class and mean per-class accuracy of a (D, C) prompt classifier."""
    logits = image_feats @ classifier  # (N, C)
    acc = topk_accuracy(logits, labels)
    per_class = per_class_accuracy(logits, labels, classnames)
    return {
        **_scores(acc, len(classnames)),
        "mean_per_class_top1": sum(v["top1"] for v in per_class.values()) / max(1, len(per_class)),
        "images": int(len(labels)),
        "per_class": per_class,
    }


def evaluate_folder(
    model,
    tokenizer,
    folder: ImageFolder,
    templates,
    device: str,
    batch: int = 256,
    workers: int = 2,
) -> dict:
    """Zero-shot accuracy on a labelled image folder; unreadable images are counted, not scored."""
    model.eval()
    feats, kept, bad = image_features(model, folder.paths, device, batch, workers)
    if not len(kept):
        raise ValueError(f"no readable image under {folder.root!r} ({len(bad)} unreadable)")
    labels = torch.tensor(folder.labels)[kept]
    classifier = build_classifier(model, tokenizer, folder.classnames, templates, device)
    return {
        **classify(feats, labels, classifier, folder.classnames),
        "root": folder.root,
        "templates": len(templates),
        "unreadable_images": len(bad),
        "unreadable_examples": bad[:5],
    }
