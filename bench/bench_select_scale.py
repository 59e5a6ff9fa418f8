"""Scale simulation of ``wit select``: generated candidate pools of growing size, one query list.

For each pool size the bench writes the pool as Parquet tables (streamed in batches, never held in
memory), then runs ``wit select`` on it in a child process and records wall time and memory: the
peak summed RSS of the whole process tree (driver + Beam workers, sampled from /proc) and the
largest single process (GNU time's "Maximum resident set size"). Side by side, the same pools go
through a naive in-memory baseline (read everything, match with the same Aho-Corasick library,
cap per query by sorting each query's matches), the approach whose memory grows with the input.
Target for ``wit select``: time linear in the rows, memory near flat.

    python -m bench.bench_select_scale            # 1M and 10M rows, 500k queries
    python -m bench.bench_select_scale --quick    # 100k and 1M rows, 500k queries
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
CONSONANTS = "bcdfghjklmnprstvwz"
VOWELS = "aeiou"
FILLER = np.array(["the", "a", "of", "in", "with", "photo", "and", "on", "image", "by"])


# --- inputs ------------------------------------------------------------------------------------


def vocabulary(n: int, seed: int) -> np.ndarray:
    """``n`` distinct pseudo-words of 2-4 syllables (no real word collides with the filler)."""
    rng = np.random.default_rng(seed)
    syllables = np.array([c + v for c in CONSONANTS for v in VOWELS])
    words: dict[str, None] = {}
    while len(words) < n:
        k = rng.integers(2, 5, size=n)
        picks = rng.integers(0, len(syllables), size=(n, 4))
        for row, length in zip(picks, k):
            words["".join(syllables[row[:length]])] = None
            if len(words) >= n:
                break
    return np.array(list(words))


def query_id(q: str) -> int:
    """A stable 63-bit id from the query text (the query list's convention)."""
    return int.from_bytes(hashlib.blake2b(q.encode(), digest_size=8).digest(), "big") >> 1


def write_queries(path: Path, vocab: np.ndarray, n: int) -> None:
    """``n`` queries: 90% single words by frequency rank, 10% bigrams of frequent words."""
    unigrams = list(vocab[: int(n * 0.9)])
    rng = np.random.default_rng(1)
    bigrams: dict[str, None] = {}
    while len(unigrams) + len(bigrams) < n:
        a, b = rng.integers(0, 2000, size=2)
        if a != b:
            bigrams[f"{vocab[a]} {vocab[b]}"] = None
    queries = unigrams + list(bigrams)
    table = pa.table(
        {
            "query": queries,
            "query_id": pa.array([query_id(q) for q in queries], pa.int64()),
            "sources": [["wiki_unigram"]] * len(unigrams) + [["wiki_bigram"]] * len(bigrams),
        }
    )
    pq.write_table(table, path)


def write_pool(
    out_dir: Path, rows: int, vocab: np.ndarray, files: int, seed: int, batch: int = 100_000
) -> None:
    """``rows`` (url, caption) pairs over ``files`` Parquet files; captions mix Zipf words and filler."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    schema = pa.schema([("url", pa.string()), ("caption", pa.string())])
    per_file = -(-rows // files)
    n = 0
    for f in range(files):
        with pq.ParquetWriter(out_dir / f"pool-{f:04d}.parquet", schema, compression="zstd") as w:
            end = min(rows, n + per_file)
            while n < end:
                m = min(batch, end - n)
                # Zipf ranks: a few words in many captions, most words in few, as on the web
                words = vocab[(rng.zipf(1.15, size=(m, 5)) - 1) % len(vocab)]
                filler = FILLER[rng.integers(0, len(FILLER), size=(m, 3))]
                captions = [
                    f"{a[0]} {b[0]} {a[1]} {a[2]} {b[1]} {a[3]} {b[2]} {a[4]}"
                    for a, b in zip(words, filler)
                ]
                urls = [f"http://h{i % 997}.example/img/{i}.jpg" for i in range(n, n + m)]
                w.write_table(pa.table({"url": urls, "caption": captions}, schema=schema))
                n += m


# --- measuring a child process -----------------------------------------------------------------


def _tree_rss(pid: int) -> tuple[int, dict[str, int]]:
    """Summed RSS (bytes) of a process and its descendants, and RSS per role (driver, worker...)."""
    total, stack, seen, roles = 0, [pid], set(), {}
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/statm") as f:
                rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
        total += rss
        joined = b" ".join(argv)
        if b"sdk_worker_main" in joined:
            role = "beam worker"
        elif b"bin/wit" in joined:
            role = "wit driver"
        else:
            role = os.path.basename(argv[0].decode(errors="replace"))
        roles[role] = max(roles.get(role, 0), rss)
    return total, roles


def measure(cmd: list[str], log: Path) -> dict:
    """Run ``cmd`` under GNU time; wall seconds, peak tree RSS and max single-process RSS (MB)."""
    timed = ["/usr/bin/time", "-v", *cmd] if Path("/usr/bin/time").exists() else cmd
    peak = [0]
    roles: dict[str, int] = {}
    with open(log, "w") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(timed, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)

        def sample():
            while proc.poll() is None:
                total, per_role = _tree_rss(proc.pid)
                peak[0] = max(peak[0], total)
                for role, rss in per_role.items():
                    roles[role] = max(roles.get(role, 0), rss)
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = proc.wait()
        seconds = time.perf_counter() - started
        sampler.join()
    text = log.read_text(errors="replace")
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}... failed (exit {rc}); see {log}:\n{text[-3000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    cpu = [float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text)]
    return {
        "seconds": round(seconds, 2),
        # CPU seconds of the whole tree: steadier than wall time on a shared machine
        "cpu_s": round(sum(cpu), 2) if cpu else None,
        "peak_tree_mb": round(peak[0] / 1e6, 1),
        "max_process_mb": round(int(m.group(1)) / 1e3, 1) if m else None,
        "peak_mb_by_role": {k: round(v / 1e6, 1) for k, v in sorted(roles.items())},
        "log": str(log),
    }


# --- the two contenders ------------------------------------------------------------------------


def run_wit_select(
    pool: Path, queries: Path, out: Path, cap: int, workers: int, log: Path, buckets: int = 0
) -> dict:
    """``wit select`` on the pool, as a user runs it (``buckets``: --spill-buckets, 0 = default)."""
    cmd = [
        str(ROOT / ".venv" / "bin" / "wit") if (ROOT / ".venv" / "bin" / "wit").exists() else "wit",
        "select", "--out", str(out), "--tables", str(pool / "*.parquet"), "--queries-file", str(queries),
        "--cap", str(cap), "--workers", str(workers), "--no-progress", "--force",
    ]  # fmt: skip
    if buckets:
        cmd += ["--spill-buckets", str(buckets)]
    result = measure(cmd, log)
    summary = re.search(r"^\{.*?^\}", Path(log).read_text(), flags=re.S | re.M)
    result["summary"] = json.loads(summary.group(0)) if summary else {}
    return result


def baseline(pool: str, queries: str, cap: int) -> None:
    """The naive way: every caption and every match in memory, then sort per query."""
    import ahocorasick

    names = pq.read_table(queries, columns=["query", "query_id"]).to_pylist()
    automaton = ahocorasick.Automaton()
    for r in names:
        automaton.add_word(f" {r['query']} ", r["query_id"])  # padded: whole words only
    automaton.make_automaton()
    table = pa.concat_tables(pq.read_table(p) for p in sorted(Path(pool).glob("*.parquet")))
    urls, captions = table.column("url").to_pylist(), table.column("caption").to_pylist()
    per_query: dict[int, list[tuple[bytes, int]]] = {}
    for i, caption in enumerate(captions):
        for _, qid in automaton.iter(f" {caption.lower()} "):
            per_query.setdefault(qid, []).append(
                (hashlib.blake2b(urls[i].encode(), digest_size=8).digest(), i)
            )
    selected = Counter()
    for matches in per_query.values():
        for _, i in sorted(matches)[:cap]:
            selected[i] += 1
    print(
        json.dumps(
            {
                "candidates": len(captions),
                "matched_queries": len(per_query),
                "selected": len(selected),
            }
        )
    )


def run_baseline(pool: Path, queries: Path, cap: int, log: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "bench.bench_select_scale",
        "--baseline",
        str(pool),
        str(queries),
        str(cap),
    ]
    result = measure(cmd, log)
    line = [x for x in Path(log).read_text().splitlines() if x.startswith("{")]
    result["summary"] = json.loads(line[-1]) if line else {}
    return result


def wat_throughput(patterns: list[str], queries: str, work: Path) -> dict:
    """Per-core cost of read + filter + match on WAT files (one process, CPU time), for sizing."""
    import glob

    from pipeline.config import RunConfig
    from pipeline.select import stage as select_stage
    from pipeline.select.config import SelectConfig
    from pipeline.select.extract import extract_file
    from pipeline.select.matching import get_matcher

    paths = sorted(p for pattern in patterns for p in glob.glob(pattern))
    settings = select_stage.settings_for(
        RunConfig(out=str(work / "wat-out")), SelectConfig(), queries
    )
    matcher = get_matcher(queries, settings.case)
    totals: Counter = Counter()
    cpu = time.process_time()
    for i, path in enumerate(paths):
        totals.update(extract_file(path, i, settings, matcher)["counts"])
    cpu = time.process_time() - cpu
    size = sum(os.path.getsize(p) for p in paths)
    result = {
        "files": len(paths),
        "compressed_mb": round(size / 1e6, 2),
        "cpu_s": round(cpu, 3),
        "records": totals["records"],
        "img_links": totals["units"],
        "pairs": totals["pairs"],
        "after_filters": totals["filtered"],
        "matched": totals["matched"],
        "mb_per_cpu_s": round(size / 1e6 / cpu, 3),
        "records_per_cpu_s": round(totals["records"] / cpu, 1),
        "img_links_per_cpu_s": round(totals["units"] / cpu, 1),
    }
    print(json.dumps(result, indent=1))
    return result


# --- the bench ---------------------------------------------------------------------------------


def _fmt_row(cells: list, widths: list[int]) -> str:
    return "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))


def report(results: list[dict]) -> None:
    """Per-size figures, then growth ratios between consecutive sizes (per-row cost x1.0 = linear)."""
    widths = [10, 6, 9, 9, 9, 8, 9, 10, 9, 9, 10]
    head = [
        "rows",
        "gen s",
        "select s",
        "cpu s",
        "rows/s",
        "cpu us/row",
        "tree MB",
        "max proc MB",
        "naive s",
        "naive cpu",
        "naive MB",
    ]
    print()
    print(_fmt_row(head, widths))
    for r in results:
        s, b = r["select"], r.get("baseline") or {}
        print(
            _fmt_row(
                [
                    f"{r['rows']:,}", r["generate_s"], s["seconds"], s["cpu_s"], f"{r['rows'] / s['seconds']:,.0f}",
                    f"{1e6 * (s['cpu_s'] or s['seconds']) / r['rows']:.1f}", s["peak_tree_mb"], s["max_process_mb"],
                    b.get("seconds", "-"), b.get("cpu_s", "-"), b.get("peak_tree_mb", "-"),
                ],
                widths,
            )
        )  # fmt: skip
    for a, b in zip(results, results[1:]):
        k = b["rows"] / a["rows"]
        sa, sb = a["select"], b["select"]
        cpu = (sb["cpu_s"] / sa["cpu_s"]) if sa["cpu_s"] and sb["cpu_s"] else float("nan")
        print(
            f"\n{a['rows']:,} -> {b['rows']:,} rows (x{k:.0f}): wit select wall x{sb['seconds'] / sa['seconds']:.2f}, "
            f"cpu x{cpu:.2f} (linear: x{k:.0f}; cpu per row x{cpu / k:.2f}); "
            f"peak tree memory x{sb['peak_tree_mb'] / sa['peak_tree_mb']:.2f}, "
            f"largest process x{(sb['max_process_mb'] or 0) / (sa['max_process_mb'] or 1):.2f}"
        )
        if a.get("baseline") and b.get("baseline"):
            ba, bb = a["baseline"], b["baseline"]
            print(
                f"  naive in-memory baseline: wall x{bb['seconds'] / ba['seconds']:.2f}, "
                f"peak memory x{bb['peak_tree_mb'] / ba['peak_tree_mb']:.2f}"
            )
    for r in results:
        if r.get("baseline"):
            s, b = r["select"], r["baseline"]
            print(
                f"{r['rows']:,} rows: wit select / naive: wall x{s['seconds'] / b['seconds']:.2f}, "
                f"cpu x{(s['cpu_s'] or 0) / (b['cpu_s'] or 1):.2f}, peak memory x{s['peak_tree_mb'] / b['peak_tree_mb']:.2f}"
            )


def main(argv: list[str] | None = None) -> int:
    """Generate the pools, run both contenders on each, print figures and ratios."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="pools of 100k and 1M rows (about a minute or two)"
    )
    ap.add_argument(
        "--sizes", default="", help="comma-separated pool sizes (default 1000000,10000000)"
    )
    ap.add_argument("--queries", type=int, default=500_000, help="size of the query list")
    ap.add_argument("--cap", type=int, default=20_000, help="per-query cap")
    ap.add_argument("--workers", type=int, default=2, help="Beam local workers for wit select")
    ap.add_argument(
        "--files", type=int, default=8, help="Parquet files per pool (the unit of parallelism)"
    )
    ap.add_argument(
        "--baseline-max-rows", type=int, default=2_000_000,
        help="run the naive in-memory baseline only up to this many rows (it needs ~1 GB per 1M here)",
    )  # fmt: skip
    ap.add_argument(
        "--work", default="", help="working directory (default: a temp dir, removed after)"
    )
    ap.add_argument("--json", default="", help="also write the figures to this JSON file")
    ap.add_argument(
        "--rows-per-bucket", type=int, default=0,
        help="scale --spill-buckets with the pool (rows / this); 0 keeps the stage's default",
    )  # fmt: skip
    ap.add_argument(
        "--wat",
        nargs="*",
        default=None,
        help="instead: per-core read+filter+match rate on WAT files",
    )
    ap.add_argument(
        "--baseline", nargs=3, metavar=("POOL", "QUERIES", "CAP"), help=argparse.SUPPRESS
    )
    args = ap.parse_args(argv)
    if args.baseline:
        baseline(args.baseline[0], args.baseline[1], int(args.baseline[2]))
        return 0
    if args.wat is not None:
        with tempfile.TemporaryDirectory() as tmp:
            qpath = Path(tmp) / "queries.parquet"
            write_queries(qpath, vocabulary(max(args.queries, 1000), seed=0), args.queries)
            wat_throughput(args.wat, str(qpath), Path(tmp))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s] or (
        [100_000, 1_000_000] if args.quick else [1_000_000, 10_000_000]
    )
    work = Path(args.work or tempfile.mkdtemp(prefix="wit-select-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        vocab = vocabulary(max(args.queries, 1000), seed=0)
        qpath = work / "queries.parquet"
        write_queries(qpath, vocab, args.queries)
        print(f"query list: {args.queries:,} queries in {time.perf_counter() - t:.1f}s", flush=True)
        results = []
        for rows in sizes:
            pool = work / f"pool-{rows}"
            t = time.perf_counter()
            write_pool(pool, rows, vocab, args.files, seed=rows)
            gen = round(time.perf_counter() - t, 1)
            print(f"{rows:,} rows: pool written in {gen}s; running wit select...", flush=True)
            buckets = -(-rows // args.rows_per_bucket) if args.rows_per_bucket else 0
            r = {"rows": rows, "generate_s": gen, "spill_buckets": buckets or "default"}
            r["select"] = run_wit_select(
                pool,
                qpath,
                work / f"out-{rows}",
                args.cap,
                args.workers,
                work / f"select-{rows}.log",
                buckets,
            )
            print(
                f"  wit select: {r['select']['seconds']}s, peak tree {r['select']['peak_tree_mb']} MB, "
                f"largest process by role {r['select']['peak_mb_by_role']}",
                flush=True,
            )
            if rows <= args.baseline_max_rows:
                r["baseline"] = run_baseline(pool, qpath, args.cap, work / f"baseline-{rows}.log")
                print(
                    f"  naive baseline: {r['baseline']['seconds']}s, peak {r['baseline']['peak_tree_mb']} MB",
                    flush=True,
                )
            results.append(r)
            shutil.rmtree(pool, ignore_errors=True)
        report(results)
        if args.json:
            Path(args.json).write_text(
                json.dumps({"queries": args.queries, "cap": args.cap, "results": results}, indent=2)
            )
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
