"""Query builder throughput: the Beam pipeline (1 and 2 local workers) vs plain single-process Python.

    python -m bench.bench_queries                    # >= 200 MB of wikitext
    python -m bench.bench_queries --quick            # ~20 MB, under a minute or two
    python -m bench.bench_queries --mb 60 --repeat 3 # medians of three interleaved rounds

The dump is the demo world's Wikipedia generator (real MediaWiki XML, bz2 multistream) at the
size asked for, with 24 hourly pageview files; it is generated once and reused. The baseline
reads the same dump with the same reader, parser and tokenizer in one process, sums the counts in
one ``Counter`` and applies the same thresholds and PMI. The pipeline is the same work as Beam
transforms of ``wit queries`` (read, count, thresholds, PMI), started as ``wit queries`` starts;
``--stage`` also times the whole stage (all four sources, assembly and outputs). Each measurement
runs in a child process so its peak memory (``ru_maxrss`` of the process and of its worker
processes) is its own. With ``--repeat`` the contenders run in rounds, each round in a rotated
order, and every ratio is the median of the rounds' ratios to that round's baseline: a shared
machine's speed drifts by more than the differences measured here, and a round's contenders see
about the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time

ARTICLE_BYTES = 2600  # wikitext per generated article, roughly (incl. other pages)


def generate(out: str, mb: int) -> dict:
    """The bench dump and pageviews under ``out`` (reused when already there)."""
    from pipeline import fs
    from pipeline.demo_world import pageviews, wiki
    from pipeline.demo_world.vocab import load_vocab

    n = max(100, mb * 1_000_000 // ARTICLE_BYTES)
    base = os.path.join(out, f"world-{n}")
    meta = os.path.join(base, "meta.json")
    if os.path.exists(meta):
        return json.load(open(meta))
    os.makedirs(os.path.join(base, "pageviews"), exist_ok=True)
    vocab = load_vocab()
    articles = wiki.make_articles(vocab, n, random.Random("titles:0"))
    dump = os.path.join(base, "enwiki-20240101-pages-articles-multistream.xml.bz2")
    started = time.time()
    stats = wiki.write_dump(dump, os.path.join(base, "index.txt.bz2"), articles, vocab, 0)
    pageviews.write_hours(os.path.join(base, "pageviews"), articles, 24, 0)
    info = {
        "dump": dump,
        "pageviews": os.path.join(base, "pageviews", "*.gz"),
        "articles": n,
        "pages": stats.pages,
        "wikitext_bytes": stats.wikitext_bytes,
        "dump_bytes": fs.size(dump),
        "generate_s": round(time.time() - started, 1),
    }
    fs.write_text_atomic(meta, json.dumps(info))
    return info


def thresholds(mb: int) -> dict:
    """Thresholds scaled to the corpus (the real enwiki's 100 / 30 over ~20 GB of wikitext)."""
    return {
        "min_count": 20,
        "bigram_min_count": 10,
        "pmi_threshold": 3.0,
        "min_views": 500,
        "target_size": 50000,
    }


def baseline(info: dict, th: dict) -> dict:
    """Plain Python: read, parse, count in one process; then thresholds and PMI."""
    from queries.dump_reader import read_dump
    from queries.sources import TextCounter, pmi

    counter = TextCounter(max_entries=1 << 62)
    for rec in read_dump(info["dump"], split_bytes=1 << 40):
        counter.add(rec)
    uni, bi = counter.unigrams, counter.bigrams
    n = sum(uni.values())
    unigrams = [w for w, c in uni.items() if c >= th["min_count"]]
    bigrams = [
        xy
        for xy, c in bi.items()
        if c >= th["bigram_min_count"]
        and pmi(c, uni[xy.split(" ")[0]], uni[xy.split(" ")[1]], n) >= th["pmi_threshold"]
    ]
    return {"unigrams": len(unigrams), "bigrams": len(bigrams), "pages": dict(counter.stats)}


def wiki_pipeline(info: dict, th: dict, workers: int, out: str) -> dict:
    """The same work as the baseline as a Beam pipeline: read, parse, count, thresholds, PMI."""
    import apache_beam as beam

    from pipeline.beam_runner import make_pipeline
    from pipeline.config import RunConfig
    from queries.sources import Candidate
    from queries.stage import plan_splits
    from queries.transforms import BigramSource, ReadWikiCounts, UnigramSource

    work = os.path.join(out, f"wiki-w{workers}")
    p = make_pipeline(RunConfig(workers=workers), "bench-queries")
    wiki = (
        p
        | beam.Create(plan_splits([info["dump"]], 8 << 20))
        | ReadWikiCounts(64 << 20, True, bigram_floor=th["bigram_min_count"])
    )
    uni = wiki["unigrams"] | UnigramSource(th["min_count"])
    bi = (wiki["unigrams"], wiki["bigrams"]) | BigramSource(
        th["bigram_min_count"], th["pmi_threshold"], 0
    )
    for name, pcoll in (("unigrams", uni), ("bigrams", bi)):
        (
            pcoll
            | f"J{name}" >> beam.Map(Candidate.to_json)
            | f"W{name}"
            >> beam.io.WriteToText(os.path.join(work, name), num_shards=1, shard_name_template="")
        )
    p.run().wait_until_finish()
    return {k: sum(1 for _ in open(os.path.join(work, k))) for k in ("unigrams", "bigrams")}


def pipeline(info: dict, th: dict, workers: int, out: str) -> dict:
    """The whole ``wit queries`` stage on the local runner."""
    from pipeline.config import RunConfig
    from queries.config import QueriesConfig
    from queries.stage import run

    cfg = QueriesConfig(wiki_dumps=[info["dump"]], pageviews=[info["pageviews"]], split_mb=8, **th)
    summary = run(
        RunConfig(out=os.path.join(out, f"run-w{workers}"), workers=workers, progress=False), cfg
    )
    rep = json.load(open(os.path.join(out, f"run-w{workers}", "queries", "report.json")))
    return {
        "queries": summary["queries"],
        "unigrams": rep["sources"]["wiki_unigram"]["candidates"],
        "bigrams": rep["sources"]["wiki_bigram"]["candidates"],
    }


def child(kind: str, info: dict, th: dict, workers: int, out: str) -> None:
    """Run one measurement and print its figures as JSON (in a child process)."""
    started = time.time()
    if kind != "baseline":
        # the start-up of `wit queries` itself: the stage's modules and Beam imported with the
        # cyclic GC paused, then frozen (pipeline.stages.import_frozen)
        from pipeline.stages import import_frozen

        import_frozen("queries.transforms", with_beam=True)
    result = (
        {"baseline": baseline, "wiki": wiki_pipeline, "stage": pipeline}[kind](
            info, th, workers, out
        )
        if kind != "baseline"
        else baseline(info, th)
    )
    wall = time.time() - started
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    result.update(
        wall_s=wall,
        cpu_s=me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
        peak_rss_mb=me.ru_maxrss / 1024,
        peak_child_rss_mb=kids.ru_maxrss / 1024,
    )
    print("RESULT " + json.dumps(result))


def measure(kind: str, info: dict, th: dict, workers: int, out: str) -> dict:
    args = [
        sys.executable,
        "-m",
        "bench.bench_queries",
        "--child",
        kind,
        "--workers",
        str(workers),
        "--out",
        out,
    ]
    args += ["--info", json.dumps(info), "--th", json.dumps(th)]
    proc = subprocess.run(args, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{kind} (workers={workers}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main(argv: list[str] | None = None) -> int:
    """Generate (or reuse) the dump, measure baseline and pipeline, print the table and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="~20 MB of wikitext instead of 200 MB")
    ap.add_argument("--mb", type=int, default=None, help="MB of wikitext to generate")
    ap.add_argument("--out", default="out/bench/queries")
    ap.add_argument(
        "--workers", default="1,2", help="local worker counts to measure, comma separated"
    )
    ap.add_argument(
        "--stage", action="store_true", help="also time the whole stage (titles, WordNet, assembly)"
    )
    ap.add_argument("--repeat", type=int, default=1, help="interleaved rounds (medians shown)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--info", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--th", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, json.loads(args.info), json.loads(args.th), int(args.workers), args.out)
        return 0
    mb = args.mb or (20 if args.quick else 210)
    info = generate(args.out, mb)
    th = thresholds(mb)
    text_mb = info["wikitext_bytes"] / 1e6
    print(
        f"dump: {info['dump']}: {info['pages']} pages, {text_mb:.1f} MB wikitext, {info['dump_bytes'] / 1e6:.1f} MB bz2"
    )
    workers = [int(x) for x in args.workers.split(",")]
    contenders = [("python baseline", "baseline", 1)]
    contenders += [(f"beam local, {w} worker(s)", "wiki", w) for w in workers]
    if args.stage:
        contenders.append((f"whole stage, {workers[-1]} worker(s)", "stage", workers[-1]))
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in contenders}
    for round_ in range(max(1, args.repeat)):
        shift = round_ % len(contenders)
        for name, kind, w in contenders[shift:] + contenders[:shift]:
            runs[name].append(measure(kind, info, th, w, args.out))
    base_runs = runs["python baseline"]
    print(
        f"{'run':30} {'wall s':>7} {'cpu s':>7} {'MB/s':>6} {'MB/s/core':>9} {'x base':>7} "
        f"{'MB/cpu-s':>8} {'x base':>7} {'peak MB':>8} {'child MB':>8}"
    )
    for name, _, w in contenders:
        rs = runs[name]
        wall = statistics.median(r["wall_s"] for r in rs)
        cpu = statistics.median(r["cpu_s"] for r in rs)
        # per core: (text / wall / workers) over the baseline's text / wall, round by round
        per_core = [b["wall_s"] / r["wall_s"] / w for r, b in zip(rs, base_runs)]
        per_cpu = [b["cpu_s"] / r["cpu_s"] for r, b in zip(rs, base_runs)]
        print(
            f"{name:30} {wall:7.1f} {cpu:7.1f} {text_mb / wall:6.2f} {text_mb / wall / w:9.2f} "
            f"{statistics.median(per_core):7.2f} {text_mb / cpu:8.2f} {statistics.median(per_cpu):7.2f} "
            f"{max(r['peak_rss_mb'] for r in rs):8.0f} {max(r['peak_child_rss_mb'] for r in rs):8.0f}"
        )
        if len(rs) > 1 and name != "python baseline":
            print(f"{'':30} x base per core, each round: {', '.join(f'{x:.2f}' for x in per_core)}")
    if len(workers) > 1:
        one, two = (runs[f"beam local, {w} worker(s)"] for w in (workers[0], workers[-1]))
        ratio = statistics.median(a["wall_s"] / b["wall_s"] for a, b in zip(one, two))
        print(f"wall time {workers[0]} worker(s) / {workers[-1]} worker(s): {ratio:.2f}x")
    base = base_runs[0]
    same = all(
        r["unigrams"] == base["unigrams"] and r["bigrams"] == base["bigrams"]
        for name, kind, _ in contenders
        if kind == "wiki"
        for r in runs[name]
    )
    print(
        f"same unigram/bigram candidates as the baseline: {same} ({base['unigrams']} / {base['bigrams']})"
    )
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (shared: ratios matter more than figures)"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
