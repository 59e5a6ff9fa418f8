"""Query matching throughput of ``wit select``, side by side with its competitors, and its memory.

Matching: a 500k-entry query list (wordfreq's English words, then two-word phrases) against
generated captions (4-12 words drawn with real English word frequencies), one core:

* ``ours``: :meth:`pipeline.select.matching.Matcher.match_batch`, the call the select step makes
  per batch of 16,384 captions (NFKC/case/token normalisation, the whole-token trie walked for
  the whole batch at once, (caption, query) pairs sorted); the captions' conversion to an Arrow
  array is timed with it;
* ``raw padded``: pyahocorasick alone, iterating the same padded patterns over ``" " + caption + " "``
  (no normalisation: the floor of any whole-token Aho-Corasick matcher);
* ``raw substring``: pyahocorasick over the raw query strings and raw captions (substring
  semantics: ``cat`` inside ``category``), iterating every hit;
* ``MetaCLIP``: the published approach, ``[q for q in queries if q in caption]`` over all entries,
  timed on a small sample and extrapolated.

Memory (``--memory``): peak RSS of a whole ``wit select`` run (one process, workers=1) at N and
10N candidates from generated Parquet tables.

    python -m bench.bench_match                 # 500k queries x 2M captions, + memory at 100k / 1M
    python -m bench.bench_match --quick         # 500k queries x 200k captions, no memory run
    python -m bench.bench_match --memory-only --memory-n 100000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ahocorasick
import numpy as np
import pyarrow as pa

from pipeline.select.extract import BATCH_ROWS
from pipeline.select.matching import Matcher, match_text

ROOT = Path(__file__).resolve().parents[1]


def make_queries(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct queries: English words by frequency, then frequent two-word phrases."""
    import wordfreq

    words = [
        w
        for w in wordfreq.top_n_list("en", 400_000, wordlist="large")
        if w.isalpha() and w.isascii()
    ]
    queries = list(dict.fromkeys(words))[: n * 3 // 5]
    rng = np.random.default_rng(seed)
    head = np.array(words[:5000])
    seen = set(queries)
    while len(queries) < n:
        for a, b in zip(rng.choice(head, 50_000), rng.choice(head, 50_000)):
            phrase = f"{a} {b}"
            if phrase not in seen:
                seen.add(phrase)
                queries.append(phrase)
    return queries[:n]


def make_captions(n: int, seed: int = 1) -> list[str]:
    """``n`` captions of 4-12 words drawn with their English frequencies (Zipf), some capitalised."""
    import wordfreq

    words = [w for w in wordfreq.top_n_list("en", 30_000) if w.isalpha()]
    freqs = np.array([wordfreq.word_frequency(w, "en") for w in words])
    vocab = np.array(words)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 13, n)
    picks = vocab[rng.choice(len(vocab), int(lengths.sum()), p=freqs / freqs.sum())]
    out, i = [], 0
    for k in lengths:
        text = " ".join(picks[i : i + k])
        out.append(text.capitalize() + "." if k % 3 == 0 else text)
        i += k
    return out


class Batched:
    """A contender that takes a list of captions at a time and returns its number of hits."""

    def __init__(self, fn):
        self.fn = fn


