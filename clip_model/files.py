"""One filesystem layer for everything the trainer reads and writes: shards, checkpoints, logs,
metrics and evaluation images, as local paths or any fsspec URL (``gs://`` with gcsfs, ``s3://``
with s3fs, ``memory://`` in tests).

Writes are atomic: a local file is written under a temporary name and renamed; an object store
publishes an object only when its upload completes, so it is written in place; other remote
filesystems get a temporary name and a move.
"""

from __future__ import annotations

import os
import uuid
from typing import IO

import fsspec

# Object stores: an object appears whole when its upload ends, and a "rename" would be a copy.
OBJECT_STORES = ("gs", "gcs", "s3", "s3a", "az", "abfs", "abfss")


def is_url(path: str) -> bool:
    """True for URLs with a scheme other than file:// (gs://, s3://, memory://...)."""
    return "://" in path and not path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def _fs(path: str):
    return fsspec.core.url_to_fs(path)


def join(base: str, *parts: str) -> str:
    """Join path parts, keeping URL schemes intact."""
    if is_url(base):
        return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])
    return os.path.join(_local(base), *parts)


def dirname(path: str) -> str:
    """The folder of a path or URL."""
    return path.rsplit("/", 1)[0] if is_url(path) else os.path.dirname(_local(path))


def basename(path: str) -> str:
    """The last part of a path or URL."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def exists(path: str) -> bool:
    """Whether a file or folder exists."""
    if not is_url(path):
        return os.path.exists(_local(path))
    fs, p = _fs(path)
    return fs.exists(p)


def isdir(path: str) -> bool:
    """Whether ``path`` is a folder (on object stores: a prefix with objects under it)."""
    if not is_url(path):
        return os.path.isdir(_local(path))
    fs, p = _fs(path)
    return fs.isdir(p)


def makedirs(path: str) -> None:
    """Create a folder and its parents (object stores have none to create)."""
    if not is_url(path):
        os.makedirs(_local(path), exist_ok=True)


def listdir(path: str) -> list[str]:
    """Full paths of the entries of a folder, sorted."""
    if not is_url(path):
        return sorted(os.path.join(_local(path), n) for n in os.listdir(_local(path)))
    fs, p = _fs(path)
    return sorted(fs.unstrip_protocol(e) for e in fs.ls(p, detail=False))


def glob(pattern: str) -> list[str]:
    """Sorted paths matching a glob pattern; URLs keep their scheme."""
    if not is_url(pattern):
        import glob as _glob

        return sorted(_glob.glob(_local(pattern)))
    fs, p = _fs(pattern)
    return sorted(fs.unstrip_protocol(m) for m in fs.glob(p))


def open_read(path: str) -> IO[bytes]:
    """A binary file object for reading (seekable on object stores: ranged reads)."""
    if not is_url(path):
        return open(_local(path), "rb")
    return fsspec.open(path, "rb").open()


def read_bytes(path: str) -> bytes:
    """Whole file as bytes."""
    with open_read(path) as f:
        return f.read()


def read_text(path: str) -> str:
    """Whole file as UTF-8 text."""
    return read_bytes(path).decode("utf-8")


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    if not is_url(path):
        tmp = f"{_local(path)}.tmp-{uuid.uuid4().hex[:8]}"
        os.makedirs(os.path.dirname(_local(path)) or ".", exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, _local(path))
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    fs, p = _fs(path)
    if path.split("://", 1)[0] in OBJECT_STORES:
        fs.pipe_file(p, data)
        return
    tmp = f"{p}.tmp-{uuid.uuid4().hex[:8]}"
    fs.pipe_file(tmp, data)
    fs.mv(tmp, p)


def write_text_atomic(path: str, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))
