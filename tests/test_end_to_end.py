"""`make shards` end to end on the tiny demo world: every stage, the output layout, cheap re-runs,
and what the filter finds of the duplicates and foreign captions the world planted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]


def make_shards(out: Path, *args: str) -> subprocess.CompletedProcess:
    """The README's command, with the tiny world so it fits in a test."""
    venv = Path(sys.prefix)
    cmd = [
        "make",
        "-s",
        "shards",
        f"VENV={venv}",
        f"OUT={out}",
        "ARGS=--demo-size tiny " + " ".join(args),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def shards_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "out"
    first = make_shards(out)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return out, first


def test_layout_and_summary(shards_run):
    out, first = shards_run
    for rel in (
        "config.json",
        "world/manifest.json",
        "queries/queries.parquet",
        "queries/queries.txt",
        "queries/report.json",
        "reports/balance.json",
        "reports/select.json",
        "reports/download.json",
        "reports/index.html",
        "reports/report.json",
        "reports/filter.json",
        "world/planted.json",
        "filtered/manifest.json",
    ):
        assert (out / rel).is_file(), rel
    assert sorted(p.name for p in (out / "selection").glob("part-*.parquet"))
    tars = sorted((out / "shards").glob("[0-9][0-9][0-9][0-9][0-9].tar"))
    assert tars
    for tar in tars:
        assert tar.with_suffix(".parquet").is_file()
        assert (tar.parent / f"{tar.stem}_stats.json").is_file()
    summary = first.stdout
    assert "== wit shards: summary ==" in summary
    assert f"{out}/reports/index.html" in summary
    for stage in ("demo-world", "queries", "select", "download", "filter", "report"):
        assert f"[{stage}] running" in summary + first.stderr
    config = json.loads((out / "config.json").read_text())
    assert set(config) >= {"run", "demo_world", "queries", "select", "download", "filter", "report"}
    assert config["demo_world"]["demo_size"] == "tiny"


def test_every_selected_pair_is_accounted_for_once(shards_run):
    out, _ = shards_run
    selected = pq.read_table(out / "selection", columns=["uid"]).column("uid").to_pylist()
    attempted = []
    statuses = {}
    for path in sorted((out / "shards").glob("[0-9]*.parquet")):
        table = pq.read_table(path, columns=["uid", "status"]).to_pylist()
        attempted += [row["uid"] for row in table]
        for row in table:
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    assert sorted(attempted) == sorted(selected)
    assert len(set(attempted)) == len(attempted)
    assert statuses.get("success", 0) > 0.8 * len(selected)
    download = json.loads((out / "reports" / "download.json").read_text())
    assert json.dumps(download)  # readable, and its totals match the rows
    assert sum(statuses.values()) == len(selected)


def _filtered_rows(out: Path) -> list[dict]:
    """Every row of the filtered shards that was downloaded (kept or filtered)."""
    columns = ["uid", "url", "caption", "status", "duplicate_of", "language", "filter_reasons"]
    rows = []
    for path in sorted((out / "filtered").glob("[0-9]*.parquet")):
        rows += pq.read_table(path, columns=columns).to_pylist()
    return [r for r in rows if r["status"] in ("success", "filtered")]


def test_the_filter_finds_every_planted_duplicate_group_and_mixes_none(shards_run):
    """The demo world's planted groups (an image, its exact copies and its re-encoded, resized
    and trimmed copies, each at its own URL): every group whose every URL was downloaded is one
    group of the filter (with the look-alikes the demo also has), and no group of the filter
    holds two planted groups."""
    out, _ = shards_run
    planted = json.loads((out / "world" / "planted.json").read_text())["duplicates"]
    rows = _filtered_rows(out)
    group_of = {r["uid"]: r["duplicate_of"] or r["uid"] for r in rows}  # -> the group's keeper
    uids_at: dict[str, list[str]] = {}
    for r in rows:
        uids_at.setdefault(r["url"], []).append(r["uid"])
    planted_at = {m["url"]: g["image_id"] for g in planted for m in g["members"]}
    whole = 0
    for g in planted:
        urls = [m["url"] for m in g["members"]]
        if all(u in uids_at for u in urls):
            whole += 1
            keepers = {group_of[uid] for u in urls for uid in uids_at[u]}
            assert len(keepers) == 1, (g, keepers)
    assert whole >= 5, f"only {whole} of {len(planted)} planted groups were downloaded whole"
    planted_in: dict[str, set[int]] = {}
    for r in rows:
        if r["url"] in planted_at:
            planted_in.setdefault(group_of[r["uid"]], set()).add(planted_at[r["url"]])
    assert all(len(groups) == 1 for groups in planted_in.values())
    report = json.loads((out / "reports" / "filter.json").read_text())
    assert report["duplicates"]["groups"] >= whole


def test_the_planted_foreign_captions_get_their_language(shards_run):
    out, _ = shards_run
    foreign = json.loads((out / "world" / "planted.json").read_text())["languages"]
    rows = {(r["url"], r["caption"]): r for r in _filtered_rows(out)}
    found = [
        (f, rows[(f["url"], f["caption"])]) for f in foreign if (f["url"], f["caption"]) in rows
    ]
    assert {f["language"] for f, _ in found} == {"de", "es", "fr"}
    for f, r in found:
        assert r["language"] == f["language"], (f, r)
        assert r["status"] == "filtered" and "language_excluded" in r["filter_reasons"]
    page = (out / "reports" / "index.html").read_text()
    assert '<section id="filters">' in page and "the filter did not run" not in page


def test_rerun_skips_complete_stages(shards_run):
    out, _ = shards_run
    again = make_shards(out)
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in ("demo-world", "queries", "select", "download", "filter"):
        assert f"[{stage}] up to date, skipped" in again.stdout, again.stdout
        assert f"{stage:<11} skipped (up to date)" in again.stdout
    assert "[report] running" in again.stdout  # the report always re-renders from disk


def test_changed_config_reruns_from_that_stage(shards_run):
    out, _ = shards_run
    again = make_shards(out, "--cap", "5")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[queries] up to date, skipped" in again.stdout
    assert "[select] running" in again.stdout and "[download] running" in again.stdout
    balance = json.loads((out / "reports" / "balance.json").read_text())
    assert json.loads((out / "config.json").read_text())["select"]["cap"] == 5
    assert balance["global"]["matched"] > 0
    assert max(q["selected"] for q in balance["queries"]) <= 5  # exact mode honours the new cap
