"""The allocators of a server process: large blocks go back to the system when freed, and
Python's cycle collector runs less often.

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), so the tile
buffers of rendering threads (a few MB each) soon come from the heaps of its arenas, where a
small survivor keeps them from being returned: a tile server's RSS then only grows.
bench.soak (20 clients, item tiles) and an in-process probe showed 90 MB of a worker's
memory held this way; a fixed threshold keeps such blocks mapped and returns them on free.
No library exposes ``mallopt``; it is one call through ctypes, and a no-op off glibc.

Smaller blocks (decoded GDAL blocks, numpy arrays of a few hundred kB, Python objects) still
come from the arenas of the rendering threads; what they free stays in the process until
``malloc_trim`` gives the free pages back. ``trim_allocator`` does that every few seconds, in a
thread: an in-process probe went from 431 to 281 MB after one trim (docs/benchmarks.md).

Python's cycle collector passes over its young generation each time 700 more container objects
(dicts, lists) are allocated than freed, and the survivors of a pass are walked again in the
older generations. A request holding many live objects, such as a bulk body of 1,000 items
(~60,000 dicts and lists), is walked many times over while it is checked: in a process with the
app's objects frozen (``gc.freeze``), 10 of 45 us of Python per item went to the collector.
Objects freed by reference counting, most of them, never wait for it; a higher threshold only
keeps cyclic garbage a little longer.
"""

import asyncio
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

import anyio.to_thread

logger = logging.getLogger("terracat")
M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _malloc_trim() -> Callable[[int], int] | None:
    libc = _libc()
    return getattr(libc, "malloc_trim", None) if libc is not None else None


async def trim_allocator(interval_s: float, release: Callable[[], object] | None = None) -> None:
    """Every ``interval_s`` seconds, call ``release`` (closing what has been idle too long),
    then return the allocator's free pages to the system.

    Runs until cancelled (the app's lifespan starts and cancels it); off glibc only
    ``release`` runs.
    """
    trim = _malloc_trim()
    if interval_s <= 0 or (trim is None and release is None):
        return
    while True:
        await asyncio.sleep(interval_s)
        # both off the event loop: closing files takes GDAL's locks, malloc_trim walks every
        # arena under its lock (a few ms)
        await anyio.to_thread.run_sync(_release_and_trim, release, trim)


def _release_and_trim(
    release: Callable[[], object] | None, trim: Callable[[int], int] | None
) -> None:
    if release is not None:
        release()
    if trim is not None:
        trim(0)


def tune_allocator(mmap_threshold: int) -> bool:
    """Fix glibc's mmap threshold at ``mmap_threshold`` bytes (0: leave it dynamic).

    Returns whether the allocator took it (False off glibc, or for 0).
    """
    if mmap_threshold <= 0:
        return False
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:  # not glibc (musl, macOS): nothing to tune
        logger.info("no mallopt in this C library: allocator left as it is")
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold))


def tune_collector(threshold: int) -> None:
    """Set the young-generation threshold of Python's cycle collector (0: leave it)."""
    if threshold > 0:
        gc.set_threshold(threshold, *gc.get_threshold()[1:])
