"""The job child's side of an export: tiles rendered in forked processes, written in order.

``write_archive`` walks the region's WebMercatorQuad tiles in PMTiles order (tiler/tiling.py),
renders them in ``renderers`` forked processes (threads would share the GIL with PNG encoding
and rio-tiler's Python: two threads gave 1.2x one) and writes them from one thread, in order,
through a bounded window of pending results: memory stays flat whatever the extent. The
archive is built in the storage's tmp folder and published only once complete.
"""

import itertools
import multiprocessing
import multiprocessing.pool
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import shapely

from catalog.jobs.lifetime import die_with_parent
from catalog.jobs.queue import JobContext

from ..archives import WRITERS, ArchiveMetadata, ArchiveWriter
from ..readers.shared import ReaderResources
from ..render import TileRenderer, renderer_from_plan
from ..tiling import iter_tiles
from .files import archive_key
from .inputs import NoData


def write_archive(
    plan: dict[str, Any], ctx: JobContext, region: shapely.Geometry, resources: ReaderResources
) -> dict[str, Any]:
    """Render the region's tiles into a temporary archive, then publish it (``execute``)."""
    writer_class = WRITERS[plan["extension"]]
    renderer = renderer_from_plan(plan["source"], resources)
    metadata = ArchiveMetadata(**{**plan["metadata"],
                                  "bounds": tuple(plan["metadata"]["bounds"])})  # fmt: skip
    zooms: tuple[int, int] = (plan["minzoom"], plan["maxzoom"])
    total = sum(1 for _ in iter_tiles(region, *zooms))
    ctx.log(
        f"rendering {total} tiles at zooms {plan['minzoom']}-{plan['maxzoom']} on "
        f"{plan['renderers']} processes, GDAL_CACHEMAX={os.environ['GDAL_CACHEMAX']} "
        f"(pid {os.getpid()})"
    )
    started = time.monotonic()
    temp = resources.storage.temp_path(f".{writer_class.extension}")
    with writer_class(temp) as writer:
        tiles = iter_tiles(region, *zooms)
        stats = write_tiles(tiles, renderer, writer, total, plan["renderers"], ctx.progress,
                            processes=plan["renderers"] > 1)  # fmt: skip
        if writer.tiles == 0:
            raise NoData("every tile of the export is empty")
        writer.finish(metadata)
    seconds = time.monotonic() - started
    key = archive_key(plan["job_id"], writer_class.extension)
    size = temp.stat().st_size
    try:
        resources.storage.publish(temp, key)  # an upload to object storage may fail
    finally:
        temp.unlink(missing_ok=True)
    ctx.log(
        f"{stats['written']} tiles written, {stats['empty']} empty left out, "
        f"{size} bytes in {seconds:.1f} s ({stats['written'] / max(seconds, 1e-6):.1f} "
        "tiles/s)"
    )
    return {"name": key.rsplit("/", 1)[-1], "tiles": stats["written"], "bytes": size,
            "empty": stats["empty"], "seconds": round(seconds, 3)}  # fmt: skip


# -- the render loop ----------------------------------------------------------------------------
Batch = tuple[tuple[int, int, int], ...]  # z, x, y of the tiles of one task
Result = Callable[[], list[bytes | None]]  # waits for a task's tiles
PROCESS_BATCH = 8  # tiles per task sent to a render process: one pickle round trip for 8 tiles
_RENDER: TileRenderer | None = None  # a render process's renderer (set by _start_renderer)


def _start_renderer(render: TileRenderer, parent: int) -> None:
    """Render process set-up: die with the export's process, keep its renderer."""
    global _RENDER
    die_with_parent(parent)
    # The job child's SIGTERM handler unwinds to remove its temp files; a render process has
    # none and must end at once when the pool is terminated.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _RENDER = render


def _render_batch(tiles: list[tuple[int, int, int]]) -> list[bytes | None]:
    """In a render process: the tiles of one task."""
    if _RENDER is None:
        raise RuntimeError("render batch outside a render process (no renderer set)")
    return [_RENDER(*tile) for tile in tiles]


def _render_pool(render: TileRenderer, processes: int) -> multiprocessing.pool.Pool:
    """``processes`` forked render processes holding ``render``.

    Forked, not spawned: they start in milliseconds and inherit the renderer (a closure, not
    picklable) without pickling it. The caller forks before reading any tile, so nothing GDAL
    holds (block cache, PROJ's database) is shared with them. The jobs' child process is
    daemonic, and multiprocessing refuses children to daemonic processes: it is let have them
    because they die with it (PR_SET_PDEATHSIG) and it terminates them on every exit path.
    """
    me = multiprocessing.current_process()
    if me.daemon:
        me.daemon = False
    context = multiprocessing.get_context("fork")
    return context.Pool(processes, initializer=_start_renderer, initargs=(render, os.getpid()))


def _renderers(
    render: TileRenderer, workers: int, processes: bool
) -> tuple[Callable[[Batch], Result], Callable[[], None]]:
    """How ``write_tiles`` hands a batch of tiles to ``workers`` renderers, and stops them.

    Processes are terminated at once when stopped; threads drop their queued renders.
    """
    if processes:
        pool = _render_pool(render, workers)

        def submit_task(batch: Batch) -> Result:
            return pool.apply_async(_render_batch, (list(batch),)).get

        return submit_task, pool.terminate
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="render")

    def submit_thread(batch: Batch) -> Result:
        return executor.submit(lambda: [render(*tile) for tile in batch]).result

    # On an error or a SIGTERM, queued renders are dropped; running ones end by themselves.
    def close() -> None:
        executor.shutdown(wait=False, cancel_futures=True)

    return submit_thread, close


def write_tiles(
    tiles: Iterator[tuple[int, int, int]],
    render: TileRenderer,
    writer: ArchiveWriter,
    total: int,
    workers: int,
    progress: Callable[[int, str], None],
    progress_every_s: float = 0.5,
    processes: bool = False,
) -> dict[str, int]:
    """Render ``tiles`` on ``workers`` threads, or processes, and write them here, in order.

    Threads share the GIL with PNG encoding and rio-tiler's Python, so an export uses
    processes (``processes=True``: tasks of ``PROCESS_BATCH`` tiles); threads remain for one
    renderer and for callers that cannot fork. At most ``4 * workers`` tasks are in flight: the
    window of pending results is the bounded queue between the renderers and this (the only)
    writing thread, so memory stays flat whatever the extent.
    """
    window: deque[tuple[Batch, Result]] = deque()
    done = empty = 0
    last = time.monotonic()
    size = PROCESS_BATCH if processes else 1
    submit, close = _renderers(render, workers, processes)

    def drain_one() -> None:
        nonlocal done, empty, last
        batch, result = window.popleft()
        for (z, x, y), content in zip(batch, result(), strict=True):
            if content is None:
                empty += 1
            else:
                writer.add(z, x, y, content)
            done += 1
            if time.monotonic() - last >= progress_every_s:
                last = time.monotonic()
                progress(min(99, 100 * done // max(total, 1)), f"{done}/{total} tiles")

    try:
        for batch in itertools.batched(tiles, size):
            window.append((batch, submit(batch)))
            if len(window) >= 4 * workers:
                drain_one()
        while window:
            drain_one()
    finally:
        close()  # processes: terminated at once, on success (idle) as on a cancel
    progress(99, f"{done}/{total} tiles")
    return {"written": done - empty, "empty": empty}
