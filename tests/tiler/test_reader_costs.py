"""Per-request costs the tile routes no longer pay: a thread pool per read, a deep copy of the
tile matrix set per lookup, the data's zooms worked out per reader, a file opened per read."""

import contextlib
import functools
import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any

import attr
import morecantile
import pytest
import rasterio
from rio_tiler.constants import WGS84_CRS

from catalog.storage.local import LocalStorage
from tiler.factory import SharedTileMatrixSets
from tiler.readers import ASSET_READERS, DatasetPool, ItemReader, LocalTiffReader
from tiler.readers.shared import GridCache

from ..rasters import cog_tif, utm_rgb_tif


@attr.s
class RecordingReader(LocalTiffReader):
    """The asset reader ItemReader uses, noting the thread each tile is read on."""

    threads_seen: list[int] = []

    def tile(self, *args: Any, **kwargs: Any) -> Any:
        RecordingReader.threads_seen.append(threading.get_ident())
        return super().tile(*args, **kwargs)


def test_item_tiles_are_read_on_the_calling_thread(
    local_item: tuple[dict[str, Any], Path],
) -> None:
    item, data_dir = local_item
    RecordingReader.threads_seen = []
    with ItemReader(
        item, storage=LocalStorage(data_dir), readers=dict.fromkeys(ASSET_READERS, RecordingReader)
    ) as src:
        tile = src.tms.tile(*_centre(src), src.maxzoom)
        src.tile(tile.x, tile.y, tile.z, assets=list(src.assets))
    assert len(RecordingReader.threads_seen) == len(src.assets)  # rio-tiler pools even one
    assert set(RecordingReader.threads_seen) == {threading.get_ident()}


class CountingReader(ItemReader):
    """ItemReader counting how often it works the data's zooms out."""

    computed = 0

    @functools.cached_property
    def _minzoom(self) -> int:
        CountingReader.computed += 1
        return int(super()._minzoom)


def test_a_grids_zooms_are_worked_out_once(local_item: tuple[dict[str, Any], Path]) -> None:
    item, data_dir = local_item
    cache = GridCache()  # the app's
    CountingReader.computed = 0
    first = CountingReader(item, storage=LocalStorage(data_dir), grid_cache=cache)
    second = CountingReader(item, storage=LocalStorage(data_dir), grid_cache=cache)
    assert CountingReader.computed == 1
    assert (first.minzoom, first.maxzoom) == (second.minzoom, second.maxzoom)
    fresh = ItemReader(item, storage=LocalStorage(data_dir), grid_cache=cache)
    cache.clear()
    assert (fresh.minzoom, fresh.maxzoom) == (int(fresh._minzoom), int(fresh._maxzoom))


def test_shared_tile_matrix_sets_hand_out_one_instance() -> None:
    sets = SharedTileMatrixSets({"WebMercatorQuad": morecantile.tms.get("WebMercatorQuad")})
    first = sets.get("WebMercatorQuad")
    assert sets.get("WebMercatorQuad") is first
    assert first.model_dump() == morecantile.tms.get("WebMercatorQuad").model_dump()
    assert first.rasterio_crs is sets.get("WebMercatorQuad").rasterio_crs  # conversion kept


def _centre(src: ItemReader) -> tuple[float, float]:
    west, south, east, north = src.get_geographic_bounds(WGS84_CRS)
    return (west + east) / 2, (south + north) / 2


# -- open files kept between reads ---------------------------------------------------------------
@pytest.fixture
def cog(tmp_path: Path) -> Path:
    return cog_tif(utm_rgb_tif(tmp_path, size=256, border=16), tmp_path / "cog.tif")


def _pixel(path: Path, pool: DatasetPool) -> tuple[int, ...]:
    with contextlib.ExitStack() as stack:
        dataset = pool.borrow(str(path), stack)
        return tuple(int(v) for v in dataset.read(window=((100, 101), (100, 101))).ravel())


def test_reads_of_a_file_share_one_open_handle(cog: Path) -> None:
    pool = DatasetPool()
    with contextlib.ExitStack() as stack:
        first = pool.borrow(str(cog), stack)
    with contextlib.ExitStack() as stack:
        assert pool.borrow(str(cog), stack) is first
    assert pool.opened == 1 and len(pool) == 1 and not first.closed


