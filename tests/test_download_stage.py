"""End-to-end runs of ``wit download`` against the demo image server: shards, accounting, trim,
resume after kill -9, --retry-failed, the demo-world allowance, and readers of the shards."""

from __future__ import annotations

import collections
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import RunConfig
from pipeline.demo_world import scene
from pipeline.demo_world.server import serve
from pipeline.demo_world.urls import image_url
from pipeline.download import stage, trim
from pipeline.download.config import DownloadConfig
from tests.download_helpers import selection_row, shard_layout, write_selection

pytestmark = pytest.mark.timeout(120)

IMG2DATASET_COLUMNS = {
    "key",
    "url",
    "caption",
    "status",
    "error_message",
    "width",
    "height",
    "original_width",
    "original_height",
    "exif",
    "sha256",
}
FAULTS = {4: "404", 9: "bomb", 13: "html", 17: "noai", 21: "redirect"}
N = 100
CAP = 8


def _rows(port: int, n: int = N, faults=FAULTS) -> list[dict]:
    rows = []
    for i in range(n):
        fmt = scene.scene_for(i, 0).fmt
        url = image_url(port, i, fmt, faults.get(i))
        rows.append(
            selection_row(
                url, f"picture {i}", {i % 4: f"query{i % 4}", 10 + i % 3: f"other{i % 3}"}
            )
        )
    return rows


def _config(port: int | None, **kw) -> DownloadConfig:
    values = dict(
        samples_per_shard=25,
        timeout=5.0,
        connect_timeout=2.0,
        read_timeout=3.0,
        backoff=0.05,
        allow_hosts=[f"127.0.0.1:{port}"] if port else [],
    )
    values.update(kw)
    return DownloadConfig(**values)


def _shard_rows(out: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(os.path.join(out, "shards", "[0-9]*.parquet"))):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def _tar_members(out: str) -> dict[str, bytes]:
    members = {}
    for path in sorted(glob.glob(os.path.join(out, "shards", "*.tar"))):
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                members[f"{os.path.basename(path)}/{m.name}"] = tar.extractfile(m).read()
    return members


@pytest.fixture(scope="module")
def server():
    with serve(0, slow_seconds=1.5, prerender=tuple(range(N))) as srv:
        yield srv


@pytest.fixture(scope="module")
def oversampled(server, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("oversampled"))
    rows = _rows(server.port)
    write_selection(out, rows, per_part=50, cap=CAP, oversample=2.0)
    summary = stage.run(RunConfig(out=out, workers=1, progress=False), _config(server.port))
    return out, rows, summary


def test_every_selected_row_appears_exactly_once(oversampled):
    out, rows, summary = oversampled
    shard_rows = _shard_rows(out)
    assert collections.Counter(r["uid"] for r in shard_rows) == collections.Counter(
        r["uid"] for r in rows
    )
    assert summary["selected"] == N and summary["shards"] == 4
    keys = [r["key"] for r in shard_rows]
    assert keys == sorted(keys) and len(set(keys)) == N
    assert keys[0] == "0000000" and keys[25] == "0000100"  # img2dataset keys: shard * 100 + row


def test_faults_become_statuses(oversampled):
    out, rows, _ = oversampled
    by_url = {r["url"]: r for r in _shard_rows(out)}
    outcome = {mode: by_url[rows[i]["url"]] for i, mode in FAULTS.items()}
    assert outcome["404"]["error_message"] == "http_404"
    assert outcome["bomb"]["status"] == "failed_to_resize"
    assert outcome["html"]["error_message"] == "not_an_image"
    assert outcome["noai"]["error_message"] == "opted_out"
    assert (
        outcome["redirect"]["status"] in ("success", "trimmed")
        and outcome["redirect"]["redirects"] == 3
    )


def test_trim_back_to_cap(oversampled):
    out, _, summary = oversampled
    shard_rows = _shard_rows(out)
    fetched = [r for r in shard_rows if r["status"] in ("success", "trimmed")]
    top = {}  # query -> the CAP smallest-ranked fetched pairs of that query
    for q in {q for r in fetched for q in r["selected_for"]}:
        members = sorted(
            (trim.rank(q, r["uid"]), r["uid"]) for r in fetched if q in r["selected_for"]
        )
        top[q] = {uid for _, uid in members[:CAP]}
    for r in fetched:
        in_some_top = any(r["uid"] in top[q] for q in r["selected_for"])
        assert (r["status"] == "success") == in_some_top, r["uid"]
    assert summary["by_status"]["trimmed"] > 0
    members = _tar_members(out)
    trimmed_keys = {r["key"] for r in shard_rows if r["status"] == "trimmed"}
    assert not any(name.split("/")[1].split(".")[0] in trimmed_keys for name in members)


