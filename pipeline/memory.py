"""How a process's C allocators keep and give back memory: one home for the glibc settings.

glibc's malloc serves blocks above its mmap threshold with ``mmap`` and gives them back with
``munmap``, trims the heap once its free top passes a threshold, and gives each thread that
allocates an arena of its own; Arrow keeps a pool of its own on top. Left alone, a download
worker faults an image's pages in again for every image, and a select worker holds the peak of
its largest step (building the query trie, a bucket, a group of parts) for the rest of the run,
spread over arenas, next to every other worker holding its own. Where malloc is not glibc's
every function here does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform

# mallopt parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8


def _libc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


_LIBC = _libc()
_tuned = False


def keep_freed_memory(mmap_threshold: int = 16 << 20, trim_threshold: int = 64 << 20) -> bool:
    """Fixed mmap and trim thresholds for this process, so that blocks up to ``mmap_threshold``
    (an image's buffers, a batch's arrays) stay in the heap for reuse instead of being unmapped
    and faulted in again; the heap keeps at most ``trim_threshold`` free at its top. False where
    malloc is not glibc's."""
    global _tuned
    if _tuned:
        return True
    if _LIBC is None:
        return False
    try:
        ok = _LIBC.mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1
        ok = _LIBC.mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1 and ok
    except AttributeError:
        return False
    _tuned = ok
    return ok


def lean_allocators() -> None:
    """One malloc arena, used by Arrow too, with fixed thresholds: for a worker process that
    runs one bundle at a time (call it before pyarrow is imported: Arrow picks its pool then)."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    if _LIBC is None:
        return
    try:
        _LIBC.mallopt(M_ARENA_MAX, 1)
    except AttributeError:
        return
    keep_freed_memory(32 << 20, 64 << 20)


def release_memory() -> None:
    """Hand the memory a finished step freed back to the system (Arrow's pool, then malloc's)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)
