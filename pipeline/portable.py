"""Beam building blocks that give the same result on every runner, and a check for the rest.

Beam's model allows more than every runner implements. Beam's Dask runner, the one our users run
on SLURM and Kubernetes clusters, translates only Create, ParDo, GroupByKey and Flatten, and:

- computes only the last transform of the pipeline and what it depends on (other branches never
  run);
- hands every output of a multi-output ParDo to each of its consumers (tags are not split);
- drops what a DoFn emits from ``finish_bundle``;
- recomputes a side input's whole upstream inside every task that reads it (an expensive or
  side-effecting upstream runs once per consumer partition);
- treats ``Reshuffle`` as an identity and ``beam.io.Read`` as nothing at all, and keeps the
  partitioning of each ``Create`` through every later step (a GroupByKey keeps its input's number
  of partitions).

So the stages use only what behaves the same everywhere: Create, ParDo with one output, GroupByKey,
Flatten and the composites built on them. A global barrier is a GroupByKey (:class:`Release`),
a global value is one combined element (:class:`Gather`), broadcast data goes through a file that
a released step reads, and every pipeline ends in one step that depends on all the others.
:func:`check_portable` refuses any pipeline that breaks these rules before it runs, naming the
step, so a runner's gap can never become a silently smaller dataset.
"""

from __future__ import annotations

import inspect
import zlib

import apache_beam as beam

from pipeline.invariants import PortabilityError


def stable_key(value) -> int:
    """A key that is the same in every process (Python's ``hash`` of a str is salted per process)."""
    return zlib.crc32(repr(value).encode("utf-8"))


class Spread(beam.PTransform):
    """Redistributes elements over the workers with a real GroupByKey.

    ``Reshuffle`` does the same on most runners but is an identity on Dask's, where the elements a
    FlatMap fanned out of one element would otherwise all stay in one task.
    """

    def expand(self, pcoll):
        return (
            pcoll
            | "Key" >> beam.Map(lambda v: (stable_key(v), v))
            | "Group" >> beam.GroupByKey()
            | "Ungroup" >> beam.FlatMap(lambda kv: kv[1])
        )


class _WithMarker(beam.CombineFn):
    """Wraps a CombineFn so that the marker element that guarantees an output is ignored."""

    def __init__(self, fn: beam.CombineFn):
        self.fn = fn

    def create_accumulator(self):
        return self.fn.create_accumulator()

    def add_input(self, acc, item):
        is_value, value = item
        return self.fn.add_input(acc, value) if is_value else acc

    def merge_accumulators(self, accs):
        return self.fn.merge_accumulators(accs)

    def extract_output(self, acc):
        return self.fn.extract_output(acc)


class Gather(beam.PTransform):
    """All elements combined by ``fn`` into exactly one element, also when there are none.

    ``CombineGlobally`` makes its output for an empty input through a side input (recomputed per
    task on Dask); here a one-element Create flattened with the input guarantees the output.
    """

    def __init__(self, fn: beam.CombineFn):
        super().__init__()
        self.fn = fn

    def expand(self, pcoll):
        marker = pcoll.pipeline | "Marker" >> beam.Create([(False, None)])
        values = pcoll | "Wrap" >> beam.Map(lambda v: (True, v))
        return (
            (marker, values)
            | "WithMarker" >> beam.Flatten()
            | "Combine" >> beam.CombineGlobally(_WithMarker(self.fn)).without_defaults()
        )


class ToListFn(beam.CombineFn):
    """Collects the elements into one list (sort it where order matters: merge order varies)."""

    def create_accumulator(self):
        return []

    def add_input(self, acc, value):
        acc.append(value)
        return acc

    def merge_accumulators(self, accs):
        merged = []
        for acc in accs:
            merged.extend(acc)
        return merged

    def extract_output(self, acc):
        return acc


class Release(beam.PTransform):
    """A one-element gate (a :class:`Gather`'s output) -> ``units``, spread over the workers.

    The units exist only once the gate's element does, and that element exists only once every
    input of its GroupByKey is committed, on every runner: a barrier without side inputs. The
    units are fanned out of the gate's element and spread by a GroupByKey (which also keeps Dask's
    partition count, and so the size of its shuffles, from growing step after step).
    """

    def __init__(self, units):
        super().__init__()
        self.units = list(units)

    def expand(self, gate):
        return (
            gate
            | "Units" >> beam.FlatMap(lambda _, units: units, self.units)
            | "Spread" >> Spread()
        )


def _attach_value(kv):
    _, tagged = kv
    records, values = [], []
    for is_value, item in tagged:
        (values if is_value else records).append(item)
    for value in values[:1]:
        for record in records:
            yield record, value


