"""Keep the C allocator from returning image-sized buffers to the kernel after every image.

Each download allocates a few buffers of 0.1-2 MB (the body, the decoded pixels, decoder
scratch) and frees them a few milliseconds later. glibc's malloc serves blocks that size with
``mmap`` and gives them back with ``munmap``, or trims the heap once its free top passes a
threshold, so the next image faults the same pages in again: a hundred-odd page faults per
image, a visible share of its cost. Fixed thresholds keep those blocks
in the heap for reuse. Blocks above ``mmap_threshold`` (a decompression-bomb-sized decode) are
still mapped and unmapped, so the memory a worker keeps is bounded by ``trim_threshold``.
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3

_tuned = False


def keep_freed_memory(mmap_threshold: int = 16 << 20, trim_threshold: int = 64 << 20) -> bool:
    """Set glibc's mmap and trim thresholds for this process; False where malloc is not glibc's."""
    global _tuned
    if _tuned:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1
        ok = libc.mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1 and ok
    except (OSError, AttributeError):
        return False
    _tuned = ok
    return ok
