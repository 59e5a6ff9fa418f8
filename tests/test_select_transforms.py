"""Each composite transform of ``wit select`` in a TestPipeline on the local runner."""

from __future__ import annotations

import dataclasses
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.select import (
    balance,
    bucket_steps,
    extract,
    matching,
    selection_parts,
    transforms,
    work_files,
)
from pipeline.select.normalize import FilterSpec, uid_for
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


def _spilled(work_dir: str, buckets: int) -> list[dict]:
    """Every spilled row, read back from the bucket files."""
    return [r for b in range(buckets) for r in bucket_steps.read_spill(work_dir, b).to_pylist()]


def _unique(settings) -> list[dict]:
    """The unique rows the count step wrote, with their query ids (the brute force's input)."""
    ids = matching.query_table(settings.queries_path).ids
    rows = []
    for b in range(settings.buckets):
        for r in bucket_steps.read_unique(settings.work_dir, b).to_pylist():
            rows.append(dict(r, matched_query_ids=[int(ids[i]) for i in r["query_index"]]))
    return rows


def test_extract_candidates(tmp_path, settings):
    with pipeline() as p:
        reports = p | beam.Create(files(tmp_path)) | transforms.ExtractCandidates(settings)
        matched = reports | beam.Map(
            lambda r: (r["source_file"].rsplit("/", 1)[1], r["counts"]["matched"])
        )
        assert_that(matched, equal_to([("a.warc.wat.gz", 4), ("b.warc.wat.gz", 2)]))
    spilled = _spilled(settings.work_dir, 3)
    assert sorted(r["caption"] for r in spilled) == [
        "a cat",
        "a cat",
        "a cat",
        "a cat and a dog",
        "a dog",
        "my red car",
    ]
    for r in spilled:  # each row in the bucket of its URL, with its uid
        assert r["uid"] == uid_for(r["url"], r["caption"])
        assert any(
            os.path.exists(
                work_files.spill_path(settings.work_dir, extract.bucket_of(r["url"], 3), i)
            )
            for i in (0, 1)
        )


def test_query_trie_is_saved_once_and_never_shipped(tmp_path, settings):
    import pickle

    fn = transforms.ExtractFileFn(settings)
    blob = pickle.dumps(fn)
    assert len(blob) < 5000  # settings only, never the query trie
    extract.save_query_trie(settings)
    (index, path), other = files(tmp_path)[0], pickle.loads(blob)
    first = next(iter(fn.process((index, path))))
    assert first == next(iter(other.process((index, path))))
    mapped = extract.query_matcher(settings)
    assert mapped is extract.query_matcher(settings)  # one trie per process, for every DoFn
    assert isinstance(mapped.trie.codes, np.memmap)  # mapped from the saved files
    built = matching.get_matcher(settings.queries_path).trie
    for name in ("ids", "root_child", "codes", "child", "key_of_node", "key_queries"):
        assert np.array_equal(getattr(mapped.trie, name), getattr(built, name)), name
    assert mapped.trie.vocab.equals(built.vocab)
    extract.forget_query_trie()  # the bucket steps let it go
    assert extract.query_matcher(settings) is not mapped


def _spill(tmp_path, settings):
    m = matching.get_matcher(settings.queries_path)
    for i, path in files(tmp_path):
        extract.extract_file(path, i, settings, m)


def _gate(p):
    """A one-element gate, as the step before a bucket step hands it over."""
    return p | "Gate" >> beam.Create([{}])


def _count(settings):
    for b in range(settings.buckets):
        bucket_steps.bucket_summary(settings.work_dir, b, settings.dedup_url)


def test_count_matches(tmp_path, settings):
    _spill(tmp_path, settings)
    cat, dog, car = (query_id(q) for q in QUERIES)
    with pipeline() as p:
        out = _gate(p) | transforms.CountMatches(settings)
        assert_that(out | beam.Map(lambda r: r["buckets"]), equal_to([[0, 1, 2]]))
    saved = work_files.load_step(settings.work_dir, "count")
    assert saved["counts"] == {cat: 3, dog: 2, car: 1} and saved["buckets"] == [0, 1, 2]
    assert saved["dedup"] == {"duplicate_uid": 1, "unique": 5}  # /i0.jpg "a cat" on dup.html


