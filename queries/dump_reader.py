"""Read pages from MediaWiki XML export dumps (bz2 single- or multistream, or plain XML), in splits.

How a dump is split: a file is cut into byte ranges (:func:`plan_splits`). A range owns every bz2
*stream* that starts inside it. Its reader scans forward from the range start for a stream header
(``BZh1``-``BZh9`` followed by the block magic ``1AY&SY``, byte-aligned only at a stream start), and
decompresses stream after stream until the next stream would start at or after the range end. So a
multistream dump (``enwiki-*-pages-articles-multistream.xml.bz2``, ~100 pages per stream) is read in
parallel without its index file, a single-stream dump is read by the one range holding its start,
and ranges holding no stream start emit nothing. Pages are cut out of the decompressed bytes at
``<page>``/``</page>`` (which cannot occur unescaped inside page text); a page still open at the end
of a range is finished from the following streams, and bytes before the first ``<page>`` of a range
(the ``<siteinfo>`` header, or the tail of a page the previous range finished) are skipped.

Each page is parsed on its own with ElementTree (expat), not with mwxml: mwxml needs the whole
document from its ``<siteinfo>`` header, so it can read neither a stream from the middle of a file
nor one bad page without losing the rest. Per page, bad input is data: a :class:`Skip` with a
reason (``bad_utf8``, ``xml_error``, ``no_text``, ``too_large``, ``truncated``, ``bz2_error``,
``io_error``), never an exception. Memory per reader: one decompressed read block plus at most
one page.

Per file, the split that starts at byte 0 ends with a :class:`DumpFile` record: the file was read,
and whether it failed, i.e. gives no readable page at all (``empty``, ``not_a_dump``: neither bz2
nor MediaWiki XML, ``bz2_error``, ``truncated``, ``io_error``, ``no_pages``). A file read in
several splits has failed when none of its streams holds a page or MediaWiki markup (the first
split reads on past its end only when its own streams hold neither).
"""

from __future__ import annotations

import bz2
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import IO, Iterator

from pipeline import fs

STREAM_MAGIC = re.compile(rb"BZh[1-9]1AY&SY")
READ_BLOCK = 1 << 20
OUT_BLOCK = 4 << 20
PAGE_OPEN, PAGE_CLOSE = b"<page>", b"</page>"


@dataclass(frozen=True)
class Page:
    """One ``<page>`` of a dump: the fields the query builder uses."""

    title: str
    ns: int
    page_id: int
    redirect: str | None  # target title of a redirect page
    text: str


@dataclass(frozen=True)
class Skip:
    """A page (or part of a file) that could not be read, and why."""

    reason: str
    source: str
    detail: str = ""


@dataclass(frozen=True)
class Split:
    """A byte range ``[start, end)`` of one dump file; the unit of parallel reading."""

    path: str
    start: int
    end: int
    compressed: bool


@dataclass(frozen=True)
class DumpFile:
    """The verdict on one dump file: read, and why it failed (None: it has readable pages)."""

    path: str
    problem: str | None = None

    def stats(self) -> dict[str, int]:
        """``dump_file:read``, plus ``dump_file:failed`` and ``dump_file:failed:<problem>``."""
        if self.problem is None:
            return {"dump_file:read": 1}
        return {"dump_file:read": 1, "dump_file:failed": 1, f"dump_file:failed:{self.problem}": 1}


Record = Page | Skip | DumpFile
MARKUP = (b"<mediawiki", b"<page>")  # what the head of a MediaWiki export holds


@dataclass
class _Seen:
    """What reading the first split of a file found, for its :class:`DumpFile` verdict."""

    pages: int = 0
    markup: bool = False
    error: str | None = None


def is_bz2(path: str) -> bool:
    """Whether a file starts with a bz2 stream header."""
    with fs.open_read(path) as f:
        return STREAM_MAGIC.match(f.read(10)) is not None


