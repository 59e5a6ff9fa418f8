"""Plain-function tests of the downloader: safety checks, the fetcher's refusals, images, keys, trim."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from PIL import Image
from yarl import URL

from pipeline.config import ConfigError, build_section
from pipeline.download import fetch, images, safety, shard_writer, trim

pytestmark = pytest.mark.timeout(30)


# -- addresses and URLs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ip, reason",
    [
        ("127.0.0.1", "refused_loopback_address"),
        ("::1", "refused_loopback_address"),
        ("10.1.2.3", "refused_private_address"),
        ("192.168.0.7", "refused_private_address"),
        ("172.16.5.5", "refused_private_address"),
        ("169.254.169.254", "refused_link_local_address"),
        ("fe80::1", "refused_link_local_address"),
        ("224.0.0.1", "refused_multicast_address"),
        ("0.0.0.0", "refused_private_address"),
        ("240.0.0.1", "refused_private_address"),
        ("100.64.0.1", "refused_private_address"),  # carrier-grade NAT
        ("::ffff:10.0.0.1", "refused_private_address"),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_problem(ip, reason):
    assert safety.address_problem(ip) == reason


@pytest.mark.parametrize(
    "url, allow, reason",
    [
        ("ftp://example.org/a.jpg", (), "unsupported_scheme"),
        ("file:///etc/passwd", (), "unsupported_scheme"),
        ("data:image/png;base64,xx", (), "unsupported_scheme"),
        ("http://127.0.0.1:8000/a.jpg", (), "refused_loopback_address"),
        ("http://127.0.0.1:8000/a.jpg", ("127.0.0.1:8000",), None),
        ("http://127.0.0.1:8001/a.jpg", ("127.0.0.1:8000",), "refused_loopback_address"),
        ("http://[::1]/a.jpg", (), "refused_loopback_address"),
        ("http://169.254.169.254/latest/meta-data", (), "refused_link_local_address"),
        ("http://localhost/a.jpg", (), "refused_loopback_address"),
        ("https://example.org/a.jpg", (), None),  # names are checked by the resolver
    ],
)
def test_check_url(url, allow, reason):
    assert safety.check_url(URL(url), safety.HostPolicy(allow)) == reason


@pytest.mark.parametrize(
    "values, blocked",
    [
        (["noai"], True),
        (["noimageai"], True),
        (["noindex, NoAI"], True),
        (["wit-builder: noai"], True),
        (["otherbot: noai"], False),
        (["noindex", "nofollow"], False),
        (["unavailable_after: 25 Jun 2010 15:00:00 PST"], False),
        ([], False),
    ],
)
def test_opted_out(values, blocked):
    assert safety.opted_out(values, "wit-builder") is blocked


def test_user_agent_token():
    assert safety.user_agent_token("wit-builder/0.1 (+https://x)") == "wit-builder"


def test_retry_after_parsing():
    assert fetch.parse_retry_after("3") == 3.0
    assert fetch.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert fetch.parse_retry_after("soon") is None


def test_config_errors_name_the_flag():
    with pytest.raises(ConfigError, match="--per-host"):
        build_section("download", {"per_host": 0})
    with pytest.raises(ConfigError, match="--allow-hosts"):
        build_section("download", {"allow_hosts": ["http://x/y"]})
    with pytest.raises(ConfigError, match="resize_mode"):
        build_section("download", {"resize_mode": "stretch"})


# -- refusals before connecting (a counting TCP server + a resolver stub) ------------------------


class CountingServer:
    """A minimal HTTP server that counts TCP connections; answers 302 to ``redirect_to`` or an image."""

    def __init__(self, redirect_to: str | None = None):
        self.connections = 0
        self.redirect_to = redirect_to
        self.port = 0

    async def _handle(self, reader, writer):
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        if self.redirect_to:
            head = f"HTTP/1.1 302 Found\r\nLocation: {self.redirect_to}\r\nContent-Length: 0\r\n"
            writer.write((head + "Connection: close\r\n\r\n").encode())
        else:
            body = _jpeg(64, 48)
            head = f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n"
            writer.write((head + "Connection: close\r\n\r\n").encode() + body)
        await writer.drain()
        writer.close()

    async def start(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self


async def _fetch_with(url: str, mapping: dict, allow=()):
    opts = fetch.FetchOptions(
        timeout=2, connect_timeout=1, read_timeout=1, retries=0, allow_hosts=tuple(allow)
    )
    async with fetch.Fetcher(opts, safety.StaticResolver(mapping)) as f:
        return await f.fetch(url)


def test_refusals_happen_before_connecting():
    async def scenario():
        target = await CountingServer().start()
        port = target.port
        results = {
            "loopback_ip": await _fetch_with(f"http://127.0.0.1:{port}/a.jpg", {}),
            "name_to_loopback": await _fetch_with(
                f"http://evil.test:{port}/a.jpg", {"evil.test": "127.0.0.1"}
            ),
            "name_to_private": await _fetch_with(
                f"http://intranet.test:{port}/a.jpg", {"intranet.test": "10.0.0.7"}
            ),
            "name_to_metadata": await _fetch_with(
                "http://meta.test/latest", {"meta.test": "169.254.169.254"}
            ),
        }
        connections_after_refusals = target.connections
        # An allowed host redirecting to a name that resolves to a private address.
        hop = await CountingServer(redirect_to=f"http://evil.test:{port}/b.jpg").start()
        redirect = await _fetch_with(
            f"http://ok.test:{hop.port}/a.jpg",
            {"ok.test": "127.0.0.1", "evil.test": "127.0.0.1"},
            allow=(f"ok.test:{hop.port}",),
        )
        allowed = await _fetch_with(
            f"http://127.0.0.1:{port}/a.jpg", {}, allow=(f"127.0.0.1:{port}",)
        )
        return (
            results,
            connections_after_refusals,
            redirect,
            hop.connections,
            allowed,
            target.connections,
        )

    results, refused_connections, redirect, hop_connections, allowed, final_connections = (
        asyncio.run(scenario())
    )
    assert results["loopback_ip"].reason == "refused_loopback_address"
    assert results["name_to_loopback"].reason == "refused_loopback_address"
    assert results["name_to_private"].reason == "refused_private_address"
    assert results["name_to_metadata"].reason == "refused_link_local_address"
    assert refused_connections == 0  # nothing reached the server
    assert redirect.reason == "refused_loopback_address" and hop_connections == 1
    assert allowed.ok and final_connections == 1  # the allow-list opens exactly that host:port


# -- images ------------------------------------------------------------------------------------


def _jpeg(w: int, h: int, colour=(200, 30, 30), exif=None) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", (w, h), colour)
    kwargs = {"exif": exif} if exif is not None else {}
    img.save(buf, "JPEG", quality=90, **kwargs)
    return buf.getvalue()


def _png(w: int, h: int, mode="RGBA", colour=(0, 0, 255, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "mode, size, expected",
    [
        ("keep_ratio", (800, 600), (341, 256)),
        ("keep_ratio", (600, 800), (256, 341)),
        ("keep_ratio", (100, 50), (512, 256)),  # upscaled like img2dataset's default
        ("center_crop", (800, 600), (256, 256)),
        ("center_crop", (90, 300), (256, 256)),
        ("border", (800, 600), (256, 256)),
        ("no", (800, 600), (800, 600)),
    ],
)
def test_resize_modes(mode, size, expected):
    opts = images.ImageOptions(resize_mode=mode, min_image_size=0)
    res = images.process_image(_jpeg(*size), opts)
    assert res.status == "success"
    assert (res.width, res.height) == expected
    assert (res.original_width, res.original_height) == size
    assert Image.open(io.BytesIO(res.data)).size == expected


def test_border_pads_white():
    res = images.process_image(
        _jpeg(800, 400, (0, 0, 0)), images.ImageOptions(resize_mode="border")
    )
    img = Image.open(io.BytesIO(res.data)).convert("RGB")
    assert img.getpixel((128, 2))[0] > 240 and img.getpixel((128, 128))[0] < 20


def test_alpha_is_flattened_onto_white():
    res = images.process_image(_png(300, 300), images.ImageOptions())
    px = Image.open(io.BytesIO(res.data)).convert("RGB").getpixel((128, 128))
    assert min(px) > 240  # fully transparent blue -> white


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[images.ORIENTATION_TAG] = 6  # rotate 90 degrees clockwise on display
    res = images.process_image(_jpeg(800, 400, exif=exif), images.ImageOptions())
    assert (res.original_width, res.original_height) == (400, 800)
    assert (res.width, res.height) == (256, 512)
    assert json.loads(res.exif)["Image Orientation"] == "6"


@pytest.mark.parametrize("fmt, pil", [("jpg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")])
def test_output_formats(fmt, pil):
    res = images.process_image(
        _png(300, 200, "RGB", (1, 2, 3)), images.ImageOptions(output_format=fmt)
    )
    assert Image.open(io.BytesIO(res.data)).format == pil


def test_filters_and_failures():
    opts = images.ImageOptions(min_image_size=100, max_aspect_ratio=3.0, max_pixels=1_000_000)
    assert images.process_image(_jpeg(90, 200), opts).reason == "image_too_small"
    assert images.process_image(_jpeg(1000, 200), opts).reason == "aspect_ratio_too_large"
    bomb = images.process_image(_png(1100, 1000, "1", 0), opts)
    assert (bomb.status, bomb.reason) == ("failed_to_resize", "decompression_bomb")
    assert images.process_image(b"<html>hello</html>", opts).reason == "not_an_image"
    truncated = images.process_image(_jpeg(800, 600)[:2000], opts)
    assert truncated.status == "failed_to_resize"


def test_draft_decodes_smaller_but_gives_the_same_size():
    data = _jpeg(2000, 1500)
    fast = images.process_image(data, images.ImageOptions(use_draft=True))
    full = images.process_image(data, images.ImageOptions(use_draft=False))
    assert (fast.width, fast.height) == (full.width, full.height) == (341, 256)
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", images.target_size(2000, 1500, 256, "keep_ratio"))
    assert img.size == (500, 375)  # decoded at 1/4 scale, still >= the target


# -- keys, trim --------------------------------------------------------------------------------


def test_keys_like_img2dataset():
    # img2dataset: shard * 10**ceil(log10(samples_per_shard)) + row, padded to that many + 5 digits
    assert shard_writer.make_key(0, 0, 1000) == "00000000"
    assert shard_writer.make_key(1, 5, 1000) == "00001005"
    assert shard_writer.make_key(12, 999, 1000) == "00012999"
    assert shard_writer.make_key(3, 7, 50) == "0000307"
    assert shard_writer.make_key(2, 9999, 10000) == "000029999"


def _tarfile_reference(rows: list[dict], ext: str) -> bytes:
    """The same members written by the standard library's tarfile, for comparison."""
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for r in rows:
            if r["status"] != "success":
                continue
            for name, data in (
                (f"{r['key']}.{ext}", r["image"]),
                (f"{r['key']}.txt", r["caption"].encode()),
                (f"{r['key']}.json", shard_writer.sample_json(r)),
            ):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o444
                info.uname = info.gname = "bigdata"
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_tar_bytes_equal_what_tarfile_writes():
    rows = []
    for i, size in enumerate((0, 1, 511, 512, 513, 10_000, 70_000)):
        row = dict.fromkeys(shard_writer.FINAL_SCHEMA.names)
        row.update(key=f"{i:09d}", status="success", image=bytes([i]) * size)
        row.update(caption=f"caption {i} \u00e9\u4e2d", uid=f"u{i}", url=f"http://x/{i}")
        rows.append(row)
    rows.append({**rows[0], "key": "000000099", "status": "failed_to_download", "image": None})
    for chosen in (rows, rows[:1], []):
        out = io.BytesIO()
        shard_writer.tar_bytes_stream(out, chosen, "jpg")
        assert out.getvalue() == _tarfile_reference(chosen, "jpg")
    long_name = "d" * 60 + "/" + "k" * 60 + ".jpg"  # needs the USTAR prefix field: tarfile does it
    header = shard_writer.member_header(long_name, 5)
    import tarfile

    assert tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape").name == long_name
    meta = json.loads(shard_writer.sample_json(rows[1]))
    assert meta["caption"] == rows[1]["caption"] and "seconds" not in meta


