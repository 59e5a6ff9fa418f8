"""Caption and URL normalisation, and the filters that drop a pair, each with a named reason.

Plain functions, no Beam: :func:`clean_pair` turns a raw (url, caption) into a kept
:class:`~pipeline.select.readers.RawPair` or a reason string.
"""

from __future__ import annotations

import hashlib
import html
import importlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import ftfy
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Reasons a pair is dropped by the filters, in the order they are checked.
FILTER_REASONS = (
    "invalid_utf8",
    "caption_too_long",
    "caption_empty",
    "caption_too_short",
    "url_not_http",
    "url_data_uri",
    "url_invalid",
    "url_invalid_host",
    "url_non_photo_extension",
    "language",
)

_WS = re.compile(r"\s+")
# Cheap test before running ftfy: mojibake and stray control characters need non-ASCII or C0 bytes.
_NEEDS_FTFY = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True)
class FilterSpec:
    """The knobs of :func:`clean_pair` (copied from the ``select`` config)."""

    min_chars: int = 5
    max_chars: int = 1000
    skip_extensions: tuple[str, ...] = ("svg", "svgz", "gif", "ico", "cur", "pdf")
    language_filter: str = ""  # "module:function" taking the caption, returning True to keep


def uid_for(url: str, caption: str) -> str:
    """Stable id of a pair: hex of blake2b-128 over url and caption."""
    h = hashlib.blake2b(digest_size=16)
    h.update(url.encode("utf-8"))
    h.update(b"\x00")
    h.update(caption.encode("utf-8"))
    return h.hexdigest()


def clean_caption(text: str) -> str:
    """HTML entities, broken Unicode (ftfy) and whitespace, in that order."""
    if "&" in text:
        text = html.unescape(text)
    if _NEEDS_FTFY.search(text):
        text = ftfy.fix_text(text, normalization="NFC")
    return _WS.sub(" ", text).strip()


def is_encodable(text: str) -> bool:
    """False for strings that cannot be written as UTF-8 (lone surrogates, U+FFFD from bad bytes)."""
    if "\ufffd" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_HOST = re.compile(r"^[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*\.?$")


def _ascii_host(host: str) -> str | None:
    """Punycode an internationalised host name; None if it is not a valid one."""
    if ":" in host:  # an IPv6 literal
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    host = host.lower()
    return host if len(host) <= 253 and _HOST.match(host) else None


def clean_url(url: str, skip_extensions: tuple[str, ...]) -> tuple[str | None, str]:
    """``(normalised absolute URL, "")`` or ``(None, reason)``; IDN hosts become punycode."""
    url = url.strip()
    lower = url[:8].lower()
    if lower.startswith("data:"):
        return None, "url_data_uri"
    if not (lower.startswith("http://") or lower.startswith("https://")):
        return None, "url_not_http"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        return None, "url_invalid"
    if not host or any(c in url for c in " \t\r\n"):
        return None, "url_invalid"
    ascii_host = _ascii_host(host)
    if ascii_host is None:
        return None, "url_invalid_host"
    if ascii_host not in parts.netloc or not url.startswith(parts.scheme):
        host_part = f"[{ascii_host}]" if ":" in ascii_host else ascii_host
        netloc = host_part if port is None else f"{host_part}:{port}"
        if parts.username:
            netloc = f"{parts.username}{':' + parts.password if parts.password else ''}@{netloc}"
        url = urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, parts.fragment))
    ext = parts.path.rsplit("/", 1)[-1].rsplit(".", 1)
    if len(ext) == 2 and ext[1].lower() in skip_extensions:
        return None, "url_non_photo_extension"
    return url, ""


_hooks: dict[str, Callable[[str], bool]] = {}


def load_hook(path: str) -> Callable[[str], bool]:
    """Import a ``module:function`` language filter once per process."""
    if path not in _hooks:
        module, _, name = path.partition(":")
        _hooks[path] = getattr(importlib.import_module(module), name)
    return _hooks[path]


def clean_pair(url: str, caption: str, spec: FilterSpec) -> tuple[str, str, str]:
    """``(url, caption, "")`` for a kept pair or ``("", "", reason)``; see FILTER_REASONS."""
    if not is_encodable(caption) or not is_encodable(url):
        return "", "", "invalid_utf8"
    # Bound the work on huge alt texts before the (slower) clean-up touches them.
    if len(caption) > 4 * spec.max_chars + 64:
        return "", "", "caption_too_long"
    caption = clean_caption(caption)
    if not caption:
        return "", "", "caption_empty"
    if len(caption) < spec.min_chars:
        return "", "", "caption_too_short"
    if len(caption) > spec.max_chars:
        return "", "", "caption_too_long"
    url, reason = clean_url(url, spec.skip_extensions)
    if url is None:
        return "", "", reason
    if spec.language_filter and not load_hook(spec.language_filter)(caption):
        return "", "", "language"
    return url, caption, ""


# --- the same filters over an Arrow batch ---------------------------------------------------------

# Rows whose every check Arrow can make with the rules above: a printable-ASCII caption without
# '&' (no entity, no ftfy, only spaces as whitespace) and a URL with a lower-case ASCII host name
# that urlsplit and the host rule would leave as it is. Every other row goes through clean_pair.
_PLAIN_CAPTION = r"^[\x20-\x7e]*$"
_PORT = r"(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_PLAIN_URL = (
    r"^https?://(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}\.?(?::" + _PORT + r")?"
    r"(?:/[\x21\x22\x24-\x3e\x40-\x7e]*)?(?:[?#][\x21-\x7e]*)?$"
)
_LONG_HOST = r"^https?://[^/?#:]{254}"  # the host rule's 253-character limit
# (Regexes without capture groups: Arrow matches those with a DFA, many times faster.)