def _timed(fn, captions: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    if isinstance(fn, Batched):
        hits = fn.fn(captions)
    else:
        hits = 0
        for c in captions:
            hits += fn(c)
    return time.perf_counter() - start, hits


def rates(fns: dict, captions: list[str], rounds: int = 10) -> dict[str, tuple[float, int]]:
    """{name: (captions per second, hits)}, the contenders interleaved chunk by chunk.

    Interleaving spreads the drift of a shared machine's load evenly over all contenders.
    """
    secs = dict.fromkeys(fns, 0.0)
    hits = dict.fromkeys(fns, 0)
    step = max(1, len(captions) // rounds)
    for start in range(0, len(captions), step):
        chunk = captions[start : start + step]
        for name, fn in fns.items():
            s, h = _timed(fn, chunk)
            secs[name] += s
            hits[name] += h
    return {name: (len(captions) / secs[name], hits[name]) for name in fns}


def bench_matching(n_queries: int, n_captions: int, metaclip_sample: int) -> dict:
    """Captions per second of each contender over the same generated captions."""
    t = time.perf_counter()
    queries = make_queries(n_queries)
    captions = make_captions(n_captions)
    print(
        f"generated {len(queries):,} queries, {len(captions):,} captions in {time.perf_counter() - t:.1f}s"
    )

    t = time.perf_counter()
    ours = Matcher(enumerate(queries))
    _ = ours.trie  # built on first use: timed here, not in the matching
    build_ours = time.perf_counter() - t
    padded = ahocorasick.Automaton()
    for i, q in enumerate(queries):
        padded.add_word(match_text(q), i)
    padded.make_automaton()
    raw = ahocorasick.Automaton()
    for i, q in enumerate(queries):
        raw.add_word(q, i)
    raw.make_automaton()

    def match_batches(chunk: list[str]) -> int:
        hits = 0
        for a in range(0, len(chunk), BATCH_ROWS):
            rows, _ = ours.match_batch(pa.array(chunk[a : a + BATCH_ROWS], pa.string()))
            hits += len(rows)
        return hits

    p_iter, r_iter = padded.iter, raw.iter
    fns = {
        "ours": Batched(match_batches),
        "raw_padded": lambda c: sum(1 for _ in p_iter(" " + c + " ")),
        "raw_substring": lambda c: sum(1 for _ in r_iter(c)),
    }
    results = rates(fns, captions)
    sample = captions[:metaclip_sample]
    results.update(
        rates({"metaclip": lambda c: len([q for q in queries if q in c])}, sample, rounds=1)
    )
    return {
        "queries": len(queries),
        "captions": len(captions),
        "automaton_build_s": round(build_ours, 2),
        "rates": {k: {"captions_per_s": round(v[0], 1), "hits": v[1]} for k, v in results.items()},
        "metaclip_sample": len(sample),
    }


def print_matching(r: dict) -> None:
    """Figures and ratios of :func:`bench_matching`."""
    rates = {k: v["captions_per_s"] for k, v in r["rates"].items()}
    n = r["captions"]
    print(
        f"\nmatching, one core: {r['queries']:,} queries, {n:,} captions (trie built in {r['automaton_build_s']}s)"
    )
    for name, label in [
        ("ours", "ours (Matcher.match_batch, whole tokens)"),
        ("raw_padded", "raw pyahocorasick, padded patterns"),
        ("raw_substring", "raw pyahocorasick, substrings"),
        ("metaclip", f"MetaCLIP `in` loop (sample {r['metaclip_sample']})"),
    ]:
        secs = n / rates[name]
        print(f"  {label:<44} {rates[name]:>12,.0f} captions/s   {secs:>12,.1f} s for {n:,}")
    print(
        f"  ratio ours / raw padded:    {rates['ours'] / rates['raw_padded']:.2f}x  (target >= 0.8x)"
    )
    print(f"  ratio ours / raw substring: {rates['ours'] / rates['raw_substring']:.2f}x")
    print(f"  ratio ours / MetaCLIP:      {rates['ours'] / rates['metaclip']:,.0f}x")


def write_pool(root: Path, n: int, queries: list[str]) -> tuple[Path, Path]:
    """A Parquet table of ``n`` candidates and the query list (both streamed in batches)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    qpath = root / "queries.parquet"
    ids = [
        int.from_bytes(hashlib.blake2b(q.encode(), digest_size=8).digest(), "big") >> 1
        for q in queries
    ]
    pq.write_table(pa.table({"query": queries, "query_id": pa.array(ids, pa.int64())}), qpath)
    table = root / "pool.parquet"
    schema = pa.schema([("url", pa.string()), ("caption", pa.string())])
    with pq.ParquetWriter(table, schema) as w:
        for start in range(0, n, 100_000):
            k = min(100_000, n - start)
            caps = make_captions(k, seed=start + 7)
            urls = [f"http://img{(start + i) % 97}.example/{start + i}.jpg" for i in range(k)]
            w.write_table(pa.table({"url": urls, "caption": caps}, schema=schema))
    return table, qpath


def peak_rss_of_select(table: Path, qpath: Path, out: Path, cap: int) -> tuple[float, float, dict]:
    """(peak RSS MiB, seconds, summary) of ``wit select`` in a fresh child process, workers=1."""
    cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "select",
        "--out",
        str(out),
        "--workers",
        "1",
        "--no-progress",
        "--tables",
        str(table),
        "--queries-file",
        str(qpath),
        "--cap",
        str(cap),
    ]
    start = time.perf_counter()
    code = (
        "import resource, subprocess, sys, json;"
        f"p = subprocess.run(sys.argv[1:], capture_output=True, text=True, cwd={str(ROOT)!r});"
        "print(json.dumps([p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.stdout[-3000:], p.stderr[-2000:]]))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, *cmd], capture_output=True, text=True, check=True
    )
    rc, maxrss_kb, stdout, stderr = json.loads(res.stdout)
    if rc != 0:
        raise RuntimeError(f"wit select failed: {stderr}")
    summary = json.loads(stdout[stdout.index("{") :])
    return maxrss_kb / 1024, time.perf_counter() - start, summary


def bench_memory(n: int, n_queries: int, cap: int) -> list[dict]:
    """Peak RSS of ``wit select`` at ``n`` and ``10 n`` candidates."""
    queries = make_queries(n_queries)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_match_") as tmp:
        for size in (n, 10 * n):
            root = Path(tmp) / str(size)
            root.mkdir()
            table, qpath = write_pool(root, size, queries)
            mib, secs, summary = peak_rss_of_select(table, qpath, root / "out", cap)
            rows.append(
                {
                    "candidates": size,
                    "peak_rss_mib": round(mib, 1),
                    "seconds": round(secs, 1),
                    "matched": summary.get("matched"),
                    "selected": summary.get("selected"),
                }
            )
            print(
                f"  wit select on {size:>10,} candidates: peak RSS {mib:8.1f} MiB, {secs:7.1f} s, "
                f"matched {summary.get('matched'):,}, selected {summary.get('selected'):,}"
            )
    growth = rows[1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    print(f"  peak RSS grows {growth:.2f}x for 10x candidates (linear would be 10x)")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="200k captions, no memory run (< 1 min)")
    ap.add_argument("--queries", type=int, default=500_000)
    ap.add_argument("--captions", type=int, default=None, help="default 2M (200k with --quick)")
    ap.add_argument(
        "--metaclip-sample", type=int, default=None, help="captions timed for MetaCLIP's loop"
    )
    ap.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also measure wit select's peak RSS at N and 10N candidates (default: on unless --quick)",
    )
    ap.add_argument("--memory-only", action="store_true")
    ap.add_argument("--memory-n", type=int, default=100_000, help="N for the memory run")
    ap.add_argument("--memory-queries", type=int, default=2_000)
    ap.add_argument("--memory-cap", type=int, default=20)
    args = ap.parse_args(argv)
    if not args.memory_only:
        n_captions = args.captions or (200_000 if args.quick else 2_000_000)
        sample = args.metaclip_sample or (5 if args.quick else 20)
        print_matching(bench_matching(args.queries, n_captions, sample))
    if args.memory_only or (args.memory if args.memory is not None else not args.quick):
        print(
            f"\nmemory of a whole `wit select` run ({args.memory_queries:,} queries, cap {args.memory_cap}):"
        )
        bench_memory(args.memory_n, args.memory_queries, args.memory_cap)
    print(
        f"\n(peak RSS of this bench process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