def test_item_tiles_borrow_their_files_from_the_pool(
    local_item: tuple[dict[str, Any], Path],
) -> None:
    item, data_dir = local_item
    pool = DatasetPool()  # the app's
    before = pool.opened
    for _ in range(3):
        with ItemReader(item, storage=LocalStorage(data_dir), datasets=pool) as src:
            tile = src.tms.tile(*_centre(src), src.maxzoom)
            src.tile(tile.x, tile.y, tile.z, assets=list(src.assets))
    assert pool.opened - before == len(src.assets)
    assert len(pool) == len(src.assets)


def test_readers_at_the_same_time_get_their_own_handles(cog: Path) -> None:
    pool = DatasetPool(size=2)
    with contextlib.ExitStack() as one, contextlib.ExitStack() as two:
        three = contextlib.ExitStack()
        handles = [pool.borrow(str(cog), stack) for stack in (one, two, three)]
        assert len({id(h) for h in handles}) == 3 and len(pool) == 0
        three.close()
    assert pool.opened == 3
    assert len(pool) == 2  # the longest idle one closed
    assert handles[2].closed and not handles[0].closed and not handles[1].closed


def test_a_replaced_file_is_opened_anew(cog: Path, tmp_path: Path) -> None:
    pool = DatasetPool()
    before = _pixel(cog, pool)
    other = utm_rgb_tif(tmp_path, size=256, border=16, name="other.tif")
    with rasterio.open(other, "r+") as dst:  # the same raster, other pixel values
        dst.write(255 - dst.read())
    os.replace(cog_tif(other, tmp_path / "new.tif"), cog)
    assert _pixel(cog, pool) != before
    assert pool.opened == 2


def test_idle_handles_are_closed(cog: Path) -> None:
    pool = DatasetPool(idle_s=0.0)
    with contextlib.ExitStack() as stack:
        first = pool.borrow(str(cog), stack)
    time.sleep(0.01)
    with contextlib.ExitStack() as stack:
        assert pool.borrow(str(cog), stack) is not first
    assert first.closed


def test_a_bursts_spare_handles_close_after_their_own_idle_time(cog: Path) -> None:
    """Concurrent reads of a file leave a handle each (~6 MB with its buffers and VRTs): all
    but the most recently used one close after ``spare_idle_s``, on ``reap`` or the next read."""
    pool = DatasetPool(idle_s=60.0, spare_idle_s=0.05)
    stacks = [contextlib.ExitStack() for _ in range(3)]
    handles = [pool.borrow(str(cog), stack) for stack in stacks]
    for stack in stacks:
        stack.close()
    assert len(pool) == 3 and pool.reap() == 0  # not idle long enough yet
    time.sleep(0.1)
    assert pool.reap() == 2
    assert len(pool) == 1 and [h.closed for h in handles] == [True, True, False]
    with contextlib.ExitStack() as stack:
        assert pool.borrow(str(cog), stack) is handles[2]  # the one kept serves the next read
    assert pool.opened == 3


def test_a_lone_handle_waits_for_the_longer_idle_time(cog: Path) -> None:
    pool = DatasetPool(idle_s=60.0, spare_idle_s=0.0)
    with contextlib.ExitStack() as stack:
        first = pool.borrow(str(cog), stack)
    time.sleep(0.01)
    assert pool.reap() == 0 and not first.closed


def _pool_size_in_child(queue: Any, pool: DatasetPool) -> None:
    queue.put(len(pool))


def test_a_forked_child_opens_its_own_files(local_item: tuple[dict[str, Any], Path]) -> None:
    item, data_dir = local_item
    pool = DatasetPool()
    with ItemReader(item, storage=LocalStorage(data_dir), datasets=pool) as src:
        src.info()
    assert len(pool) > 0
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_pool_size_in_child, args=(queue, pool))
    child.start()
    assert queue.get(timeout=30) == 0
    child.join(30)
    assert child.exitcode == 0
