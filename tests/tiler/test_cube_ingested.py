"""Tiles of cubes that went through cube-ingest's upload and ingest job (a real worker): the
Sentinel-2-like Zarr and the lat/lon NetCDF model cube of tests/cube_data.py, compared with
their formulas on the cells under each tile pixel's centre; a time slice item's tiles."""

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pyproj import Transformer

from catalog.cubes.store import clear_cache
from server.settings import Settings
from tests.catalog.cube_uploads import all_items, tune
from tests.catalog.vector_uploads import loaded, start_worker, upload
from tests.cube_data import (
    S2_BANDS,
    S2_ORIGIN,
    S2_START,
    model_cube,
    s2_cube,
    s2_value,
    write_netcdf,
    write_zarr,
    zip_store,
)
from tests.tiler.conftest import TMS, npy
from tests.workers import MakeWorker

TO_UTM = Transformer.from_crs("EPSG:3857", "EPSG:32631", always_xy=True)
TO_LONLAT = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)


@pytest.fixture(autouse=True)
def _tuned(settings: Settings) -> None:
    tune(settings)  # overviews of factor 2 and 4 for the 64 px cube
    clear_cache()


def _cells(z: int, x: int, y: int, to_grid: Any, west: float, north: float, step: float,
           size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Row, column of the cube cell under each tile pixel's centre; pixels clearly inside."""
    box = TMS.xy_bounds(x, y, z)
    pixel = (box.right - box.left) / 256
    centres = box.left + pixel * (np.arange(256) + 0.5)
    mx, my = np.meshgrid(centres, box.top - pixel * (np.arange(256) + 0.5))
    gx, gy = to_grid.transform(mx, my)
    fi, fj = (gx - west) / step, (north - gy) / step
    i, j = np.floor(fi).astype(int), np.floor(fj).astype(int)
    clear = (np.abs(fi - np.round(fi)) > 0.01) & (np.abs(fj - np.round(fj)) > 0.01)
    clear &= (i >= 0) & (i < size) & (j >= 0) & (j < size)
    return np.clip(j, 0, size - 1), np.clip(i, 0, size - 1), clear


def test_an_ingested_sentinel2_zarr_tiles_ndvi_per_date_and_per_item(
    client: TestClient, admin: dict[str, str], settings: Settings, make_worker: MakeWorker,
    tmp_path: Path,
) -> None:  # fmt: skip
    start_worker(settings, make_worker)
    store = write_zarr(s2_cube(), tmp_path / "s2.zarr", zarr_format=3, consolidated=False)
    data = zip_store(store, tmp_path / "s2.zip").read_bytes()
    assert loaded(upload(client, admin, "s2", "upload.bin", data)) == ["s2"]
    west, north = S2_ORIGIN
    lon, lat = TO_LONLAT.transform(west + 400, north - 400)
    tile = TMS.tile(lon, lat, 15)
    j, i, clear = _cells(tile.z, tile.x, tile.y, TO_UTM, west, north, 10.0, 64)
    nir, red = S2_BANDS.index("B08"), S2_BANDS.index("B04")
    when = pd.Timestamp(S2_START) + pd.Timedelta(days=5 * 12)
    path = f"/collections/s2/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.npy"
    r = client.get(path, params={"layers": "ndvi", "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ")},
                   headers=admin)  # fmt: skip
    assert r.status_code == 200, r.text
    expected = (s2_value(nir, 12, j, i) - s2_value(red, 12, j, i)) / (
        s2_value(nir, 12, j, i) + s2_value(red, 12, j, i))  # fmt: skip
    assert clear.sum() > 1000
    np.testing.assert_allclose(npy(r.content)[0][clear], expected[clear], rtol=1e-5)
    # the item of that date: its tile is the collection's at its datetime
    item = all_items(client, admin, "s2")[12]
    item_path = (f"/collections/s2/items/{item['id']}/tiles/WebMercatorQuad/"
                 f"{tile.z}/{tile.x}/{tile.y}.npy")  # fmt: skip
    r = client.get(item_path, params={"layers": "NDVI"}, headers=admin)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(npy(r.content)[0][clear], expected[clear], rtol=1e-5)
    # every zoom from 0 to the TileJSON's maxzoom answers
    doc = client.get("/collections/s2/tiles/WebMercatorQuad/tilejson.json", headers=admin).json()
    for z in range(doc["maxzoom"] + 1):
        t = TMS.tile(lon, lat, z)
        r = client.get(f"/collections/s2/tiles/WebMercatorQuad/{z}/{t.x}/{t.y}.png",
                       params={"layers": "RGB"}, headers=admin)  # fmt: skip
        assert r.status_code == 200, (z, r.text)


def test_an_ingested_netcdf_model_cube_tiles_its_variables(
    client: TestClient, admin: dict[str, str], settings: Settings, make_worker: MakeWorker,
    tmp_path: Path,
) -> None:  # fmt: skip
    start_worker(settings, make_worker)
    data = write_netcdf(model_cube(), tmp_path / "model.nc").read_bytes()
    assert loaded(upload(client, admin, "model", "model.nc", data)) == ["model"]
    tile = TMS.tile(4.0, 47.0, 7)  # inside the 2-14 E, 42-50 N cube
    to_lonlat = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    j, i, clear = _cells(tile.z, tile.x, tile.y, to_lonlat, 2.0, 50.0, 0.25, 32)
    clear &= i < 48
    path = f"/collections/model/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.npy"
    r = client.get(path, params={"layers": "t2m", "datetime": "2025-01-01T12:00:00Z",
                                 "datetime_match": "exact"}, headers=admin)  # fmt: skip
    assert r.status_code == 200, r.text
    lat, lon = 50.0 - 0.125 - 0.25 * j, 2.0 + 0.125 + 0.25 * i
    expected = 270.0 + 2 + 0.1 * lon - 0.1 * lat
    assert clear.sum() > 1000
    np.testing.assert_allclose(npy(r.content)[0][clear], expected[clear], rtol=1e-5)
