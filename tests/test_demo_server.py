"""The demo image server: real HTTP on 127.0.0.1; every fault mode does what urls.py says."""

from __future__ import annotations

import io
import json
import socket
import struct

import pytest
import requests
from PIL import Image, UnidentifiedImageError

from pipeline.demo_world import scene, urls, variants
from pipeline.demo_world.byte_cache import ByteLRU
from pipeline.demo_world.hostile_bodies import bomb_png
from pipeline.demo_world.server import DemoServer, ServerOptions, serve, serve_world
from pipeline.demo_world.server_process import serve_process

pytestmark = pytest.mark.timeout(60)

SEED = 7
T = (2, 5)  # (connect, read) timeouts of the client
PIL_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
FAST = dict(slow_seconds=1.0, drip_interval=0.05, drip_bytes=16, oversized_bytes=8 << 20)


@pytest.fixture(scope="module")
def server():
    with serve(SEED, **FAST) as s:
        yield s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((urls.HOST, 0))
        return s.getsockname()[1]


def _raw_get(port: int, path: str, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((urls.HOST, port), timeout=timeout)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {urls.HOST}:{port}\r\n\r\n".encode())
    return sock


def _read_head(sock: socket.socket) -> tuple[bytes, dict[str, str], bytes]:
    """Status line, lower-cased headers and the body bytes read along with them."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the headers ended"
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    status, *lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.decode().split(":", 1) for ln in lines)}
    return status, headers, body


# -- plain images ----------------------------------------------------------------------------


@pytest.mark.parametrize("image_id", [0, 1, 17, 123456])
@pytest.mark.parametrize("ext", ["jpg", "png", "webp"])
def test_image_decodes_with_scene_size_and_url_format(server, image_id, ext):
    r = requests.get(server.url(image_id, ext), timeout=T)
    assert r.status_code == 200
    assert (
        r.headers["Content-Type"]
        == {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}[ext]
    )
    assert int(r.headers["Content-Length"]) == len(r.content)
    img = Image.open(io.BytesIO(r.content))
    img.load()
    s = scene.scene_for(image_id, SEED)
    assert img.format == PIL_FORMATS[ext]
    assert img.size == (s.width, s.height)


def test_content_is_deterministic_and_follows_the_seed(server):
    first = requests.get(server.url(42, "png"), timeout=T).content
    again = requests.get(server.url(42, "png"), timeout=T).content
    assert first == again == scene.image_bytes(42, SEED, "png")
    with serve(SEED + 1) as other:
        assert requests.get(other.url(42, "png"), timeout=T).content != first
    with serve(SEED) as fresh:  # a new process-state, nothing cached: the same bytes
        assert requests.get(fresh.url(42, "png"), timeout=T).content == first


def test_image_pixels_follow_the_scene(server):
    """The drawn colour is present: the downloaded image carries its alt text's content."""
    image_id = 5
    s = scene.scene_for(image_id, SEED)
    img = Image.open(
        io.BytesIO(requests.get(server.url(image_id, "png"), timeout=T).content)
    ).convert("RGB")
    colours = img.resize((64, 64)).getcolors(64 * 64)
    target = scene.COLOURS[s.colour]
    near = sum(n for n, c in colours if sum(abs(a - b) for a, b in zip(c, target)) < 90)
    assert near > 0


@pytest.mark.parametrize(
    "path",
    ["/", "/img/1.gif", "/img/1", "/f/no_such_mode/1.jpg", "/img/../etc/passwd", "/page/x.html"],
)
def test_everything_else_is_404(server, path):
    assert requests.get(server.base_url + path, timeout=T).status_code == 404


def test_pages_link_images_with_alt_text(server):
    r = requests.get(f"{server.base_url}/page/2.html", timeout=T)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert r.text.count("<img ") == 8 and 'alt="' in r.text
    first = scene.scene_for(16, SEED)
    assert f'src="/img/16.{first.fmt}"' in r.text


def test_head_request_gets_headers_only(server):
    r = requests.head(server.url(3, "jpg"), timeout=T)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg" and r.content == b""


# -- planted copies --------------------------------------------------------------------------


@pytest.mark.parametrize("variant", urls.VARIANTS)
def test_every_variant_serves_its_copy_of_the_image(server, variant):
    image_id = 21
    s = scene.scene_for(image_id, SEED)
    url = urls.variant_url(server.port, image_id, s.fmt, variant)
    r = requests.get(url, timeout=T)
    ext = urls.variant_ext(variant, s.fmt)
    assert r.status_code == 200 and r.headers["Content-Type"] == f"image/{ext}".replace(
        "jpg", "jpeg"
    )
    img = Image.open(io.BytesIO(r.content))
    img.load()
    assert img.format == PIL_FORMATS[ext]
    assert img.size == variants.size(s.width, s.height, variant)
    original = scene.image_bytes(image_id, SEED, s.fmt)
    assert (r.content == original) == (variant == "copy")  # copy: the same bytes, elsewhere
    assert (
        r.content
        == requests.get(url, timeout=T).content
        == variants.image_bytes(image_id, SEED, variant, s.fmt)
    )


def test_a_copy_keeps_the_originals_content(server):
    """Modified copies still show the original's scene: the mean colour barely moves."""
    s = scene.scene_for(8, SEED)
    base = Image.open(io.BytesIO(scene.image_bytes(8, SEED))).convert("RGB").resize((16, 16))
    for variant in urls.VARIANTS:
        data = variants.image_bytes(8, SEED, variant, s.fmt)
        copy = Image.open(io.BytesIO(data)).convert("RGB").resize((16, 16))
        diff = sum(abs(a - b) for p, q in zip(base.getdata(), copy.getdata()) for a, b in zip(p, q))
        assert diff / (16 * 16 * 3) < 12, variant


@pytest.mark.parametrize(
    "path", ["/v/jpeg50/1.png", "/v/webp60/1.jpg", "/v/blur/1.jpg", "/v/copy/1"]
)
def test_unknown_variants_and_reencodings_under_another_extension_are_404(server, path):
    assert requests.get(server.base_url + path, timeout=T).status_code == 404


# -- fault modes -----------------------------------------------------------------------------

TESTED_MODES: set[str] = set()


def covers(*modes):
    TESTED_MODES.update(modes)
    return lambda f: f


@covers("404", "500")
@pytest.mark.parametrize("mode,status", [("404", 404), ("500", 500)])
def test_error_statuses(server, mode, status):
    r = requests.get(server.url(1, "jpg", mode), timeout=T)
    assert r.status_code == status
    assert not r.headers["Content-Type"].startswith("image/")


@covers("429", "503")
@pytest.mark.parametrize("mode,status", [("429", 429), ("503", 503)])
def test_always_busy_with_retry_after(server, mode, status):
    for _ in range(3):
        r = requests.get(server.url(2, "jpg", mode), timeout=T)
        assert r.status_code == status
        assert r.headers["Retry-After"] == "1"


@covers("429once", "503once")
@pytest.mark.parametrize("mode,status", [("429once", 429), ("503once", 503)])
def test_busy_once_then_the_image(server, mode, status):
    image_id = 1000 + status  # ids of their own: the once-state is per URL
    first = requests.get(server.url(image_id, "webp", mode), timeout=T)
    assert first.status_code == status and first.headers["Retry-After"] == "1"
    for _ in range(2):
        r = requests.get(server.url(image_id, "webp", mode), timeout=T)
        assert r.status_code == 200 and r.content == scene.image_bytes(image_id, SEED, "webp")
    # Another URL has its own first time.
    assert requests.get(server.url(image_id + 1, "webp", mode), timeout=T).status_code == status


@covers("slow_first_byte")
def test_slow_first_byte_times_out_a_short_read_timeout(server):
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(server.url(3, "jpg", "slow_first_byte"), timeout=(2, 0.2))
    # A patient client gets the image in the end.
    r = requests.get(server.url(3, "jpg", "slow_first_byte"), timeout=(2, 10))
    assert r.status_code == 200 and r.content == scene.image_bytes(3, SEED, "jpg")


@covers("slow_drip")
def test_slow_drip_sends_headers_then_a_few_bytes_at_a_time(server):
    sock = _raw_get(server.port, "/f/slow_drip/4.jpg")
    with sock:
        status, headers, body = _read_head(sock)
        assert status.endswith(b"200 OK") and headers["content-type"] == "image/jpeg"
        total = int(headers["content-length"])
        reads = 0
        while len(body) < 160:
            chunk = sock.recv(65536)
            assert chunk
            body += chunk
            reads += 1
        assert reads >= 3  # 16-byte drips: the body does not come in one go
        assert len(body) < total
        assert body == scene.image_bytes(4, SEED, "jpg")[: len(body)]
    # The server shrugs off the client that hung up mid-drip.
    assert requests.get(server.url(4, "jpg"), timeout=T).status_code == 200


@covers("reset")
def test_reset_mid_body_is_a_connection_reset(server):
    sock = _raw_get(server.port, "/f/reset/5.png")
    with sock, pytest.raises(ConnectionResetError):
        status, headers, body = _read_head(sock)
        assert status.endswith(b"200 OK")
        while True:
            chunk = sock.recv(65536)
            assert chunk, "clean close instead of a reset"
            body += chunk
            assert len(body) < int(headers["content-length"])
    with pytest.raises(requests.exceptions.RequestException) as err:
        requests.get(server.url(5, "png", "reset"), timeout=T)
    assert "reset" in str(err.value).lower()


@covers("truncated")
def test_truncated_body_is_shorter_than_content_length(server):
    sock = _raw_get(server.port, "/f/truncated/6.jpg")
    with sock:
        status, headers, body = _read_head(sock)
        while chunk := sock.recv(65536):  # ends with a clean close, not a reset
            body += chunk
    declared = int(headers["content-length"])
    assert 0 < len(body) < declared
    assert body == scene.image_bytes(6, SEED, "jpg")[: len(body)]
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(server.url(6, "jpg", "truncated"), timeout=T)


@covers("wrong_type")
def test_wrong_type_serves_image_bytes_as_text(server):
    r = requests.get(server.url(7, "jpg", "wrong_type"), timeout=T)
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/plain"
    assert Image.open(io.BytesIO(r.content)).format == "JPEG"


@covers("html")
def test_html_served_as_jpeg(server):
    r = requests.get(server.url(8, "jpg", "html"), timeout=T)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert r.content.lstrip().lower().startswith(b"<!doctype html")
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(r.content))


