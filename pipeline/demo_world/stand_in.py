"""How the demo world stands in for the internet: its files as the stages' explicit inputs, and
its image server running around the stages that fetch.

The stages know nothing of the demo world: ``wit queries`` reads the dumps and pageview files it
is given, ``wit select`` the WAT files and tables, ``wit download`` fetches from the hosts it is
allowed. :mod:`pipeline.all_stages` uses this module to give them the demo world's.
"""

from __future__ import annotations

import contextlib
import json
import socket
from typing import Iterator

from pipeline import fs

DUMPS = "wiki/*-pages-articles-multistream.xml.bz2"
PAGEVIEWS = "pageviews/pageviews-*.gz"
WAT = "wat/*.warc.wat.gz"
TABLE_SUFFIXES = (".parquet", ".csv", ".tsv", ".jsonl")


def exists(world: str) -> bool:
    """Whether ``world`` holds a generated demo world."""
    return fs.exists(fs.join(world, "manifest.json"))


def _is_table(path: str) -> bool:
    return path.lower().removesuffix(".gz").endswith(TABLE_SUFFIXES)


def inputs(world: str) -> dict[str, list[str]]:
    """The world's files by the input option that takes them (queries: ``wiki_dumps``,
    ``pageviews``; select: ``wat``, ``tables``), each list sorted."""
    return {
        "wiki_dumps": fs.glob(fs.join(world, DUMPS)),
        "pageviews": fs.glob(fs.join(world, PAGEVIEWS)),
        "wat": fs.glob(fs.join(world, WAT)),
        "tables": [p for p in fs.glob(fs.join(world, "tables", "*")) if _is_table(p)],
    }


def host(world: str) -> str:
    """``127.0.0.1:<port>``: where the world's server answers (recorded at generation)."""
    port = json.loads(fs.read_text(fs.join(world, "manifest.json")))["port"]
    return f"127.0.0.1:{port}"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def serving(world: str) -> Iterator[str]:
    """Serve the world's images while the block runs (unless something already listens on its
    port, such as ``wit demo-world --demo-serve``); yields the host to allow."""
    address = host(world)
    if _listening(int(address.rsplit(":", 1)[1])):
        yield address
        return
    from pipeline.demo_world.server import serve_world  # aiohttp only when serving

    with serve_world(world):
        yield address
