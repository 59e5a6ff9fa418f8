"""The filter stage as one composite Beam transform: analyse, find duplicates, score, decide,
reshard. Only Create, ParDo, GroupByKey and Flatten (and composites of them) are used, so the
stage gives the same result on every runner (:mod:`pipeline.portable`).

CLIP scores go through Beam's RunInference with a PyTorch model handler. RunInference batches by
default with ``BatchElements``, whose DoFn emits its last batch from ``finish_bundle`` (dropped by
Dask's runner, refused by :func:`pipeline.portable.check_portable`); with the handler's
``with_no_batching()`` it takes batches built upstream instead, here one element per input shard
(the references of its successes), which the handler (:mod:`pipeline.filter.inference`)
scores ``clip_batch_size`` pairs at a time while reading the shard's tar once. No model metadata
or watch pattern is given, so RunInference reads no side input either. PyTorch is imported only
when the CLIP score is on.
"""

from __future__ import annotations

import pickle

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pipeline import fs
from pipeline.download import shard_writer as sw
from pipeline.filter import analyse, decide, dedup, quantile, reshard
from pipeline.filter.analyse import InputShard, Settings
from pipeline.portable import Gather, Spread, SumCounts, ToListFn, WithValue


def save_step(settings: Settings, step: str, payload) -> None:
    """``_work/steps/{step}.pickle``: what a step found, for later steps and the driver."""
    path = fs.join(settings.work_dir, "steps", f"{step}.pickle")
    fs.write_bytes_atomic(path, pickle.dumps(payload))


def load_step(work_dir: str, step: str):
    """What :func:`save_step` wrote (None when the step never ran)."""
    path = fs.join(work_dir, "steps", f"{step}.pickle")
    return pickle.loads(fs.read_bytes(path)) if fs.exists(path) else None


def _tagged(tag: str):
    return lambda item: [item[1]] if item[0] == tag else []


def _drops(edges: list, settings: Settings):
    components = dedup.groups(edges)
    save_step(settings, "dedup", dedup.summary(components, settings.examples, settings.dedup_exact))
    for drop in dedup.drops(components, settings.dedup_exact):
        yield drop.node.shard, ("drop", drop)


SCORES_SCHEMA = pa.schema([("key", pa.string()), ("uid", pa.string()), ("score", pa.float32())])


def _write_scores(item, settings: Settings):
    """(shard, [unit marker and (key, uid, score)...]) -> its scores file; (shard, pass-1 counts)."""
    shard, values = item
    scored = sorted(v for kind, v in values if kind == "score")
    columns = dict(zip(("key", "uid", "score"), map(list, zip(*scored)))) if scored else {}
    table = pa.Table.from_pydict(
        {name: columns.get(name, []) for name in SCORES_SCHEMA.names}, schema=SCORES_SCHEMA
    )
    sw.write_table_atomic(analyse.work_path(settings, "scores", shard), table)
    present = np.array([s for s in table.column("score").to_pylist() if s is not None])
    yield shard, quantile.high_counts(present.astype(np.float32))


def _pass_one(high: dict, fraction: float) -> dict:
    scored = sum(high.values())
    info = {"high": high, "scored": scored, "top_count": quantile.top_count(scored, fraction)}
    if fraction < 1 and info["top_count"]:
        info["bin"], info["rank"] = quantile.locate(high, info["top_count"])
    return info


def _low_counts(item, settings: Settings):
    shard, info = item
    if "bin" not in info:
        return [{"info": info, "low": {}}]
    t = analyse.read_table(analyse.work_path(settings, "scores", shard))
    scores = [s for s in t.column("score").to_pylist() if s is not None]
    return [{"info": info, "low": quantile.low_counts(scores, info["bin"])}]


class _MergeLow(beam.CombineFn):
    """Sums pass-2 counts; keeps pass 1's figures, which every element carries."""

    def create_accumulator(self):
        return {"info": None, "low": {}}

    def add_input(self, acc, item):
        acc["info"] = acc["info"] or item["info"]
        for k, n in item["low"].items():
            acc["low"][k] = acc["low"].get(k, 0) + n
        return acc

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for acc in accs:
            if acc["info"] is not None:
                self.add_input(out, acc)
        return out

    def extract_output(self, acc):
        return acc


def _cut(merged: dict, min_score: float, fraction: float, settings: Settings) -> decide.ClipCut:
    info = merged.get("info") or {"high": {}, "scored": 0, "top_count": 0}
    threshold = None
    if "bin" in info:
        threshold = quantile.kth_largest(info["high"], merged["low"], info["bin"], info["rank"])
    cut = decide.ClipCut(
        info["scored"], min_score, fraction, info["top_count"], threshold, info["high"]
    )
    save_step(settings, "clip", cut)
    return cut


def _decide(item, settings: Settings):
    (shard, values), cut = item
    facts = [v for kind, v in values if kind == "unit"]
    drops = [v for kind, v in values if kind == "drop"]
    if not facts:  # drops for a shard that was never analysed: a runner lost its facts
        return []
    inp = input_shard(settings, shard, facts[0].rows)
    return [decide.decide_shard(settings, inp, drops, cut)]