def test_shards_read_with_webdataset_and_open_clip_style(oversampled):
    import webdataset as wds
    from PIL import Image

    out, _, _ = oversampled
    shard_rows = {r["key"]: r for r in _shard_rows(out)}
    tars = sorted(glob.glob(os.path.join(out, "shards", "*.tar")))
    # open_clip's pipeline: decode("pilrgb"), to_tuple("jpg;png;jpeg;webp", "txt")
    ds = (
        wds.WebDataset(tars, shardshuffle=False)
        .decode("pilrgb")
        .to_tuple("__key__", "jpg;png;jpeg;webp", "txt", "json")
    )
    seen = 0
    for key, img, txt, meta in ds:
        seen += 1
        assert isinstance(img, Image.Image) and min(img.size) == 256
        assert shard_rows[key]["status"] == "success" and txt == shard_rows[key]["caption"]
        assert meta["uid"] == shard_rows[key]["uid"] and (meta["width"], meta["height"]) == img.size
    assert seen == sum(r["status"] == "success" for r in shard_rows.values())


def test_stats_and_report_equal_row_sums(oversampled):
    out, _, _ = oversampled
    shard_rows = _shard_rows(out)
    statuses = collections.Counter(r["status"] for r in shard_rows)
    stats = [
        json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, "shards", "*_stats.json")))
    ]
    assert sum(s["count"] for s in stats) == len(shard_rows)
    assert sum(s["successes"] for s in stats) == statuses["success"]
    assert sum(s["failed_to_download"] for s in stats) == statuses["failed_to_download"]
    report = json.load(open(os.path.join(out, "reports", "download.json")))
    assert report["by_status"] == dict(statuses)
    assert report["samples"] == len(shard_rows) and report["bytes"]["downloaded"] == sum(
        r["bytes"] for r in shard_rows
    )
    assert report["by_reason"]["failed_to_download"]["http_404"] == 1
    assert report["timings"]["latency_p50_s"] is not None
    assert IMG2DATASET_COLUMNS <= set(
        pq.read_schema(glob.glob(os.path.join(out, "shards", "00000.parquet"))[0]).names
    )


def test_rerun_skips_complete_shards(oversampled, server):
    out, _, _ = oversampled
    before_members = _tar_members(out)
    before = server.stats()["requests"]
    stage.run(RunConfig(out=out, workers=1, progress=False), _config(server.port))
    assert server.stats()["requests"] == before  # nothing fetched again
    assert _tar_members(out) == before_members


def _staging_tar(out: str, shard: int) -> str:
    (path,) = glob.glob(os.path.join(out, "shards", "_staging", f"{shard:05d}-*.tar"))
    return path


def test_trimmed_shards_are_rebuilt_from_their_staging_tar(oversampled):
    out, _, _ = oversampled
    by_shard = collections.defaultdict(list)
    for r in _shard_rows(out):
        by_shard[int(r["key"][:5])].append(r)
    assert by_shard
    for shard, rows in by_shard.items():
        final = os.path.join(out, "shards", f"{shard:05d}.tar")
        staging = _staging_tar(out, shard)
        trimmed = {r["key"] for r in rows if r["status"] == "trimmed"}
        with tarfile.open(staging) as t:
            staged = {m.name: t.extractfile(m).read() for m in t.getmembers()}
        with tarfile.open(final) as t:
            final_members = {m.name: t.extractfile(m).read() for m in t.getmembers()}
        # the final tar is the staging tar less the trimmed samples' members
        assert final_members == {n: b for n, b in staged.items() if n.split(".")[0] not in trimmed}
        assert trimmed  # every shard of this fixture loses some samples to the trim
        assert os.stat(final).st_ino != os.stat(staging).st_ino


