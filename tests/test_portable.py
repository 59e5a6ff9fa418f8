"""The runner-portable building blocks, and the check that refuses what some runner runs wrongly."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.portable import (
    Gather,
    PortabilityError,
    Release,
    Spread,
    SumCounts,
    ToListFn,
    WithValue,
    WriteLines,
    check_portable,
    stable_key,
)


def pipeline():
    return test_pipeline.TestPipeline(runner=FnApiRunner())


def test_stable_key_is_the_same_in_every_process():
    import subprocess
    import sys

    code = "from pipeline.portable import stable_key; print(stable_key(('shard', 7, 'word')))"
    runs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
        for _ in range(2)
    }
    assert runs == {f"{stable_key(('shard', 7, 'word'))}\n"}


def test_gather_gives_exactly_one_element_also_for_an_empty_input():
    with pipeline() as p:
        full = (
            p
            | "Full" >> beam.Create([{"a": 1}, {"a": 2, "b": 1}])
            | "SumFull" >> Gather(SumCounts())
        )
        empty = p | "Empty" >> beam.Create([]) | "SumEmpty" >> Gather(SumCounts())
        assert_that(full, equal_to([{"a": 3, "b": 1}]), label="full")
        assert_that(empty, equal_to([{}]), label="empty")


def test_release_emits_every_unit_once_after_the_gate():
    with pipeline() as p:
        units = p | beam.Create([None]) | Release(range(7))
        assert_that(units, equal_to(list(range(7))))


def test_spread_keeps_every_element_including_repeats():
    with pipeline() as p:
        out = p | beam.Create([3, 1, 3, 2]) | Spread()
        assert_that(out, equal_to([1, 2, 3, 3]))


def test_with_value_attaches_the_single_value_to_every_record():
    with pipeline() as p:
        value = p | "Value" >> beam.Create([10])
        out = p | "Records" >> beam.Create(["a", "b", "c"]) | WithValue(value, shards=2)
        assert_that(out, equal_to([("a", 10), ("b", 10), ("c", 10)]))


def test_write_lines_writes_each_line_once_and_lists_the_files(tmp_path):
    lines = [f"line {i}" for i in range(50)]
    with pipeline() as p:
        written = p | beam.Create(lines) | WriteLines(str(tmp_path / "out"), shards=4)
        listed = written | Gather(ToListFn())
        assert_that(listed | beam.Map(lambda fs: sum(n for _, n in fs)), equal_to([50]))
    files = sorted(tmp_path.glob("out-*.jsonl"))
    assert 1 < len(files) <= 4
    back = [ln for f in files for ln in f.read_text().splitlines()]
    assert sorted(back) == sorted(lines)
    for f in files:  # the same bytes whatever order the lines arrived in
        assert f.read_text().splitlines() == sorted(f.read_text().splitlines())


# ---- the check ---------------------------------------------------------------------------------


class _EmitsAtTheEnd(beam.DoFn):
    def start_bundle(self):
        self.seen = []

    def process(self, x):
        self.seen.append(x)

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindows

        for x in self.seen:
            yield GlobalWindows.windowed_value(x)


def _two_outputs(x):
    yield x
    yield beam.pvalue.TaggedOutput("odd", x)


def _side_input(p):
    side = p | "Side" >> beam.Create([1])
    _ = p | beam.Create([1, 2]) | beam.Map(lambda x, s: x + s, beam.pvalue.AsSingleton(side))


def _multi_output(p):
    out = p | beam.Create([1, 2]) | beam.FlatMap(_two_outputs).with_outputs("odd", main="main")
    _ = (out.main, out.odd) | beam.Flatten()


def _finish_bundle(p):
    _ = p | beam.Create([1, 2]) | beam.ParDo(_EmitsAtTheEnd())


def _reshuffle(p):
    _ = p | beam.Create([1, 2]) | beam.Reshuffle()


def _two_sinks(p):
    data = p | beam.Create([1, 2])
    _ = data | "SinkA" >> beam.Map(print)
    _ = data | "SinkB" >> beam.Map(print)


def _combine_with_default(p):
    _ = p | beam.Create([1, 2]) | beam.CombineGlobally(sum)


@pytest.mark.parametrize(
    "build, words",
    [
        (_side_input, "side input"),
        (_multi_output, "multi-output ParDo"),
        (_finish_bundle, "finish_bundle"),
        (_reshuffle, "Reshuffle"),
        (_two_sinks, "does not lead to the last step"),
        (_combine_with_default, "side input"),  # its default for an empty input is one
    ],
)
def test_check_refuses_what_the_dask_runner_runs_wrongly(build, words):
    p = beam.Pipeline(runner=FnApiRunner())
    build(p)
    with pytest.raises(PortabilityError, match=words):
        check_portable(p)


def test_check_accepts_the_blocks():
    p = beam.Pipeline(runner=FnApiRunner())
    gate = p | beam.Create([{"a": 1}]) | "Sum" >> Gather(SumCounts())
    value = gate | "Value" >> Gather(ToListFn())
    _ = gate | Release(range(3)) | WithValue(value) | "All" >> Gather(ToListFn())
    check_portable(p)
