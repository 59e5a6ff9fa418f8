"""Run every benchmark script (``make bench``); each prints its figures and ratios.

python -m bench.run_all --out out/demo/bench           # quick mode of each (minutes)
python -m bench.run_all --out out/demo/bench --full    # the sizes the README quotes
python -m bench.run_all --only match,download
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCHES = (
    "queries",
    "match",
    "select_scale",
    "download",
    "stragglers",
    "runners",
    "filter",
    "train",
)


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks one after another, saving each one's output."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--out", default="out/bench", help="directory for each benchmark's printed output"
    )
    ap.add_argument("--full", action="store_true", help="full sizes instead of --quick")
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(BENCHES))
    args = ap.parse_args(argv)
    chosen = [b for b in args.only.split(",") if b] or list(BENCHES)
    unknown = sorted(set(chosen) - set(BENCHES))
    if unknown:
        ap.error(f"--only: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in chosen:
        cmd = [sys.executable, "-m", f"bench.bench_{name}", *([] if args.full else ["--quick"])]
        print(f"\n=== {' '.join(cmd[1:])} ===", flush=True)
        started = time.time()
        with open(out / f"{name}.txt", "w") as log:
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for line in proc.stdout:
                sys.stdout.write(line)
                log.write(line)
            rc = proc.wait()
        print(
            f"=== {name}: exit {rc} after {time.time() - started:.0f}s (output in {out / (name + '.txt')})"
        )
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
