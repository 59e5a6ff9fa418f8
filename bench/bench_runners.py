"""``wit select`` and ``wit download`` on the local runner and on a Dask cluster of the same size.

    python -m bench.bench_runners            # the demo world (~20k candidates, ~11k images)
    python -m bench.bench_runners --quick    # the tiny world
    python -m bench.bench_runners --repeat 3 # medians of interleaved runs

One demo world and one query list; then, per runner, ``wit select`` and a fresh ``wit download``
(no staging to reuse), each as a user runs it: ``--workers 2`` on the local runner, and
``--runner dask --workers 2`` (a local Dask cluster of two worker processes, started and shut down
by the command, its start-up included). Wall time and CPU seconds of the whole process tree (GNU
time: the command and every process it waited for), side by side, with the ratio Dask / local;
and whether the outputs are equal (selection rows in order, but the input paths, which name each
run's own folder; shard rows by uid, status, reason, sha256).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
from pathlib import Path

from bench.bench_select_scale import measure

ROOT = Path(__file__).resolve().parents[1]
WIT = str(ROOT / ".venv" / "bin" / "wit") if (ROOT / ".venv" / "bin" / "wit").exists() else "wit"
RUNNERS = {"local": [], "dask": ["--runner", "dask"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(base: Path, size: str) -> Path:
    """A demo world and its query list (built once, copied into every run)."""
    seed = base / "seed"
    shutil.rmtree(seed, ignore_errors=True)
    common = ["--config", "configs/demo.yaml", "--out", str(seed), "--no-progress"]
    port = str(_free_port())
    subprocess.run(
        [WIT, "demo-world", *common, "--demo-size", size, "--demo-port", port],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    subprocess.run([WIT, "queries", *common], cwd=ROOT, check=True, capture_output=True)
    return seed


def run_stage(seed: Path, out: Path, stage: str, runner: str, logs: Path) -> dict:
    """One stage as a user types it, measured."""
    if stage == "select":
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(seed, out, symlinks=True)
    cmd = [
        WIT, stage, "--config", "configs/demo.yaml", "--out", str(out), "--workers", "2",
        "--no-progress", "--force", *RUNNERS[runner],
    ]  # fmt: skip
    return measure(cmd, logs / f"{out.name}-{stage}.log")


def selection_rows(out: Path) -> list[dict]:
    """The selection's rows but ``source_file``, which names the run's own output folder."""
    import pyarrow.parquet as pq

    rows = []
    for path in sorted((out / "selection").glob("part-*.parquet")):
        rows += pq.read_table(path).drop_columns(["source_file"]).to_pylist()
    return rows


def shard_rows(out: Path) -> list[tuple]:
    import pyarrow.parquet as pq

    rows = []
    for path in sorted((out / "shards").glob("[0-9]*.parquet")):
        table = pq.read_table(path, columns=["uid", "status", "error_message", "sha256"])
        rows += [tuple(r.values()) for r in table.to_pylist()]
    return sorted(rows, key=repr)


def main(argv: list[str] | None = None) -> int:
    """Measure both runners; print the table and the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the tiny demo world")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved runs per runner (medians)")
    ap.add_argument("--out", default="out/bench/runners")
    args = ap.parse_args(argv)
    base = (ROOT / args.out).resolve()
    logs = base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    seed = prepare(base, "tiny" if args.quick else "demo")
    results: dict = {(r, s): [] for r in RUNNERS for s in ("select", "download")}
    equal = {"selection": True, "shards": True}
    for i in range(args.repeat):
        outs = {}
        for runner in RUNNERS:
            out = base / f"{runner}-{i}"
            for stage in ("select", "download"):
                results[(runner, stage)].append(run_stage(seed, out, stage, runner, logs))
            outs[runner] = out
        equal["selection"] &= selection_rows(outs["local"]) == selection_rows(outs["dask"])
        equal["shards"] &= shard_rows(outs["local"]) == shard_rows(outs["dask"])
    print(f"\nwit select / wit download, local runner vs Dask, --workers 2, {args.repeat} run(s)")
    print(f"{'stage':<9} {'runner':<6} {'wall s':>8} {'CPU s':>8}")
    summary = {}
    for stage in ("select", "download"):
        for runner in RUNNERS:
            runs = results[(runner, stage)]
            wall = statistics.median(r["seconds"] for r in runs)
            cpu = statistics.median(r["cpu_s"] for r in runs)
            summary[(runner, stage)] = (wall, cpu)
            print(f"{stage:<9} {runner:<6} {wall:>8.1f} {cpu:>8.1f}")
    print()
    for stage in ("select", "download"):
        (lw, lc), (dw, dc) = summary[("local", stage)], summary[("dask", stage)]
        print(f"{stage}: Dask / local CPU {dc / lc:.2f}x, wall {dw / lw:.2f}x (target CPU <= 1.5x)")
    print(f"outputs equal: selection {equal['selection']}, shard rows {equal['shards']}")
    (base / "result.json").write_text(
        json.dumps({f"{r}/{s}": v for (r, s), v in summary.items()} | {"equal": equal}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