def _kept_by_brute_force(successes, cap):
    """The trim by hand: per query its ``cap`` pairs of smallest rank; unselected pairs stay."""
    kept = {u for u, sel in successes if not sel}
    for q in {q for _, sel in successes for q in sel}:
        members = [u for u, sel in successes if q in sel]
        kept.update(sorted(members, key=lambda u: trim.rank(q, u))[:cap])
    return kept


def _trimmed(infos, cap):
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.testing import test_pipeline
    from apache_beam.testing.util import assert_that, equal_to

    from pipeline.download.phases import ShardInfo
    from pipeline.download.transforms import TrimPerQuery

    def check(expected):
        with test_pipeline.TestPipeline(runner=FnApiRunner()) as p:
            shards = [ShardInfo(i, len(s), tuple(s)) for i, s in enumerate(infos)]
            kept = p | beam.Create(shards) | TrimPerQuery(cap)
            assert_that(kept, equal_to(expected))

    return check


def test_trim_keeps_cap_per_query_with_shared_pairs():
    successes = [(f"u{i:03d}", (i % 3,)) for i in range(60)] + [("shared", (0, 1)), ("free", ())]
    shards = [successes[:25], successes[25:]]  # the trim spans shards
    expected = _kept_by_brute_force(successes, cap=5)
    assert "free" in expected and len(expected - {"free"}) <= 15
    where = {u: i for i, s in enumerate(shards) for u, _ in s}
    _trimmed(shards, 5)(sorted((where[u], u) for u in expected))
    _trimmed(shards, None)(sorted((where[u], u) for u, _ in successes))  # no cap: all kept


