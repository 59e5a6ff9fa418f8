"""Generate the whole demo world (wiki dump, pageviews, WAT files, tables), its manifest and the
record of what it planted for the curation filters to find (``planted.json``).

``generate_world(out_dir, seed, size, scale, port, fault_rate)`` is deterministic: the same
arguments (with a fixed port) give byte-identical files. Port 0 picks a free port on 127.0.0.1
now and records it; every URL in the world uses it, so the image server must serve on it.
"""

from __future__ import annotations

import json
import random
import socket
from dataclasses import asdict, dataclass

from pipeline import fs
from pipeline.demo_world import pageviews, plant, tables, urls, wat, wiki
from pipeline.demo_world.vocab import load_vocab

GENERATOR_VERSION = 2
WIKI_XML = "wiki/enwiki-20240101-pages-articles-multistream.xml.bz2"
WIKI_INDEX = "wiki/enwiki-20240101-pages-articles-multistream-index.txt.bz2"


@dataclass(frozen=True)
class Size:
    """Counts of one size preset (before ``scale``)."""

    articles: int
    wat_pages: int
    wat_files: int
    images_per_page: float
    table_rows: int
    hours: int


SIZES = {
    "tiny": Size(
        articles=150, wat_pages=120, wat_files=2, images_per_page=10, table_rows=300, hours=2
    ),
    "demo": Size(
        articles=2000, wat_pages=2000, wat_files=4, images_per_page=10, table_rows=3000, hours=6
    ),
    "bench": Size(
        articles=100_000,
        wat_pages=200_000,
        wat_files=32,
        images_per_page=10,
        table_rows=200_000,
        hours=24,
    ),
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (bind to 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((urls.HOST, 0))
        return s.getsockname()[1]


def params(seed: int, size: str, scale: float, port: int, fault_rate: float) -> dict:
    """What determines the world's bytes (port as requested: 0 means 'any free port')."""
    return {
        "version": GENERATOR_VERSION,
        "seed": seed,
        "size": size,
        "scale": scale,
        "port": port,
        "fault_rate": fault_rate,
    }


def generate_world(
    out_dir: str,
    seed: int = 0,
    size: str = "demo",
    scale: float = 1.0,
    port: int = 0,
    fault_rate: float = 0.05,
) -> dict:
    """Write the demo world under ``out_dir`` and return its manifest (also written as manifest.json)."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; known: {', '.join(SIZES)}")
    requested = params(seed, size, scale, port, fault_rate)
    port = port or free_port()
    p = SIZES[size]
    n = lambda x: max(1, round(x * scale))  # noqa: E731
    vocab = load_vocab()
    articles = wiki.make_articles(vocab, n(p.articles), random.Random(f"titles:{seed}"))
    for sub in ("wiki", "pageviews", "wat", "tables"):
        fs.makedirs(fs.join(out_dir, sub))
    wiki_stats = wiki.write_dump(
        fs.join(out_dir, WIKI_XML), fs.join(out_dir, WIKI_INDEX), articles, vocab, seed
    )
    views = pageviews.write_hours(fs.join(out_dir, "pageviews"), articles, p.hours, seed)
    planter = plant.Planter(port, seed)
    wat_links, links, next_id = wat.write_wat(
        fs.join(out_dir, "wat"),
        articles,
        seed,
        port,
        fault_rate,
        n(p.wat_pages),
        max(1, min(n(p.wat_files), n(p.wat_pages))),
        p.images_per_page,
        planter,
    )
    cap = wat.Captioner(articles, seed)
    table_info, table_faults = tables.write_tables(
        fs.join(out_dir, "tables"),
        cap,
        port,
        fault_rate,
        int(next_id * 0.95),
        n(p.table_rows),
        planter,
    )
    planter.write(out_dir)
    counts = {
        "vocab": {
            "words": len(vocab.words),
            "nouns": len(vocab.nouns),
            "compounds": len(vocab.compounds),
        },
        "articles": len(articles),
        "wiki": asdict(wiki_stats),
        "pageviews": views,
        "wat": {**links.summary(), "img_links_per_file": wat_links},
        "tables": table_info,
    }
    manifest = {
        "params": requested,
        **{"seed": seed, "size": size, "scale": scale, "port": port, "fault_rate": fault_rate},
        "base_url": urls.base_url(port),
        "files": {
            "wiki": [WIKI_XML],
            "wiki_index": [WIKI_INDEX],
            "pageviews": [f"pageviews/{f}" for f in views["lines"]],
            "wat": [f"wat/{f}" for f in wat_links],
            "tables": [f"tables/{f}" for f in table_info],
            "planted": [plant.FILE],
        },
        "counts": counts,
        "image_ids": {
            "first": 0,
            "last": max([next_id - 1] + [t["last_id"] for t in table_info.values()]),
        },
        "candidates": {
            "wat_img_links": links.img_links,
            "table_rows": sum(t["rows"] for t in table_info.values()),
            "total": links.img_links + sum(t["rows"] for t in table_info.values()),
        },
        "planted": planter.summary(),
        "faults": {
            "rate": fault_rate,
            "wat": dict(sorted(links.faults.items())),
            "tables": table_faults,
        },
    }
    fs.write_text_atomic(
        fs.join(out_dir, "manifest.json"), json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    )
    return manifest
