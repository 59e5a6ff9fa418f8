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
import unicodedata
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import ftfy

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


def nfkc(text: str) -> str:
    """NFKC, skipping the work for ASCII text (already normal)."""
    return text if text.isascii() else unicodedata.normalize("NFKC", text)