def input_shard(settings: Settings, shard: int, rows: int) -> InputShard:
    """The downloaded shard ``shard`` of ``settings.shards_dir``."""
    paths = sw.final_paths(settings.shards_dir, shard)
    return InputShard(shard, paths["parquet"], paths["tar"], rows)


def _plan(decided: list, settings: Settings):
    tasks = reshard.plan(decided, settings.reshard_samples)
    save_step(settings, "plan", {"decided": sorted(decided, key=lambda d: d.shard), "tasks": tasks})
    return tasks


class FilterShards(beam.PTransform):
    """Input shards -> filtered shards; every step's findings saved under ``_work/steps``."""

    def __init__(self, settings: Settings, spec=None, min_score=-1.0, fraction=1.0):
        super().__init__()
        self.settings, self.spec = settings, spec
        self.min_score, self.fraction = min_score, fraction

    def expand(self, inputs):
        s = self.settings
        analysed = inputs | "Analyse" >> beam.FlatMap(lambda inp: analyse.analyse_shard(s, inp))
        facts = analysed | "Facts" >> beam.FlatMap(_tagged("facts"))
        units = facts | "Units" >> beam.Map(lambda a: (a.shard, ("unit", a)))
        parts = [units]
        if s.dedup_exact or s.dedup_near:
            parts.append(self._duplicates(analysed))
        grouped = (
            parts
            | "WithDrops" >> beam.Flatten()
            | "ByShard" >> beam.GroupByKey()
            | "Listed" >> beam.Map(lambda kv: (kv[0], list(kv[1])))
        )
        if self.spec is not None:
            cut = self._scores(analysed, units)
            with_cut = grouped | "WithCut" >> WithValue(cut)
        else:
            with_cut = grouped | "NoCut" >> beam.Map(lambda r: (r, None))
        decided = with_cut | "Decide" >> beam.FlatMap(lambda item: _decide(item, s))
        return (
            decided
            | "AllDecided" >> Gather(ToListFn())
            | "Plan" >> beam.FlatMap(lambda decided: _plan(decided, s))
            | "SpreadTasks" >> Spread()
            | "Write" >> beam.Map(lambda task: reshard.write_output(s, task))
            | "AllWritten" >> Gather(ToListFn())
            | "SaveWritten" >> beam.Map(lambda written: save_step(s, "written", written))
        )

    def _duplicates(self, analysed):
        s = self.settings
        edges = []
        if s.dedup_exact:
            edges.append(
                analysed
                | "Sha256" >> beam.FlatMap(_tagged("sha"))
                | "BySha256" >> beam.GroupByKey()
                | "ExactEdges" >> beam.FlatMap(lambda kv: dedup.exact_edges(kv[1]))
            )
        if s.dedup_near:
            edges.append(
                analysed
                | "Bands" >> beam.FlatMap(_tagged("band"))
                | "ByBand" >> beam.GroupByKey()
                | "NearEdges"
                >> beam.FlatMap(
                    lambda kv: dedup.bucket_edges(
                        kv[0][0], list(kv[1]), s.bands, s.distance, s.thumb_diff
                    )
                )
            )
        return (
            edges
            | "AllEdges" >> beam.Flatten()
            | "Edges" >> Gather(ToListFn())
            | "Groups" >> beam.FlatMap(lambda edges: _drops(edges, s))
        )

    def _scores(self, analysed, units):
        from apache_beam.ml.inference.base import RunInference

        from pipeline.filter.inference import ClipScoreHandler

        s, fraction, min_score = self.settings, self.fraction, self.min_score
        scored = (
            analysed
            | "ScoreBatches" >> beam.FlatMap(_tagged("clip"))
            | "RunInference" >> RunInference(ClipScoreHandler(self.spec).with_no_batching())
            | "ScoreByShard"
            >> beam.Map(
                lambda r: (r.example.shard, ("score", (r.example.key, r.example.uid, r.inference)))
            )
        )
        high = (
            (units, scored)
            | "WithScores" >> beam.Flatten()
            | "ScoresByShard" >> beam.GroupByKey()
            | "WriteScores" >> beam.FlatMap(lambda kv: _write_scores(kv, s))
        )
        info = (
            high
            | "HighCounts" >> beam.Map(lambda kv: kv[1])
            | "PassOne" >> Gather(SumCounts())
            | "Locate" >> beam.Map(lambda h: _pass_one(h, fraction))
        )
        merged = (
            high
            | "ScoredShards" >> beam.Map(lambda kv: kv[0])
            | "WithPassOne" >> WithValue(info)
            | "PassTwo" >> beam.FlatMap(lambda item: _low_counts(item, s))
            | "LowCounts" >> Gather(_MergeLow())
        )
        return merged | "Cut" >> beam.Map(lambda m: _cut(m, min_score, fraction, s))
