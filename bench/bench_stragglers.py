"""Wall time when some hosts answer late: shards in flight per worker, and img2dataset.

    python -m bench.bench_stragglers            # 3,000 images, 1 in 100 answers after 4 s
    python -m bench.bench_stragglers --quick    # 2,000 images (two 500-image shards per worker)

On the open web a shard almost always holds a few requests that take seconds (slow hosts, or
ones that end in a timeout). A worker that fetches one shard at a time idles while it waits on
them. This runs the same URLs (the download benchmark's, plus one in ``--slow-every`` through
the demo server's ``slow_first_byte`` mode, which answers after ``--slow-seconds``) through
``wit download`` with ``--shards-in-flight 1`` and with the default 2, and through img2dataset
with the same number of workers, and prints wall times, CPU and the ratios. Every late URL still
succeeds (the timeout is 10 s), so all runs store the same images.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile

from bench import bench_download as bd


def main(argv: list[str] | None = None) -> int:
    """Run the three configurations interleaved and print the figures."""
    p = argparse.ArgumentParser(
        prog="python -m bench.bench_stragglers", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="2,000 images instead of 3,000")
    p.add_argument("--n", type=int, default=None, help="number of URLs")
    p.add_argument("--slow-every", type=int, default=100, help="one URL in this many is late")
    p.add_argument("--slow-seconds", type=float, default=4.0, help="how late")
    p.add_argument("--workers", type=int, default=2, help="workers for both tools")
    p.add_argument("--repeat", type=int, default=1, help="run each configuration N times")
    p.add_argument("--skip-img2dataset", action="store_true")
    args = p.parse_args(argv)
    n = args.n or (2000 if args.quick else 3000)
    work = tempfile.mkdtemp(prefix="bench_stragglers_")
    print(f"rendering {n} demo images in the server process...", flush=True)
    server, port = bd.start_server(n, 0, work, slow_seconds=args.slow_seconds)
    w = args.workers
    configs = {
        "ours, 2 shards in flight (default)": lambda r, out: bd.run_ours(r, port, out, w, 0),
        "ours, 1 shard in flight": lambda r, out: bd.run_ours(
            r, port, out, w, 0, ("--shards-in-flight", "1")
        ),
    }
    if not args.skip_img2dataset:
        configs["img2dataset 1.47"] = lambda r, out: bd.run_img2dataset(r, out, w)
    runs: dict = {name: [] for name in configs}
    try:
        rows = bd.url_rows(port, n, 0, slow_every=args.slow_every)
        for _ in range(args.repeat):  # interleaved, so a slow spell of the machine hits all
            for i, (name, run) in enumerate(configs.items()):
                out = os.path.join(work, f"run{i}")
                runs[name].append(run(rows, out))
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(out + "_input", ignore_errors=True)
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    late = sum("/f/slow_first_byte/" in r["url"] for r in rows)
    print(
        f"URLs: {n}, {late} of them answer after {args.slow_seconds:g} s, ~3% bad;"
        f" {w} workers; medians of {args.repeat} run(s)"
    )
    wall = {}
    for name, results in runs.items():
        wall[name] = statistics.median(r["wall_s"] for r in results)
        cpu = statistics.median(r["cpu_s"] for r in results)
        ok = results[0]["successes"]
        print(f"  {name}: wall {wall[name]:.1f} s, {cpu:.1f} CPU-s, {ok} successes")
    names = list(wall)
    print(f"  2 shards in flight vs 1: wall {wall[names[1]] / wall[names[0]]:.2f}x faster")
    if len(names) > 2:
        print(
            f"  ours (default) vs img2dataset: wall {wall[names[2]] / wall[names[0]]:.2f}x faster"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
