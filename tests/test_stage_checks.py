"""Each stage's end check fails the stage when output goes missing, whatever lost it.

Losses are injected where a runner could lose them (an element dropped between steps, a file
gone between two steps); the stage must exit non-zero with one line holding the counts and leave
no ``_SUCCESS.json``. The stages run on the in-process local runner so the injection applies.
"""

from __future__ import annotations

import json
import os
import tarfile

import pytest

from pipeline import all_stages, cli
from pipeline.invariants import StageFailed

QUERY_FLAGS = ["--min-count", "3", "--bigram-min-count", "3", "--min-views", "10"]


def _configs(out, command: str, *extra: str) -> dict:
    argv = [command, "--out", str(out), "--workers", "1", "--no-progress", *extra]
    return cli.parse(argv)[1]


def _execute(out, name: str, *extra: str):
    return all_stages.execute(name, _configs(out, name, *extra))


def _fails(out, name: str, capsys, *extra: str) -> str:
    """Run ``wit <name>`` in this process; returns its one stderr line after a failure."""
    argv = [name, "--out", str(out), "--workers", "1", "--no-progress", "--force", *extra]
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1, err
    failed = [line for line in err if line.startswith(f"wit: {name} failed:")]
    assert len(failed) == 1, err
    assert not (out / _dir(name) / "_SUCCESS.json").exists()
    return failed[0]


def _dir(name: str) -> str:
    return {"queries": "queries", "select": "selection", "download": "shards"}[name]


@pytest.fixture(scope="module")
def selected(tmp_path_factory):
    """A tiny world (no fault modes: these tests lose output on purpose, the server need not)
    with its query list and selection, copied by each test that changes it."""
    from pipeline.demo_world.generate import generate_world

    out = tmp_path_factory.mktemp("checks") / "out"
    generate_world(str(out / "world"), seed=0, size="tiny", port=0, fault_rate=0.0)
    _execute(out, "queries", *QUERY_FLAGS)
    _execute(out, "select", "--cap", "20", "--spill-buckets", "4")
    return out


@pytest.fixture
def out(selected, tmp_path):
    import shutil

    copy = tmp_path / "out"
    shutil.copytree(selected, copy)
    return copy


# ---- queries ----------------------------------------------------------------------------------


def test_queries_fails_when_a_dump_split_is_lost(out, capsys, monkeypatch):
    from queries import transforms

    original = transforms.ReadAndCountFn.process

    def drop_first_split(self, split):
        if split.start == 0:
            return iter(())  # a runner that loses this element's outputs
        return original(self, split)

    monkeypatch.setattr(transforms.ReadAndCountFn, "process", drop_first_split)
    line = _fails(out, "queries", capsys, *QUERY_FLAGS)
    assert "dump splits read: expected" in line


