"""Wikimedia hourly pageview dumps: parse lines, filter, normalise titles, sum views per title.

Format of ``pageviews-YYYYMMDD-HH0000.gz`` (one file per hour): lines of
``domain_code page_title count_views total_response_size``, e.g. ``en.m Albert_Einstein 312 0``.
``en`` is desktop and ``en.m`` mobile English Wikipedia (``en.b``, ``en.d``... are other projects).

Filters, in order, each counted: malformed line (field count, non-integer views); project not
selected; title in an excluded namespace (``Special:``, ``User:``, ``Talk:``, ``File:``...); title
that does not percent-decode to UTF-8; then, per hour, titles whose views in that hour (all selected
projects together) fall below the per-hour minimum — the MetaCLIP reimplementation's way of keeping
bot spikes and one-off hits out — before the hours are summed.

A file that gives no well-formed line (empty, not gzip, truncated or corrupt gzip, or no line of
the format) counts ``pageview_file:failed`` and ``pageview_file:failed:<why>`` in its statistics,
and keeps nothing. Lines are read at most MAX_LINE_BYTES at a time: a longer one is counted
(``pageview_line:too_long``), never held.
"""

from __future__ import annotations

import gzip
import zlib
from collections import Counter
from urllib.parse import unquote

from pipeline import fs

DEFAULT_PROJECTS = ("en", "en.m")
# A real line is a project code, a title of at most 255 UTF-8 bytes (x3 percent-encoded) and two
# numbers: far below this.
MAX_LINE_BYTES = 1 << 16
UNREADABLE_LINES = ("pageview_line:malformed", "pageview_line:too_long")
DEFAULT_EXCLUDED_PREFIXES = (
    "Media Special Talk User User_talk Wikipedia Wikipedia_talk WP Project File File_talk Image "
    "MediaWiki MediaWiki_talk Template Template_talk Help Help_talk Category Category_talk Portal "
    "Portal_talk Draft Draft_talk TimedText TimedText_talk Module Module_talk Book Book_talk "
    "Education_Program Gadget Gadget_definition Topic"
).split()


def title_key(title: str) -> str:
    """A page title as MediaWiki stores it: spaces for underscores, first letter upper-cased."""
    title = " ".join(title.replace("_", " ").split())
    return title[:1].upper() + title[1:]


class PageviewFilter:
    """Parses pageview lines and applies the project, namespace and title filters."""

    def __init__(self, projects=DEFAULT_PROJECTS, excluded_prefixes=DEFAULT_EXCLUDED_PREFIXES):
        self.projects = frozenset(projects)
        self.excluded = frozenset(p.replace(" ", "_").lower() for p in excluded_prefixes)

    def parse(self, line: str) -> tuple[str, int] | str:
        """``(title key, views)`` for a kept line, else the reason it was dropped."""
        fields = line.split(" ")
        if len(fields) != 4 or not fields[1]:
            return "malformed"
        project, raw_title, views = fields[0], fields[1], fields[2]
        if not views.isdigit():
            return "malformed"
        if project not in self.projects:
            return "other_project"
        if "%" in raw_title:
            try:
                raw_title = unquote(raw_title, errors="strict")
            except UnicodeDecodeError:
                return "bad_title"
        if (
            ":" in raw_title
            and raw_title.split(":", 1)[0].replace(" ", "_").lower() in self.excluded
        ):
            return "excluded_namespace"
        key = title_key(raw_title)
        if not key:
            return "bad_title"
        return key, int(views)


def hour_views(lines, flt: PageviewFilter, hour_min: int) -> tuple[Counter, Counter]:
    """Views per title in one hourly file (titles under ``hour_min`` dropped) and line statistics."""
    views: Counter = Counter()
    stats: Counter = Counter()
    for raw in lines:
        try:
            line = (
                raw.decode("utf-8").rstrip("\r\n") if isinstance(raw, bytes) else raw.rstrip("\r\n")
            )
        except UnicodeDecodeError:
            stats["pageview_line:malformed"] += 1
            continue
        result = flt.parse(line)
        if isinstance(result, str):
            stats[f"pageview_line:{result}"] += 1
            continue
        stats["pageview_line:kept"] += 1
        views[result[0]] += result[1]
    if hour_min > 1:
        low = [t for t, v in views.items() if v < hour_min]
        stats["pageview_title:below_hour_min"] += len(low)
        for t in low:
            del views[t]
    return views, stats


def _bounded_lines(stream, stats: Counter):
    """Lines of a binary stream, each at most MAX_LINE_BYTES; longer ones are skipped, counted."""
    while line := stream.readline(MAX_LINE_BYTES + 1):
        if len(line) <= MAX_LINE_BYTES or line.endswith(b"\n"):
            yield line
            continue
        while line and not line.endswith(b"\n"):  # read past the rest in bounded pieces
            line = stream.readline(MAX_LINE_BYTES)
        stats["pageview_line:too_long"] += 1


def _failed(why: str) -> Counter:
    return Counter({"pageview_file:failed": 1, f"pageview_file:failed:{why}": 1})


def read_hour_file(path: str, flt: PageviewFilter, hour_min: int) -> tuple[Counter, Counter]:
    """:func:`hour_views` of one gz (or plain) pageview file; a file that gives no well-formed
    line (corrupt, truncated, empty, another format) is counted as failed, not raised."""
    too_long: Counter = Counter()
    try:
        with fs.open_read(path) as raw:
            stream = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
            views, stats = hour_views(_bounded_lines(stream, too_long), flt, hour_min)
    except gzip.BadGzipFile as e:  # a bad magic number, or a CRC or length check that failed
        return Counter(), _failed("not_gzip" if "Not a gzipped" in str(e) else "corrupt")
    except EOFError:  # a gzip member cut short: keep nothing of this hour
        return Counter(), _failed("truncated")
    except zlib.error:
        return Counter(), _failed("corrupt")
    except OSError:  # missing, unreadable, or a failing store
        return Counter(), _failed("unreadable")
    stats.update(too_long)
    lines = sum(n for k, n in stats.items() if k.startswith("pageview_line:"))
    if not lines:
        stats.update(_failed("empty"))
    elif lines == sum(stats[k] for k in UNREADABLE_LINES):
        stats.update(_failed("not_pageviews"))
    return views, stats
