"""The select pipeline on other runners, offline.

* DataflowRunner: the job graph is built and translated with ``--dry_run=True``, which returns
  before the Dataflow API client is created, so no credentials are looked up and nothing is
  submitted; a socket guard makes any network connection during the build fail the test.
  ``--setup_file ./setup.py`` makes Beam build this project's sdist, the package workers install.
* PortableRunner (Beam's embedded job service, LOOPBACK workers): the same stage runs through the
  portable Job and Fn APIs here and writes a selection byte-identical to the local runner's.
"""

from __future__ import annotations

import hashlib
import socket
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.beam_runner import make_pipeline
from pipeline.config import RunConfig

pytest.importorskip(
    "apache_beam.runners.dataflow.internal.apiclient",
    reason="needs apache-beam[gcp] (the dev extra)",
)
select_stage = pytest.importorskip(
    "pipeline.select.stage", reason="the select stage is not in this checkout"
)
from pipeline.select.config import SelectConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "gs://wit-test-bucket"
DATAFLOW_ARGS = [
    "--project=wit-offline-test",
    "--region=us-central1",
    f"--temp_location={BUCKET}/tmp",
    f"--staging_location={BUCKET}/staging",
    "--dry_run=True",
    f"--setup_file={ROOT / 'setup.py'}",
    "--sdk_location=container",  # the SDK comes with the worker image; nothing to download
]


def _refuse(*args, **kwargs):
    raise AssertionError(f"network access during an offline build: {args[1:] or kwargs}")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails loudly."""
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)


@pytest.fixture(scope="module")
def dataflow_job():
    """The Dataflow job of ``wit select`` over gs:// inputs, built but never submitted."""
    from apache_beam import Create

    from pipeline.select.transforms import SelectPairs

    run = RunConfig(out=f"{BUCKET}/out", runner="DataflowRunner", beam_args=DATAFLOW_ARGS)
    select = SelectConfig(wat=[f"{BUCKET}/wat/*.warc.wat.gz"], cap=200, mode="exact")
    settings = select_stage.settings_for(run, select, f"{BUCKET}/out/queries/queries.parquet")
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(socket.socket, "connect", _refuse)
        mp.setattr(socket, "create_connection", _refuse)
        p = make_pipeline(run, "wit-select")
        files = p | "Inputs" >> Create(
            [(0, f"{BUCKET}/wat/a.warc.wat.gz"), (1, f"{BUCKET}/wat/b.warc.wat.gz")]
        )
        _ = files | "Select" >> SelectPairs(settings, f"{BUCKET}/out/selection", 1000)
        result = p.run()
    finally:
        mp.undo()
    return result.job


def _transforms(job) -> dict[str, str]:
    return {t.unique_name: t.spec.urn for t in job.proto_pipeline.components.transforms.values()}


def test_dataflow_job_builds_offline_with_every_labelled_step(dataflow_job):
    assert dataflow_job.proto.name == "wit-select"
    assert dataflow_job.proto.type.name == "JOB_TYPE_BATCH"
    names = _transforms(dataflow_job)
    for step in (
        "Select/Extract/ReadFilterMatch",
        "Select/Count/DedupAndCount",
        "Select/Thresholds/SmallestPerBucket",
        "Select/Decide/DecidePairs",
        "Select/Write/WritePart",
    ):
        assert step in names, step
    options = dataflow_job.options.get_all_options()
    assert (
        options["temp_location"].startswith(f"{BUCKET}/tmp")
        and options["project"] == "wit-offline-test"
    )


def test_per_query_combines_are_liftable(dataflow_job):
    names = _transforms(dataflow_job)
    # the count sums stay combines in the graph, so Dataflow lifts them: partial sums per worker
    # before the shuffle (each element is already one bucket's dict of per-query counts)
    for combine in ("Select/Count/SumCounts", "Select/Decide/SumDecisions"):
        inner = [n for n, urn in names.items() if n.startswith(combine + "/")]
        assert any(names[n] == "beam:transform:combine_per_key:v1" for n in inner), combine
    # the per-query smallest draws (exact mode): one list per (bucket, query) into a lifted combine
    assert names["Select/Thresholds/SmallestPerQuery"] == "beam:transform:combine_per_key:v1"


def test_workers_get_this_project_as_an_sdist_built_from_setup_py(dataflow_job):
    envs = list(dataflow_job.proto_pipeline.components.environments.values())
    assert envs and all(e.urn == "beam:env:docker:v1" for e in envs)
    from apache_beam.portability.api import beam_runner_api_pb2

    staged = {}
    for dep in envs[0].dependencies:
        role = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dep.role_payload)
        staged[role.staged_name] = beam_runner_api_pb2.ArtifactFilePayload.FromString(
            dep.type_payload
        ).path
    assert "workflow.tar.gz" in staged  # the name Beam's worker boot installs with pip
    with tarfile.open(staged["workflow.tar.gz"]) as sdist:
        members = {m.split("/", 1)[1] for m in sdist.getnames() if "/" in m}
    for module in (
        "pipeline/select/transforms.py",
        "pipeline/select/extract.py",
        "pipeline/fs.py",
        "pyproject.toml",
    ):
        assert module in members, module


# --- a portable runner that runs here ----------------------------------------------------------


def _inputs(tmp: Path) -> tuple[Path, Path]:
    colours = ["red", "green", "blue", "yellow"]
    shapes = ["circle", "square", "star"]
    urls, captions = [], []
    for i in range(240):
        urls.append(f"http://img{i % 5}.example/{i}.jpg")
        captions.append(f"a {colours[i % 4]} {shapes[i % 3]} number {i}")
    table = tmp / "pairs.parquet"
    pq.write_table(pa.table({"url": urls, "caption": captions}), table)
    queries = colours + shapes + ["red circle", "purple"]
    ids = [
        int.from_bytes(hashlib.blake2b(q.encode(), digest_size=8).digest(), "big") >> 1
        for q in queries
    ]
    qpath = tmp / "queries.parquet"
    pq.write_table(
        pa.table(
            {
                "query": queries,
                "query_id": pa.array(ids, pa.int64()),
                "sources": [["wordnet"]] * len(queries),
            }
        ),
        qpath,
    )
    return table, qpath


def test_select_on_the_portable_runner_matches_the_local_runner(tmp_path, no_network):
    table, qpath = _inputs(tmp_path)
    select = SelectConfig(
        tables=[str(table)],
        queries_file=str(qpath),
        cap=15,
        spill_buckets=4,
        selection_shard_rows=50,
    )
    outputs = {}
    for name, run in {
        "local": RunConfig(out=str(tmp_path / "local"), workers=1),
        "portable": RunConfig(
            out=str(tmp_path / "portable"),
            runner="PortableRunner",
            beam_args=["--job_endpoint=embed", "--environment_type=LOOPBACK"],
        ),
    }.items():
        summary = select_stage.run(run, select)
        parts = sorted((Path(run.out) / "selection").glob("part-*.parquet"))
        outputs[name] = (
            summary["selected"],
            [p.name for p in parts],
            [p.read_bytes() for p in parts],
        )
    assert outputs["local"][0] > 0
    assert outputs["portable"] == outputs["local"]
