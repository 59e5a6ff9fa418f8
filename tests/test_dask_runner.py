"""``--runner dask``: naming the runner, reaching the cluster, and what is refused before any work.

The stages themselves on a Dask cluster are in ``test_dask_cluster.py``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from pipeline import config as C


def run_wit(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "name", ["dask", "DaskRunner", "apache_beam.runners.dask.dask_runner.DaskRunner"]
)
def test_every_name_of_the_dask_runner_selects_it(name):
    run = C.build_section("run", {"runner": name})
    assert run.is_dask and not run.is_local


@pytest.mark.parametrize("name", ["local", "DirectRunner", "FnApiRunner"])
def test_local_names(name):
    run = C.build_section("run", {"runner": name})
    assert run.is_local and not run.is_dask


def test_an_unknown_runner_is_a_one_line_configuration_error(tmp_path):
    result = run_wit("select", "--out", str(tmp_path), "--runner", "Dask")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "run.runner (--runner): unknown runner 'Dask'" in lines[0]
    for valid in ("local", "dask", "DataflowRunner", "PortableRunner"):
        assert valid in lines[0]


def test_a_runner_class_that_does_not_import_is_a_configuration_error(tmp_path):
    from pipeline.beam_runner import make_pipeline

    run = C.build_section("run", {"runner": "no_such_module.SomeRunner", "out": str(tmp_path)})
    with pytest.raises(C.ConfigError, match="cannot import runner class"):
        make_pipeline(run, "x")


def test_the_scheduler_option_needs_the_dask_runner(tmp_path):
    result = run_wit("select", "--out", str(tmp_path), "--dask-scheduler", "tcp://127.0.0.1:1")
    assert result.returncode == 2
    assert "run.dask_scheduler (--dask-scheduler): is only used with --runner dask" in (
        result.stderr
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_is_a_configuration_error_not_a_hang(tmp_path):
    port = _closed_port()
    started = time.monotonic()
    result = run_wit(
        "select",
        "--out",
        str(tmp_path),
        "--runner",
        "dask",
        "--dask-scheduler",
        f"tcp://127.0.0.1:{port}",
        timeout=90,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"wit: configuration error: run.dask_scheduler (--dask-scheduler): cannot reach the "
        f"Dask scheduler at tcp://127.0.0.1:{port}"
    )
    assert time.monotonic() - started < 80  # bounded by the connect timeout, whatever happens


def test_a_missing_scheduler_file_is_a_configuration_error(tmp_path):
    missing = tmp_path / "nowhere" / "scheduler.json"
    result = run_wit(
        "select", "--out", str(tmp_path), "--runner", "dask", "--dask-scheduler", str(missing)
    )
    assert result.returncode == 2
    assert "neither a scheduler address (tcp://host:port) nor a file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
