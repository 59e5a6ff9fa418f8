"""A child process that runs hostile cases under an address-space limit and reports each one's
outcome and peak memory, so that property tests can assert bounded memory and a named outcome.

The parent (a test) sends cases over stdin and reads results from stdout, both as length-prefixed
pickles; hypothesis generates the cases in the parent. The child imports every reader first, then
limits its address space (``RLIMIT_AS``) to what it maps after the imports plus ``--limit-mb``, so
an input that makes a reader allocate without bound fails the case (``MemoryError`` or death)
instead of the machine. Before each case the kernel's peak-RSS mark is reset
(``/proc/self/clear_refs``), so ``peak_mb`` is that case's own peak above its starting RSS.

Kinds of case: ``image`` (bytes -> :func:`process_image` outcome), ``wat`` and ``table`` (a file
-> pairs and the reader's tally), ``dump`` (a file -> records of :func:`read_dump`) and
``pageviews`` (a file -> views and statistics of :func:`read_hour_file`).
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import struct
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections import Counter
from pathlib import Path

LIMIT_MB = 1024  # address space the child may map beyond what its imports mapped


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _send(stream, obj) -> None:
    data = pickle.dumps(obj)
    stream.write(struct.pack(">Q", len(data)) + data)
    stream.flush()


def _receive(stream):
    head = stream.read(8)
    if len(head) < 8:
        return None
    (n,) = struct.unpack(">Q", head)
    return pickle.loads(stream.read(n))


# -- the child ---------------------------------------------------------------------------------


def _run_image(case: dict, tmp: Path) -> dict:
    from pipeline.download import images

    res = images.process_image(case["data"], images.ImageOptions(**case.get("options", {})))
    return {
        "status": res.status,
        "reason": res.reason,
        "size": (res.width, res.height),
        "original": (res.original_width, res.original_height),
        "nbytes": len(res.data or b""),
    }


def _write(case: dict, tmp: Path) -> str:
    path = tmp / case["name"]
    path.write_bytes(case["data"])
    return str(path)


def _run_pairs(case: dict, tmp: Path) -> dict:
    from pipeline.select.readers import ReaderSpec, iter_pairs

    tally: Counter = Counter()
    spec = ReaderSpec(**case.get("options", {}))
    pairs = [(p.url, p.caption) for p in iter_pairs(_write(case, tmp), spec, tally)]
    return {"pairs": pairs, "tally": dict(tally)}


def _run_dump(case: dict, tmp: Path) -> dict:
    from queries.dump_reader import DumpFile, Page, read_dump

    out = {"pages": [], "skips": Counter(), "files": []}
    for rec in read_dump(_write(case, tmp), **case.get("options", {})):
        if isinstance(rec, Page):
            out["pages"].append((rec.page_id, rec.title))
        elif isinstance(rec, DumpFile):
            out["files"].append(rec.problem)
        else:
            out["skips"][rec.reason] += 1
    return out


def _run_pageviews(case: dict, tmp: Path) -> dict:
    from queries.pageviews import PageviewFilter, read_hour_file

    views, stats = read_hour_file(_write(case, tmp), PageviewFilter(), **case.get("options", {}))
    return {"views": dict(views), "stats": dict(stats)}


RUNNERS = {
    "image": _run_image,
    "wat": _run_pairs,
    "table": _run_pairs,
    "dump": _run_dump,
    "pageviews": _run_pageviews,
}


def child(limit_mb: int) -> None:
    """Serve cases from stdin until it closes."""
    import fastwarc.warc  # noqa: F401  (imports map their libraries before the limit is set)
    import pyarrow as pa
    import pyarrow.parquet  # noqa: F401
    from PIL import Image

    import pipeline.download.images  # noqa: F401
    import pipeline.select.readers  # noqa: F401
    import queries.dump_reader  # noqa: F401
    import queries.pageviews  # noqa: F401

    Image.init()
    # Threads reserve address space (stacks, malloc arenas) by the core count: one of each keeps
    # the limit the same on any machine.
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    warnings.simplefilter("ignore")  # Pillow warns on every corrupt EXIF; outcomes are the test
    limit = _status_kb("VmSize") * 1024 + limit_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the result stream
    with tempfile.TemporaryDirectory(prefix="wit-hostile-") as d:
        tmp = Path(d)
        while (case := _receive(stdin)) is not None:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            start = _status_kb("VmRSS")
            try:
                result = {"outcome": RUNNERS[case["kind"]](case, tmp)}
            except BaseException as e:  # reported to the parent, which fails the case
                result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            result["peak_mb"] = max(0, _status_kb("VmHWM") - start) / 1024
            for f in tmp.iterdir():
                f.unlink()
            _send(stdout, result)


# -- the parent --------------------------------------------------------------------------------


class HostileWorker:
    """Handle on a child process that runs cases; restarted when a case kills it."""

    def __init__(self, limit_mb: int = LIMIT_MB):
        self.limit_mb = limit_mb
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
        env["MALLOC_ARENA_MAX"] = "2"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.hostile_worker", "--limit-mb", str(self.limit_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=root,
            env=env,
        )

    def run(self, kind: str, data: bytes, name: str = "", options: dict | None = None) -> dict:
        """Run one case; a result with ``outcome`` or ``error``, and the case's ``peak_mb``."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        case = {"kind": kind, "data": data, "name": name, "options": options or {}}
        try:
            _send(self.proc.stdin, case)
            result = _receive(self.proc.stdout)
        except BrokenPipeError:
            result = None
        if result is None:
            code = self.proc.wait()
            self.proc = None
            return {"error": f"worker died (exit code {code})", "peak_mb": float("inf")}
        return result

    def close(self) -> None:
        """Let the child finish and wait for it."""
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            self.proc.stdout.close()
            self.proc = None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit-mb", type=int, default=LIMIT_MB)
    child(p.parse_args(argv).limit_mb)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
