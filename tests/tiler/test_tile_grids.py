"""Tiles read through ``TileGrids`` (one warped VRT per zoom) against rio-tiler's own reads.

Each case is a real COG; the same tile is read by ``LocalTiffReader`` (the grid) and by
rio-tiler's stock ``Reader``. Both sample with nearest neighbours but on different grids (the
tile's, against the data's own then resampled), so a pixel may come from the neighbouring
source pixel: masks and values are compared with that slack.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import morecantile
import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from rio_tiler.constants import WGS84_CRS
from rio_tiler.io import Reader
from rio_tiler.models import ImageData

from tiler.readers import DatasetPool, LocalTiffReader, grid_readable
from tiler.readers import grids as grids_module

from ..rasters import cog_tif, float_tif, gradient, rgbn_uint16_tif, utm_rgb_tif, write_geotiff

SIZE = 1024  # 10 m pixels: overviews at 2 and 4 (256 px blocks)


def _nodata(folder: Path) -> Path:
    return utm_rgb_tif(folder, size=SIZE, border=100)


def _alpha(folder: Path) -> Path:
    def fill(count: int, height: int, width: int) -> np.ndarray:
        data = gradient(count, height, width)
        data[3] = 255
        data[3, :, : width // 3] = 0  # the left third is transparent
        return data

    return write_geotiff(
        folder / "rgba.tif", width=SIZE, height=SIZE, count=4, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(500_000, 5_600_000, 10, 10), photometric="RGB", fill=fill,
        colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha],
    )  # fmt: skip


def _internal_mask(folder: Path) -> Path:
    valid = np.ones((SIZE, SIZE), bool)
    valid[: SIZE // 4] = False  # the top quarter is masked
    return write_geotiff(
        folder / "masked.tif", width=SIZE, height=SIZE, count=3, dtype="uint8",
        crs="EPSG:32633", transform=from_origin(500_000, 5_600_000, 10, 10), photometric="RGB",
        mask=valid,
    )  # fmt: skip


def _no_mask_uint16(folder: Path) -> Path:
    return rgbn_uint16_tif(folder, size=SIZE)


def _web_mercator(folder: Path) -> Path:
    return write_geotiff(
        folder / "mercator.tif", width=SIZE, height=SIZE, count=3, dtype="uint8",
        crs="EPSG:3857", transform=from_origin(1_669_792.0, 6_540_000.0, 12.0, 12.0),
        nodata=0, photometric="RGB",
    )  # fmt: skip


def _float_geographic(folder: Path) -> Path:
    return float_tif(folder, size=SIZE)


CASES: dict[str, Callable[[Path], Path]] = {
    "nodata": _nodata,
    "alpha band": _alpha,
    "internal mask": _internal_mask,
    "no mask, uint16": _no_mask_uint16,
    "same CRS as the grid": _web_mercator,
    "float with nodata, lon/lat": _float_geographic,
}


@pytest.fixture(scope="module")
def cogs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("grids")
    return {name: cog_tif(make(folder), folder / f"cog-{n}.tif")
            for n, (name, make) in enumerate(CASES.items())}  # fmt: skip


def _tiles(path: Path, tms: morecantile.TileMatrixSet) -> list[morecantile.Tile]:
    """The centre tile at the native zoom and at two and four zooms below, and a corner tile."""
    with Reader(str(path), tms=tms) as stock:
        west, south, east, north = stock.get_geographic_bounds(WGS84_CRS)
        top = stock.maxzoom
    centre = ((west + east) / 2, (south + north) / 2)
    return [tms.tile(*centre, top), tms.tile(*centre, top - 2), tms.tile(*centre, top - 4),
            tms.tile(west + 1e-4, north - 1e-4, top)]  # fmt: skip


def _compare(ours: ImageData, theirs: ImageData) -> bool:
    """Whether the two reads agree (asserted); True when they had valid pixels to compare."""
    assert ours.array.shape == theirs.array.shape and ours.array.dtype == theirs.array.dtype
    assert ours.band_names == theirs.band_names
    assert ours.crs == theirs.crs and np.allclose(ours.bounds, theirs.bounds)
    assert ours.nodata == theirs.nodata
    assert (ours.alpha_mask is None) == (theirs.alpha_mask is None)
    assert ours.dataset_statistics == theirs.dataset_statistics
    assert ours.scales == theirs.scales and ours.offsets == theirs.offsets
    assert (ours.mask == theirs.mask).mean() > 0.97  # they differ along the data's edge only
    both = ~ours.array.mask & ~theirs.array.mask
    if not both.any():
        return False
    data = ours.array.data.astype("float64")
    span = float(np.nanmax(data[both])) - float(np.nanmin(data[both])) or 1.0
    diff = np.abs(data - theirs.array.data.astype("float64"))[both] / span
    # The pattern's period is ~140 px: one pixel apart is up to 4% of its span, two are 9%.
    # Measured: mean <= 2%, 95th percentile <= 6%.
    assert diff.mean() < 0.03 and np.percentile(diff, 95) < 0.1
    return True


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("tms_id", ["WebMercatorQuad", "WorldCRS84Quad"])
def test_grid_tiles_match_rio_tilers(cogs: dict[str, Path], case: str, tms_id: str) -> None:
    tms = morecantile.tms.get(tms_id)
    compared = []
    for tile in _tiles(cogs[case], tms):
        with LocalTiffReader(str(cogs[case]), tms=tms) as ours:
            assert ours.grids is not None
            mine = ours.tile(tile.x, tile.y, tile.z)
            assert len(ours.grids) >= 1  # read through a grid, not by rio-tiler
        with Reader(str(cogs[case]), tms=tms) as stock:
            theirs = stock.tile(tile.x, tile.y, tile.z)
        compared.append(_compare(mine, theirs))
    assert all(compared[:3])  # the centre tiles hold data (a corner may be all masked)


def test_retina_tiles_and_band_subsets(cogs: dict[str, Path]) -> None:
    pool = DatasetPool()  # no grid made before
    path = cogs["no mask, uint16"]
    tms = morecantile.tms.get("WebMercatorQuad")
    tile = _tiles(path, tms)[1]
    with LocalTiffReader(str(path), datasets=pool) as ours, Reader(str(path)) as stock:
        for options in ({"tilesize": 512}, {"indexes": (4, 1)}, {"indexes": 2}):
            mine = ours.tile(tile.x, tile.y, tile.z, **options)
            _compare(mine, stock.tile(tile.x, tile.y, tile.z, **options))
        assert len(ours.grids) == 2  # 256 and 512 px grids of one zoom


def test_a_zoomed_out_grid_warps_from_the_right_overview(cogs: dict[str, Path]) -> None:
    path = cogs["same CRS as the grid"]  # 12 m pixels, overviews of 24 and 48 m
    with LocalTiffReader(str(path)) as reader:
        grids, crs = reader.grids, reader.tms.rasterio_crs
        assert grids is not None and reader.dataset.overviews(1) == [2, 4]
        # GDAL's rule: the most reduced overview below the wanted reduction x 1.2 (nearest)
        assert grids.overview_level(crs, 6.0) == -1  # finer than the data: the file itself
        assert grids.overview_level(crs, 12.0) == -1
        assert grids.overview_level(crs, 19.0) == -1  # 24 m pixels would be 1.26x too coarse
        assert grids.overview_level(crs, 21.0) == 0  # 1.14x: within the threshold
        assert grids.overview_level(crs, 30.0) == 0
        assert grids.overview_level(crs, 21.0, "bilinear") == -1  # other kernels: 1.0
        assert grids.overview_level(crs, 24.5, "bilinear") == 0
        assert grids.overview_level(crs, 48.0) == 1
        assert grids.overview_level(crs, 1000.0) == 1  # the coarsest there is
        with rasterio.Env(GDAL_OVERVIEW_OVERSAMPLING_THRESHOLD="1.5"):
            assert grids.overview_level(crs, 17.0) == 0  # an operator's threshold wins


def test_neighbouring_tiles_share_one_grid_and_old_grids_are_closed(
    cogs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = cogs["nodata"]
    tms = morecantile.tms.get("WebMercatorQuad")
    top = _tiles(path, tms)[0]
    pool = DatasetPool()
    monkeypatch.setattr(grids_module, "MAX_GRIDS", 2)
    with LocalTiffReader(str(path), datasets=pool) as reader:
        grids = reader.grids
        assert grids is not None
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
            reader.tile(top.x + dx, top.y + dy, top.z)
        assert len(grids) == 1
        first = grids.vrts()[0]
        reader.tile(top.x // 2, top.y // 2, top.z - 1)
        reader.tile(top.x // 4, top.y // 4, top.z - 2)
        assert len(grids) == 2 and first.closed  # the least recently used grid went
    kept = grids.vrts()
    pool.clear()  # a handle closed by the pool closes its grids
    assert all(vrt.closed for vrt in kept) and len(grids) == 0


@pytest.mark.parametrize(
    "options",
    [
        {"resampling_method": "bilinear"},
        {"buffer": 2},
        {"nodata": 7},
        {"unscale": True},
        {"vrt_options": {"add_alpha": True}},
    ],  # fmt: skip
    ids=lambda options: next(iter(options)),
)
def test_other_read_options_are_left_to_rio_tiler(cogs: dict[str, Path], options: Any) -> None:
    pool = DatasetPool()  # no grid made before
    path = cogs["nodata"]
    tile = _tiles(path, morecantile.tms.get("WebMercatorQuad"))[1]
    with LocalTiffReader(str(path), datasets=pool) as ours, Reader(str(path)) as stock:
        mine = ours.tile(tile.x, tile.y, tile.z, **options)
        theirs = stock.tile(tile.x, tile.y, tile.z, **options)
        assert ours.grids is not None and len(ours.grids) == 0
    assert np.array_equal(mine.array.data, theirs.array.data)
    assert np.array_equal(mine.array.mask, theirs.array.mask)


def test_grid_readable_options() -> None:
    assert grid_readable({})
    assert grid_readable({"reproject_method": "bilinear", "threads": 1})
    assert grid_readable({"resampling_method": "nearest", "nodata": None, "unscale": False})
    assert grid_readable({"buffer": 0, "padding": 0})
    assert not grid_readable({"nodata": 0})  # a nodata value of 0 is a value
    assert not grid_readable({"resampling_method": "cubic"})
    assert not grid_readable({"post_process": abs})
