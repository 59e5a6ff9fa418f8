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


# -- the Arrow batch path: the same reasons, URLs and captions as clean_pair, row by row ----------

HOSTS = ["e.com", "E.com", "a..b", "e.com.", "xn--bcher-kva.example", "bücher.de", "[::1]", "[::1",
         "h_1-2.x", "a" * 64 + ".com", "abc." * 70 + "com", "127.0.0.1", "", "u:p@e.com",
         "e.com:80", "e.com:65535", "e.com:65536", "e.com:00080", "e.com:", "e.com:x", "-a.com"]  # fmt: skip
PATHS = ["", "/", "/x.jpg", "/x.SVG", "/a.svg/b", "/.svg", "/x.", "/x.gif?y=1", "/x?a.svg",
         "/x#a.svg", "/a b.jpg", "/ä.jpg", "/x.svgz", "?q", "#f", "/x.jpg?.svg", "/%20.jpg",
         "/x\t.jpg", "/x.ico#", "/x..svg", "/a/b/c.PdF", "/x.s+g"]  # fmt: skip
SCHEMES = ["http://", "https://", "HTTP://", "Https://", "ftp://", "data:", "http:/", " http://",
           "javascript:"]  # fmt: skip
CAPTIONS = ["a cat on a mat", "  spaced   out  ", "x", "", "    ", "a &amp; b", "café au lait",
            "tab\there", "ctrl\x01char", "x" * 1200, "y" * 4065, "y" * 4064, "ok caption",
            "\u00a0nbsp\u00a0", "ﬁne", "line\nbreak", "12345", "1234", "mojibake cafÃ©"]  # fmt: skip


def _rows(n: int, seed: int) -> tuple[list[str], list[str]]:
    import random

    rng = random.Random(seed)
    urls, captions = [], []
    for _ in range(n):
        if rng.random() < 0.5:  # mostly rows Arrow can clean (ASCII, a lower-case host)
            url = rng.choice(SCHEMES[:2]) + rng.choice(["e.com", "h_1-2.x", "e.com:80"])
            urls.append(url + rng.choice(PATHS[:10]))
            captions.append(rng.choice(CAPTIONS[:5] + CAPTIONS[9:13]))
            continue
        tail = rng.choice(["", "", " ", "\x7f", "é"])
        urls.append(rng.choice(SCHEMES) + rng.choice(HOSTS) + rng.choice(PATHS) + tail)
        captions.append(rng.choice(CAPTIONS) + rng.choice(["", "", " ", "  x", "&", "\x7f", "é"]))
    return urls, captions


@pytest.mark.parametrize(
    "spec",
    [
        FilterSpec(),
        SPEC,
        FilterSpec(min_chars=0, max_chars=3, skip_extensions=("svg", "", "jpg?", "S+G", "s+g")),
        FilterSpec(language_filter="tests.test_select_normalize:keep_english"),
    ],
)
def test_clean_batch_is_clean_pair_row_by_row(spec):
    import pyarrow as pa

    from pipeline.select.normalize import _plain_rows, clean_batch

    urls, captions = _rows(6000, seed=len(spec.skip_extensions) + spec.max_chars)
    want = [clean_pair(u, c, spec) for u, c in zip(urls, captions)]
    got = clean_batch(pa.array(urls), pa.array(captions), spec)
    removed: dict = {}
    for _, _, reason in want:
        if reason:
            removed[reason] = removed.get(reason, 0) + 1
    assert got.removed == removed
    kept = {i: (u, c) for i, (u, c, reason) in enumerate(want) if not reason}
    assert dict(zip(got.rows.tolist(), zip(got.urls.to_pylist(), got.captions.to_pylist()))) == kept
    assert len(kept) > 100 and len(removed) >= 5  # many reasons were exercised
    plain = _plain_rows(pa.array(urls), pa.array(captions))
    assert 500 < plain.sum() < len(urls)  # and both paths: Arrow's and clean_pair's
