"""What a demo image shows, how its alt text says it, and how it is drawn.

A :class:`Scene` (colour, shape, count, position, background, size, format) is derived from an
image id and the world seed by a stable hash, so the generator (which writes alt texts), the image
server (which draws the pixels) and the trainer's held-out evaluation all agree without sharing
state. The alt text describes the scene, so a small CLIP trained on demo shards can learn it.
"""

from __future__ import annotations

import functools
import hashlib
import io
import random
from dataclasses import dataclass, replace

from PIL import Image, ImageChops, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 119, 220),
    "yellow": (240, 220, 30),
    "orange": (255, 127, 14),
    "purple": (148, 103, 189),
    "pink": (247, 129, 191),
    "brown": (140, 86, 75),
    "black": (20, 20, 20),
    "white": (245, 245, 245),
    "gray": (127, 127, 127),
    "cyan": (23, 190, 207),
}
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond", "ring", "heart")
POSITIONS = ("left", "right", "top", "bottom", "center")
COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
PLURALS = {"cross": "crosses"}
FORMATS = ("jpg", "jpg", "jpg", "png", "webp")  # mostly JPEG, as on the web
# Web-like sizes: mostly small and medium, a few large ones.
SIZES = (
    (400, 300),
    (500, 375),
    (640, 480),
    (480, 640),
    (512, 512),
    (800, 600),
    (320, 240),
    (1024, 768),
)


@dataclass(frozen=True)
class Scene:
    """The content of one demo image."""

    colour: str
    shape: str
    count: int
    position: str
    background: str
    width: int
    height: int
    fmt: str

    @property
    def label(self) -> str:
        """The zero-shot class of the image: colour and shape, e.g. ``red circle``."""
        return f"{self.colour} {self.shape}"

    def noun(self) -> str:
        if self.count == 1:
            return self.shape
        return PLURALS.get(self.shape, self.shape + "s")


def _rng(image_id: int | str, seed: int, salt: str = "") -> random.Random:
    digest = hashlib.sha256(f"{seed}:{image_id}:{salt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def scene_for(image_id: int | str, seed: int) -> Scene:
    """The scene of image ``image_id`` in the world made with ``seed`` (stable across runs)."""
    r = _rng(image_id, seed, "scene")
    colour = r.choice(list(COLOURS))
    background = r.choice([c for c in COLOURS if c != colour])
    width, height = r.choice(SIZES)
    return Scene(
        colour=colour,
        shape=r.choice(SHAPES),
        count=r.choice((1, 1, 2, 3, 4)),
        position=r.choice(POSITIONS),
        background=background,
        width=width,
        height=height,
        fmt=r.choice(FORMATS),
    )


def describe(scene: Scene, rng: random.Random) -> str:
    """An English description of the scene, in one of several phrasings."""
    n = COUNT_WORDS[scene.count]
    thing = f"{scene.colour} {scene.noun()}"
    where = {"center": "in the middle", "top": "at the top", "bottom": "at the bottom"}.get(
        scene.position, f"on the {scene.position}"
    )
    article = "an" if scene.colour[0] in "aeiou" else "a"
    templates = [
        f"{n} {thing} {where}",
        f"{n} {thing} on a {scene.background} background",
        f"photo of {n} {thing} {where} on {scene.background}",
        f"{article} {scene.colour} {scene.shape}"
        if scene.count == 1
        else f"a group of {n} {thing}",
        f"{thing} {where}, {scene.background} background",
    ]
    return rng.choice(templates)


def _shape_points(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    import math

    if shape == "triangle":
        return [(cx, cy - r), (cx + r * 0.87, cy + r * 0.5), (cx - r * 0.87, cy + r * 0.5)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.7, cy), (cx, cy + r), (cx - r * 0.7, cy)]
    if shape == "star":
        pts = []
        for i in range(10):
            rad = r if i % 2 == 0 else r * 0.45
            a = -math.pi / 2 + i * math.pi / 5
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        return pts
    if shape == "heart":
        pts = []
        for i in range(40):
            t = 2 * math.pi * i / 40
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            pts.append((cx + x * r / 17, cy + y * r / 17))
        return pts
    raise ValueError(shape)


def _draw_one(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(2, int(r * 0.35)))
    elif shape == "square":
        draw.rectangle((cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8), fill=fill)
    elif shape == "cross":
        w = r * 0.3
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
    else:
        draw.polygon(_shape_points(shape, cx, cy, r), fill=fill)


def _anchor(position: str, w: int, h: int) -> tuple[float, float]:
    return {
        "left": (w * 0.27, h * 0.5),
        "right": (w * 0.73, h * 0.5),
        "top": (w * 0.5, h * 0.27),
        "bottom": (w * 0.5, h * 0.73),
        "center": (w * 0.5, h * 0.5),
    }[position]


def render(scene: Scene, image_id: int | str = 0, seed: int = 0) -> Image.Image:
    """Draw the scene as an RGB image of its size; jitter comes from (image_id, seed)."""
    r = _rng(image_id, seed, "pixels")
    w, h = scene.width, scene.height
    bg = tuple(max(0, min(255, c + r.randint(-18, 18))) for c in COLOURS[scene.background])
    img = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    fg = tuple(max(0, min(255, c + r.randint(-15, 15))) for c in COLOURS[scene.colour])
    ax, ay = _anchor(scene.position, w, h)
    side = min(w, h)
    radius = side * (0.16 if scene.count == 1 else 0.10) * r.uniform(0.85, 1.15)
    offsets = {
        1: [(0, 0)],
        2: [(-1, 0), (1, 0)],
        3: [(-1, 0.6), (1, 0.6), (0, -0.9)],
        4: [(-1, -1), (1, -1), (-1, 1), (1, 1)],
    }
    for ox, oy in offsets[scene.count]:
        cx = ax + ox * radius * 1.15 + r.uniform(-3, 3)
        cy = ay + oy * radius * 1.15 + r.uniform(-3, 3)
        _draw_one(draw, scene.shape, cx, cy, radius, fg)
    # Photographic grain, so encoded sizes and decode costs resemble web photos.
    return ImageChops.add(img, _grain(w, h, seed), scale=1.0, offset=-128)


@functools.lru_cache(maxsize=16)
def _grain(w: int, h: int, seed: int) -> Image.Image:
    import numpy as np

    rng = np.random.default_rng([seed, w, h])  # seeded: the same bytes in every process
    small = rng.normal(128, 22, size=(max(1, h // 3), max(1, w // 3))).clip(0, 255).astype("uint8")
    noise = Image.fromarray(small, "L").resize((w, h), Image.BILINEAR)
    return Image.merge("RGB", (noise, noise, noise))


def encode(img: Image.Image, fmt: str, quality: int = 88) -> bytes:
    """Encode an image as jpg, png or webp bytes."""
    buf = io.BytesIO()
    if fmt == "jpg":
        img.save(buf, "JPEG", quality=quality)
    elif fmt == "png":
        img.save(buf, "PNG", compress_level=1)
    elif fmt == "webp":
        img.save(buf, "WEBP", quality=quality, method=0)
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    return buf.getvalue()


def image_bytes(image_id: int | str, seed: int, fmt: str | None = None) -> bytes:
    """The encoded image for ``image_id``, exactly as the demo server serves it."""
    scene = scene_for(image_id, seed)
    if fmt is not None:
        scene = replace(scene, fmt=fmt)
    return encode(render(scene, image_id, seed), scene.fmt)
