"""The audit report: statistics, charts, collection from disk, HTML, and graceful gaps."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import stages
from pipeline.config import RunConfig
from pipeline.demo_world import scene
from pipeline.filter.config import FilterConfig
from pipeline.report import charts, collect, stats
from pipeline.report import stage as report_stage
from pipeline.report.config import ReportConfig
from tests.filter_helpers import demo_rows, train_tiny_checkpoint, write_shards

CAP = 12


def _query_id(q: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha1(q.encode()).digest()[:7], "big")


def _queries() -> list[dict]:
    rows = []
    words = list(scene.COLOURS)[:6] + list(scene.SHAPES)[:5]
    for i, w in enumerate(words):
        rows.append(
            {
                "query": w,
                "source": "wiki_unigram",
                "sources": ["wiki_unigram", "wordnet"] if i % 2 else ["wiki_unigram"],
            }
        )
    for c in list(scene.COLOURS)[:3]:
        rows.append({"query": f"{c} circle", "source": "wiki_bigram", "sources": ["wiki_bigram"]})
    for q in ("zebra crossing", "aardvark", "quantum flux"):  # never match anything
        rows.append({"query": q, "source": "wordnet", "sources": ["wordnet"]})
    for rank, r in enumerate(rows):
        r.update(
            query_id=_query_id(r["query"]),
            count=100 - rank,
            pmi=None,
            views=None,
            synsets=[],
            rank=rank,
        )
    return rows


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def build_run(out: Path, seed: int = 0) -> dict:
    """A run directory laid out as the stages write it: real Parquet, real tar shards with images."""
    queries = _queries()
    (out / "queries").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(queries), out / "queries" / "queries.parquet")
    write_json(
        out / "queries" / "report.json",
        {"sources": {"wiki_unigram": 11, "wordnet": 8}, "examples": ["red"]},
    )
    # matches fall off like a power law; the last three queries match nothing
    per_query = []
    for i, q in enumerate(queries):
        matches = (
            0
            if q["query"] in ("zebra crossing", "aardvark", "quantum flux")
            else int(60 / (i + 1)) + 1
        )
        per_query.append(
            {
                "query_id": q["query_id"],
                "query": q["query"],
                "matches": matches,
                "selected": min(matches, CAP),
                "expected": min(matches, CAP),
            }
        )
    write_json(
        out / "reports" / "balance.json",
        {"queries": per_query, "global": {"pairs_in": 500, "matched": 180, "cap": CAP}},
    )
    write_json(out / "reports" / "select.json", {"filters": {"too_short": 7, "bad_url": 3}})
    downloaded = _write_shards(out, queries, seed)
    write_json(
        out / "reports" / "download.json",
        {"by_status": {"success": 40}, "bytes": 123456, "seconds": 2.5},
    )
    write_json(
        out / "config.json",
        {"run": {"seed": seed}, "select": {"cap": CAP}, "queries": {"min_count": 20}},
    )
    for sub, name in (
        ("world", "demo-world"),
        ("queries", "queries"),
        ("selection", "select"),
        ("shards", "download"),
    ):
        write_json(
            out / sub / "_SUCCESS.json",
            {
                "stage": name,
                "fingerprint": "abc",
                "started_at": "2026-01-01T00:00:00Z",
                "seconds": 1.5,
                "seed": seed,
                "runner": "local",
                "workers": 2,
                "config": {},
                "versions": {"python": "3.11"},
                "summary": {"rows": 1},
            },
        )
    return {"queries": queries, "per_query": per_query, "downloaded": downloaded}


def _write_shards(out: Path, queries: list[dict], seed: int) -> Counter:
    """Two shards; every 4th sample fails. Returns successes per query id."""
    shard_dir = out / "shards"
    shard_dir.mkdir(parents=True)
    downloaded: Counter = Counter()
    colours, shapes = list(scene.COLOURS)[:6], list(scene.SHAPES)[:5]
    by_text = {q["query"]: q["query_id"] for q in queries}
    for shard in range(2):
        rows, buf = [], io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for j in range(24):
                n = shard * 24 + j
                key = f"{shard:05d}{j:04d}"
                matched = [colours[n % 6], shapes[n % 5]]
                ok = j % 4 != 3
                row = {
                    "key": key,
                    "url": f"http://127.0.0.1:{8000 + n % 3}/img/{n}.jpg",
                    "caption": f"a {matched[0]} {matched[1]}",
                    "status": "success" if ok else "failed_to_download",
                    "error_message": None if ok else "http 404",
                    "width": 64 if ok else None,
                    "height": 48 if ok else None,
                    "original_width": 400 + n if ok else None,
                    "original_height": 300 if ok else None,
                    "sha256": None,
                    "uid": f"{n:016x}",
                    "matched_queries": matched,
                    "selected_for": [by_text[m] for m in matched],
                }
                rows.append(row)
                if ok:
                    downloaded.update(row["selected_for"])
                    data = scene.encode(
                        scene.render(scene.scene_for(n, seed), n, seed).resize((64, 48)), "jpg"
                    )
                    for name, payload in (
                        (f"{key}.jpg", data),
                        (f"{key}.txt", row["caption"].encode()),
                    ):
                        info = tarfile.TarInfo(name)
                        info.size = len(payload)
                        tar.addfile(info, io.BytesIO(payload))
        (shard_dir / f"{shard:05d}.tar").write_bytes(buf.getvalue())
        pq.write_table(pa.Table.from_pylist(rows), shard_dir / f"{shard:05d}.parquet")
        write_json(
            shard_dir / f"{shard:05d}_stats.json",
            {"count": 24, "successes": 18, "failed_to_download": 6, "duration": 1.0},
        )
    return downloaded


def build_filtered_run(out: Path, checkpoint: str = "") -> dict:
    """A run whose shards hold planted duplicates, captions in other languages and failures
    (tests/filter_helpers.py), filtered by the real filter stage through the stage registry (so
    its marker is written too); with a checkpoint, the CLIP score keeps the top half. Returns
    the truth about what was planted."""
    ids = [q["query_id"] for q in build_run(out)["queries"]]
    names = {q["query_id"]: q["query"] for q in _queries()}
    rows, truth = demo_rows(12)
    for r in rows:
        r["selected_for"] = r["matched_query_ids"] = [ids[q] for q in r["selected_for"]]
        r["matched_queries"] = [names[q] for q in r["selected_for"]]
    marker = (out / "shards" / "_SUCCESS.json").read_text()
    shutil.rmtree(out / "shards")
    write_shards(str(out), rows, 16)
    (out / "shards" / "_SUCCESS.json").write_text(marker)
    cfg = FilterConfig(
        languages=["en", "und"], reshard_samples=10, clip=bool(checkpoint),
        clip_weights=checkpoint, clip_top_fraction=0.5 if checkpoint else 1.0,
    )  # fmt: skip
    stages.execute("filter", RunConfig(out=str(out), workers=1, progress=False), cfg, echo=str)
    return truth


@pytest.fixture(scope="module")
def filtered(tmp_path_factory, one_torch_thread_module):
    out = tmp_path_factory.mktemp("filtered")
    checkpoint = str(tmp_path_factory.mktemp("ckpt") / "checkpoint.pt")
    train_tiny_checkpoint(checkpoint)
    truth = build_filtered_run(out, checkpoint)
    summary = report_stage.run(RunConfig(out=str(out)), ReportConfig(sample_grid=4))
    return out, truth, summary


def _section(page: str, sid: str) -> str:
    return re.search(rf'<section id="{sid}">(.*?)</section>', page, flags=re.S).group(1)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    truth = build_run(out)
    summary = report_stage.run(RunConfig(out=str(out)), ReportConfig(sample_grid=10))
    return out, truth, summary


# --- statistics --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "counts, expected",
    [([5, 5, 5, 5], 0.0), ([0, 0, 0, 10], 0.75), ([1, 2, 3, 4], 0.25), ([], 0.0), ([0, 0], 0.0)],
)
def test_gini(counts, expected):
    assert stats.gini(counts) == pytest.approx(expected)


def test_top_share_takes_at_least_one_query():
    assert stats.top_share([10, 0, 0, 0], 0.01) == 1.0
    assert stats.top_share(list(range(1, 201)), 0.01) == pytest.approx(
        (200 + 199) / sum(range(1, 201))
    )


def test_lorenz_runs_from_origin_to_one_and_stays_under_the_diagonal():
    curve = stats.lorenz([1, 1, 2, 8, 100], points=50)
    assert curve[0] == (0.0, 0.0) and curve[-1] == (1.0, 1.0)
    assert all(y <= x + 1e-9 for x, y in curve)


def test_rank_series_is_log_spaced_descending_and_drops_zeros():
    counts = [0, 0] + list(range(1, 10001))
    series = stats.rank_series(counts, points=50)
    assert series[0] == (1, 10000) and series[-1] == (10000, 1)
    assert len(series) <= 50
    assert all(a[1] >= b[1] for a, b in zip(series, series[1:]))


def test_histogram_counts_every_value():
    bins = stats.histogram([1, 2, 3, 10, 100, 1000], bins=4, log=True)
    assert sum(b["count"] for b in bins) == 6
    assert bins[0]["lo"] == 1 and bins[-1]["hi"] == pytest.approx(1000)


# --- charts ------------------------------------------------------------------------------------


def test_charts_are_well_formed_svg_with_labelled_axes():
    series = [charts.Series("matches", [(1, 1000), (10, 100), (100, 3)], "#f00")]
    svg = charts.xy_chart(series, "rank", "query rank", "pairs", x_log=True, y_log=True)
    root = ET.fromstring(svg)
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "query rank" in texts and "pairs" in texts and "matches" in texts
    assert {"1", "10", "100", "1k"} <= set(texts)  # decade ticks on both log axes
    for svg in (
        charts.hbar_chart([("a<b", 3), ("c", 1)], "bars"),
        charts.histogram_chart(stats.histogram([1, 2, 3]), "h", "x"),
        charts.xy_chart([], "empty", "x", "y"),
    ):
        ET.fromstring(svg)


@pytest.mark.parametrize("lo, hi", [(0, 1), (0, 97), (3, 12000), (0.2, 0.9)])
def test_nice_ticks_cover_the_range_with_round_steps(lo, hi):
    ticks = charts.nice_ticks(lo, hi)
    assert 3 <= len(ticks) <= 12
    assert ticks[0] >= lo - 1e-9 and ticks[-1] <= hi + 1e-9
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1


# --- the report from a complete run ------------------------------------------------------------


def test_report_json_accounts_for_every_row(rendered):
    out, truth, summary = rendered
    data = json.loads((out / "reports" / "report.json").read_text())
    assert summary["queries"] == len(truth["queries"]) == data["table"]["total"]
    rows = {r[0]: r for r in data["table"]["rows"]}
    for q in truth["per_query"]:
        row = rows[q["query_id"]]
        assert (row[3], row[4]) == (q["matches"], q["selected"])
        assert row[5] == truth["downloaded"].get(q["query_id"], 0)
    d = data["download"]
    assert (d["attempted"], d["success"], d["shards"]) == (48, 36, 2)
    assert d["by_status"] == {"success": 36, "failed_to_download": 12}
    assert d["by_reason"] == {"http 404": 12}
    assert sum(h["attempts"] for h in d["by_host"]) == 48
    b = data["balance"]
    assert b["zero_match"]["count"] == 3
    assert b["summary"]["matches"]["gini"] == pytest.approx(
        stats.gini([q["matches"] for q in truth["per_query"] if q["matches"]]), abs=1e-4
    )
    assert (
        b["summary"]["selected"]["gini"] < b["summary"]["matches"]["gini"]
    )  # the cap evens things out
    assert b["over_cap"] == 0 and b["expected_gap"]["max_abs"] == 0
    assert data["queries"]["by_any_source"]["wordnet"] == 8 and data["queries"]["multi_source"] == 5


def test_html_is_self_contained_with_embedded_thumbnails(rendered):
    out, _, summary = rendered
    page = (out / "reports" / "index.html").read_text()
    assert summary["samples_shown"] == 10
    assert len(re.findall(r'<img src="data:image/jpeg;base64,', page)) == 10
    # nothing is fetched from anywhere when the page opens
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<link" not in page
    for sid in ("queries", "balance", "table", "download", "samples", "filters", "lineage"):
        assert f'<section id="{sid}">' in page
    assert "not run yet" not in page
    assert "Filters: the filter did not run" in page  # an optional stage, not run here
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.S):
        ET.fromstring(svg)
    assert "red circle" in page and "http 404" in page


def test_report_of_an_empty_run_says_what_has_not_run(tmp_path):
    summary = report_stage.run(RunConfig(out=str(tmp_path)), ReportConfig())
    page = (tmp_path / "reports" / "index.html").read_text()
    assert summary["sections_not_run"] == ["queries", "balance", "download"]
    assert page.count("not run yet") == 3 and "the filter did not run" in page
    assert "wit select" in page and "not run" in page


def test_report_with_only_queries_fills_the_table_and_marks_the_rest(tmp_path):
    build_run(tmp_path)
    for p in [
        *(tmp_path / "shards").iterdir(),
        tmp_path / "reports" / "balance.json",
        tmp_path / "reports" / "download.json",
    ]:
        p.unlink()
    report_stage.run(RunConfig(out=str(tmp_path)), ReportConfig())
    data = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert (
        data["queries"]["available"]
        and not data["balance"]["available"]
        and not data["download"]["available"]
    )
    assert data["table"]["total"] == 17 and all(
        r[3] is None and r[5] is None for r in data["table"]["rows"]
    )


def test_table_rows_limits_the_embedded_table_to_the_largest_queries(tmp_path):
    build_run(tmp_path)
    report_stage.run(RunConfig(out=str(tmp_path)), ReportConfig(table_rows=5, sample_grid=0))
    data = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert len(data["table"]["rows"]) == 5 and data["table"]["total"] == 17
    assert [r[3] for r in data["table"]["rows"]] == sorted(
        (r[3] for r in data["table"]["rows"]), reverse=True
    )


def test_downloaded_counts_fall_back_to_matched_query_text():
    shards = pa.table(
        {"status": ["success", "success", "error"], "matched_queries": [["a", "b"], ["a"], ["a"]]}
    )
    assert collect.downloaded_per_query(shards, {"a": 1, "b": 2}) == {1: 2, 2: 1}


def test_wit_report_command(tmp_path):
    from pipeline.cli import main

    build_run(tmp_path)
    assert main(["report", "--out", str(tmp_path), "--sample-grid", "4", "--no-progress"]) == 0
    assert (tmp_path / "reports" / "index.html").stat().st_size > 10_000
    assert main(["report", "--out", str(tmp_path), "--thumbnail-px", "5"]) == 2


@pytest.mark.parametrize(
    "balance",
    [
        {"queries": [{"query_id": 7, "query": "red", "matches": 5, "selected": 3, "expected": 3}]},
        {"per_query": {"7": {"query": "red", "count": 5, "after": 3}}},
        {"rows": [{"id": 7, "text": "red", "matched": 5, "selected": 3}], "global": {"cap": 3}},
    ],
)
def test_balance_counts_read_the_known_layouts(balance):
    counts = collect.balance_counts(balance)
    assert {q: (c["query"], c["matches"], c["selected"]) for q, c in counts.items()} == {
        7: ("red", 5, 3)
    }


# --- the filters section -----------------------------------------------------------------------


def test_filters_section_shows_each_duplicate_group_with_thumbnails(filtered):
    out, truth, summary = filtered
    data = json.loads((out / "reports" / "report.json").read_text())["filters"]
    source = json.loads((out / "reports" / "filter.json").read_text())
    assert data["available"] and data["note"] is None
    assert (
        data["totals"] == source["totals"] and summary["kept_by_filters"] == data["totals"]["kept"]
    )
    planted = {frozenset(g) for g in truth["exact"] + truth["near"]}
    shown = {frozenset(m["uid"] for m in g["members"]) for g in data["groups"]}
    assert shown == planted  # the six planted groups, each whole (all are under the limits)
    for g in data["groups"]:
        verdicts = [m["verdict"] for m in g["members"]]
        exact = frozenset(m["uid"] for m in g["members"]) in map(frozenset, truth["exact"])
        assert verdicts == ["kept"] + ["exact copy" if exact else "near copy"] * (g["size"] - 1)
        assert all(m["caption"] for m in g["members"])
    page = (out / "reports" / "index.html").read_text()
    section = _section(page, "filters")
    members = sum(len(g["members"]) for g in data["groups"])
    examples = sum(len(v) for v in data["examples"].values())
    assert len(re.findall(r'<img src="data:image/jpeg;base64,', section)) == members + examples
    assert "image not found" not in section
    assert "data:image" not in json.dumps(data)  # thumbnails live in the HTML only


def test_filters_section_shows_dropped_pairs_languages_and_query_losses(filtered):
    out, truth, _ = filtered
    data = json.loads((out / "reports" / "report.json").read_text())["filters"]
    examples = data["examples"]
    assert {e["uid"] for e in examples["language_excluded"]} == set(truth["foreign"])
    assert all(e["language"] == truth["foreign"][e["uid"]] for e in examples["language_excluded"])
    assert set(examples) >= {"duplicate_exact", "duplicate_near", "clip_score_not_in_top"}
    section = _section((out / "reports" / "index.html").read_text(), "filters")
    for code in truth["foreign"].values():
        assert f"<td>{code}</td>" in section
    lost = data["queries"]["most_lost"]
    assert lost and all(q["query"] for q in lost)  # named from queries.parquet
    losses = [q["downloaded"] - q["kept"] for q in lost]
    assert losses == sorted(losses, reverse=True)
    assert all(q["downloaded"] - q["kept"] == sum(q["lost"].values()) for q in lost)
    assert data["queries"]["with_losses"] == len(lost) <= data["queries"]["with_downloads"]


def test_clip_histogram_counts_every_scored_pair_and_marks_the_threshold(filtered):
    out, _, _ = filtered
    clip = json.loads((out / "reports" / "report.json").read_text())["filters"]["clip"]
    assert clip["enabled"] and sum(b["count"] for b in clip["histogram"]) == clip["scored"] > 0
    section = _section((out / "reports" / "index.html").read_text(), "filters")
    svgs = [ET.fromstring(svg) for svg in re.findall(r"<svg.*?</svg>", section, flags=re.S)]
    titles = [svg.find("{http://www.w3.org/2000/svg}title").text for svg in svgs]
    chart = svgs[titles.index("CLIP image-text score of every scored pair")]
    texts = [t.text for t in chart.iter("{http://www.w3.org/2000/svg}text")]
    assert f"top 50.0%: {clip['top_threshold']:.3f}" in texts
    dashed = [
        ln for ln in chart.iter("{http://www.w3.org/2000/svg}line") if ln.get("stroke-dasharray")
    ]
    assert len(dashed) == 1


def test_a_filter_report_older_than_the_shards_is_marked(filtered, tmp_path):
    src, _, _ = filtered
    out = tmp_path / "out"
    shutil.copytree(src, out)
    marker = out / "shards" / "_SUCCESS.json"
    write_json(marker, {**json.loads(marker.read_text()), "started_at": "2999-01-01T00:00:00Z"})
    report_stage.run(RunConfig(out=str(out)), ReportConfig(sample_grid=0))
    section = _section((out / "reports" / "index.html").read_text(), "filters")
    assert "downloaded again after the filter ran" in section


def test_histogram_markers_sit_at_their_values():
    bins = [{"lo": i / 10, "hi": (i + 1) / 10, "count": i} for i in range(10)]
    svg = ET.fromstring(charts.histogram_chart(bins, "h", "x", markers=((0.5, "half"),)))
    line = next(
        ln for ln in svg.iter("{http://www.w3.org/2000/svg}line") if ln.get("stroke-dasharray")
    )
    left, right = 64, 560 - 18
    assert float(line.get("x1")) == pytest.approx((left + right) / 2, abs=0.1)