@covers("oversized")
def test_oversized_streams_past_any_sane_cap(server):
    bound = 4 << 20
    with requests.get(server.url(9, "jpg", "oversized"), timeout=T, stream=True) as r:
        assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
        assert "Content-Length" not in r.headers
        got = 0
        for chunk in r.iter_content(1 << 16):
            got += len(chunk)
            if got > bound:
                break
    assert got > bound
    # Hanging up mid-body leaves the server serving.
    assert requests.get(server.url(9, "jpg"), timeout=T).status_code == 200


def test_oversized_to_an_http10_client_runs_until_close(server):
    sock = socket.create_connection((urls.HOST, server.port), timeout=5)
    with sock:
        sock.sendall(b"GET /f/oversized/9.jpg HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        status, headers, body = _read_head(sock)
        assert status.startswith(b"HTTP/1.0 200") and "content-length" not in headers
        got = len(body)
        while chunk := sock.recv(1 << 16):
            got += len(chunk)
    assert got == FAST["oversized_bytes"]


@covers("bomb")
def test_bomb_is_small_and_declares_too_many_pixels(server):
    r = requests.get(server.url(10, "png", "bomb"), timeout=T)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
    assert len(r.content) < 256 * 1024
    width, height = struct.unpack(">II", r.content[16:24])  # IHDR follows the 8-byte signature
    assert width * height > 2 * Image.MAX_IMAGE_PIXELS
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(r.content)).load()


