"""The C allocator of a server process: large blocks go back to the system when freed.

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), so the tile
buffers of rendering threads (a few MB each) soon come from the heaps of its arenas, where a
small survivor keeps them from being returned: a tile server's RSS then only grows.
bench.soak (20 clients, item tiles) and an in-process probe showed 90 MB of a worker's
memory held this way; a fixed threshold keeps such blocks mapped and returns them on free.
No library exposes ``mallopt``; it is one call through ctypes, and a no-op off glibc.
"""

import ctypes
import ctypes.util
import logging

logger = logging.getLogger("terracat")
M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def tune_allocator(mmap_threshold: int) -> bool:
    """Fix glibc's mmap threshold at ``mmap_threshold`` bytes (0: leave it dynamic).

    Returns whether the allocator took it (False off glibc, or for 0).
    """
    if mmap_threshold <= 0:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        logger.info("no mallopt in this C library: allocator left as it is")
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold))
