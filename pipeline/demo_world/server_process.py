"""The demo server in a process of its own (its own GIL, for benchmarks), and its command line.

python -m pipeline.demo_world.server_process --world out/demo/world   # serve until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import fields

from pipeline.demo_world import urls
from pipeline.demo_world.server import STATS_PATH, ServerOptions, serve, serve_world


class ServerProcess:
    """Handle on a demo server running in a child process (its own GIL, for benchmarks)."""

    def __init__(self, proc: subprocess.Popen, port: int, seed: int) -> None:
        self.proc = proc
        self.port = port
        self.seed = seed

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:{port}``."""
        return urls.base_url(self.port)

    def url(self, image_id: int | str, ext: str, fault: str | None = None) -> str:
        """Absolute URL of an image on this server, optionally through a fault mode."""
        return urls.image_url(self.port, image_id, ext, fault)

    def stats(self) -> dict:
        """The child's :meth:`DemoServer.stats`, read over HTTP."""
        with urllib.request.urlopen(self.base_url + STATS_PATH, timeout=10) as r:
            return json.loads(r.read())


@contextlib.contextmanager
def serve_process(seed: int, port: int = 0, **options) -> Iterator[ServerProcess]:
    """Like :func:`serve`, but in a child process (``python -m pipeline.demo_world.server_process``)."""
    ServerOptions.from_kwargs(**options)  # bad options fail here, not in the child
    cmd = [
        sys.executable,
        "-m",
        "pipeline.demo_world.server_process",
        "--seed",
        str(seed),
        "--port",
        str(port),
    ]
    for name, value in options.items():
        if name == "prerender":
            ids = (".".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in value)
            cmd += ["--prerender-ids", ",".join(ids)]
        else:
            cmd += ["--" + name.replace("_", "-"), str(value)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # printed once the socket is bound (and prerendered)
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if m is None:
            raise RuntimeError(f"demo server process did not start (exit code {proc.wait()})")
        yield ServerProcess(proc, int(m.group(1)), seed)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.demo_world.server_process",
        description="Serve the demo images on 127.0.0.1 in the foreground until interrupted.",
    )
    p.add_argument("--seed", type=int, default=0, help="world seed (ignored with --world)")
    p.add_argument("--port", type=int, default=None, help="default: the manifest's, else 0 (free)")
    p.add_argument(
        "--world", default=None, help="a generated world: serve its manifest's seed and port"
    )
    p.add_argument("--prerender", type=int, default=0, help="render images 0..N-1 before serving")
    p.add_argument(
        "--prerender-ids", default="", help="ids or id.ext, comma-separated, to render first"
    )
    # One flag per numeric option: --slow-seconds, --drip-interval, --oversized-bytes, ...
    for f in fields(ServerOptions):
        if f.name != "prerender":
            p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    return p


def main(argv: list[str] | None = None) -> int:
    """Serve the demo images in the foreground until interrupted (SIGINT or SIGTERM)."""
    args = _parser().parse_args(argv)
    options = {
        f.name: getattr(args, f.name) for f in fields(ServerOptions) if f.name != "prerender"
    }
    ids = [tuple(i.split(".", 1)) if "." in i else i for i in args.prerender_ids.split(",") if i]
    options["prerender"] = tuple(ids) + tuple(range(args.prerender))
    if args.world:
        ctx = serve_world(args.world, args.port, **options)
    else:
        ctx = serve(args.seed, args.port or 0, **options)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly on SIGTERM too
    try:
        with ctx as server:
            print(f"serving demo images of seed {server.seed} on {server.base_url}", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
