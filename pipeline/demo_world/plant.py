"""Planted truths: the same image at several URLs and captions in other languages, recorded in
``planted.json`` so that tests can check what the curation filters find.

A share of the demo images that get an English caption at their plain URL becomes the original
of a duplicate group: one to three copies (:data:`urls.VARIANTS`: the same bytes, re-encoded,
resized or trimmed) turn up later, on other pages and in the tables, each at its own URL with
its own alt text, as images spread over the web. No two originals share a look (colour, shape,
count, position, background), so no two planted groups look alike; images that were never
planted still may (the demo draws from a few thousand looks). A few captions are in German,
French or Spanish: a description of the scene in a dozen words or more, with an article title
(web captions often carry a name, and the title is what lets the caption match a query); every
phrasing is identified as its language whatever the scene (a test checks it).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass

from pipeline import fs
from pipeline.demo_world import scene, urls

FILE = "planted.json"
GROUP_RATE = 0.02  # share of eligible new images that become the original of a group
COPY_RATE = 0.04  # chance that a link or table row shows a pending copy instead of a new image
MAX_COPIES = 3
FOREIGN_RATE = 0.006  # share of eligible captions written in another language
EXACT_SHARE = 0.4  # share of groups with an exact copy (the same bytes at another URL)
MODIFIED = tuple(v for v in urls.VARIANTS if v != "copy")

TEMPLATES = {
    "de": (
        "Ein Bild mit der Form {shape} in der Farbe {colour} {where} auf einem Hintergrund in "
        "{background}",
        "Auf diesem Foto sieht man die Form {shape} in {colour} {where} und dahinter einen "
        "Hintergrund in {background}",
    ),
    "fr": (
        "Une image avec la forme {shape} en {colour} {where} sur un fond {background}",
        "Sur cette photo on voit la forme {shape} de couleur {colour} {where}, avec un fond "
        "{background}",
    ),
    "es": (
        "En esta fotografía se puede ver la forma de {shape} de color {colour} {where}, y el "
        "fondo es de color {background}",
        "Una fotografía donde se puede ver la figura de {shape} pintada de color {colour} "
        "{where}, y el fondo es de color {background}",
    ),
}
# Words in the order of scene.COLOURS, scene.SHAPES and scene.POSITIONS (colours in the forms
# that need no agreement in the templates).
WORDS = {
    "de": (
        "Rot|Grün|Blau|Gelb|Orange|Lila|Rosa|Braun|Schwarz|Weiß|Grau|Türkis",
        "Kreis|Quadrat|Dreieck|Stern|Kreuz|Raute|Ring|Herz",
        "links|rechts|oben|unten|in der Mitte",
    ),
    "fr": (
        "rouge|vert|bleu|jaune|orange|violet|rose|marron|noir|blanc|gris|cyan",
        "cercle|carré|triangle|étoile|croix|losange|anneau|cœur",
        "à gauche|à droite|en haut|en bas|au centre",
    ),
    "es": (
        "rojo|verde|azul|amarillo|naranja|morado|rosa|marrón|negro|blanco|gris|cian",
        "círculo|cuadrado|triángulo|estrella|cruz|rombo|anillo|corazón",
        "a la izquierda|a la derecha|arriba|abajo|en el centro",
    ),
}
FOREIGN = {
    code: {
        "templates": TEMPLATES[code],
        "colours": dict(zip(scene.COLOURS, colours.split("|"), strict=True)),
        "shapes": dict(zip(scene.SHAPES, shapes.split("|"), strict=True)),
        "positions": dict(zip(scene.POSITIONS, positions.split("|"), strict=True)),
    }
    for code, (colours, shapes, positions) in WORDS.items()
}


def foreign_caption(s: scene.Scene, language: str, title: str, rng: random.Random) -> str:
    """A description of scene ``s`` in ``language`` (a key of :data:`FOREIGN`), then a title."""
    words = FOREIGN[language]
    text = rng.choice(words["templates"]).format(
        shape=words["shapes"][s.shape],
        colour=words["colours"][s.colour],
        where=words["positions"][s.position],
        background=words["colours"][s.background],
    )
    return f"{text} - {title}"


def look(s: scene.Scene) -> tuple:
    """What an image shows, regardless of its size and format."""
    return s.colour, s.shape, s.count, s.position, s.background


@dataclass(frozen=True)
class Copy:
    """A copy of a planted original, about to be placed at ``url``."""

    image_id: int
    variant: str
    url: str


class Planter:
    """Decides (with its own seeded generator) which images get copies and which captions are
    foreign, and records every planted member; shared by the WAT files and the tables."""

    def __init__(self, port: int, seed: int):
        self.port, self.seed = port, seed
        self.rng = random.Random(f"plant:{seed}")
        self.groups: dict[int, list[dict]] = {}  # original id -> members (url, variant)
        self.looks: set[tuple] = set()
        self.pending: list[tuple[int, str]] = []  # (original id, variant) not placed yet
        self.foreign: list[dict] = []

    def maybe_group(self, image_id: int) -> None:
        """Perhaps make image ``image_id`` (just placed at its plain URL) a group's original."""
        s = scene.scene_for(image_id, self.seed)
        if image_id in self.groups or look(s) in self.looks or self.rng.random() >= GROUP_RATE:
            return
        self.looks.add(look(s))
        url = urls.image_url(self.port, image_id, s.fmt)
        self.groups[image_id] = [{"url": url, "variant": "original"}]
        copies = self.rng.sample(MODIFIED, self.rng.randint(1, MAX_COPIES))
        if self.rng.random() < EXACT_SHARE:
            copies[0] = "copy"
        self.pending += [(image_id, v) for v in copies]

    def next_copy(self) -> Copy | None:
        """A pending copy to place now (it is recorded as placed), or None."""
        if not self.pending or self.rng.random() >= COPY_RATE:
            return None
        image_id, variant = self.pending.pop(self.rng.randrange(len(self.pending)))
        fmt = scene.scene_for(image_id, self.seed).fmt
        url = urls.variant_url(self.port, image_id, fmt, variant)
        self.groups[image_id].append({"url": url, "variant": variant})
        return Copy(image_id, variant, url)

    def maybe_foreign(self, image_id: int, titles) -> str | None:
        """Perhaps a caption in another language for image ``image_id`` at its plain URL
        (recorded), with a title from ``titles`` (a :class:`~pipeline.demo_world.wat.Captioner`);
        else None."""
        if self.rng.random() >= FOREIGN_RATE:
            return None
        language = sorted(FOREIGN)[len(self.foreign) % len(FOREIGN)]  # each in turn
        s = scene.scene_for(image_id, self.seed)
        caption = foreign_caption(s, language, titles.title(self.rng), self.rng)
        url = urls.image_url(self.port, image_id, s.fmt)
        self.foreign.append({"url": url, "caption": caption, "language": language})
        return caption

    def planted_groups(self) -> list[dict]:
        """The groups that got at least one copy, by original id."""
        return [
            {"image_id": i, "members": members}
            for i, members in sorted(self.groups.items())
            if len(members) > 1
        ]

    def summary(self) -> dict:
        """Counts for the world's manifest."""
        groups = self.planted_groups()
        variants = Counter(m["variant"] for g in groups for m in g["members"][1:])
        return {
            "file": FILE,
            "duplicate_groups": len(groups),
            "copies": sum(variants.values()),
            "copies_by_variant": dict(sorted(variants.items())),
            "copies_never_placed": len(self.pending),
            "foreign_captions": dict(sorted(Counter(f["language"] for f in self.foreign).items())),
        }

    def write(self, out_dir: str) -> None:
        """``planted.json``: every group's members and every foreign caption."""
        data = {"duplicates": self.planted_groups(), "languages": self.foreign}
        fs.write_text_atomic(fs.join(out_dir, FILE), json.dumps(data, indent=1) + "\n")
