"""Write MediaWiki XML export dumps (schema 0.11) as bz2 multistream files with their index.

The same layout as ``enwiki-*-pages-articles-multistream.xml.bz2``: a first stream holding the
``<mediawiki>`` opening tag and ``<siteinfo>``, streams of ``pages_per_stream`` pages, a last stream
closing ``</mediawiki>``; the index file lists ``offset:page_id:title`` per page. Used by the tests
and the benchmark to make real-format inputs.
"""

from __future__ import annotations

import bz2
from dataclasses import dataclass
from typing import Iterable
from xml.sax.saxutils import escape, quoteattr

from pipeline import fs

HEADER = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" \
xsi:schemaLocation="http://www.mediawiki.org/xml/export-0.11/ \
http://www.mediawiki.org/xml/export-0.11.xsd" version="0.11" xml:lang="en">
  <siteinfo>
    <sitename>Wikipedia</sitename>
    <dbname>enwiki</dbname>
    <base>https://en.wikipedia.org/wiki/Main_Page</base>
    <generator>MediaWiki 1.42.0-wmf.10</generator>
    <case>first-letter</case>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="1" case="first-letter">Talk</namespace>
      <namespace key="6" case="first-letter">File</namespace>
      <namespace key="14" case="first-letter">Category</namespace>
    </namespaces>
  </siteinfo>
"""
FOOTER = "</mediawiki>\n"


@dataclass(frozen=True)
class DumpPage:
    """A page to write: title, namespace, id, wikitext, optional redirect target."""

    title: str
    text: str
    page_id: int
    ns: int = 0
    redirect: str | None = None


def page_xml(page: DumpPage) -> str:
    """One ``<page>`` element as the dumps write it."""
    redirect = f"    <redirect title={quoteattr(page.redirect)} />\n" if page.redirect else ""
    body = page.text.encode("utf-8")
    return (
        f"  <page>\n    <title>{escape(page.title)}</title>\n    <ns>{page.ns}</ns>\n"
        f"    <id>{page.page_id}</id>\n{redirect}    <revision>\n      <id>{page.page_id + 1000000}</id>\n"
        "      <timestamp>2024-01-01T00:00:00Z</timestamp>\n"
        "      <contributor>\n        <username>Example</username>\n        <id>1</id>\n      </contributor>\n"
        "      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
        f'      <text bytes="{len(body)}" xml:space="preserve">{escape(page.text)}</text>\n'
        "      <sha1>0000000000000000000000000000000</sha1>\n    </revision>\n  </page>\n"
    )


def write_multistream(
    path: str, pages: Iterable[DumpPage], index_path: str | None = None, pages_per_stream: int = 100
) -> int:
    """Write a multistream bz2 dump (and its bz2 index); returns the number of pages written."""
    index_lines: list[str] = []
    n = 0
    with fs.open_write_atomic(path) as f:
        offset = f.write(bz2.compress(HEADER.encode("utf-8")))
        batch: list[DumpPage] = []

        def flush() -> int:
            for p in batch:
                index_lines.append(f"{offset}:{p.page_id}:{p.title}\n")
            data = bz2.compress("".join(page_xml(p) for p in batch).encode("utf-8"))
            batch.clear()
            return f.write(data)

        for page in pages:
            batch.append(page)
            n += 1
            if len(batch) == pages_per_stream:
                offset += flush()
        if batch:
            offset += flush()
        f.write(bz2.compress(FOOTER.encode("utf-8")))
    if index_path:
        fs.write_bytes_atomic(index_path, bz2.compress("".join(index_lines).encode("utf-8")))
    return n


def write_single_stream(path: str, pages: Iterable[DumpPage]) -> None:
    """Write a dump as one bz2 stream (``pages-articles.xml.bz2`` style)."""
    text = HEADER + "".join(page_xml(p) for p in pages) + FOOTER
    fs.write_bytes_atomic(path, bz2.compress(text.encode("utf-8")))
