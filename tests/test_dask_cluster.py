"""``wit shards`` on a real Dask cluster, started the way users start one, equals the local runner.

A ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, each its own OS process
talking over TCP; ``wit shards --runner dask --dask-scheduler <scheduler file>`` on the tiny demo
world; the query list, the selection bytes and every shard row (uid, status, reason, sha256) are
compared with a local-runner run of the same world. Run alone with ``pytest -m cluster``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[1]
DASK = str(Path(sys.executable).parent / "dask")
# Timing must not decide an outcome here: the slow-first-byte fault answers well inside the read
# timeout, the endless drip always exhausts the total one, and the oversized body hits the size
# cap long before either.
FLAGS = [
    "--config",
    "configs/demo.yaml",
    "--demo-size",
    "tiny",
    "--read-timeout",
    "8",
    "--timeout",
    "20",
    "--max-bytes",
    "2000000",
    "--no-progress",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(predicate, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not happen within {seconds}s")


def _stop(procs) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def scheduler_file(tmp_path_factory):
    """A scheduler and two single-threaded workers, separate processes, joined by a file."""
    from dask.distributed import Client

    root = tmp_path_factory.mktemp("dask")
    path = root / "scheduler.json"
    common = ["--no-dashboard"]
    logs = [open(root / f"{name}.log", "w") for name in ("scheduler", "worker0", "worker1")]
    procs = [
        subprocess.Popen(
            [DASK, "scheduler", "--scheduler-file", str(path), "--host", "127.0.0.1", *common],
            stdout=logs[0],
            stderr=subprocess.STDOUT,
        )
    ]
    try:
        _wait_for(path.exists, "the scheduler file")
        for log in logs[1:]:
            procs.append(
                subprocess.Popen(
                    [
                        DASK,
                        "worker",
                        "--scheduler-file",
                        str(path),
                        "--nworkers",
                        "1",
                        "--nthreads",
                        "1",
                        "--host",
                        "127.0.0.1",
                        *common,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=root,  # not the repository: workers import the installed project
                )
            )
        with Client(scheduler_file=str(path), timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield path
    finally:
        _stop(procs)
        for log in logs:
            log.close()


def _wit_shards(out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pipeline.cli", "shards", "--out", str(out), *FLAGS, *extra]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)


def _snapshot(out: Path) -> dict:
    """What the comparison needs from a run (the next run writes to the same folder)."""
    return {
        "queries": pq.read_table(out / "queries" / "queries.parquet"),
        "selection": {
            p.name: p.read_bytes() for p in sorted((out / "selection").glob("part-*.parquet"))
        },
        "shard_rows": _shard_rows(out),
        "markers": {
            stage: json.loads((out / stage / "_SUCCESS.json").read_text())
            for stage in ("queries", "selection", "shards")
        },
        "manifest": json.loads((out / "shards" / "manifest.json").read_text()),
    }


@pytest.fixture(scope="module")
def both_runs(scheduler_file, tmp_path_factory):
    """The local run, then the Dask run in the same folder (input paths are part of each row),
    from scratch: nothing of the first run's outputs or download staging is left to reuse."""
    out = tmp_path_factory.mktemp("runs") / "out"
    port = str(_free_port())  # one world: the port is part of every URL, so of every uid
    local = _wit_shards(out, "--demo-port", port, "--workers", "2")
    assert local.returncode == 0, local.stdout[-2000:] + local.stderr[-3000:]
    first = _snapshot(out)
    for stage in ("queries", "selection", "shards", "reports"):
        shutil.rmtree(out / stage)
    dask = _wit_shards(
        out, "--demo-port", port, "--runner", "dask", "--dask-scheduler", str(scheduler_file)
    )
    assert dask.returncode == 0, dask.stdout[-2000:] + dask.stderr[-3000:]
    return first, _snapshot(out), dask


def test_the_dask_run_used_the_cluster(both_runs):
    local, dask, result = both_runs
    assert {m["runner"] for m in local["markers"].values()} == {"local"}
    assert {m["runner"] for m in dask["markers"].values()} == {"dask"}
    assert "== wit shards: summary ==" in result.stdout


def test_query_lists_are_identical(both_runs):
    local, dask, _ = both_runs
    assert local["queries"].num_rows > 0 and local["queries"].equals(dask["queries"])


def test_selections_are_byte_identical(both_runs):
    local, dask, _ = both_runs
    assert local["selection"] and local["selection"] == dask["selection"]


def _shard_rows(out: Path) -> list[tuple]:
    rows = []
    for path in sorted((out / "shards").glob("[0-9]*.parquet")):
        table = pq.read_table(path, columns=["uid", "status", "error_message", "sha256"])
        rows += [tuple(r.values()) for r in table.to_pylist()]
    return sorted(rows, key=repr)


def test_shard_rows_are_equal_by_uid_status_reason_and_sha256(both_runs):
    local, dask, _ = both_runs
    a, b = local["shard_rows"], dask["shard_rows"]
    assert len(a) == len({r[0] for r in a}) > 0  # every selected pair once
    assert {r[1] for r in a} >= {"success", "failed_to_download"}
    assert a == b
    assert dask["manifest"]["total_samples"] == sum(r[1] == "success" for r in b)
    assert dask["manifest"] == local["manifest"]
