"""Each composite transform of ``wit select`` in a TestPipeline on the local runner."""

from __future__ import annotations

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.select import balance, extract, matching, transforms
from pipeline.select.candidates import ReaderSpec
from pipeline.select.normalize import FilterSpec
from tests.select_helpers import img, query_id, write_queries, write_wat

QUERIES = ["cat", "dog", "red car"]
CAPTIONS = [
    "a cat",
    "a dog",
    "a cat and a dog",
    "my red car",
    "red carpet",
    "nothing here",
    "a cat",
]


def pipeline():
    return test_pipeline.TestPipeline(runner=FnApiRunner())


@pytest.fixture
def settings(tmp_path):
    matching.clear_cache()
    qpath = write_queries(tmp_path / "queries.parquet", QUERIES)
    pages = [(f"http://e.com/p{i}.html", [img(f"/i{i}.jpg", c)]) for i, c in enumerate(CAPTIONS)]
    pages.append(("http://e.com/dup.html", [img("/i0.jpg", "a cat")]))  # same pair, other page
    write_wat(tmp_path / "a.warc.wat.gz", pages[:4])
    write_wat(tmp_path / "b.warc.wat.gz", pages[4:])
    return extract.Settings(
        queries_path=str(qpath),
        case="auto",
        work_dir=str(tmp_path / "work"),
        buckets=3,
        reader=ReaderSpec(),
        filters=FilterSpec(),
        dedup_url=False,
        mode="exact",
        quota=1,
        seed=0,
    )


def files(tmp_path):
    return [(0, str(tmp_path / "a.warc.wat.gz")), (1, str(tmp_path / "b.warc.wat.gz"))]


def test_extract_candidates(tmp_path, settings):
    with pipeline() as p:
        reports = p | beam.Create(files(tmp_path)) | transforms.ExtractCandidates(settings)
        matched = reports | beam.Map(
            lambda r: (r["source_file"].rsplit("/", 1)[1], r["counts"]["matched"])
        )
        assert_that(matched, equal_to([("a.warc.wat.gz", 4), ("b.warc.wat.gz", 2)]))
    spilled = [r for b in range(3) for r in extract.load_bucket(settings.work_dir, b, False)[0]]
    assert sorted(r["caption"] for r in spilled) == [
        "a cat",
        "a cat",
        "a cat and a dog",
        "a dog",
        "my red car",
    ]


def test_automaton_is_built_in_setup_not_shipped(settings):
    import pickle

    fn = transforms.ExtractFileFn(settings)
    blob = pickle.dumps(fn)
    assert fn.matcher is None and len(blob) < 5000  # settings only, never the automaton
    fn.setup()
    other = pickle.loads(blob)
    other.setup()
    assert other.matcher is fn.matcher  # one automaton per process, shared by every DoFn instance


def _spill(tmp_path, settings):
    m = matching.get_matcher(settings.queries_path)
    for i, path in files(tmp_path):
        extract.extract_file(path, i, settings, m)


def test_count_matches(tmp_path, settings):
    _spill(tmp_path, settings)
    cat, dog, car = (query_id(q) for q in QUERIES)
    with pipeline() as p:
        barrier = p | "Barrier" >> beam.Create([None])
        out = p | beam.Create(range(3)) | transforms.CountMatches(settings, barrier)
        assert_that(out["counts"], equal_to([(cat, 3), (dog, 2), (car, 1)]), label="counts")
        dups = (
            out["dedup"] | beam.Map(lambda d: d.get("duplicate_uid", 0)) | beam.CombineGlobally(sum)
        )
        assert_that(dups, equal_to([1]), label="dups")  # /i0.jpg "a cat" again on dup.html
        assert_that(out["draws"] | beam.combiners.Count.Globally(), equal_to([6]), label="draws")


def test_decide_selection_exact_keeps_quota_per_query(tmp_path, settings):
    _spill(tmp_path, settings)
    cat, dog, car = (query_id(q) for q in QUERIES)
    rows = [r for b in range(3) for r in extract.load_bucket(settings.work_dir, b, False)[0]]
    draws = list(extract.bucket_draws(rows, settings.seed))
    with pipeline() as p:
        counts = p | "Counts" >> beam.Create([(cat, 3), (dog, 2), (car, 1)])
        d = p | "Draws" >> beam.Create(draws)
        out = p | beam.Create(range(3)) | transforms.DecideSelection(settings, counts, d)
        assert_that(out["attributed"], equal_to([(cat, 1), (dog, 1), (car, 1)]), label="attributed")
        n = out["selected"] | beam.combiners.Count.Globally()
        assert_that(n, equal_to([_expected(rows, draws)]), label="n")


def _by_query(draws):
    out: dict = {}
    for q, d in draws:
        out.setdefault(q, []).append(d)
    return out


def _expected(rows, draws):
    """Pairs holding the smallest draw of at least one of their queries (quota 1)."""
    best = {q: min(ds) for q, ds in _by_query(draws).items()}
    return sum(
        any(balance.draw(0, q, r["uid"]) == best[q] for q in r["matched_query_ids"]) for r in rows
    )


def test_write_selection(tmp_path):
    rows = [
        {
            "uid": f"{i * 2**120:032x}",
            "url": f"http://e.com/{i}.jpg",
            "caption": f"cap {i}",
            "page_url": "",
            "source_file": "t",
            "matched_query_ids": [1],
            "matched_queries": ["x"],
            "selected_for": [1],
        }
        for i in (9, 3, 14, 0, 7)
    ]
    out = tmp_path / "sel"
    with pipeline() as p:
        written = p | beam.Create(rows) | transforms.WriteSelection(str(out), rows_per_part=2)
        assert_that(
            written | beam.MapTuple(lambda path, n: n) | beam.CombineGlobally(sum), equal_to([5])
        )
    uids = []
    for part in sorted(out.glob("part-*.parquet")):
        got = pq.read_table(part).column("uid").to_pylist()
        assert got == sorted(got)
        uids += got
    assert uids == sorted(r["uid"] for r in rows)  # parts are contiguous uid ranges