# -- process settings ------------------------------------------------------------------------


FAULTS_PER_IMAGE = """
import resource, sys
from pipeline.demo_world import scene
from pipeline import memory
from pipeline.download import images
if sys.argv[1] == "tuned":
    assert memory.keep_freed_memory() and memory.keep_freed_memory()  # idempotent
bodies = [scene.image_bytes(i, 0, fmt) for i in range(4) for fmt in ("jpg", "png", "webp")]
opts = images.ImageOptions(threads=0)
for b in bodies:
    images.process_image(b, opts)  # warm-up: the heap grows to its working size
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    for b in bodies:
        images.process_image(b, opts)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / (3 * len(bodies)))
"""


def test_freed_image_buffers_stay_in_the_heap():
    """Tuned, the buffers of one image are reused by the next: no page faults per image."""
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the tuning is glibc's mallopt")

    def faults(mode: str) -> float:  # a fresh process each: the tuning cannot be undone
        cmd = [sys.executable, "-c", FAULTS_PER_IMAGE, mode]
        return float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)

    untuned = faults("untuned")
    if untuned < 20:  # ~200 here: glibc maps and unmaps image-sized buffers for every image
        pytest.skip(f"this allocator does not return the buffers ({untuned:.0f} faults/image)")
    assert faults("tuned") < untuned / 20