class WithValue(beam.PTransform):
    """records -> ``(record, value)``: the single element of ``value`` attached to every record.

    A broadcast through a GroupByKey on ``shards`` keys instead of a side input (which Dask's
    runner recomputes, upstream included, in every task that reads it).
    """

    def __init__(self, value, shards: int = 64):
        super().__init__()
        self.value, self.shards = value, shards

    def expand(self, records):
        shards = self.shards
        keyed = records | "KeyRecords" >> beam.Map(lambda r: (stable_key(r) % shards, (False, r)))
        copies = self.value | "CopyValue" >> beam.FlatMap(
            lambda v: ((s, (True, v)) for s in range(shards))
        )
        return (
            (keyed, copies)
            | "Meet" >> beam.Flatten()
            | "Join" >> beam.GroupByKey()
            | "Attach" >> beam.FlatMap(_attach_value)
        )


def sum_into(acc: dict, more: dict) -> dict:
    """Add the counts of ``more`` into ``acc`` (returned)."""
    for key, n in more.items():
        acc[key] = acc.get(key, 0) + n
    return acc


class SumCounts(beam.CombineFn):
    """Sums ``{key: count}`` dicts into one."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, counts):
        return sum_into(acc, counts)

    def merge_accumulators(self, accs):
        accs = iter(accs)
        total = next(accs, {})
        for acc in accs:
            sum_into(total, acc)
        return total

    def extract_output(self, acc):
        return acc


def _write_lines(shard: int, lines, prefix: str, suffix: str) -> tuple[str, int]:
    from pipeline import fs

    lines = sorted(lines)  # the same bytes whatever order the runner delivered them in
    path = f"{prefix}-{shard:05d}{suffix}"
    fs.write_text_atomic(path, "".join(line + "\n" for line in lines))
    return path, len(lines)


class WriteLines(beam.PTransform):
    """Text lines -> files ``{prefix}-NNNNN{suffix}``, one per shard of lines, written atomically;
    yields ``(path, lines)`` per file so the driver can check every file it should find.

    Beam's ``WriteToText`` finalises its files through side inputs (recomputed on Dask).
    """

    def __init__(self, prefix: str, shards: int = 16, suffix: str = ".jsonl"):
        super().__init__()
        self.prefix, self.shards, self.suffix = prefix, shards, suffix

    def expand(self, lines):
        shards, prefix, suffix = self.shards, self.prefix, self.suffix
        return (
            lines
            | "ByShard" >> beam.Map(lambda line: (stable_key(line) % shards, line))
            | "Group" >> beam.GroupByKey()
            | "Write" >> beam.Map(lambda kv: _write_lines(kv[0], kv[1], prefix, suffix))
        )


# ---- the check --------------------------------------------------------------------------------


def _leaves(applied, out: list) -> None:
    """Primitive steps in the order runners visit them; a Create or Reshuffle counts as one step
    (the Dask runner replaces each whole)."""
    if not applied.parts or isinstance(applied.transform, (beam.Create, beam.Reshuffle)):
        if applied.transform is not None:
            out.append(applied)
        return
    for part in applied.parts:
        _leaves(part, out)


def _finish_bundle_emits(dofn) -> bool:
    finish = type(dofn).finish_bundle
    return finish is not beam.DoFn.finish_bundle and inspect.isgeneratorfunction(finish)


def _problem(step) -> str | None:
    t = step.transform
    if step.side_inputs:
        return "reads a side input (Dask's runner recomputes its upstream in every task)"
    if isinstance(t, beam.io.Read):
        return "is a beam.io.Read (Dask's runner reads nothing)"
    if isinstance(t, beam.Reshuffle):
        return "is a Reshuffle (an identity on Dask's runner); use portable.Spread"
    if isinstance(t, beam.ParDo):
        if len(step.outputs) > 1:
            return "is a multi-output ParDo (Dask's runner gives every output to every consumer)"
        if _finish_bundle_emits(t.fn):
            return "emits from finish_bundle (Dask's runner drops those elements)"
    return None


def _ancestors(step, producers: dict, seen: set) -> None:
    stack = [step]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        inputs = list(current.inputs) + [si.pvalue for si in current.side_inputs]
        stack.extend(producers[id(p)] for p in inputs if id(p) in producers)


def check_portable(pipeline) -> None:
    """Raise PortabilityError naming the first step that some runner would execute wrongly."""
    root = pipeline.transforms_stack[0]
    steps: list = []
    _leaves(root, steps)
    for step in steps:
        problem = _problem(step)
        if problem:
            raise PortabilityError(f"pipeline step '{step.full_label}' {problem}")
    if not steps:
        return
    producers = {id(out): step for step in steps for out in step.outputs.values()}
    reached: set = set()
    _ancestors(steps[-1], producers, reached)
    for step in steps:
        if id(step) not in reached:
            raise PortabilityError(
                f"pipeline step '{step.full_label}' does not lead to the last step "
                f"'{steps[-1].full_label}' (Dask's runner computes only what the last step needs)"
            )