def test_a_staging_parquet_is_only_read_with_its_own_tar(server, tmp_path):
    """A crash between writing a shard's new staging tar and its Parquet leaves a tar that does not
    match the Parquet; the re-run must neither use it nor keep it."""
    out = str(tmp_path)
    write_selection(out, _rows(server.port, n=10, faults={3: "404"}))
    run = RunConfig(out=out, workers=1, progress=False)
    stage.run(run, _config(server.port))
    before = _comparable(out)
    good = _staging_tar(out, 0)
    # nothing trimmed: the final tar is the staging tar, linked (the images are written once)
    assert os.stat(good).st_ino == os.stat(os.path.join(out, "shards", "00000.tar")).st_ino
    orphan = os.path.join(out, "shards", "_staging", "00000-0123456789abcdef.tar")
    with open(good, "rb") as src, open(orphan, "wb") as dst:
        dst.write(src.read()[:-10240] + b"\0" * 20480)  # other bytes under another digest
    os.remove(good)  # and the Parquet's own tar gone: the shard is fetched again
    os.remove(os.path.join(out, "shards", "00000_stats.json"))
    stage.run(run, _config(server.port))
    assert _comparable(out) == before
    assert _staging_tar(out, 0) == good and not os.path.exists(orphan)


def test_two_workers_give_the_same_shards_as_one(server, tmp_path):
    rows = _rows(server.port, n=60, faults={4: "404", 9: "bomb"})
    outs = [str(tmp_path / "one"), str(tmp_path / "two")]
    for out, workers in zip(outs, (1, 2)):
        write_selection(out, rows, per_part=30, cap=CAP, oversample=2.0)
        cfg = _config(server.port, samples_per_shard=10, image_threads=workers - 1)
        stage.run(RunConfig(out=out, workers=workers, progress=False), cfg)
    assert _comparable(outs[0]) == _comparable(outs[1])


def test_the_next_shard_is_fetched_while_one_waits_on_a_slow_request(server, tmp_path):
    """Shard 0 holds a response that takes 1.5 s to start; with two shards in flight, shard 1 is
    fetched and staged meanwhile, and the shards are the same as when fetched one at a time."""
    rows = _rows(server.port, n=20, faults={2: "slow_first_byte"})
    outs, order = [str(tmp_path / "one"), str(tmp_path / "two")], []
    for out, in_flight in zip(outs, (1, 2)):
        write_selection(out, rows, per_part=10)  # part 0 (the slow row's) is shard 0
        cfg = _config(server.port, samples_per_shard=10, shards_in_flight=in_flight)
        stage.run(RunConfig(out=out, workers=1, progress=False), cfg)
        staged = glob.glob(os.path.join(out, "shards", "_staging", "0*.parquet"))
        order.append([os.path.basename(p) for p in sorted(staged, key=os.path.getmtime)])
    assert order == [["00000.parquet", "00001.parquet"], ["00001.parquet", "00000.parquet"]]
    assert _comparable(outs[0]) == _comparable(outs[1])


def test_a_failing_shard_fails_the_run_after_the_others_finish(server, tmp_path, monkeypatch):
    """The error reaches the caller, and no shard thread outlives the failed bundle (a retry
    would race it for the same staging files): the slow shard beside it was staged first."""
    from pipeline.download import phases

    out = str(tmp_path)
    write_selection(out, _rows(server.port, n=20, faults={12: "slow_first_byte"}), per_part=10)
    real = phases.fetch_shard

    def fetch_shard(task, *args, **kwargs):
        if task.shard == 0:
            raise RuntimeError("disk full")
        return real(task, *args, **kwargs)  # shard 1 waits 1.5 s on its slow row

    monkeypatch.setattr(phases, "fetch_shard", fetch_shard)
    with pytest.raises(Exception, match="disk full"):
        stage.run(
            RunConfig(out=out, workers=1, progress=False),
            _config(server.port, samples_per_shard=10),
        )
    staged = glob.glob(os.path.join(out, "shards", "_staging", "0*.parquet"))
    assert [os.path.basename(p) for p in staged] == ["00001.parquet"]


IMG2DATASET = """
import sys
from img2dataset import download
download(url_list=sys.argv[1], output_folder=sys.argv[2], processes_count=1, thread_count=4,
         input_format="parquet", url_col="url", caption_col="caption", image_size=256,
         resize_mode="keep_ratio", output_format="webdataset", encode_format="jpg",
         number_sample_per_shard=5, timeout=5, enable_wandb=False)
"""


