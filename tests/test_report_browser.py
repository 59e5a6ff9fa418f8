"""The report in a real browser: headless Chromium runs the page's script and paints its styles."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from pipeline.config import RunConfig
from pipeline.report import stage as report_stage
from pipeline.report.config import ReportConfig
from tests.test_report import build_filtered_run, build_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"
    ),
]
# no network features, no first-run UI, a throwaway profile: the page must render fully offline
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]  # fmt: skip


def chromium(tmp: Path, *args: str) -> str:
    """Run headless Chromium with a fresh profile; returns stdout."""
    profile = tmp / f"profile-{len(list(tmp.iterdir()))}"
    proc = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    build_run(out)
    report_stage.run(RunConfig(out=str(out)), ReportConfig(sample_grid=12))
    return out / "reports" / "index.html"


def table_rows(dom: str) -> list[list[str]]:
    body = re.search(r'<table id="qtable"[^>]*>.*?<tbody>(.*?)</tbody>', dom, flags=re.S).group(1)
    return [re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", body)]


def test_script_builds_the_query_table_sorted_by_matches(report, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", report.as_uri())
    assert re.search(r'<table id="qtable"[^>]*data-ready="1"', dom)
    rows = table_rows(dom)
    assert len(rows) == 17
    matches = [int(r[3].replace(",", "")) for r in rows]
    assert matches == sorted(matches, reverse=True) and rows[0][1] == "red"
    assert "showing 17 of 17 matching queries" in dom
    # 63-bit query ids must survive JavaScript exactly (as JSON numbers they would be rounded)
    data = json.loads((report.parent / "report.json").read_text())
    assert {r[0] for r in rows} == {str(r[0]) for r in data["table"]["rows"]}


def test_filter_from_the_url_hash_narrows_the_table(report, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", report.as_uri() + "#q=circle")
    rows = table_rows(dom)
    assert sorted(r[1] for r in rows) == ["blue circle", "circle", "green circle", "red circle"]
    assert "showing 4 of 4 matching queries" in dom


def test_screenshot_paints_the_styled_page(report, tmp_path):
    png = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={png}", "--window-size=1200,2400", report.as_uri())
    with Image.open(png) as im:
        assert im.size == (1200, 2400)
        rgb = im.convert("RGB")
        assert rgb.getpixel((5, 5)) == (0x17, 0x32, 0x4D)  # the header's background: CSS applied
        assert (
            len(rgb.resize((300, 600)).getcolors(1 << 16)) > 200
        )  # charts and text, not a blank page


@pytest.fixture(scope="module")
def filtered_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("filtered")
    build_filtered_run(out)
    report_stage.run(RunConfig(out=str(out)), ReportConfig(sample_grid=0))
    return out / "reports" / "index.html"


def test_filters_section_paints_its_groups_and_dropped_pairs(filtered_report, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", filtered_report.as_uri())
    section = re.search(r'<section id="filters">(.*?)</section>', dom, flags=re.S).group(1)
    kept = re.findall(r'<figure class="kept"><img src="data:image/jpeg', section)
    dropped = re.findall(r'<figure class="dropped"><img src="data:image/jpeg', section)
    assert len(kept) == 6 and len(dropped) > 12  # six planted groups, their copies, examples
    png = tmp_path / "filters.png"
    chromium(tmp_path, f"--screenshot={png}", "--window-size=1200,9000", filtered_report.as_uri())
    with Image.open(png) as im:
        colours = dict((c, n) for n, c in im.convert("RGB").getcolors(1 << 24))
    # the kept and dropped figures' backgrounds are painted, and so are the thumbnails in them
    assert (
        colours.get((0xF3, 0xFB, 0xF5), 0) > 6 * 1000
        and colours.get((0xFD, 0xF5, 0xF3), 0) > 12 * 1000
    )
    assert len(colours) > 5000
