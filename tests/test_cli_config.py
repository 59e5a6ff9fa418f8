"""The `wit` CLI and its configuration: flags, config files, precedence and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline import cli
from pipeline import config as C


def run_wit(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_every_flag_is_unique_across_sections():
    seen: dict[str, str] = {}
    for section in C.SECTIONS:
        for name in C.field_types(C.section_class(section)):
            flag = C.flag_for(f"{section}.{name}")
            assert flag not in seen, f"{flag} is used by {seen[flag]} and {section}"
            seen[flag] = section


def test_every_section_has_help_and_valid_defaults():
    for section in C.SECTIONS:
        cfg = C.build_section(section, {})  # defaults validate
        for f in __import__("dataclasses").fields(cfg):
            assert f.metadata.get("help"), f"{section}.{f.name} has no help text"


@pytest.mark.parametrize("command", ["--help", *[f"{c} --help" for c in cli.COMMANDS]])
def test_help_works(command):
    result = run_wit(*command.split())
    assert result.returncode == 0, result.stderr
    assert "usage: wit" in result.stdout


def test_precedence_defaults_file_flags(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("run:\n  workers: 3\nselect:\n  cap: 7\n  mode: exact\n")
    command, configs, _ = cli.parse(
        ["select", "--config", str(cfg_file), "--cap", "9", "--out", str(tmp_path)]
    )
    assert command == "select"
    assert configs["select"].cap == 9  # flag beats file
    assert configs["select"].mode == "exact"  # file beats default
    assert configs["run"].workers == 3
    assert configs["select"].oversample == 1.0  # default


def test_list_flags_and_beam_passthrough(tmp_path):
    _, configs, _ = cli.parse(
        [
            "select",
            "--wat",
            "a.wat.gz",
            "b.wat.gz",
            "--out",
            str(tmp_path),
            "--",
            "--project=p",
            "--region=r",
        ]
    )
    assert configs["select"].wat == ["a.wat.gz", "b.wat.gz"]
    assert configs["run"].beam_args == ["--project=p", "--region=r"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["select", "--cap", "0"], "select.cap (--cap)"),
        (["select", "--cap", "ten"], "select.cap (--cap): expected an integer"),
        (["select", "--mode", "fancy"], "select.mode (--mode): must be one of"),
        (["select", "--oversample", "0.5"], "select.oversample (--oversample)"),
        (["download", "--quality", "101"], "download.quality (--quality)"),
        (["queries", "--min-count", "0"], "queries.min_count (--min-count)"),
        (["shards", "--workers", "0"], "run.workers (--workers)"),
    ],
)
def test_bad_values_fail_before_work_naming_the_flag(tmp_path, args, expected):
    out = tmp_path / "out"
    result = run_wit(*args, "--out", str(out))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not out.exists(), "nothing may be written before the configuration is valid"


def test_unknown_flag_is_a_one_line_error(tmp_path):
    result = run_wit("select", "--capp", "3", "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["wit: error: unrecognized arguments: --capp 3"]


@pytest.mark.parametrize(
    "content, expected",
    [
        ("select:\n  capp: 3\n", "select.capp (--config): unknown key"),
        ("selec:\n  cap: 3\n", "selec (--config): unknown section"),
        ("select: [1, 2]\n", "select (--config): section must be a mapping"),
        ("select:\n  cap: [3\n", "is not valid YAML"),
        ("run:\n  beam_args: {a: 1}\n", "run.beam_args (--beam-args): expected a list"),
    ],
)
def test_bad_config_file_names_the_key(tmp_path, content, expected):
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text(content)
    result = run_wit("select", "--config", str(cfg_file), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_resolved_config_is_written_next_to_outputs(tmp_path):
    _, configs, _ = cli.parse(["select", "--cap", "11", "--out", str(tmp_path)])
    path = C.write_resolved(configs, str(tmp_path))
    data = json.loads(open(path).read())
    assert data["select"]["cap"] == 11 and data["run"]["out"] == str(tmp_path)
    # a later command adds its own sections without losing the others
    _, configs2, _ = cli.parse(["download", "--image-size", "64", "--out", str(tmp_path)])
    C.write_resolved(configs2, str(tmp_path))
    data = json.loads(open(path).read())
    assert data["select"]["cap"] == 11 and data["download"]["image_size"] == 64


def test_repo_configs_are_valid():
    from pathlib import Path

    for path in sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml")):
        values = C.load_file(path)
        C.resolve(list(values), values)
