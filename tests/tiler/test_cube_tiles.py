"""Tiles, TileJSON and tilesets of a datacube collection (tiler/cubes/), on a real Zarr store.

The cube (tests/tiler/cubes.py) is Sentinel-2-like: bands B02..B12 by id only, 64 x 64 px
of 10 m in EPSG:32631, 40 dates, values known formulas; B04 has no data in one box at t=3.
Tiles are fetched as ``.npy`` (float32 values and mask) and compared, pixel by pixel, with the
same formula computed here with numpy on the cube cells under each tile pixel's centre.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pyproj import Transformer

from server.settings import Settings
from tests.conftest import Databases
from tests.tiler.conftest import TMS, SharedCatalogue, decode, npy, shared_catalogue
from tests.tiler.cubes import (
    NODATA_BOX,
    PIXEL,
    X0,
    Y0,
    MadeCube,
    band_values,
    make_cube,
    times,
)

BASE = "/collections/cube/tiles/WebMercatorQuad"
NATIVE = 15  # WebMercatorQuad zoom of ~10 m pixels at 45 degrees north (4.8 m, as titiler picks)
TO_LONLAT = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)
TO_UTM = Transformer.from_crs("EPSG:3857", "EPSG:32631", always_xy=True)


@pytest.fixture(scope="module")
def cube_catalogue(
    databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SharedCatalogue, MadeCube]]:
    """The cube, made once for the tests that only read it."""
    with shared_catalogue(databases, "cubes", tmp_path_factory) as shared:
        made = make_cube(shared.client, shared.settings.ingest.data_dir)
        yield shared, made


@pytest.fixture
def cube(cube_catalogue: tuple[SharedCatalogue, MadeCube]) -> TestClient:
    """A client on the shared cube (read only)."""
    return cube_catalogue[0].client


def centre_tile(zoom: int) -> tuple[int, int, int]:
    """The tile at the middle of the cube."""
    lon, lat = TO_LONLAT.transform(X0 + 320, Y0 - 320)
    tile = TMS.tile(lon, lat, zoom)
    return tile.z, tile.x, tile.y


def cells(z: int, x: int, y: int, size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cube cell (row j, column i) under each tile pixel's centre, and which pixels are
    clearly inside one cell (not within 1 % of a cell edge, nor outside the cube)."""
    box = TMS.xy_bounds(x, y, z)
    step = (box.right - box.left) / size
    centres = box.left + step * (np.arange(size) + 0.5)
    mx, my = np.meshgrid(centres, box.top - step * (np.arange(size) + 0.5))
    ux, uy = TO_UTM.transform(mx, my)
    fi, fj = (ux - X0) / PIXEL, (Y0 - uy) / PIXEL
    i, j = np.floor(fi).astype(int), np.floor(fj).astype(int)
    clear = (np.abs(fi - np.round(fi)) > 0.01) & (np.abs(fj - np.round(fj)) > 0.01)
    inside = (i >= 0) & (i < 64) & (j >= 0) & (j < 64)
    return np.clip(j, 0, 63), np.clip(i, 0, 63), clear & inside


def tile_npy(client: TestClient, tile: tuple[int, int, int], **params: Any) -> np.ndarray:
    z, x, y = tile
    r = client.get(f"{BASE}/{z}/{x}/{y}.npy", params=params)
    assert r.status_code == 200, r.text
    return npy(r.content)


def ndvi(t: int | slice) -> np.ndarray:
    shape = (40, 64, 64)
    nir = band_values("B08", shape)[t].astype("float64")
    red = band_values("B04", shape)[t].astype("float64")
    return (nir - red) / (nir + red)


def test_ndvi_tile_equals_the_numpy_formula(cube: TestClient) -> None:
    tile = centre_tile(NATIVE)
    array = tile_npy(cube, tile, layers="NDVI", datetime=times(40)[7].isoformat())
    assert array.shape == (2, 256, 256)  # NDVI and the mask
    j, i, clear = cells(*tile)
    expected = ndvi(7)[j, i]
    assert clear.sum() > 1000
    np.testing.assert_allclose(array[0][clear], expected[clear], rtol=1e-5)