def plan_splits(
    path: str, split_bytes: int, min_splits: int = 1, min_split_bytes: int = 64 << 10
) -> list[Split]:
    """Byte ranges of at most ``split_bytes`` covering a file, at least ``min_splits`` of them where
    each keeps ``min_split_bytes`` (one range for plain XML)."""
    try:
        total = fs.size(path)
        compressed = total >= 10 and is_bz2(path)
    except OSError:  # read_split records the error as the file's verdict
        return [Split(path, 0, 1, False)]
    split_bytes = max(1, min(split_bytes, max(min_split_bytes, -(-total // min_splits))))
    if not compressed or total <= split_bytes:
        return [Split(path, 0, max(total, 1), compressed)]
    starts = list(range(0, total, split_bytes))
    return [Split(path, s, min(s + split_bytes, total), True) for s in starts]


def parse_page(block: bytes, source: str) -> Record:
    """Parse one ``<page>...</page>`` block into a :class:`Page`, or a :class:`Skip` with a reason."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as e:
        return Skip("bad_utf8", source, f"{e.reason} at byte {e.start}")
    try:
        elem = ET.fromstring(text)
    except ET.ParseError as e:
        return Skip("xml_error", source, str(e))
    title = elem.findtext("title")
    ns = elem.findtext("ns")
    page_id = elem.findtext("id")
    if title is None or ns is None or not ns.strip().lstrip("-").isdigit():
        return Skip("xml_error", source, "page without <title> or numeric <ns>")
    redirect = elem.find("redirect")
    body = elem.find("revision/text")
    if body is None or body.text is None and body.get("deleted") is not None:
        return Skip("no_text", source, title)
    return Page(
        title=title,
        ns=int(ns),
        page_id=int(page_id) if page_id and page_id.strip().isdigit() else -1,
        redirect=redirect.get("title") if redirect is not None else None,
        text=body.text or "",
    )


class PageSplitter:
    """Cuts ``<page>`` blocks out of a byte stream fed in pieces; a page above the limit is skipped."""

    def __init__(self, max_page_bytes: int):
        self.max_page_bytes = max_page_bytes
        self.buf = bytearray()
        self.in_page = False
        self.oversized = 0  # bytes of a too-large page dropped so far
        self._scanned = 0

    def feed(self, data: bytes) -> Iterator[bytes | int]:
        """Complete page blocks in ``data`` (an int: the size of a skipped too-large page)."""
        self.buf += data
        while True:
            if not self.in_page:
                i = self.buf.find(PAGE_OPEN)
                if i < 0:  # keep a possibly split "<page" marker only
                    del self.buf[: max(0, len(self.buf) - len(PAGE_OPEN))]
                    return
                del self.buf[:i]
                self.in_page, self._scanned = True, 0
            j = self.buf.find(PAGE_CLOSE, max(0, self._scanned - len(PAGE_CLOSE)))
            if j < 0:
                self._scanned = len(self.buf)
                if self.oversized or len(self.buf) > self.max_page_bytes:
                    keep = len(PAGE_CLOSE)  # drop the page's bytes, keep a split "</page" marker
                    self.oversized += len(self.buf) - keep
                    del self.buf[:-keep]
                    self._scanned = keep
                return
            end = j + len(PAGE_CLOSE)
            if self.oversized or end > self.max_page_bytes:
                yield self.oversized + end
                self.oversized = 0
            else:
                yield bytes(self.buf[:end])
            del self.buf[:end]
            self.in_page = False

    @property
    def pending(self) -> bool:
        """Whether a page has started and not yet ended."""
        return self.in_page


def _find_stream(f: IO[bytes], start: int, end: int) -> int | None:
    """Offset of the first bz2 stream header at or after ``start`` and before ``end``."""
    pos = start
    f.seek(pos)
    tail = b""
    while pos < end:
        block = f.read(min(READ_BLOCK, end - pos + 9))
        if not block:
            return None
        data = tail + block
        m = STREAM_MAGIC.search(data)
        if m and pos - len(tail) + m.start() < end:
            return pos - len(tail) + m.start()
        if m:
            return None
        tail = data[-9:]
        pos += len(block)
    return None


def _decompressed_blocks(f: IO[bytes], split: Split) -> Iterator[tuple[bytes | Skip, bool]]:
    """Decompressed bytes of the streams from the first one a split owns, each flagged True once
    it comes from a stream starting at or after the split's end (read only to finish a page)."""
    if not split.compressed:
        f.seek(0)
        while block := f.read(READ_BLOCK):
            yield block, False
        return
    offset = _find_stream(f, split.start, split.end)
    if offset is None:
        return
    size = f.seek(0, 2)
    f.seek(offset)
    dec, fed = bz2.BZ2Decompressor(), False
    while True:
        data = f.read(READ_BLOCK)
        if not data:
            if fed and not dec.eof:
                yield (
                    Skip("truncated", split.path, f"bz2 stream at byte {offset} ends early"),
                    offset >= split.end,
                )
            return
        while True:
            try:  # bounded output: a tiny input can decompress to gigabytes
                out = dec.decompress(data, max_length=OUT_BLOCK)
            except (OSError, EOFError) as e:
                yield (
                    Skip("bz2_error", split.path, f"stream at byte {offset}: {e}"),
                    offset >= split.end,
                )
                # A damaged stream costs its own pages only: go on at the next stream header.
                offset = _find_stream(f, offset + 1, size)
                if offset is None:
                    return
                f.seek(offset)
                dec, fed = bz2.BZ2Decompressor(), False
                break
            data, fed = b"", True
            if out:
                yield out, offset >= split.end
            if dec.eof:  # the next stream starts right after this one
                data = dec.unused_data
                offset = f.tell() - len(data)
                dec, fed = bz2.BZ2Decompressor(), False
                if not data:
                    break
            elif dec.needs_input:
                break


def read_split(split: Split, max_page_bytes: int = 64 << 20) -> Iterator[Record]:
    """Every page (or skip) of one split of a dump file; the split at byte 0 ends with the file's
    :class:`DumpFile`."""
    seen = _Seen()
    for rec in _read_split(split, max_page_bytes, seen):
        seen.pages += isinstance(rec, Page)
        yield rec
    if split.start == 0:
        yield DumpFile(split.path, _verdict(split, seen))


def _verdict(split: Split, seen: _Seen) -> str | None:
    """Why the file of the first split gives no readable page, or None."""
    if seen.pages:
        return None
    try:
        total = fs.size(split.path)
    except OSError:
        return "io_error"
    if total == 0:
        return "empty"
    if not split.compressed or split.end >= total:  # this split read the whole file
        if seen.error:
            return seen.error
        return "no_pages" if seen.markup else "not_a_dump"
    if seen.markup or _rest_readable(split, total):
        return None  # a header-only or damaged first split: the other splits hold the pages
    return seen.error or "not_a_dump"


def _rest_readable(split: Split, total: int) -> bool:
    """Whether the streams after the first split hold a page or MediaWiki markup (read only
    until the first one that does: for a dump whose head is damaged, not the whole file)."""
    seen = _Seen()
    for rec in _read_split(Split(split.path, split.end, total, True), 1 << 20, seen):
        if isinstance(rec, Page) or seen.markup:
            return True
    return seen.markup


def _read_split(split: Split, max_page_bytes: int, seen: _Seen) -> Iterator[Page | Skip]:
    """The records of :func:`read_split`, noting in ``seen`` markup and errors met on the way."""
    splitter = PageSplitter(max_page_bytes)
    source = f"{split.path}@{split.start}"
    try:
        with fs.open_read(split.path) as f:
            for block, beyond_end in _decompressed_blocks(f, split):
                if beyond_end and not splitter.pending:
                    return  # the next split owns the rest
                if isinstance(block, Skip):
                    seen.error = block.reason
                    yield (
                        Skip("truncated", split.path, "page cut off: " + block.detail)
                        if splitter.pending
                        else block
                    )
                    splitter = PageSplitter(max_page_bytes)  # the next stream starts afresh
                    continue
                if not seen.markup:
                    seen.markup = any(m in block for m in MARKUP)
                for page in splitter.feed(block):
                    if isinstance(page, int):
                        yield Skip("too_large", source, f"page of more than {page} bytes")
                    else:
                        yield parse_page(page, source)
                    if beyond_end:
                        return  # the page open at the split's end is done
    except OSError as e:  # an unreadable file or a failing store: counted, the run goes on
        seen.error = "io_error"
        yield Skip("io_error", split.path, str(e))
        return
    if splitter.pending:
        yield Skip("truncated", split.path, "file ends inside a <page>")


def read_dump(
    path: str, split_bytes: int = 64 << 20, max_page_bytes: int = 64 << 20
) -> Iterator[Record]:
    """Every page of a dump file, split by split, in one process (the plain-Python reading path)."""
    for split in plan_splits(path, split_bytes):
        yield from read_split(split, max_page_bytes)
