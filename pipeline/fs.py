"""Paths on any Beam filesystem (local, gs://, s3://...), with atomic writes.

Local paths use the OS directly (fast, and rename is atomic); anything with a scheme goes through
``apache_beam.io.filesystems.FileSystems`` so the same code runs on Dataflow workers.
"""

from __future__ import annotations

import glob as _glob
import os
import shutil
import uuid
from contextlib import contextmanager
from typing import IO, Iterator


def is_remote(path: str) -> bool:
    """True for URLs with a scheme other than file:// (gs://, s3://, hdfs://...)."""
    return "://" in path and not path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def _fs():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def join(base: str, *parts: str) -> str:
    """Join path parts, keeping URL schemes intact."""
    if is_remote(base):
        return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])
    return os.path.join(_local(base), *parts)


def exists(path: str) -> bool:
    """Whether a file or directory exists."""
    if is_remote(path):
        return _fs().exists(path)
    return os.path.exists(_local(path))


def makedirs(path: str) -> None:
    """Create a directory (no-op on object stores, which have none)."""
    if not is_remote(path):
        os.makedirs(_local(path), exist_ok=True)


def glob(pattern: str) -> list[str]:
    """Sorted paths matching a glob pattern (a plain path matches itself if it exists)."""
    if is_remote(pattern):
        result = _fs().match([pattern])[0]
        return sorted(m.path for m in result.metadata_list)
    return sorted(_glob.glob(_local(pattern), recursive=True))


def size(path: str) -> int:
    """Size of a file in bytes."""
    if is_remote(path):
        return _fs().match([path])[0].metadata_list[0].size_in_bytes
    return os.path.getsize(_local(path))


def version(path: str) -> tuple:
    """What changes when a file is rewritten: ``(mtime_ns, size)`` locally, ``(size, last
    update)`` on a remote filesystem (its listing gives both). Per-process caches key on it, so
    that a long-lived worker (a Dask worker serves many runs) never reads a rewritten file from
    its cache."""
    if is_remote(path):
        meta = _fs().match([path])[0].metadata_list[0]
        return (meta.size_in_bytes, meta.last_updated_in_seconds)
    st = os.stat(_local(path))
    return (st.st_mtime_ns, st.st_size)


def open_read(path: str) -> IO[bytes]:
    """Open a file for binary reading without decompressing it."""
    if is_remote(path):
        from apache_beam.io.filesystem import CompressionTypes

        return _fs().open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    return open(_local(path), "rb")


def read_bytes(path: str) -> bytes:
    """Whole file as bytes."""
    with open_read(path) as f:
        return f.read()


def read_text(path: str) -> str:
    """Whole file as UTF-8 text."""
    return read_bytes(path).decode("utf-8")


@contextmanager
def open_write_atomic(path: str) -> Iterator[IO[bytes]]:
    """Write to a temporary name beside ``path`` and rename into place only on success."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    if is_remote(path):
        from apache_beam.io.filesystem import CompressionTypes

        f = _fs().create(tmp, compression_type=CompressionTypes.UNCOMPRESSED)
    else:
        os.makedirs(os.path.dirname(_local(path)) or ".", exist_ok=True)
        f = open(_local(tmp), "wb")
    try:
        yield f
        f.close()
    except BaseException:
        f.close()
        delete(tmp)
        raise
    rename(tmp, path)


def rename(src: str, dst: str) -> None:
    """Move a file into place (atomic on local disks)."""
    if is_remote(src):
        if _fs().exists(dst):
            _fs().delete([dst])
        _fs().rename([src], [dst])
    else:
        os.replace(_local(src), _local(dst))


def link_or_copy(src: str, dst: str) -> None:
    """Put the content of ``src`` at ``dst`` (replacing it), sharing the data where possible.

    Local files get a hard link under a temporary name, renamed into place: no bytes are copied
    and ``src`` stays as it is (a later atomic rewrite of ``src`` gives it a new inode, so ``dst``
    keeps the old content). Where hard links are refused, and on object stores, the data is copied.
    """
    if is_remote(src) or is_remote(dst):
        delete(dst)
        _fs().copy([src], [dst])
        return
    tmp = f"{_local(dst)}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        os.link(_local(src), tmp)
    except OSError:  # no hard links on this filesystem (or across devices): copy
        import shutil

        shutil.copyfile(_local(src), tmp)
    os.replace(tmp, _local(dst))


def delete(path: str) -> None:
    """Remove a file if it exists."""
    if is_remote(path):
        if _fs().exists(path):
            _fs().delete([path])
    elif os.path.exists(_local(path)):
        os.remove(_local(path))


def remove_tree(path: str) -> None:
    """Remove a directory and everything in it, if it exists."""
    if is_remote(path):
        if _fs().exists(path):
            _fs().delete([path])
    else:
        shutil.rmtree(_local(path), ignore_errors=True)


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write bytes to ``path`` atomically."""
    with open_write_atomic(path) as f:
        f.write(data)


def write_text_atomic(path: str, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))