def test_thresholds_are_the_quota_th_smallest_draw(tmp_path, settings):
    _spill(tmp_path, settings)
    _count(settings)
    cat, dog, car = (query_id(q) for q in QUERIES)
    by_query = _by_query(_draws(_unique(settings), settings.seed))
    work_files.save_step(settings.work_dir, "count", {"counts": {cat: 3, dog: 2, car: 1}})
    with pipeline() as p:
        got = _gate(p) | transforms.Thresholds(settings)
        assert_that(got | beam.Map(lambda r: r["completed"]), equal_to([0]))
    # quota 1: queries with more than one match get their smallest draw; "red car" has one
    want = {cat: min(by_query[cat]), dog: min(by_query[dog])}
    assert work_files.load_step(settings.work_dir, "thresholds")["thresholds"] == want


@pytest.mark.parametrize("quota", [1, 2])
def test_thresholds_missed_by_the_cutoff_are_completed_exactly(
    tmp_path, settings, monkeypatch, quota
):
    """Draws that are not spread as expected (a cutoff below every draw) still give the exact
    thresholds: the queries short of ``quota`` draws are completed from the saved draws."""
    settings = dataclasses.replace(settings, quota=quota)
    _spill(tmp_path, settings)
    _count(settings)
    counts = {query_id(q): n for q, n in zip(QUERIES, (3, 2, 1))}
    by_query = _by_query(_draws(_unique(settings), settings.seed))
    work_files.save_step(settings.work_dir, "count", {"counts": counts})
    monkeypatch.setattr(balance, "threshold_cutoff", lambda count, quota: -1)
    with pipeline() as p:
        got = _gate(p) | transforms.Thresholds(settings)
        over = sum(n > quota for n in counts.values())
        assert_that(got | beam.Map(lambda r: r["completed"]), equal_to([over]))
    want = {q: sorted(ds)[quota - 1] for q, ds in by_query.items() if counts[q] > quota}
    assert work_files.load_step(settings.work_dir, "thresholds")["thresholds"] == want


def test_smallest_draws_merge_to_the_global_smallest():
    import random

    rng = random.Random(0)
    buckets = [
        np.array(sorted(rng.randrange(2**63) for _ in range(rng.randrange(0, 50))), np.int64)
        for _ in range(7)
    ]
    everything = sorted(int(d) for b in buckets for d in b)
    for quota in (1, 5, 40, 1000):
        local = [b[:quota] for b in buckets]
        assert bucket_steps.merge_smallest(local, quota).tolist() == everything[:quota]


def test_decide_selection_exact_keeps_quota_per_query(tmp_path, settings):
    _spill(tmp_path, settings)
    _count(settings)
    cat, dog, car = (query_id(q) for q in QUERIES)
    rows = _unique(settings)
    draws = list(_draws(rows, settings.seed))
    best = {q: min(ds) for q, ds in _by_query(draws).items() if q != car}
    work_files.save_step(settings.work_dir, "count", {"counts": {cat: 3, dog: 2, car: 1}})
    for b in range(settings.buckets):  # the draws step 3 saves for step 4
        list(bucket_steps.smallest_under_cutoff(b, settings))
    work_files.save_step(settings.work_dir, "thresholds", {"thresholds": best})
    with pipeline() as p:
        out = _gate(p) | transforms.DecideSelection(settings)
        assert_that(
            out | beam.Map(lambda r: (r["selected"], r["buckets"])),
            equal_to([(_expected(rows, draws), [0, 1, 2])]),
        )
    decided = work_files.load_step(settings.work_dir, "decide")
    assert decided["attributed"] == {cat: 1, dog: 1, car: 1}
    written = _selected(settings)
    assert len(written) == _expected(rows, draws)
    assert all(r["selected_for"] for r in written)
    names = dict(zip((cat, dog, car), QUERIES))
    for r in written:  # the selection's columns, as the query list names them
        assert r["matched_queries"] == [names[q] for q in r["matched_query_ids"]]
        assert set(r["selected_for"]) <= set(r["matched_query_ids"])