def test_img2dataset_writes_the_same_layout_and_keys(server, tmp_path):
    """img2dataset itself, on the same URLs in the same order: same files, members and keys;
    its Parquet columns and JSON keys are a subset of ours, with the same types."""
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    write_selection(ours, _rows(server.port, n=12, faults={3: "404"}))
    stage.run(
        RunConfig(out=ours, workers=1, progress=False),
        _config(server.port, samples_per_shard=5),
    )
    selection = pq.read_table(os.path.join(ours, "selection", "part-00000.parquet"))
    src = str(tmp_path / "urls.parquet")
    pq.write_table(selection.select(["url", "caption"]), src)  # the selection's row order
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    subprocess.run(
        [sys.executable, "-c", IMG2DATASET, src, theirs],
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
    )
    a, b = shard_layout(os.path.join(ours, "shards")), shard_layout(theirs)
    assert a["files"] == b["files"] and a["members"] == b["members"] == ["jpg", "json", "txt"]
    assert set(b["columns"]) <= set(a["columns"]) and set(b["json_keys"]) <= set(a["json_keys"])
    mine = pq.read_table(os.path.join(ours, "shards", "00000.parquet"))
    other = pq.read_table(os.path.join(theirs, "00000.parquet"))
    for name in other.column_names:  # same types, except nulls img2dataset could not type
        if not pa.types.is_null(other.schema.field(name).type):
            assert mine.schema.field(name).type == other.schema.field(name).type, name
    theirs_rows = [r for p in sorted(glob.glob(os.path.join(theirs, "0*.parquet"))) for r in
                   pq.read_table(p).to_pylist()]  # fmt: skip
    ok = lambda rows: {r["key"]: r["url"] for r in rows if r["status"] == "success"}  # noqa: E731
    assert len(ok(theirs_rows)) == 11 and ok(_shard_rows(ours)) == ok(theirs_rows)


def test_no_allow_flag_refuses_loopback(server, tmp_path):
    out = str(tmp_path)
    write_selection(out, _rows(server.port, n=6, faults={}))
    before = server.stats()["requests"]
    stage.run(RunConfig(out=out, workers=1, progress=False), _config(None))
    rows = _shard_rows(out)
    assert {r["error_message"] for r in rows} == {"refused_loopback_address"}
    assert server.stats()["requests"] == before  # refused before connecting


def test_the_demo_world_is_served_and_allowed_around_its_download_only(tmp_path):
    from pipeline import all_stages

    out = str(tmp_path)
    with serve(0) as probe:  # find a free port, then release it
        port = probe.port
    os.makedirs(os.path.join(out, "world"))
    with open(os.path.join(out, "world", "manifest.json"), "w") as f:
        json.dump({"seed": 0, "port": port}, f)
    write_selection(out, _rows(port, n=6, faults={}))
    run = RunConfig(out=out, workers=1, progress=False)
    alone = stage.run(run, _config(None))  # the stage itself knows no demo world
    assert alone["downloaded"] == 0
    assert set(alone["by_status"]) == {"failed_to_download"}
    shutil.rmtree(os.path.join(out, "shards"))  # no staged refusals to reuse
    result = all_stages.execute("download", {"run": run, "download": _config(None)})
    assert result.summary["downloaded"] == 6
    report = json.load(open(os.path.join(out, "reports", "download.json")))
    assert report["allow_hosts"] == [f"127.0.0.1:{port}"]


def test_retry_failed_refetches_only_retryable_failures(server, tmp_path):
    out = str(tmp_path)
    faults = {0: "503once", 1: "404", 2: "429once"}
    write_selection(out, _rows(server.port, n=10, faults=faults))
    cfg = _config(server.port, retries=0)
    stage.run(RunConfig(out=out, workers=1, progress=False), cfg)
    first = {r["uid"]: r for r in _shard_rows(out)}
    first_images = {n: b for n, b in _tar_members(out).items() if n.endswith(".jpg")}
    assert sorted(r["error_message"] for r in first.values() if r["status"] != "success") == [
        "http_404",
        "http_429",
        "http_503",
    ]
    before = server.stats()["requests"]
    stage.run(
        RunConfig(out=out, workers=1, progress=False),
        _config(server.port, retries=0, retry_failed=True),
    )
    second = {r["uid"]: r for r in _shard_rows(out)}
    assert (
        server.stats()["requests"] - before == 2
    )  # the 429 and the 503, not the 404 nor successes
    assert [r["error_message"] for r in second.values() if r["status"] != "success"] == ["http_404"]
    assert all(
        second[u]["sha256"] == first[u]["sha256"] for u in first if first[u]["status"] == "success"
    )
    # the earlier successes' images come from the staging tar, beside the newly fetched ones
    images = {n: b for n, b in _tar_members(out).items() if n.endswith(".jpg")}
    assert len(images) == sum(r["status"] == "success" for r in second.values()) == 9
    assert all(images[n] == b for n, b in first_images.items())


