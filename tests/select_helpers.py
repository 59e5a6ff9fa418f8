"""Real input files for the select tests: WAT files (WARC + WAT JSON envelope), tables, query lists."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from warcio.warcwriter import WARCWriter


def envelope(page_url: str, links: list[dict], base: str | None = None) -> dict:
    """The WAT JSON of one HTML response, in Common Crawl's shape."""
    head: dict = {"Title": "a page"}
    if base is not None:
        head["Base"] = base
    return {
        "Container": {"Filename": "x.warc.gz", "Compressed": True},
        "Envelope": {
            "Format": "WARC",
            "WARC-Header-Length": "500",
            "WARC-Header-Metadata": {"WARC-Type": "response", "WARC-Target-URI": page_url},
            "Payload-Metadata": {
                "Actual-Content-Type": "application/http; msgtype=response",
                "HTTP-Response-Metadata": {
                    "Response-Message": {"Status": "200"},
                    "HTML-Metadata": {"Head": head, "Links": links},
                },
            },
        },
    }


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
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    writer.write_record(writer.create_warcinfo_record("x.warc.wat.gz", {"software": "test"}))
    bodies = [(p[0], json.dumps(envelope(*p)).encode("utf-8")) for p in pages]
    bodies += [(f"http://raw.example/{i}", b) for i, b in enumerate(raw_payloads)]
    for uri, body in bodies:
        record = writer.create_warc_record(
            uri,
            "metadata",
            payload=io.BytesIO(body),
            warc_headers_dict={"Content-Type": "application/json"},
        )
        writer.write_record(record)
    path.write_bytes(buf.getvalue())
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
