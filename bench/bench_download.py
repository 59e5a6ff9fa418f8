"""Downloader benchmark: ``wit download`` vs img2dataset on the same URLs, plus the codec floor.

    python -m bench.bench_download            # 5,000 images (about 3% bad)
    python -m bench.bench_download --quick    # 1,000 images

The demo image server runs in its own process, with every image rendered before the clock
starts, so the figures measure the downloaders only. Each tool runs as a child process with the
same number of workers (``--processes``: img2dataset's ``processes_count``, our ``--workers``,
which this stage runs as threads of one process) and the same output (256 px shorter side, JPEG
at the same quality, webdataset shards); its CPU time is the RUSAGE_CHILDREN delta over its run
(every descendant is waited for, so worker processes count). Ours runs in three configurations:
the defaults (N workers, each decoding on its own event-loop thread), one worker with N image
threads, and N workers with 2 image threads each. The codec floor decodes, resizes and encodes
the same image bytes in a tight loop in this process, with our image code, no network.
Printed: successful images per CPU-second for both tools, wall times, CPU per image vs the floor,
the ratios, and each run's peak memory: the resident memory of the tool's whole process tree,
sampled every 0.1 s, in total and per worker. Absolute numbers depend on the machine's load; the
ratios are the point.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

from tests.download_helpers import shard_layout

BAD_MODES = ("404", "500", "html", "truncated", "redirect_loop", "noai", "wrong_type")
QUALITY = 90
SIZE = 256
STARTUP_URLS = 8


def _server_main(port_file: str, n: int, seed: int, slow_seconds: float = 3.0) -> None:
    """Child process: serve the demo world with images 0..n-1 pre-rendered, until killed."""
    from pipeline.demo_world import server

    opts = {"prerender": tuple(range(n)), "cache_bytes": 4 << 30, "slow_seconds": slow_seconds}
    with server.serve(seed, 0, **opts) as srv:
        with open(port_file + ".tmp", "w") as f:
            f.write(str(srv.port))
        os.replace(port_file + ".tmp", port_file)
        while True:
            time.sleep(3600)


def start_server(
    n: int, seed: int, workdir: str, slow_seconds: float = 3.0
) -> tuple[subprocess.Popen, int]:
    """The demo server in a child process (``slow_first_byte`` URLs answer after
    ``slow_seconds``); returns it and its port."""
    port_file = os.path.join(workdir, "port")
    cmd = [
        sys.executable,
        "-m",
        "bench.bench_download",
        "--serve",
        port_file,
        "--n",
        str(n),
        "--seed",
        str(seed),
        "--slow-seconds",
        str(slow_seconds),
    ]
    proc = subprocess.Popen(cmd)
    while not os.path.exists(port_file):
        if proc.poll() is not None:
            raise RuntimeError("demo server failed to start")
        time.sleep(0.2)
    return proc, int(open(port_file).read())


def url_rows(port: int, n: int, seed: int, bad_every: int = 33, slow_every: int = 0) -> list[dict]:
    """n URLs of realistic demo images; about one in ``bad_every`` goes through a fault mode, and
    with ``slow_every`` one in that many answers late (``slow_first_byte``, then the image)."""
    from pipeline.demo_world import scene
    from pipeline.demo_world.urls import image_url
    from tests.download_helpers import selection_row

    rows = []
    for i in range(n):
        s = scene.scene_for(i, seed)
        fault = (
            BAD_MODES[(i // bad_every) % len(BAD_MODES)] if i % bad_every == bad_every - 1 else None
        )
        if slow_every and fault is None and i % slow_every == slow_every // 2:
            fault = "slow_first_byte"
        caption = scene.describe(s, __import__("random").Random(i))
        rows.append(
            selection_row(image_url(port, i, s.fmt, fault), caption, {i % 50: f"q{i % 50}"})
        )
    return rows


def tree_rss_mb(root: int) -> float:
    """Resident memory of a process and all its descendants, in MiB (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_BYTES
        except (OSError, ValueError, IndexError):
            pass
        stack.extend(children.get(pid, ()))
    return total / 2**20


PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
RSS_SAMPLE_S = 0.1


def run_child(cmd: list[str], env: dict | None = None) -> dict:
    """Run a command; its wall time, the CPU time of it and all its descendants, and the peak
    resident memory of its process tree (sampled every RSS_SAMPLE_S)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:  # a file: a full pipe would block the child
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, tree_rss_mb(proc.pid))
            time.sleep(RSS_SAMPLE_S)
        wall = time.perf_counter() - t0
        err.seek(0)
        stderr = err.read()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed:\n{stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak}


def run_ours(
    rows: list[dict], port: int, out: str, workers: int, threads: int, extra: tuple = ()
) -> dict:
    """``wit download`` as a child process on ``rows``; its CPU, wall time and outcomes."""
    from tests.download_helpers import write_selection

    write_selection(out, rows, per_part=len(rows))
    cmd = [
        sys.executable, "-m", "pipeline.cli", "download", "--out", out, "--workers", str(workers),
        "--image-threads", str(threads), "--no-progress", "--allow-hosts", f"127.0.0.1:{port}",
        "--quality", str(QUALITY), "--image-size", str(SIZE), "--resize-mode", "keep_ratio",
        "--output-format", "jpg", "--samples-per-shard", "500", "--timeout", "10", *extra,
    ]  # fmt: skip
    res = run_child(cmd)
    from pipeline.download.report import read_shard_rows

    rows_out = read_shard_rows(os.path.join(out, "shards")).column("status").to_pylist()
    res["successes"] = rows_out.count("success")
    res["attempted"] = len(rows_out)
    res["layout"] = shard_layout(os.path.join(out, "shards"))
    res["label"] = f"wit download --workers {workers} --image-threads {threads} (one process)"
    res["workers"] = workers
    return res


IMG2DATASET_CALL = """
import sys
from img2dataset import download
download(url_list=sys.argv[1], output_folder=sys.argv[2], processes_count=int(sys.argv[3]),
         input_format="parquet", url_col="url", caption_col="caption", image_size={size},
         resize_mode="keep_ratio", output_format="webdataset", encode_format="jpg",
         encode_quality={quality}, number_sample_per_shard=500, timeout=10, enable_wandb=False)
"""


def run_img2dataset(rows: list[dict], out: str, processes: int) -> dict:
    src = os.path.join(out + "_input", "urls.parquet")
    os.makedirs(os.path.dirname(src), exist_ok=True)
    pq.write_table(
        pa.Table.from_pylist([{"url": r["url"], "caption": r["caption"]} for r in rows]), src
    )
    code = IMG2DATASET_CALL.format(size=SIZE, quality=QUALITY)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    res = run_child([sys.executable, "-c", code, src, out, str(processes)], env=env)
    successes = 0
    for name in os.listdir(out):
        if name.endswith("_stats.json"):
            successes += json.load(open(os.path.join(out, name)))["successes"]
    res["successes"] = successes
    res["layout"] = shard_layout(out)
    res["workers"] = processes
    return res


def fetch_bodies(rows: list[dict], threads: int = 8) -> list[tuple[str, bytes]]:
    """(format, bytes) of every good image of the run (fault-mode URLs left out)."""
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    def get(url: str) -> tuple[str, bytes]:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return url.rsplit(".", 1)[-1], resp.read()

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(get, [r["url"] for r in rows if "/f/" not in r["url"]]))


def codec_floor(bodies: list[tuple[str, bytes]], threads: int) -> dict:
    """CPU ms per image of decode + resize + encode (our image code) over the same bytes.

    Every good image of the run is measured (a prefix would have another format and size mix);
    JPEG draft on/off is compared on every 10th image to keep the bench short. The allocator is
    tuned first, as ``wit download`` tunes its own process (:func:`pipeline.memory.keep_freed_memory`), so
    the floor is the best this image code does, not one that pays page faults the tool avoids.
    """
    from pipeline import memory
    from pipeline.download import images

    memory.keep_freed_memory()

    result: dict = {"images": len(bodies)}
    for label, draft, sample in (("draft", True, bodies), ("no_draft", False, bodies[::10])):
        opts = images.ImageOptions(SIZE, "keep_ratio", "jpg", QUALITY, use_draft=draft, threads=0)
        per_format: dict = {}
        for fmt, body in sample:
            t0 = time.process_time()
            images.process_image(body, opts)
            per_format.setdefault(fmt, []).append(time.process_time() - t0)
        total = sum(sum(v) for v in per_format.values())
        result[f"{label}_ms"] = 1000 * total / len(sample)
        for fmt, v in per_format.items():
            result[f"{label}_{fmt}_ms"] = 1000 * sum(v) / len(v)
    result["parallel_ms"] = _parallel_floor([b for _, b in bodies], threads)
    result["threads"] = threads
    return result


def _parallel_floor(bodies: list[bytes], threads: int) -> float:
    """CPU ms per image of the same loop on ``threads`` threads at once, as the tools run it.

    Two busy cores (often hyper-thread siblings) can make each image cost more CPU time than one
    busy core does; this floor shows how much of a tool's figure is that, not the tool.
    """
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.download import images

    opts = images.ImageOptions(SIZE, "keep_ratio", "jpg", QUALITY, threads=0)
    t0 = time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda b: images.process_image(b, opts), bodies))
    return 1000 * (time.process_time() - t0) / len(bodies)


def median_run(results: list[dict]) -> dict:
    """One run's figures from repeated runs: the median CPU and wall time (start-up likewise)."""
    import statistics

    keys = ("cpu_s", "wall_s")
    out = {**results[0], **{k: statistics.median(r[k] for r in results) for k in keys}}
    out["startup"] = {
        **out["startup"],
        **{k: statistics.median(r["startup"][k] for r in results) for k in keys},
    }
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in results)  # the worst run, not the median
    out["runs"] = [
        {"cpu_s": r["cpu_s"], "wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"]}
        for r in results
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print figures and ratios."""
    p = argparse.ArgumentParser(
        prog="python -m bench.bench_download", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="1,000 images instead of 5,000")
    p.add_argument("--n", type=int, default=None, help="number of URLs")
    p.add_argument(
        "--processes",
        type=int,
        default=2,
        help="workers for both tools (img2dataset processes, our --workers)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-img2dataset", action="store_true")
    p.add_argument(
        "--repeat", type=int, default=1, help="run each tool N times; report the medians"
    )
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    p.add_argument("--slow-seconds", type=float, default=3.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    n = args.n or (1000 if args.quick else 5000)
    if args.serve:
        _server_main(args.serve, n, args.seed, args.slow_seconds)
        return 0
    work = tempfile.mkdtemp(prefix="bench_download_")
    print(f"rendering {n} demo images in the server process...", flush=True)
    server, port = start_server(n, args.seed, work)
    try:
        rows = url_rows(port, n, args.seed)
        floor = codec_floor(fetch_bodies(rows), args.processes)
        procs = args.processes

        def measured(run, name: str) -> dict:
            # The same command on STARTUP_URLS URLs first: its fixed cost (interpreter, imports,
            # process start), so the per-image cost after start-up can be shown beside the total.
            small = run(rows[:STARTUP_URLS], os.path.join(work, name + "_startup"))
            res = run(rows, os.path.join(work, name))
            res["startup"] = {k: small[k] for k in ("cpu_s", "wall_s", "successes")}
            for path in (name, name + "_startup", name + "_input", name + "_startup_input"):
                shutil.rmtree(os.path.join(work, path), ignore_errors=True)
            return res

        configs = [  # --workers N: N Beam workers, threads of one process for this stage
            (lambda r, out: run_ours(r, port, out, procs, 0), "ours_default"),
            (lambda r, out: run_ours(r, port, out, 1, procs), "ours_threads"),
            (lambda r, out: run_ours(r, port, out, procs, 2), "ours_both"),
        ]
        if not args.skip_img2dataset:
            configs.append((lambda r, out: run_img2dataset(r, out, procs), "img2dataset"))
        runs: dict = {name: [] for _, name in configs}
        for _ in range(args.repeat):  # interleaved, so a slow spell of the machine hits all tools
            for run, name in configs:
                runs[name].append(measured(run, name))
        ours = [median_run(runs[name]) for name in ("ours_default", "ours_threads", "ours_both")]
        theirs = median_run(runs["img2dataset"]) if "img2dataset" in runs else None
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    report(n, args.processes, floor, ours, theirs, args.json, args.repeat)
    return 0


def report(
    n: int,
    processes: int,
    floor: dict,
    ours: list[dict],
    theirs: dict | None,
    json_path,
    repeat: int = 1,
) -> None:
    """Print the three figures and their ratios."""
    floor_ms = floor["draft_ms"]
    lines = [
        f"URLs: {n}, about 3% through fault modes; output {SIZE} px keep_ratio, JPEG q{QUALITY};"
        f" each tool run {repeat} time(s), medians shown",
        f"codec floor (decode+resize+encode of the same {floor['images']} images, no network):"
        f" {floor_ms:.2f} ms CPU/image",
        "  JPEG draft (DCT scaling) on/off, ms per JPEG (every 10th image): "
        f"{floor.get('draft_jpg_ms', 0):.2f} / {floor.get('no_draft_jpg_ms', 0):.2f}"
        f"  (png {floor.get('draft_png_ms', 0):.2f}, webp {floor.get('draft_webp_ms', 0):.2f})",
        f"  the same loop on {floor['threads']} threads at once (both cores busy, as in the runs below):"
        f" {floor['parallel_ms']:.2f} ms CPU/image",
    ]
    figures: dict = {
        "n": n,
        "processes": processes,
        "floor": floor,
        "ours": ours,
        "img2dataset": theirs,
    }
    for r in [*ours, *([theirs] if theirs else [])]:
        r["per_cpu_s"] = r["successes"] / r["cpu_s"]
        r["ms_per_image"] = 1000 * r["cpu_s"] / max(1, r["successes"])
        s = r["startup"]
        r["marginal_ms"] = (
            1000 * (r["cpu_s"] - s["cpu_s"]) / max(1, r["successes"] - s["successes"])
        )
        label = r.get("label", f"img2dataset 1.47, {processes} processes")
        lines.append(
            f"{label}: {r['per_cpu_s']:.1f} successful images/CPU-s ({r['ms_per_image']:.2f} ms"
            f" CPU/image = {r['ms_per_image'] / floor_ms:.2f}x floor,"
            f" {r['ms_per_image'] / floor['parallel_ms']:.2f}x parallel floor; {r['cpu_s']:.1f} CPU-s,"
            f" wall {r['wall_s']:.1f} s, {r['successes']} successes)"
        )
        lines.append(
            f"  peak memory (resident, whole process tree): {r['peak_rss_mb']:.0f} MiB,"
            f" {r['peak_rss_mb'] / r['workers']:.0f} MiB per worker (workers: {r['workers']})"
        )
        after = (
            f"{r['marginal_ms']:.2f} ms CPU = {r['marginal_ms'] / floor_ms:.2f}x floor"
            if r["marginal_ms"] > 0
            else "not measurable (too few URLs for the start-up to be a small part)"
        )
        lines.append(
            f"  start-up (the same command on {STARTUP_URLS} URLs): {s['cpu_s']:.1f} CPU-s;"
            f" per image after start-up: {after}"
        )
    if theirs:
        for r in ours:
            lines.append(
                f"  {r['label']} / img2dataset: {r['per_cpu_s'] / theirs['per_cpu_s']:.2f}x images per"
                f" CPU-s (target >= 1.5x), wall {theirs['wall_s'] / r['wall_s']:.2f}x faster;"
                f" after start-up {theirs['marginal_ms'] / r['marginal_ms']:.2f}x"
            )
    if theirs:
        mine, other = ours[0]["layout"], theirs["layout"]
        lines.append(
            f"layout: img2dataset files {other['files']} == ours {mine['files']}: {other['files'] == mine['files']};"
            f" tar members {other['members']} == {mine['members']}: {other['members'] == mine['members']};"
            f" img2dataset Parquet columns within ours: {set(other['columns']) <= set(mine['columns'])}"
            f" (missing: {sorted(set(other['columns']) - set(mine['columns']))})"
        )
    print("\n".join(lines))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