def _cli(out: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipeline.cli",
        "download",
        "--out",
        out,
        "--workers",
        "2",  # the default: two worker threads, each with two shards in flight
        "--no-progress",
        "--samples-per-shard",
        "20",
        "--concurrency",
        "4",
        "--allow-hosts",
        f"127.0.0.1:{port}",
    ]


def _comparable(out: str):
    rows = [
        {k: v for k, v in r.items() if k not in ("seconds", "retries")} for r in _shard_rows(out)
    ]
    return rows, _tar_members(out)


def test_kill_9_then_rerun_equals_clean_run(server, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    # Slow responses in two shards keep the run going long enough to be killed in the middle.
    rows = _rows(
        server.port, n=N, faults={4: "404", 9: "bomb", 45: "slow_first_byte", 85: "slow_first_byte"}
    )
    clean, killed = str(tmp_path / "clean"), str(tmp_path / "killed")
    for out in (clean, killed):
        write_selection(out, rows, per_part=50)
    cfg = _config(server.port, samples_per_shard=20, concurrency=4)
    stage.run(RunConfig(out=clean, workers=1, progress=False), cfg)
    proc = subprocess.Popen(
        _cli(killed, server.port),
        env=env,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    staging = os.path.join(killed, "shards", "_staging")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(glob.glob(os.path.join(staging, "0*.parquet"))) < 2:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # mid-run: some shards staged, others in flight
    proc.wait()
    assert glob.glob(os.path.join(staging, "0*.parquet"))
    assert not os.path.exists(os.path.join(killed, "reports", "download.json")), (
        "killed after the end"
    )
    stage.run(RunConfig(out=killed, workers=1, progress=False), cfg)
    assert _comparable(killed) == _comparable(clean)
    assert not glob.glob(os.path.join(killed, "shards", "**", "*.tmp-*"), recursive=True)


def test_changed_image_options_refetch_instead_of_reusing(server, tmp_path):
    out = str(tmp_path)
    write_selection(out, _rows(server.port, n=8, faults={}))
    stage.run(RunConfig(out=out, workers=1, progress=False), _config(server.port))
    stage.run(RunConfig(out=out, workers=1, progress=False), _config(server.port, image_size=64))
    sizes = {min(r["width"], r["height"]) for r in _shard_rows(out) if r["status"] == "success"}
    assert sizes == {64}
    assert all(
        b.startswith(b"\xff\xd8") for n, b in _tar_members(out).items() if n.endswith(".jpg")
    )


def test_download_transform_in_a_test_pipeline(server, tmp_path):
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from pipeline.download import phases
    from pipeline.download.transforms import DownloadShards

    out = str(tmp_path)
    write_selection(out, _rows(server.port, n=30, faults={3: "404"}), per_part=12)
    shards_dir = os.path.join(out, "shards")
    tasks = phases.plan_tasks(sorted(glob.glob(os.path.join(out, "selection", "*.parquet"))), 10)
    cfg = _config(server.port)
    transform = DownloadShards(
        shards_dir, stage.FetchOptions.from_config(cfg), stage.image_options(cfg), "jpg", cap=4
    )
    with TestPipeline(runner=FnApiRunner()) as p:
        stats = p | beam.Create(tasks) | transform
        counts = stats | beam.Map(lambda kv: (kv[0], kv[1]["count"]))
        fetched = (
            stats
            | "Fetched" >> beam.Map(lambda kv: kv[1]["successes"] + kv[1]["trimmed"])
            | beam.CombineGlobally(sum)
        )
        assert_that(counts, equal_to([(0, 10), (1, 10), (2, 10)]))
        assert_that(fetched, equal_to([29]), label="CheckFetched")  # all but the 404
    # cap 4 per query over 4 + 3 queries: at most 4 * 7 pairs survive
    kept = sum(r["status"] == "success" for r in _shard_rows(out))
    assert 4 <= kept <= 28
