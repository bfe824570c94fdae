"""Per-request costs the tile routes no longer pay: a thread pool per read, a deep copy of the
tile matrix set per lookup, the data's zooms worked out per reader."""

import functools
import threading
from pathlib import Path
from typing import Any

import attr
import morecantile
from rio_tiler.constants import WGS84_CRS

from tiler import reader as reader_module
from tiler.factory import SharedTileMatrixSets
from tiler.reader import ItemReader, LocalTiffReader


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
    with ItemReader(item, data_dir=data_dir, reader=RecordingReader) as src:
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
    reader_module._ZOOMS.clear()
    CountingReader.computed = 0
    first = CountingReader(item, data_dir=data_dir)
    second = CountingReader(item, data_dir=data_dir)
    assert CountingReader.computed == 1
    assert (first.minzoom, first.maxzoom) == (second.minzoom, second.maxzoom)
    fresh = ItemReader(item, data_dir=data_dir)
    reader_module._ZOOMS.clear()
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
