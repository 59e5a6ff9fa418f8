"""Each composite transform of ``wit select`` in a TestPipeline on the local runner."""

from __future__ import annotations

import os

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.select import balance, extract, matching, transforms
from pipeline.select.normalize import FilterSpec
from pipeline.select.readers import ReaderSpec
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


def _gate(p):
    """A one-element gate, as the step before a bucket step hands it over."""
    return p | "Gate" >> beam.Create([{}])


def test_count_matches(tmp_path, settings):
    _spill(tmp_path, settings)
    cat, dog, car = (query_id(q) for q in QUERIES)
    with pipeline() as p:
        out = _gate(p) | transforms.CountMatches(settings)
        assert_that(out | beam.Map(lambda r: r["counts"]), equal_to([{cat: 3, dog: 2, car: 1}]))
    saved = extract.load_step(settings.work_dir, "count")
    assert saved["counts"] == {cat: 3, dog: 2, car: 1} and saved["buckets"] == [0, 1, 2]
    assert saved["dedup"]["duplicate_uid"] == 1  # /i0.jpg "a cat" again on dup.html


def test_thresholds_are_the_quota_th_smallest_draw(tmp_path, settings):
    _spill(tmp_path, settings)
    cat, dog, car = (query_id(q) for q in QUERIES)
    rows = [r for b in range(3) for r in extract.load_bucket(settings.work_dir, b, False)[0]]
    by_query = _by_query(_draws(rows, settings.seed))
    extract.save_step(settings.work_dir, "count", {"counts": {cat: 3, dog: 2, car: 1}})
    with pipeline() as p:
        got = _gate(p) | transforms.Thresholds(settings)
        # quota 1: queries with more than one match get their smallest draw; "red car" has one
        want = {cat: min(by_query[cat]), dog: min(by_query[dog])}
        assert_that(got | beam.Map(lambda r: r["thresholds"]), equal_to([want]))
    assert extract.load_step(settings.work_dir, "thresholds")["thresholds"] == want


def test_smallest_draws_merge_to_the_global_smallest():
    import random

    rng = random.Random(0)
    buckets = [sorted(rng.randrange(2**63) for _ in range(rng.randrange(0, 50))) for _ in range(7)]
    everything = sorted(d for b in buckets for d in b)
    for quota in (1, 5, 40, 1000):
        local = [b[:quota] for b in buckets]
        assert extract.merge_smallest(local, quota) == everything[:quota]
    rows = [{"uid": f"{i:032x}", "matched_query_ids": [1, 2] if i % 3 else [2]} for i in range(60)]
    got = extract.smallest_draws(rows, 0, {2}, 5)
    assert list(got) == [2] and got[2] == sorted(balance.draw(0, 2, r["uid"]) for r in rows)[:5]


def test_decide_selection_exact_keeps_quota_per_query(tmp_path, settings):
    _spill(tmp_path, settings)
    cat, dog, car = (query_id(q) for q in QUERIES)
    rows = [r for b in range(3) for r in extract.load_bucket(settings.work_dir, b, False)[0]]
    draws = list(_draws(rows, settings.seed))
    best = {q: min(ds) for q, ds in _by_query(draws).items() if q != car}
    extract.save_step(settings.work_dir, "count", {"counts": {cat: 3, dog: 2, car: 1}})
    extract.save_step(settings.work_dir, "thresholds", {"thresholds": best})
    with pipeline() as p:
        out = _gate(p) | transforms.DecideSelection(settings)
        assert_that(
            out | beam.Map(lambda r: (r["attributed"], r["selected"], r["buckets"])),
            equal_to([({cat: 1, dog: 1, car: 1}, _expected(rows, draws), [0, 1, 2])]),
        )
    written = [
        r
        for b in range(3)
        if os.path.exists(extract.selected_path(settings.work_dir, b))
        for r in pq.read_table(extract.selected_path(settings.work_dir, b)).to_pylist()
    ]
    assert len(written) == _expected(rows, draws)
    assert all(r["selected_for"] for r in written)


def _draws(rows, seed):
    """Every (query, draw) of the rows: the brute force the per-bucket steps must agree with."""
    return [(q, balance.draw(seed, q, r["uid"])) for r in rows for q in r["matched_query_ids"]]


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


def test_part_bounds_invert_part_of():
    import random

    rng = random.Random(1)
    uids = [f"{rng.randrange(2**128):032x}" for _ in range(2000)] + ["0" * 32, "f" * 32]
    for parts in (1, 2, 3, 7, 64):
        for uid in uids:
            part = balance.part_of(uid, parts)
            lo, hi = extract.part_bounds(part, parts)
            assert uid >= lo and (hi is None or uid < hi)


def _row(i: int, uid: str) -> dict:
    return {
        "uid": uid,
        "url": f"http://e.com/{i}.jpg",
        "caption": f"cap {i}",
        "page_url": "",
        "source_file": "t",
        "matched_query_ids": [1],
        "matched_queries": ["x"],
        "selected_for": [1],
    }


@pytest.mark.parametrize("group_rows", [extract.PART_GROUP_ROWS, 2])  # one group; one per part
def test_write_selection(tmp_path, monkeypatch, group_rows):
    monkeypatch.setattr(extract, "PART_GROUP_ROWS", group_rows)
    rows = [_row(i, f"{i * 2**120:032x}") for i in (9, 3, 14, 0, 7)]
    work = tmp_path / "work"
    for b, chunk in enumerate((rows[:2], rows[2:])):  # two buckets' selected files
        path = extract.selected_path(str(work), b)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        chunk = sorted(chunk, key=lambda r: r["uid"])
        pq.write_table(pa.Table.from_pylist(chunk, schema=extract.SELECTION_SCHEMA), path)
    out = tmp_path / "sel"
    with pipeline() as p:
        decided = p | beam.Create([{"selected": len(rows)}])
        written = decided | transforms.WriteSelection(str(work), str(out), 3, rows_per_part=2)
        assert_that(written | beam.Map(lambda r: sum(n for _, n in r["parts"])), equal_to([5]))
    uids = []
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == 3
    for part in parts:
        got = pq.read_table(part).column("uid").to_pylist()
        assert got == sorted(got)
        uids += got
    assert uids == sorted(r["uid"] for r in rows)  # parts are contiguous uid ranges


def test_spill_writer_bounds_the_rows_it_queues(tmp_path, monkeypatch):
    monkeypatch.setattr(extract, "SPILL_PENDING_ROWS", 10)
    writer = extract.SpillWriter(str(tmp_path), 0, buckets=8)
    rows = [
        {k: v for k, v in _row(i, f"{i:032x}").items() if k != "selected_for"} for i in range(57)
    ]
    for row in rows:
        writer.add(row)
        assert writer.queued < 10 and writer.queued == sum(map(len, writer.pending.values()))
    writer.close()
    back = [r for b in range(8) for r in extract.load_bucket(str(tmp_path), b, False)[0]]
    assert sorted(r["uid"] for r in back) == [r["uid"] for r in rows]
