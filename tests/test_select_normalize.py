"""Caption/URL normalisation and the filters, each with its reason."""

from __future__ import annotations

import pytest

from pipeline.select.normalize import FilterSpec, clean_caption, clean_pair, clean_url, uid_for

SPEC = FilterSpec(min_chars=5, max_chars=100)
SKIP = SPEC.skip_extensions


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("a &amp; b &lt;3", "a & b <3"),
        ("  lots \n of\t\tspace  ", "lots of space"),
        ("cafÃ© on the corner", "café on the corner"),  # mojibake repaired by ftfy
        ("â€œquotedâ€\x9d text", '"quoted" text'),  # ftfy also straightens quotes
        ("plain ascii", "plain ascii"),
        ("&nbsp;nbsp&nbsp;", "nbsp"),
    ],
)
def test_clean_caption(raw, clean):
    assert clean_caption(raw) == clean


@pytest.mark.parametrize(
    "url, expected, reason",
    [
        ("http://example.com/a.jpg", "http://example.com/a.jpg", ""),
        ("HTTPS://Example.com/a.JPG", "https://example.com/a.JPG", ""),
        (
            "http://bücher.example/b.jpg",
            "http://xn--bcher-kva.example/b.jpg",
            "",
        ),  # IDN -> punycode
        ("http://xn--bcher-kva.example/b.jpg", "http://xn--bcher-kva.example/b.jpg", ""),
        ("data:image/png;base64,AAAA", None, "url_data_uri"),
        ("ftp://example.com/a.jpg", None, "url_not_http"),
        ("javascript:alert(1)", None, "url_not_http"),
        ("/relative/a.jpg", None, "url_not_http"),  # readers resolve; a table's relative URL is bad
        ("http:///nohost.jpg", None, "url_invalid"),
        ("http://example.com:99999/a.jpg", None, "url_invalid"),
        ("http://exa mple.com/a.jpg", None, "url_invalid"),
        ("http://" + "a" * 70 + ".com/x.jpg", None, "url_invalid_host"),  # label over 63 chars
        ("http://\u00ad\u200b.example/x.jpg", None, "url_invalid_host"),
        ("http://example.com/logo.svg", None, "url_non_photo_extension"),
        ("http://example.com/anim.GIF", None, "url_non_photo_extension"),
        ("http://example.com/favicon.ico?v=2", None, "url_non_photo_extension"),
        ("http://example.com/svg/photo.jpg", "http://example.com/svg/photo.jpg", ""),
        ("http://[::1]:8080/a.jpg", "http://[::1]:8080/a.jpg", ""),
        ("http://user:pw@Host.example/a.jpg", "http://user:pw@host.example/a.jpg", ""),
    ],
)
def test_clean_url(url, expected, reason):
    assert clean_url(url, SKIP) == (expected, reason)


@pytest.mark.parametrize(
    "url, caption, reason",
    [
        ("http://e.com/a.jpg", "a fine caption", ""),
        ("http://e.com/a.jpg", "abc", "caption_too_short"),
        ("http://e.com/a.jpg", "x" * 101, "caption_too_long"),
        ("http://e.com/a.jpg", "x" * 1_000_000, "caption_too_long"),  # 1 MB alt text
        ("http://e.com/a.jpg", "   \n ", "caption_empty"),
        ("http://e.com/a.jpg", "bad \udcff bytes", "invalid_utf8"),  # lone surrogate
        (
            "http://e.com/a.jpg",
            "bad \ufffd bytes",
            "invalid_utf8",
        ),  # replacement char from decoding
        ("data:image/gif;base64,R0lGOD", "a fine caption", "url_data_uri"),
        ("http://e.com/a.svg", "a fine caption", "url_non_photo_extension"),
    ],
)
def test_clean_pair_reasons(url, caption, reason):
    assert clean_pair(url, caption, SPEC)[2] == reason


def keep_english(caption: str) -> bool:
    """A toy language filter used as a hook (module:function)."""
    return caption.isascii()


def test_language_hook():
    spec = FilterSpec(language_filter="tests.test_select_normalize:keep_english")
    assert clean_pair("http://e.com/a.jpg", "a red car", spec)[2] == ""
    assert clean_pair("http://e.com/a.jpg", "красная машина", spec)[2] == "language"


def test_uid_is_stable_and_depends_on_both_parts():
    uid = uid_for("http://e.com/a.jpg", "a cat")
    assert uid == uid_for("http://e.com/a.jpg", "a cat") and len(uid) == 32
    assert uid != uid_for("http://e.com/a.jpg", "a dog") != uid_for("http://e.com/b.jpg", "a cat")
    assert uid_for("ab", "c") != uid_for("a", "bc")  # the separator keeps the parts apart