def test_the_query_list_check_counts_repeated_ids(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from queries.stage import check_list

    path = tmp_path / "q.parquet"
    pq.write_table(pa.table({"query": ["a", "b", "c"], "query_id": [1, 2, 2]}), path)
    with pytest.raises(StageFailed, match="distinct query_id values .*: expected 3, got 2"):
        check_list(str(path), 3)
    with pytest.raises(StageFailed, match="queries in .*: expected 4, got 3"):
        check_list(str(path), 4)


# ---- select -----------------------------------------------------------------------------------


def test_select_fails_when_a_spill_file_is_lost_before_counting(out, capsys, monkeypatch):
    from pipeline.select import bucket_steps

    original = bucket_steps.bucket_summary

    def lose_a_spill_file(work_dir, bucket, dedup_url):
        if bucket == 0:
            for name in sorted(os.listdir(os.path.join(work_dir, "b0000")))[:1]:
                os.unlink(os.path.join(work_dir, "b0000", name))
        return original(work_dir, bucket, dedup_url)

    monkeypatch.setattr(bucket_steps, "bucket_summary", lose_a_spill_file)
    line = _fails(out, "select", capsys, "--cap", "20", "--spill-buckets", "4")
    assert "matched pairs spilled vs read back from the buckets" in line


def test_select_fails_when_a_bucket_file_is_lost_before_the_parts(out, capsys, monkeypatch):
    from pipeline.select import selection_parts, work_files

    original = selection_parts.write_parts_from_buckets

    def lose_a_bucket(work_dir, *args):
        path = work_files.selected_path(work_dir, 1)
        if os.path.exists(path):
            os.unlink(path)
        return original(work_dir, *args)

    monkeypatch.setattr(selection_parts, "write_parts_from_buckets", lose_a_bucket)
    line = _fails(out, "select", capsys, "--cap", "20", "--spill-buckets", "4")
    assert "rows in the selection files vs pairs selected" in line


def test_select_fails_when_a_bucket_decision_is_lost(out, capsys, monkeypatch):
    from pipeline.select import bucket_steps

    original = bucket_steps.decide_saved_bucket

    def forget_bucket_two(bucket, settings):
        result = original(bucket, settings)
        return {k: v for k, v in result.items() if k != "bucket"} if bucket == 2 else result

    monkeypatch.setattr(bucket_steps, "decide_saved_bucket", forget_bucket_two)
    line = _fails(out, "select", capsys, "--cap", "20", "--spill-buckets", "4")
    assert "4 bucket decisions expected, 3 reported: 1 missing (first: [2])" in line


# ---- download ---------------------------------------------------------------------------------

DOWNLOAD = ["--samples-per-shard", "40"]  # a world without fault modes: nothing waits


def test_download_fails_when_a_fetched_shard_never_reaches_finalising(out, capsys, monkeypatch):
    from pipeline.download import transforms

    original = transforms.FetchShardFn.process

    def drop_shard_one(self, task):
        for shard in original(self, task):
            if shard != 1:  # fetched and staged, then lost by the runner: Dask's old bug
                yield shard

    monkeypatch.setattr(transforms.FetchShardFn, "process", drop_shard_one)
    line = _fails(out, "download", capsys, *DOWNLOAD)
    assert "shard 00001 was not finalised by this run" in line
    assert (out / "shards" / "_staging" / "00001.parquet").exists()


def test_download_fails_when_a_staged_shard_is_removed_before_finalising(out, capsys, monkeypatch):
    from pipeline.download import phases

    original = phases.staged_info

    def remove_staging(shards_dir, shard):
        if shard == 0:
            os.unlink(phases.staging_path(shards_dir, shard))
        return original(shards_dir, shard)

    monkeypatch.setattr(phases, "staged_info", remove_staging)
    line = _fails(out, "download", capsys, *DOWNLOAD)
    assert "shard 00000 was not finalised by this run" in line


def test_download_fails_when_a_final_tar_lacks_a_member(out, capsys, monkeypatch):
    from pipeline.download import phases

    original = phases.finalize_shard

    def drop_a_member(shards_dir, shard, kept, ext, run_id=""):
        stats = original(shards_dir, shard, kept, ext, run_id)
        if shard == 0:
            path = os.path.join(shards_dir, "00000.tar")
            with tarfile.open(path) as tar:
                members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
            os.unlink(path)  # the final tar may be a hard link to the staging tar
            with tarfile.open(path, "w") as tar:
                for m, data in members[1:]:
                    import io

                    tar.addfile(m, io.BytesIO(data))
        return stats

    monkeypatch.setattr(phases, "finalize_shard", drop_a_member)
    line = _fails(out, "download", capsys, *DOWNLOAD)
    assert "shard 00000:" in line and "(1 missing)" in line


def test_download_check_passes_on_a_complete_run(out):
    result = _execute(out, "download", *DOWNLOAD)
    assert result.summary["shards"] >= 2
    marker = json.loads((out / "shards" / "_SUCCESS.json").read_text())
    assert marker["summary"]["selected"] == result.summary["selected"]