# -- layout checks shared by the download's and the filter's end checks --------------------------


def _tar(path, names):
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name in names:
            tar.addfile(tarfile.TarInfo(name), io.BytesIO(b""))


def test_tar_member_problems_name_what_is_missing(tmp_path):
    whole = ["00000000.jpg", "00000000.txt", "00000000.json"]
    _tar(tmp_path / "ok.tar", whole)
    assert (
        shard_writer.tar_member_problems("00000", str(tmp_path / "ok.tar"), ["00000000"], "jpg")
        == []
    )
    _tar(tmp_path / "short.tar", whole[:2])
    (line,) = shard_writer.tar_member_problems(
        "00000", str(tmp_path / "short.tar"), ["00000000"], "jpg"
    )
    assert line == "shard 00000: 1 successes need 3 tar members, the tar holds 2 (1 missing)"
    _tar(tmp_path / "extra.tar", whole + ["00000001.jpg"])
    assert shard_writer.tar_member_problems(
        "00000", str(tmp_path / "extra.tar"), ["00000000"], "jpg"
    )


def test_stray_shards_are_those_no_planned_shard_accounts_for(tmp_path):
    for name in ("00000.tar", "00001.parquet", "00002_stats.json", "00007.tar", "0000x.tar"):
        (tmp_path / name).write_bytes(b"")
    assert shard_writer.stray_shards(str(tmp_path), 2) == ["00002", "00007", "0000x"]
    assert shard_writer.stray_shards(str(tmp_path), 8) == ["0000x"]  # not a shard number
