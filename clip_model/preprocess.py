"""Image transforms of the paper (random resized crop for training; resize + center crop for
evaluation) written with PIL and torch, since the project does not depend on torchvision.

Loader workers return uint8 tensors (4x less to pass between processes than float32); the model
side normalises with CLIP's mean/std on the device with :func:`normalize`.
"""

from __future__ import annotations

import io
import math
import random

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def decode(data: bytes, size_hint: int) -> Image.Image:
    """Decode image bytes to RGB; JPEGs are decoded at a reduced scale when much larger than needed."""
    img = Image.open(io.BytesIO(data))
    img.draft(
        "RGB", (size_hint, size_hint)
    )  # JPEG DCT scaling: decode at 1/2..1/8 scale when the target allows, no-op otherwise
    return img.convert("RGB")


def random_resized_crop_box(
    w: int, h: int, rng: random.Random, scale=(0.9, 1.0), ratio=(3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box (left, top, right, bottom); center crop as fallback."""
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return left, top, left + cw, top + ch
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return left, top, left + side, top + side


def train_transform(
    img: Image.Image, size: int, rng: random.Random, scale=(0.9, 1.0)
) -> torch.Tensor:
    """Random resized crop to size x size -> (3, size, size) uint8."""
    box = random_resized_crop_box(img.width, img.height, rng, scale)
    return to_uint8_tensor(img.resize((size, size), Image.BICUBIC, box=box))


def eval_transform(img: Image.Image, size: int) -> torch.Tensor:
    """Resize the short side to ``size`` (bicubic) and center crop -> (3, size, size) uint8."""
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    return to_uint8_tensor(img.crop((left, top, left + size, top + size)))


def to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) uint8."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def normalize(images: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> float, scaled to [0, 1] and standardised with CLIP's mean/std."""
    mean = torch.tensor(CLIP_MEAN, device=images.device, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=images.device, dtype=dtype).view(1, 3, 1, 1)
    return (images.to(dtype) / 255.0 - mean) / std
