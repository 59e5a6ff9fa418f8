"""Completion markers: a stage re-runs exactly when its config, seed, upstream or inputs change."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pipeline import stages
from pipeline.config import RunConfig, opt

CALLS: list[str] = []


@dataclasses.dataclass(frozen=True)
class FakeConfig:
    value: int = opt(1, "a value")
    files: list = opt([], "input files")

    def inputs(self, out: str = ""):
        return self.files


def fake_up(run, fake):
    CALLS.append("up")
    return {"value": fake.value}


def fake_down(run, fake):
    CALLS.append("down")
    return {"selected": fake.value * 2}


@pytest.fixture
def fake_stages(monkeypatch):
    CALLS.clear()
    table = {
        "up": stages.Stage("up", "fake", f"{__name__}:fake_up", lambda lay: f"{lay.out}/up"),
        "down": stages.Stage(
            "down", "fake", f"{__name__}:fake_down", lambda lay: f"{lay.out}/down", ("up",)
        ),
    }
    monkeypatch.setattr(stages, "STAGES", table)
    return table


def test_second_run_skips_and_marker_records_lineage(tmp_path, fake_stages):
    run = RunConfig(out=str(tmp_path))
    first = stages.execute("up", run, FakeConfig(), echo=lambda _: None)
    second = stages.execute("up", run, FakeConfig(), echo=lambda _: None)
    assert (first.skipped, second.skipped) == (False, True)
    assert CALLS == ["up"]
    assert second.summary == {"value": 1}
    marker = json.loads((tmp_path / "up" / "_SUCCESS.json").read_text())
    assert marker["config"] == {"value": 1, "files": []} and marker["seed"] == 0
    assert "apache-beam" in marker["versions"]


@pytest.mark.parametrize(
    "change",
    ["config", "seed", "force", "input_file"],
)
def test_changes_rerun(tmp_path, fake_stages, change):
    inp = tmp_path / "in.txt"
    inp.write_text("a")
    run = RunConfig(out=str(tmp_path / "o"))
    cfg = FakeConfig(files=[str(inp)])
    stages.execute("up", run, cfg, echo=lambda _: None)
    if change == "config":
        cfg = FakeConfig(value=2, files=[str(inp)])
    elif change == "seed":
        run = dataclasses.replace(run, seed=5)
    elif change == "force":
        run = dataclasses.replace(run, force=True)
    else:
        inp.write_text("bb")
    assert stages.execute("up", run, cfg, echo=lambda _: None).skipped is False
    assert CALLS == ["up", "up"]


def test_upstream_change_reruns_downstream(tmp_path, fake_stages):
    run = RunConfig(out=str(tmp_path))
    stages.execute("up", run, FakeConfig(), echo=lambda _: None)
    stages.execute("down", run, FakeConfig(), echo=lambda _: None)
    assert stages.execute("down", run, FakeConfig(), echo=lambda _: None).skipped
    stages.execute("up", run, FakeConfig(value=3), echo=lambda _: None)
    assert not stages.execute("down", run, FakeConfig(), echo=lambda _: None).skipped
    assert CALLS == ["up", "down", "up", "down"]


def test_failed_stage_leaves_no_marker(tmp_path, fake_stages, monkeypatch):
    run = RunConfig(out=str(tmp_path))
    stages.execute("up", run, FakeConfig(), echo=lambda _: None)

    def boom(run, fake):
        raise RuntimeError("crash")

    monkeypatch.setitem(globals(), "fake_up", boom)
    with pytest.raises(RuntimeError):
        stages.execute("up", run, FakeConfig(value=9), echo=lambda _: None)
    assert not (tmp_path / "up" / "_SUCCESS.json").exists()
