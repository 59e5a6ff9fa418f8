"""The MediaWiki XML export format (schema 0.11) as Wikimedia's dumps write it: the one writer.

``enwiki-*-pages-articles-multistream.xml.bz2``: a first bz2 stream holding the ``<mediawiki>``
header and ``<siteinfo>``, streams of ``pages_per_stream`` ``<page>`` elements, a last stream
closing ``</mediawiki>``; the index (``...-multistream-index.txt.bz2``) lists
``offset:page_id:title`` with the byte offset of the stream that holds each page. The demo world's
Wikipedia (:mod:`pipeline.demo_world.wiki`) and the tests write their dumps through here.
"""

from __future__ import annotations

import bz2
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from pipeline import fs

NS_URI = "http://www.mediawiki.org/xml/export-0.11/"
NAMESPACES = {
    -2: "Media", -1: "Special", 0: "", 1: "Talk", 2: "User", 3: "User talk", 4: "Wikipedia",
    5: "Wikipedia talk", 6: "File", 7: "File talk", 8: "MediaWiki", 9: "MediaWiki talk",
    10: "Template", 11: "Template talk", 12: "Help", 13: "Help talk", 14: "Category",
    15: "Category talk", 100: "Portal", 101: "Portal talk", 118: "Draft", 119: "Draft talk",
    828: "Module", 829: "Module talk",
}  # fmt: skip
FOOTER = "</mediawiki>\n"


def header_xml() -> str:
    """``<mediawiki>`` opening tag and ``<siteinfo>``, as in a Wikimedia dump."""
    ns = "\n".join(
        f'      <namespace key="{k}" case="first-letter" />'
        if not v
        else f'      <namespace key="{k}" case="first-letter">{v}</namespace>'
        for k, v in NAMESPACES.items()
    )
    return (
        f'<mediawiki xmlns="{NS_URI}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{NS_URI} http://www.mediawiki.org/xml/export-0.11.xsd" version="0.11" xml:lang="en">\n'
        "  <siteinfo>\n    <sitename>Wikipedia</sitename>\n    <dbname>enwiki</dbname>\n"
        "    <base>https://en.wikipedia.org/wiki/Main_Page</base>\n    <generator>MediaWiki 1.42.0-wmf.10</generator>\n"
        f"    <case>first-letter</case>\n    <namespaces>\n{ns}\n    </namespaces>\n  </siteinfo>\n"
    )


HEADER = header_xml()


def sha1_base36(text: str) -> str:
    """MediaWiki's revision sha1: SHA-1 of the text in base 36, 31 digits."""
    n = int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16)
    digits = ""
    while n:
        n, d = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[d] + digits
    return digits.rjust(31, "0")


@dataclass(frozen=True)
class DumpPage:
    """A page to write: title, wikitext, ids, namespace, redirect target and revision details."""

    title: str
    text: str
    page_id: int
    ns: int = 0
    redirect: str | None = None
    revision_id: int | None = None  # default: page_id + 1,000,000
    parent_id: int | None = None
    timestamp: str = "2024-01-01T00:00:00Z"
    contributor: str = "<username>Example</username>\n        <id>1</id>"
    comment: str | None = None


def page_xml(page: DumpPage) -> str:
    """One ``<page>`` element as the dumps write it."""
    rev = page.revision_id if page.revision_id is not None else page.page_id + 1_000_000
    redirect = f"    <redirect title={quoteattr(page.redirect)} />\n" if page.redirect else ""
    parent = f"      <parentid>{page.parent_id}</parentid>\n" if page.parent_id is not None else ""
    comment = f"      <comment>{escape(page.comment)}</comment>\n" if page.comment else ""
    return (
        f"  <page>\n    <title>{escape(page.title)}</title>\n    <ns>{page.ns}</ns>\n"
        f"    <id>{page.page_id}</id>\n{redirect}    <revision>\n      <id>{rev}</id>\n{parent}"
        f"      <timestamp>{page.timestamp}</timestamp>\n"
        f"      <contributor>\n        {page.contributor}\n      </contributor>\n{comment}"
        "      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
        f'      <text bytes="{len(page.text.encode("utf-8"))}" xml:space="preserve">{escape(page.text)}</text>\n'
        f"      <sha1>{sha1_base36(page.text)}</sha1>\n    </revision>\n  </page>\n"
    )


def write_multistream(
    path: str,
    pages: Iterable[DumpPage],
    index_path: str | None = None,
    pages_per_stream: int = 100,
) -> int:
    """Write a multistream bz2 dump (and its bz2 index); returns the number of streams.

    ``pages`` may be a generator: pages are compressed a stream at a time, never all held.
    """
    index = bz2.BZ2Compressor(9)
    index_data: list[bytes] = []
    streams = 0
    with fs.open_write_atomic(path) as out:
        offset = out.write(bz2.compress(HEADER.encode("utf-8")))
        batch: list[DumpPage] = []

        def flush() -> int:
            lines = "".join(f"{offset}:{p.page_id}:{p.title}\n" for p in batch)
            index_data.append(index.compress(lines.encode("utf-8")))
            written = out.write(bz2.compress("".join(page_xml(p) for p in batch).encode("utf-8")))
            batch.clear()
            return written

        for page in pages:
            batch.append(page)
            if len(batch) == pages_per_stream:
                offset += flush()
                streams += 1
        if batch:
            offset += flush()
            streams += 1
        out.write(bz2.compress(FOOTER.encode("utf-8")))
    if index_path:
        fs.write_bytes_atomic(index_path, b"".join(index_data) + index.flush())
    return streams + 2


def write_single_stream(path: str, pages: Iterable[DumpPage]) -> None:
    """Write a dump as one bz2 stream (``pages-articles.xml.bz2`` style)."""
    text = HEADER + "".join(page_xml(p) for p in pages) + FOOTER
    fs.write_bytes_atomic(path, bz2.compress(text.encode("utf-8")))