def test_decide_selection_probabilistic_is_metaclip_per_pair(tmp_path, settings):
    settings = dataclasses.replace(settings, mode="probabilistic")
    _spill(tmp_path, settings)
    _count(settings)
    counts = {query_id(q): n for q, n in zip(QUERIES, (3, 2, 1))}
    work_files.save_step(settings.work_dir, "count", {"counts": counts})
    with pipeline() as p:
        _gate(p) | transforms.DecideSelection(settings)
    want = {}
    for r in _unique(settings):
        chosen = balance.admit_probabilistic(
            r["uid"], r["matched_query_ids"], counts, settings.quota, settings.seed
        )
        if chosen:
            want[r["uid"]] = list(chosen)
    assert {r["uid"]: r["selected_for"] for r in _selected(settings)} == want


def _selected(settings) -> list[dict]:
    return [
        r
        for b in range(settings.buckets)
        if os.path.exists(work_files.selected_path(settings.work_dir, b))
        for r in pa.ipc.open_file(work_files.selected_path(settings.work_dir, b))
        .read_all()
        .to_pylist()
    ]


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


def _spill_row(i: int, uid: str, source_file: str = "t", page_url: str = "") -> dict:
    return {
        "uid": uid,
        "url": f"http://e.com/{i}.jpg",
        "caption": f"cap {i}",
        "page_url": page_url,
        "source_file": source_file,
        "query_index": [0],
    }


def test_dedup_keeps_the_smallest_page_of_a_pair_and_the_smallest_uid_of_a_url():
    rows = [
        _spill_row(1, "b" * 32, "f2", "p1"),
        _spill_row(1, "b" * 32, "f1", "p9"),  # the same pair on another page: this one stays
        _spill_row(1, "b" * 32, "f1", "p9"),
        _spill_row(2, "a" * 32),
        dict(_spill_row(2, "c" * 32), caption="other"),  # another caption of URL 2
    ]
    table = pa.Table.from_pylist(rows, schema=work_files.SPILL_SCHEMA)
    unique, removed = bucket_steps.dedup(table, dedup_url=False)
    assert [(r["uid"], r["source_file"]) for r in unique.to_pylist()] == [
        ("a" * 32, "t"),
        ("b" * 32, "f1"),
        ("c" * 32, "t"),
    ]
    assert removed == {"duplicate_uid": 2}
    unique, removed = bucket_steps.dedup(table, dedup_url=True)
    assert [r["uid"] for r in unique.to_pylist()] == ["a" * 32, "b" * 32]
    assert removed == {"duplicate_uid": 2, "duplicate_url": 1}


def test_part_bounds_invert_part_of():
    import random

    rng = random.Random(1)
    uids = [f"{rng.randrange(2**128):032x}" for _ in range(2000)] + ["0" * 32, "f" * 32]
    for n_parts in (1, 2, 3, 7, 64):
        for uid in uids:
            part = balance.part_of(uid, n_parts)
            lo, hi = selection_parts.part_bounds(part, n_parts)
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


# one group; one per part
@pytest.mark.parametrize("group_rows", [selection_parts.PART_GROUP_ROWS, 2])
def test_write_selection(tmp_path, monkeypatch, group_rows):
    monkeypatch.setattr(selection_parts, "PART_GROUP_ROWS", group_rows)
    rows = [_row(i, f"{i * 2**120:032x}") for i in (9, 3, 14, 0, 7)]
    work = tmp_path / "work"
    for b, chunk in enumerate((rows[:2], rows[2:])):  # two buckets' selected files
        chunk = sorted(chunk, key=lambda r: r["uid"])
        table = pa.Table.from_pylist(chunk, schema=work_files.SELECTION_SCHEMA)
        bucket_steps.write_selected(str(work), b, table)
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
    rows = [_spill_row(i, f"{i:032x}") for i in range(57)]
    for start in range(0, len(rows), 4):
        batch = pa.Table.from_pylist(rows[start : start + 4], schema=work_files.SPILL_SCHEMA)
        writer.add(batch, extract.buckets_of(batch.column("url").combine_chunks(), 8))
        assert writer.queued < 10 and writer.queued == sum(writer.pending_rows.values())
    writer.close()
    back = _spilled(str(tmp_path), 8)
    assert sorted(r["uid"] for r in back) == [r["uid"] for r in rows]
    for b in range(8):
        assert all(
            extract.bucket_of(r["url"], 8) == b
            for r in bucket_steps.read_spill(str(tmp_path), b).to_pylist()
        )
