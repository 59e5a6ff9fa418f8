"""``wit select`` end to end: accounting, caps, determinism across workers and runs, config errors."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.config import ConfigError, RunConfig
from pipeline.demo_world import scene, stand_in
from pipeline.select import stage
from pipeline.select.config import SelectConfig
from tests.select_helpers import img, write_queries, write_wat

WORDS = ["cat", "dog", "red car", "tree", "house", "blue sky", "bird", "flower", "boat", "lamp"]
FILLER = ["a", "the", "photo", "of", "with", "near", "small", "big", "old"]


def _caption(rng: random.Random) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(1, 4))]
    for _ in range(rng.choice((0, 1, 1, 2))):
        words.insert(rng.randrange(len(words) + 1), rng.choice(WORDS[: rng.choice((2, 4, 10))]))
    return " ".join(words)


def make_inputs(root: Path, pages: int = 240) -> tuple[list[str], list[str], Path]:
    """Two WAT files and two tables with skewed query popularity, noise and duplicates."""
    rng = random.Random(5)
    page_list = []
    for i in range(pages):
        links = [img(f"/img/{i}/{j}.jpg", _caption(rng)) for j in range(8)]
        links += [
            img("/logo.svg", "the site logo"),
            img(f"/img/{i}/x.jpg"),
            img("data:image/gif;base64,AA", "a dog"),
        ]
        links.append(
            img("//cdn.example.org/shared.jpg", "a cat photo")
        )  # the same pair on every page
        page_list.append(
            (f"http://site{i % 9}.example/p/{i}.html", links, "/" if i % 4 == 0 else None)
        )
    write_wat(root / "a.warc.wat.gz", page_list[: pages // 2], raw_payloads=[b"{oops"])
    write_wat(root / "b.warc.wat.gz", page_list[pages // 2 :])
    with open(root / "cc.tsv", "w") as f:
        for i in range(300):
            f.write(f"http://tbl.example/{i}.jpg\t{_caption(rng)} &amp; more\n")
    with open(root / "t.jsonl", "w") as f:
        for i in range(200):
            f.write(
                json.dumps({"url": f"http://jl.example/{i}.jpg", "caption": _caption(rng)}) + "\n"
            )
        f.write("not json\n")
    queries = write_queries(root / "queries.parquet", WORDS + ["never matched"])
    return [str(root / "*.warc.wat.gz")], [str(root / "cc.tsv"), str(root / "t.jsonl")], queries


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("select_inputs"))


def config(inputs, **kw) -> SelectConfig:
    wat, tables, queries = inputs
    return SelectConfig(wat=wat, tables=tables, queries_file=str(queries), spill_buckets=4, **kw)


def selection(out: Path) -> list[dict]:
    rows = []
    for part in sorted((out / "selection").glob("part-*.parquet")):
        table = pq.read_table(part).to_pylist()
        assert [r["uid"] for r in table] == sorted(r["uid"] for r in table)
        rows += table
    return rows


def part_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "selection").glob("part-*.parquet"))}


def check_accounting(report: dict) -> None:
    for steps in [report["steps"], *[f["steps"] for f in report["files"]]]:
        for step in steps:
            assert step["in"] == step["out"] + sum(step["removed"].values()), step
        for before, after in zip(steps, steps[1:]):
            assert before["out"] == after["in"]
    for i, name in enumerate(("read", "filter", "match")):
        assert report["steps"][i]["in"] == sum(f["steps"][i]["in"] for f in report["files"]), name


@pytest.fixture(scope="module")
def probabilistic_runs(inputs, tmp_path_factory):
    """The same inputs and seed: workers=1 twice, then workers=2."""
    outs = []
    for workers in (1, 1, 2):
        out = tmp_path_factory.mktemp(f"prob_w{workers}")
        summary = stage.run(
            RunConfig(out=str(out), workers=workers, seed=3),
            config(inputs, cap=12, selection_shard_rows=40),
        )
        outs.append((out, summary))
    return outs


def test_byte_identical_across_runs_and_worker_counts(probabilistic_runs):
    (a, sa), (b, _), (c, _) = probabilistic_runs
    assert sa["selected"] > 0 and sa["selection_files"] > 1
    assert part_bytes(a) == part_bytes(b) == part_bytes(c)
    for name in ("select.json", "balance.json"):
        assert (a / "reports" / name).read_text() == (c / "reports" / name).read_text()
    assert not (a / "selection" / "_work").exists()


def test_accounting_adds_up_with_reasons(probabilistic_runs):
    out, summary = probabilistic_runs[0]
    report = json.loads((out / "reports" / "select.json").read_text())
    check_accounting(report)
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["read"]["removed"] == {"link_missing_alt": 240, "row_bad_json": 1}
    assert steps["filter"]["removed"]["url_non_photo_extension"] == 240
    assert steps["filter"]["removed"]["url_data_uri"] == 240
    assert steps["match"]["removed"]["no_query_match"] > 0
    assert (
        steps["dedup"]["removed"]["duplicate_uid"] >= 239
    )  # the shared image, found on every page
    assert report["errors"] == {"wat_bad_json": 1}
    assert steps["balance"]["out"] == summary["selected"] == len(selection(out))


def test_probabilistic_selection_agrees_with_balance_report(probabilistic_runs):
    out, _ = probabilistic_runs[0]
    rows = selection(out)
    bal = json.loads((out / "reports" / "balance.json").read_text())
    attributed: Counter = Counter()
    for r in rows:
        assert set(r["selected_for"]) <= set(r["matched_query_ids"]) and r["selected_for"]
        assert len(r["matched_queries"]) == len(r["matched_query_ids"])
        attributed.update(r["selected_for"])
    per_query = {q["query_id"]: q for q in bal["queries"]}
    for qid, q in per_query.items():
        assert q["selected"] == attributed[qid]
        if q["matches"] <= 12:
            assert q["selected"] == q["matches"]  # under the cap: all kept
        else:
            assert abs(q["selected"] - q["expected"]) <= 5 * q["sigma"] + 1e-9
    g = bal["global"]
    assert g["queries"] == len(WORDS) + 1 and g["queries_zero_matches"] == 1
    assert bal["zero_match_queries_sample"] == ["never matched"]
    assert g["gini_after"] < g["gini_before"]


def test_exact_mode_honours_the_cap_and_oversample(inputs, tmp_path):
    stage.run(
        RunConfig(out=str(tmp_path), workers=1),
        config(inputs, cap=10, mode="exact", oversample=1.5),
    )
    attributed: Counter = Counter()
    for r in selection(tmp_path):
        attributed.update(r["selected_for"])
    bal = json.loads((tmp_path / "reports" / "balance.json").read_text())
    for q in bal["queries"]:
        assert q["selected"] == attributed[q["query_id"]] == min(q["matches"], 15)
    assert any(q["matches"] > 15 for q in bal["queries"])


def test_config_errors_before_any_work(inputs, tmp_path):
    wat, tables, queries = inputs
    run = RunConfig(out=str(tmp_path))
    with pytest.raises(ConfigError) as e:
        stage.run(run, SelectConfig(wat=wat))  # no queries.parquet under out/
    assert e.value.key == "select.queries_file" and "queries stage" in str(e.value)
    with pytest.raises(ConfigError) as e:
        stage.run(
            run, SelectConfig(wat=[str(tmp_path / "missing-*.wat.gz")], queries_file=str(queries))
        )
    assert e.value.key == "select.wat"
    with pytest.raises(ConfigError) as e:
        stage.run(run, SelectConfig(queries_file=str(queries)))  # no inputs
    assert e.value.key == "select.wat" and "--wat or --tables" in str(e.value)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    for path in (bad, write_queries(tmp_path / "empty.parquet", [])):
        with pytest.raises(ConfigError) as e:
            stage.run(run, SelectConfig(wat=wat, queries_file=str(path)))
        assert e.value.key == "select.queries_file"
    assert not (tmp_path / "selection").exists()
    with pytest.raises(ConfigError) as e:
        SelectConfig(language_filter="no_such_module:f").validate()
    assert e.value.key == "select.language_filter"


@pytest.mark.slow
def test_tiny_demo_world(tiny_out):
    queries = (
        list(scene.COLOURS) + list(scene.SHAPES) + ["red circle", "blue square", "two", "three"]
    )
    write_queries(tiny_out / "queries" / "queries.parquet", queries)
    files = stand_in.inputs(str(tiny_out / "world"))  # as `wit shards` gives them
    select = SelectConfig(cap=20, mode="exact", wat=files["wat"], tables=files["tables"])
    summary = stage.run(RunConfig(out=str(tiny_out), workers=1), select)
    report = json.loads((tiny_out / "reports" / "select.json").read_text())
    check_accounting(report)
    sources = {Path(f["source_file"]).parent.name for f in report["files"]}
    assert sources == {"wat", "tables"}
    assert summary["selected"] > 0 and summary["matched"] > summary["selected"]
    attributed: Counter = Counter()
    for r in selection(tiny_out):
        attributed.update(r["selected_for"])
        assert r["url"].startswith(("http://", "https://"))
    assert max(attributed.values()) <= 20
    removed = {s["step"]: s["removed"] for s in report["steps"]}
    assert (
        removed["filter"].get("url_data_uri", 0) > 0
        and removed["dedup"].get("duplicate_uid", 0) > 0
    )


def test_automatic_spill_buckets_follow_the_input_size(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.select import stage

    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"url": ["u"] * 1000, "caption": ["c"] * 1000}), table)
    tsv = tmp_path / "t.tsv"
    tsv.write_bytes(b"x" * 5_000)
    wat = tmp_path / "a.warc.wat.gz"
    wat.write_bytes(b"x" * 13_000)
    paths = [str(table), str(tsv), str(wat)]
    assert stage.estimated_candidates(paths) == 1000 + 50 + 10  # exact, 100 B/row, 1.3 KB/link
    assert stage.spill_buckets(SelectConfig(), paths) == stage.MIN_BUCKETS
    monkeypatch.setattr(stage, "ROWS_PER_BUCKET", 10)
    assert stage.spill_buckets(SelectConfig(), paths) == 106  # one bucket per 10 candidates
    assert stage.spill_buckets(SelectConfig(spill_buckets=5), paths) == 5  # explicit wins
    monkeypatch.setattr(stage, "MAX_BUCKETS", 50)
    assert stage.spill_buckets(SelectConfig(), paths) == 50
    assert stage.estimated_candidates(paths, enough=1000) == 1000  # stops once enough is known
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet" * 100)  # sized like a text table; extract records the error
    assert stage.estimated_candidates([str(broken)]) == 1100 // stage.TEXT_BYTES_PER_ROW