def _extension_regex(skip_extensions: tuple[str, ...]) -> str | None:
    """A regex matching plain URLs whose last path segment's extension is skipped.

    clean_url lower-cases the extension and compares it with each entry, so an entry with an
    upper-case letter never matches, nor one with a character that cannot end a plain URL's path.
    """
    usable = [
        e
        for e in skip_extensions
        if e == e.lower() and all("\x21" <= ch <= "\x7e" and ch not in "./?#" for ch in e)
    ]
    if not usable:
        return None
    alternatives = "|".join("".join(ch if ch.isalnum() else "\\" + ch for ch in e) for e in usable)
    return r"^https?://[^/?#]*(?:/[^?#]*)?/[^/?#]*\.(?i:" + alternatives + r")(?:[?#]|$)"


def _plain_rows(urls, captions) -> np.ndarray:
    """Rows that Arrow can clean exactly like clean_pair (see _PLAIN_URL)."""
    plain = pc.and_(
        pc.and_(
            pc.match_substring_regex(urls, _PLAIN_URL),
            pc.match_substring_regex(captions, _PLAIN_CAPTION),
        ),
        pc.invert(
            pc.or_(pc.match_substring(captions, "&"), pc.match_substring_regex(urls, _LONG_HOST))
        ),
    )
    return pc.fill_null(plain, False).to_numpy(zero_copy_only=False)


def _plain_reasons(urls, captions, spec: FilterSpec):
    """clean_pair's reason (an index into ("",) + FILTER_REASONS) and the cleaned caption, for
    rows :func:`_plain_rows` chose."""
    raw_len = pc.binary_length(captions).to_numpy()
    cleaned = captions
    while pc.any(pc.match_substring(cleaned, "  ")).as_py():  # runs of spaces -> one space
        cleaned = pc.replace_substring(cleaned, "  ", " ")
    cleaned = pc.utf8_trim(cleaned, " ")
    length = pc.binary_length(cleaned).to_numpy()
    code = np.zeros(len(raw_len), np.int8)
    # assigned last check first, so that each row keeps the first reason clean_pair gives
    extension = _extension_regex(spec.skip_extensions)
    if extension:
        bad = pc.match_substring_regex(urls, extension).to_numpy(zero_copy_only=False)
        code[bad] = _CODE["url_non_photo_extension"]
    code[length > spec.max_chars] = _CODE["caption_too_long"]
    code[length < spec.min_chars] = _CODE["caption_too_short"]
    code[length == 0] = _CODE["caption_empty"]
    code[raw_len > 4 * spec.max_chars + 64] = _CODE["caption_too_long"]
    return code, cleaned


_CODE = {reason: i for i, reason in enumerate(("",) + FILTER_REASONS)}


@dataclass(frozen=True)
class CleanBatch:
    """What :func:`clean_batch` kept: each kept row's index in the batch, URL and caption."""

    rows: object  # numpy int64
    urls: object  # pyarrow string array
    captions: object  # pyarrow string array
    removed: dict  # reason -> rows dropped for it


def clean_batch(urls, captions, spec: FilterSpec) -> CleanBatch:
    """:func:`clean_pair` over two aligned Arrow string arrays.

    Plain rows (see ``_PLAIN_URL``) are cleaned by Arrow, the rest one at a time by clean_pair;
    both give the same result for a plain row. Kept rows come plain rows first.
    """
    plain = _plain_rows(urls, captions)
    removed: dict = {}
    where = np.flatnonzero(plain)
    take = pa.array(where)
    code, cleaned = _plain_reasons(urls.take(take), captions.take(take), spec)
    if spec.language_filter:
        keep_language = load_hook(spec.language_filter)
        kept = np.flatnonzero(code == 0)
        for i, caption in zip(kept, cleaned.take(pa.array(kept)).to_pylist()):
            if not keep_language(caption):
                code[i] = _CODE["language"]
    for reason, n in zip(("",) + FILTER_REASONS, np.bincount(code, minlength=len(_CODE))):
        if reason and n:
            removed[reason] = int(n)
    kept = code == 0
    mask = pa.array(kept)
    rows, out_urls = [where[kept]], [urls.take(take).filter(mask)]
    out_captions = [cleaned.filter(mask)]
    rest = np.flatnonzero(~plain)
    if len(rest):
        kept_rows, kept_urls, kept_captions = [], [], []
        take = pa.array(rest)
        pairs = zip(urls.take(take).to_pylist(), captions.take(take).to_pylist())
        for i, (url, caption) in zip(rest.tolist(), pairs):
            url, caption, reason = clean_pair(url, caption, spec)
            if reason:
                removed[reason] = removed.get(reason, 0) + 1
            else:
                kept_rows.append(i)
                kept_urls.append(url)
                kept_captions.append(caption)
        rows.append(np.array(kept_rows, np.int64))
        out_urls.append(pa.array(kept_urls, pa.string()))
        out_captions.append(pa.array(kept_captions, pa.string()))
    return CleanBatch(
        np.concatenate(rows).astype(np.int64, copy=False),
        pa.concat_arrays(out_urls),
        pa.concat_arrays(out_captions),
        removed,
    )
