"""Wikitext to plain prose with mwparserfromhell: what a reader of the article sees as running text.

Removed: templates (infoboxes, citations, navboxes), ``<ref>`` and other non-prose tags (tables,
galleries, math, code), comments, files/images (with their captions), category links and
interlanguage links, magic words (``__NOTOC__``). Kept: plain text, the visible text of internal
links (``[[capital city|capital]]`` -> ``capital``) and external links, text inside formatting
(bold, italics, ``<small>``), headings (on their own line). ``strip_code()`` alone would keep
``<ref>`` contents and table cells, so the tree is walked node by node instead.
"""

from __future__ import annotations

import re

import mwparserfromhell
from mwparserfromhell.nodes import (
    Argument,
    Comment,
    ExternalLink,
    Heading,
    HTMLEntity,
    Tag,
    Template,
    Text,
    Wikilink,
)

# tags whose content is not running prose
DROP_TAGS = frozenset(
    "ref references table gallery math chem score timeline syntaxhighlight source code pre "
    "imagemap graph mapframe maplink templatedata templatestyles hiero inputbox categorytree "
    "noinclude includeonly indicator poem".split()
)
# block-level markup (list items, rules, line breaks) separates text like a line break
BREAK_TAGS = frozenset("li dt dd hr br p div blockquote tr td th".split())
# link prefixes whose links are not prose: media, categories; interlanguage codes are matched below
DROP_LINK_NAMESPACES = frozenset({"file", "image", "media", "category"})
_LANG_PREFIX = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]+)*$")
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
REDIRECT = re.compile(r"^\s*#redirect\s*:?\s*\[\[", re.IGNORECASE)
# {{disambiguation}}, {{disambig}}, {{dab}}, {{hndis}}, {{geodis}}, {{... disambiguation}}
DISAMBIGUATION = re.compile(
    r"\{\{\s*(?:disambig(?:uation)?|disamb|dab|hndis|geodis|numberdis|[a-z ]*disambiguation)\s*[|}]",
    re.IGNORECASE,
)


def is_redirect_text(text: str) -> bool:
    """Whether wikitext is a redirect (``#REDIRECT [[Target]]``)."""
    return bool(REDIRECT.match(text))


def is_disambiguation(title: str, text: str) -> bool:
    """Whether a page is a disambiguation page: its title says so or it carries a dab template."""
    return title.endswith("(disambiguation)") or bool(DISAMBIGUATION.search(text))


def _link_dropped(target: str) -> bool:
    target = target.strip()
    if target.startswith(":") or ":" not in target:  # [[:Category:X]] is a visible link
        return False
    prefix = target.split(":", 1)[0].strip().lower()
    return prefix in DROP_LINK_NAMESPACES or bool(_LANG_PREFIX.match(prefix))


def _walk(code, out: list[str]) -> None:
    for node in code.nodes:
        if isinstance(node, Text):
            out.append(node.value)
        elif isinstance(node, Wikilink):
            if not _link_dropped(str(node.title)):
                _walk(node.text if node.text is not None else node.title, out)
        elif isinstance(node, Tag):
            tag = str(node.tag).strip().lower()
            if tag in DROP_TAGS:
                continue
            if tag in BREAK_TAGS:
                out.append("\n")
            if node.contents is not None and not node.self_closing:
                _walk(node.contents, out)
        elif isinstance(node, ExternalLink):
            if node.title is not None:
                _walk(node.title, out)
        elif isinstance(node, Heading):
            out.append("\n")
            _walk(node.title, out)
            out.append("\n")
        elif isinstance(node, HTMLEntity):
            out.append(node.normalize())
        elif isinstance(node, (Template, Comment, Argument)):
            continue


def to_plain_text(wikitext: str) -> str:
    """The running prose of an article's wikitext (see the module docstring for what is kept)."""
    out: list[str] = []
    _walk(mwparserfromhell.parse(wikitext, skip_style_tags=False), out)
    return _MAGIC_WORD.sub(" ", "".join(out))
