"""Pageview lines: format, project and namespace filters, title normalisation, per-hour minimum."""

import gzip

import pytest

from queries.pageviews import PageviewFilter, hour_views, read_hour_file, title_key


@pytest.mark.parametrize(
    "line, expected",
    [
        ("en Albert_Einstein 312 0", ("Albert Einstein", 312)),
        ("en.m Albert_Einstein 5 0", ("Albert Einstein", 5)),
        ("en caf%C3%A9_au_lait 7 0", ("Café au lait", 7)),  # percent-decoded, first letter upper
        ("en AC/DC 3 0", ("AC/DC", 3)),
        (
            "en Star_Wars:_Episode_IV 4 0",
            ("Star Wars: Episode IV", 4),
        ),  # a colon that is no namespace
        ("de Albert_Einstein 9 0", "other_project"),
        ("en.d word 9 0", "other_project"),  # Wiktionary
        ("en Special:Search 900 0", "excluded_namespace"),
        ("en User_talk:Someone 3 0", "excluded_namespace"),
        ("en talk:Paris 3 0", "excluded_namespace"),  # namespace names are case-insensitive
        ("en File:X.jpg 3 0", "excluded_namespace"),
        ("en Bad%FF%FE 3 0", "bad_title"),  # not UTF-8 after decoding
        ("en Paris 12", "malformed"),
        ("en Paris twelve 0", "malformed"),
        ("en  12 0", "malformed"),
        ("", "malformed"),
    ],
)
def test_parse(line, expected):
    assert PageviewFilter().parse(line) == expected


def test_configurable_projects_and_prefixes():
    flt = PageviewFilter(projects=["en"], excluded_prefixes=["Portal"])
    assert flt.parse("en.m Paris 3 0") == "other_project"
    assert flt.parse("en Special:Random 3 0") == ("Special:Random", 3)
    assert flt.parse("en Portal:Art 3 0") == "excluded_namespace"


def test_title_key():
    assert title_key("paris__france_") == "Paris france" and title_key("éclair") == "Éclair"


def test_hour_views_sum_projects_then_apply_hour_minimum():
    lines = [
        "en Paris 3 0",
        "en.m Paris 2 0",
        "en Rome 4 0",
        "en Oslo 1 0",
        "garbage",
        "fr Paris 100 0",
    ]
    views, stats = hour_views(lines, PageviewFilter(), hour_min=5)
    assert views == {"Paris": 5}  # 3 + 2 reaches 5; Rome (4) and Oslo (1) do not
    assert stats == {
        "pageview_line:kept": 4,
        "pageview_line:malformed": 1,
        "pageview_line:other_project": 1,
        "pageview_title:below_hour_min": 2,
    }
    assert hour_views(lines, PageviewFilter(), hour_min=1)[0] == {"Paris": 5, "Rome": 4, "Oslo": 1}


def test_read_gz_file_and_corrupt_gz(tmp_path):
    good = tmp_path / "pageviews-20240101-000000.gz"
    good.write_bytes(gzip.compress(b"en Paris 3 0\nen.m Paris 4 0\nen Bad\xff 1 0\n"))
    views, stats = read_hour_file(str(good), PageviewFilter(), 1)
    assert views == {"Paris": 7} and stats["pageview_line:malformed"] == 1
    bad = tmp_path / "pageviews-20240101-010000.gz"
    bad.write_bytes(good.read_bytes()[:15])
    views, stats = read_hour_file(str(bad), PageviewFilter(), 1)
    assert not views and stats == {"pageview_file:failed": 1, "pageview_file:failed:truncated": 1}
