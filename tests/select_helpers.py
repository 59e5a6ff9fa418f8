"""Real input files for the select tests: WAT files (WARC + WAT JSON envelope), tables, query lists."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.demo_world import wat


def img(url: str | None, alt: str | None = None, title: str | None = None) -> dict:
    """An ``IMG@/src`` link entry."""
    link: dict = {"path": "IMG@/src"}
    if url is not None:
        link["url"] = url
    if alt is not None:
        link["alt"] = alt
    if title is not None:
        link["title"] = title
    return link


def write_wat(path: Path, pages: list, *, raw_payloads: list[bytes] = ()) -> Path:
    """A gzip-per-record WAT file: a warcinfo record, then one metadata record per page.

    ``pages`` holds ``(page_url, links)`` or ``(page_url, links, base)`` tuples;
    ``raw_payloads`` are written verbatim as extra metadata records (hostile bodies).
    """
    bodies = [(p[0], json.dumps(wat.page_envelope(*p)).encode("utf-8")) for p in pages]
    bodies += [(f"http://raw.example/{i}", b) for i, b in enumerate(raw_payloads)]
    wat.write_records(str(path), path.name, bodies)
    return path


def query_id(query: str) -> int:
    """A stable id from the query text, as the query list does."""
    return int.from_bytes(hashlib.blake2b(query.encode(), digest_size=8).digest(), "big") >> 1


def write_queries(path: Path, queries: list[str]) -> Path:
    """A minimal ``queries.parquet`` (query, query_id, sources)."""
    table = pa.table(
        {
            "query": queries,
            "query_id": pa.array([query_id(q) for q in queries], pa.int64()),
            "sources": [["wordnet"] for _ in queries],
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path