def test_bomb_is_a_valid_png_that_decodes_fully():
    img = Image.open(io.BytesIO(bomb_png(1001)))
    img.load()
    assert img.size == (1001, 1001) and img.mode == "1" and img.getextrema() == (0, 0)


@covers("redirect")
def test_redirect_chain_ends_at_the_image(server):
    r = requests.get(server.url(11, "png", "redirect"), timeout=T)
    assert [h.status_code for h in r.history] == [302, 302, 302]
    assert r.url == server.url(11, "png")
    assert r.status_code == 200 and r.content == scene.image_bytes(11, SEED, "png")


@covers("redirect_loop")
def test_redirect_loop_never_ends(server):
    first = requests.get(server.url(12, "jpg", "redirect_loop"), timeout=T, allow_redirects=False)
    second = requests.get(first.headers["Location"], timeout=T, allow_redirects=False)
    assert first.status_code == second.status_code == 302
    assert second.headers["Location"] == server.url(12, "jpg", "redirect_loop")
    with pytest.raises(requests.exceptions.TooManyRedirects):
        requests.get(server.url(12, "jpg", "redirect_loop"), timeout=T)


@covers("redirect_private")
def test_redirect_private_points_at_a_private_address(server):
    # Never follow it: 10.0.0.1 is off this machine.
    r = requests.get(server.url(13, "webp", "redirect_private"), timeout=T, allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"] == "http://10.0.0.1/img/13.webp"


@covers("noai", "noimageai", "ua_noai")
@pytest.mark.parametrize(
    "mode,tag", [("noai", "noai"), ("noimageai", "noimageai"), ("ua_noai", "wit-builder: noai")]
)
def test_opt_out_headers_on_the_real_image(server, mode, tag):
    r = requests.get(server.url(14, "jpg", mode), timeout=T)
    assert r.status_code == 200 and r.headers["X-Robots-Tag"] == tag
    assert r.content == scene.image_bytes(14, SEED, "jpg")


@covers("pixel")
def test_pixel_is_a_valid_one_pixel_jpeg(server):
    r = requests.get(server.url(15, "jpg", "pixel"), timeout=T)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    img.load()
    assert img.format == "JPEG" and img.size == (1, 1)


@covers("strip")
def test_strip_is_a_tiny_valid_png_of_a_long_strip(server):
    r = requests.get(server.url(16, "png", "strip"), timeout=T)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
    assert len(r.content) < 1024
    img = Image.open(io.BytesIO(r.content))
    img.load()
    assert img.size == (20_000, 2) and img.getpixel((19_999, 1)) == (128, 128, 128)


@covers("bad_status")
def test_bad_status_sends_a_malformed_status_line_then_the_image(server):
    sock = _raw_get(
        server.port, urls.image_url(server.port, 17, "jpg", "bad_status")[len(server.base_url) :]
    )
    with sock:
        status, headers, body = _read_head(sock)
        while len(body) < int(headers["content-length"]):
            chunk = sock.recv(65536)
            assert chunk
            body += chunk
    assert status == b"HTTP/1.1 2x0 OK"
    assert body == scene.image_bytes(17, SEED, "jpg")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(server.url(17, "jpg", "bad_status"), timeout=T)


def test_every_fault_mode_has_a_test():
    assert TESTED_MODES == set(urls.FAULT_MODES)


# -- server lifecycle, binding, cache, stats -------------------------------------------------


def test_port_zero_picks_distinct_free_ports():
    with serve(SEED) as a, serve(SEED) as b:
        assert a.port > 0 and b.port > 0 and a.port != b.port
        assert a.base_url == f"http://127.0.0.1:{a.port}"
        assert requests.get(b.url(1, "jpg"), timeout=T).status_code == 200


def test_given_port_is_used_and_a_taken_port_raises():
    port = _free_port()
    with serve(SEED, port) as s:
        assert s.port == port
        assert requests.get(s.url(1, "jpg"), timeout=T).status_code == 200
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            DemoServer(SEED, port).start()
    # Stopped: the port is closed.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(urls.image_url(port, 1, "jpg"), timeout=T)


def test_binds_loopback_127_0_0_1_only(server):
    # 127.0.0.2 reaches this host through the same interface; a server bound to 0.0.0.0 would
    # answer there too.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", server.port), timeout=2).close()
    socket.create_connection((urls.HOST, server.port), timeout=2).close()


def test_serve_world_reads_the_manifest(tmp_path):
    port = _free_port()
    (tmp_path / "manifest.json").write_text(json.dumps({"seed": 3, "port": port, "size": "tiny"}))
    with serve_world(str(tmp_path), slow_seconds=0.1) as s:
        assert s.port == port and s.seed == 3
        r = requests.get(s.url(21, "png"), timeout=T)
        assert r.content == scene.image_bytes(21, 3, "png")


def test_unknown_or_negative_option_fails_before_serving():
    with pytest.raises(ValueError, match="slow_secs"):
        with serve(SEED, slow_secs=1):
            pass
    with pytest.raises(ValueError, match="drip_interval"):
        ServerOptions(drip_interval=-1)


def test_stats_count_requests_by_kind_and_fault():
    with serve(SEED) as s:
        for path in (
            "/img/1.jpg",
            "/img/1.jpg",
            "/page/0.html",
            "/nope",
            "/f/404/1.jpg",
            "/f/noai/1.jpg",
            "/v/trim1/1.jpg",
        ):
            requests.get(s.base_url + path, timeout=T)
        st = s.stats()
    assert (st["requests"], st["img"], st["page"], st["not_found"], st["variant"]) == (
        7,
        2,
        1,
        1,
        1,
    )
    assert st["faults"] == {"404": 1, "noai": 1}
    assert st["renders"] == 2  # 1.jpg rendered once, then served from the cache; and its copy
    assert st["cache"]["entries"] == 2 and st["cache"]["hits"] == 2


def test_warm_and_prerender_fill_the_cache():
    with serve(SEED, prerender=[30, (31, "webp")]) as s:
        assert s.stats()["renders"] == 2
        assert s.warm([32, 33, (30, scene.scene_for(30, SEED).fmt)]) == 3
        st = s.stats()
        assert st["renders"] == 4 and st["cache"]["entries"] == 4
        r = requests.get(s.url(31, "webp"), timeout=T)
        assert r.content == scene.image_bytes(31, SEED, "webp")
        assert s.stats()["renders"] == 4  # served from the cache


def test_byte_lru_evicts_oldest_within_its_byte_bound():
    lru = ByteLRU(max_bytes=100)
    for i in range(5):
        lru.put((str(i), "jpg"), bytes(30))
    assert lru.bytes <= 100 and len(lru) == 3
    assert lru.get(("0", "jpg")) is None and lru.get(("4", "jpg")) == bytes(30)
    lru.get(("2", "jpg"))  # now most recent: survives the next eviction
    lru.put(("5", "jpg"), bytes(30))
    assert lru.get(("2", "jpg")) is not None and lru.get(("3", "jpg")) is None
    lru.put(("big", "png"), bytes(101))  # larger than the whole cache: not kept
    assert lru.get(("big", "png")) is None


def test_stop_with_clients_still_streaming():
    s = DemoServer(SEED, 0, ServerOptions(drip_interval=0.05, oversized_bytes=1 << 30)).start()
    drip = requests.get(s.url(1, "jpg", "slow_drip"), timeout=T, stream=True)
    huge = requests.get(s.url(1, "jpg", "oversized"), timeout=T, stream=True)
    next(huge.iter_content(1024))
    s.stop()
    with pytest.raises(requests.exceptions.RequestException):
        drip.content  # noqa: B018  (the body ends with the server)
    drip.close()
    huge.close()


def test_server_in_a_child_process_serves_and_reports_stats():
    port = _free_port()
    with serve_process(SEED, port, prerender=[3, (4, "png")], slow_seconds=0.2) as p:
        assert p.port == port
        r = requests.get(p.url(4, "png"), timeout=T)
        assert r.content == scene.image_bytes(4, SEED, "png")
        st = p.stats()
        assert st["img"] == 1 and st["renders"] == 2 and st["cache"]["hits"] == 1
        proc = p.proc
    assert proc.returncode == 0
    with pytest.raises(ValueError, match="no_such"):
        with serve_process(SEED, no_such=1):
            pass


def test_many_concurrent_clients_get_their_own_image(server):
    from concurrent.futures import ThreadPoolExecutor

    ids = list(range(200, 224))

    def fetch(i):
        return requests.get(server.url(i, "jpg"), timeout=(2, 20)).content

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(fetch, ids + ids))
    for i, data in zip(ids + ids, got):
        assert data == scene.image_bytes(i, SEED, "jpg")
