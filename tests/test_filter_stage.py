"""``wit filter`` end to end on shards built in the test: planted duplicates and foreign captions,
each filter on and off, the CLIP score through RunInference, and the stage's end check."""

from __future__ import annotations

import json
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import ConfigError, RunConfig
from pipeline.filter import reshard, stage
from pipeline.filter.config import FilterConfig
from pipeline.invariants import StageFailed
from tests.filter_helpers import demo_rows, scene_pairs, train_tiny_checkpoint, write_shards

PER_SHARD = 16


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Downloaded shards of 24 distinct images, 3 exact and 3x3 near copies, 3 foreign captions
    and 4 failures, with the truth about them."""
    out = tmp_path_factory.mktemp("filter_world")
    rows, truth = demo_rows(24)
    write_shards(str(out), rows, PER_SHARD)
    return out, rows, truth


@pytest.fixture
def out(built, tmp_path):
    src, _, _ = built
    dst = tmp_path / "out"
    shutil.copytree(src / "shards", dst / "shards")
    return dst


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, one_torch_thread_module):
    path = str(tmp_path_factory.mktemp("ckpt") / "checkpoint.pt")
    train_tiny_checkpoint(path)
    return path


def _run(out, **filters) -> dict:
    cfg = FilterConfig(reshard_samples=10, **filters)
    return stage.run(RunConfig(out=str(out), workers=1, progress=False), cfg)


def _rows(folder) -> list[dict]:
    names = sorted(n for n in os.listdir(folder) if n[:5].isdigit() and n.endswith(".parquet"))
    return pa.concat_tables([pq.read_table(os.path.join(folder, n)) for n in names]).to_pylist()


def test_every_filter_drops_what_was_planted_and_keeps_every_row(out, built):
    _, rows, truth = built
    summary = _run(out, languages=["en", "und"])
    got = {r["uid"]: r for r in _rows(out / "filtered")}
    assert sorted(got) == sorted(r["uid"] for r in rows)  # one row per downloaded row
    for group in truth["exact"] + truth["near"]:
        keeper = min(group)
        assert got[keeper]["status"] == "success"
        for uid in group:
            if uid != keeper:
                assert got[uid]["status"] == "filtered" and got[uid]["duplicate_of"] == keeper
    for group in truth["exact"]:
        assert got[max(group)]["error_message"] == "duplicate_exact"
    for group in truth["near"]:
        assert {got[u]["error_message"] for u in group if u != min(group)} == {"duplicate_near"}
    for uid, code in truth["foreign"].items():
        assert got[uid]["language"] == code and got[uid]["error_message"] == "language_excluded"
    planted = {u for g in truth["exact"] + truth["near"] for u in g}
    for uid in truth["distinct"]:
        if uid not in planted:
            assert got[uid]["status"] == "success", got[uid]
    failed = [r for r in rows if r["status"] != "success"]
    assert all(got[r["uid"]]["status"] == r["status"] for r in failed)
    assert summary["filtered"] == {
        "duplicate_exact": 3,
        "duplicate_near": 9,
        "language_excluded": 3,
    }
    manifest = json.loads((out / "filtered" / "manifest.json").read_text())
    assert (
        manifest["total_samples"]
        == summary["kept"]
        == sum(r["status"] == "success" for r in got.values())
    )
    assert [s["samples"] for s in manifest["shards"]][:-1] == [10] * (manifest["num_shards"] - 1)
    report = json.loads((out / "reports" / "filter.json").read_text())
    assert report["totals"]["filtered"] == sum(report["reasons"]["first"].values()) == 15
    assert sum(q["downloaded"] - q["kept"] for q in report["per_query"]) == sum(
        sum(q["lost"].values()) for q in report["per_query"]
    )
    assert report["duplicates"]["groups"] == 6 and not os.path.exists(out / "filtered" / "_work")


def test_with_every_filter_off_every_success_is_kept(out, built):
    _, rows, _ = built
    summary = _run(out, dedup_exact=False, dedup_near=False)
    got = _rows(out / "filtered")
    assert summary["filtered"] == {}
    assert sorted((r["uid"], r["status"]) for r in got) == sorted(
        (r["uid"], r["status"]) for r in rows
    )
    assert all(r["language"] for r in got if r["status"] == "success")  # still a column


@pytest.mark.parametrize("off", ["dedup_exact", "dedup_near"])
def test_one_dedup_filter_off_leaves_its_duplicates(out, off):
    summary = _run(out, **{off: False})
    other = {"dedup_exact": "duplicate_near", "dedup_near": "duplicate_exact"}[off]
    assert set(summary["filtered"]) == {other}


def test_the_top_fraction_keeps_the_pairs_scoring_at_least_the_kth_largest(out, checkpoint):
    summary = _run(
        out, dedup_exact=False, dedup_near=False, clip=True, clip_weights=checkpoint,
        clip_top_fraction=0.4,
    )  # fmt: skip
    got = [r for r in _rows(out / "filtered") if r["status"] in ("success", "filtered")]
    scores = sorted((r["clip_score"] for r in got), reverse=True)
    k = -(-len(scores) * 4 // 10)
    assert summary["clip_threshold"] == pytest.approx(scores[k - 1], abs=0)
    kept = [r for r in got if r["status"] == "success"]
    assert all(r["clip_score"] >= scores[k - 1] for r in kept)
    assert len(kept) == sum(s >= scores[k - 1] for s in scores) >= k
    dropped = [r for r in got if r["status"] == "filtered"]
    assert {r["error_message"] for r in dropped} == {"clip_score_not_in_top"}


def test_the_trained_checkpoint_scores_matched_pairs_above_shuffled_ones(checkpoint):
    import torch

    from pipeline.filter.clip_score import ScorerSpec, load_scorer

    scorer = load_scorer(ScorerSpec(checkpoint))
    images, captions = scene_pairs(96, 32, offset=10_000)  # scenes the training never saw
    with torch.no_grad():
        matched = scorer(images, scorer.tokenizer(captions))
        shuffled = torch.stack(
            [scorer(images, scorer.tokenizer(captions[s:] + captions[:s])) for s in (7, 31, 60)]
        )
    assert matched.mean() > shuffled.mean() + 0.03


def test_run_inference_gives_the_plain_loop_scores(out, checkpoint):
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from pipeline.filter.analyse import SampleRef, read_rows
    from pipeline.filter.clip_score import ScorerSpec, load_scorer, score_refs
    from pipeline.filter.inference import ClipScoreHandler
    from pipeline.portable import check_portable

    tar, parquet = str(out / "shards" / "00000.tar"), str(out / "shards" / "00000.parquet")
    refs = [
        SampleRef(0, r["key"], r["uid"], r["caption"], tar, "jpg")
        for r in read_rows(parquet)
        if r["status"] == "success"
    ]
    spec = ScorerSpec(checkpoint, batch_size=5)
    expected = [(r.uid, round(s, 5)) for r, s in zip(refs, score_refs(load_scorer(spec), refs))]
    with TestPipeline(runner="FnApiRunner") as p:
        scored = (
            p
            | beam.Create([refs[:7], refs[7:]])
            | RunInference(ClipScoreHandler(spec).with_no_batching())
            | beam.Map(lambda r: (r.example.uid, round(r.inference, 5)))
        )
        assert_that(scored, equal_to(expected))
        check_portable(p)


def test_a_lost_output_row_fails_the_stage(out, monkeypatch):
    write = reshard.write_output

    def lossy(settings, task):
        if task.shard == 1:
            rows = reshard._rows_of

            monkeypatch.setattr(reshard, "_rows_of", lambda s, t: rows(s, t)[:-1])
        return write(settings, task)

    monkeypatch.setattr(reshard, "write_output", lossy)
    with pytest.raises(StageFailed, match="filter failed: .* input rows planned"):
        _run(out)


def test_without_downloaded_shards_the_stage_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError, match="run `wit download` first"):
        _run(tmp_path)


def test_missing_clip_weights_are_a_configuration_error(out):
    with pytest.raises(ConfigError) as e:
        _run(out, clip=True)
    assert e.value.key == "filter.clip_weights"


@pytest.mark.cluster
def test_the_dask_runner_gives_the_local_runners_filtered_shards(out, built, checkpoint, tmp_path):
    """The whole stage, CLIP top fraction included, on a local Dask cluster of worker processes."""
    filters = {"languages": ["en", "und"], "clip": True, "clip_weights": checkpoint}
    filters["clip_top_fraction"] = 0.5
    local = _run(out, **filters)
    rows = {r["uid"]: r for r in _rows(out / "filtered")}
    dask_out = tmp_path / "dask"
    shutil.copytree(out / "shards", dask_out / "shards")
    cfg = FilterConfig(reshard_samples=10, **filters)
    on_dask = stage.run(RunConfig(out=str(dask_out), runner="dask", workers=2, progress=False), cfg)
    assert on_dask == local
    columns = ("key", "status", "error_message", "filter_reasons", "duplicate_of", "language")
    for r in _rows(dask_out / "filtered"):
        assert {c: r[c] for c in columns} == {c: rows[r["uid"]][c] for c in columns}
        assert r["clip_score"] == pytest.approx(rows[r["uid"]]["clip_score"], abs=1e-5) or (
            r["clip_score"] is None and rows[r["uid"]]["clip_score"] is None
        )
