"""Datacubes made by the tests: a Sentinel-2-like Zarr store in the app's local storage and
its ``datacubes`` row (``put_cube``), with factor 2 and 4 overviews.

Values are known formulas of the column ``i``, row ``j`` and time step ``t`` (``band_values``),
so a test computes what any pixel of any band holds without reading the store.
"""

import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import rioxarray  # noqa: F401 - the .rio accessor
import xarray
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.cubes.model import Cube, CubeLayer, CubeOverview, put_cube
from catalog.cubes.store import clear_cache
from catalog.storage.local import LocalStorage
from tests.conftest import ADMIN
from tests.factories import collection

BANDS = ("B02", "B03", "B04", "B05", "B08", "B8A", "B11", "B12")
CRS = "EPSG:32631"
X0, Y0, PIXEL = 500_000.0, 5_000_000.0, 10.0
START = datetime(2024, 4, 1, tzinfo=UTC)
STEP = timedelta(days=5)
NODATA_BOX = (3, slice(40, 50), slice(30, 40))  # B04 has no data there (t, rows, columns)


def band_values(band: str, shape: tuple[int, int, int]) -> np.ndarray:
    """(t, j, i) uint16 values of ``band``: each band its own plane in i, j and t."""
    t, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    k = BANDS.index(band) + 1
    values = 200 * k + (3 + k) * i + (11 - k) * j + 13 * t
    if band == "B08":  # a vegetated near infrared, well above red
        values = 2500 + 17 * j + 9 * t + 2 * i
    if band == "B04":
        values = 400 + 6 * i + 4 * t + j
    return values.astype("uint16")


def times(count: int) -> list[datetime]:
    """The cube's time coordinate."""
    return [START + STEP * n for n in range(count)]


def s2_dataset(size: int = 64, count: int = 40, factor: int = 1) -> xarray.Dataset:
    """The cube (``factor`` 1), or its overview: ``factor`` x ``factor`` blocks averaged."""
    data = {}
    for band in BANDS:
        values = band_values(band, (count, size, size)).astype("float64")
        if band == "B04" and count > NODATA_BOX[0]:
            t, rows, cols = NODATA_BOX
            values[t, rows, cols] = np.nan
        if factor > 1:
            n = size // factor
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # blocks all without data
                values = np.nanmean(values.reshape(count, n, factor, n, factor), axis=(2, 4))
        data[band] = (("time", "y", "x"), np.where(np.isnan(values), 0, values).astype("uint16"))
    n = size // factor
    res = PIXEL * factor
    ds = xarray.Dataset(
        data,
        coords={
            "time": np.array([t.replace(tzinfo=None) for t in times(count)], "datetime64[ns]"),
            "y": Y0 - res * (np.arange(n) + 0.5),
            "x": X0 + res * (np.arange(n) + 0.5),
        },
    )
    for band in BANDS:
        ds[band].encoding["_FillValue"] = 0 if band == "B04" else None
    return ds.rio.write_crs(CRS)


@dataclass(frozen=True)
class MadeCube:
    """A cube made for a test: its row, and the values of its full-resolution store."""

    cube: Cube
    size: int
    count: int


def write_cube(
    data_dir: Path,
    collection_id: str = "cube",
    size: int = 64,
    count: int = 40,
    overviews: tuple[int, ...] = (2, 4),
    bands: tuple[str, ...] = BANDS,
) -> Cube:
    """The cube's stores, written with xarray into the local storage at ``data_dir``, and its
    row (not stored; layers: ``bands`` only)."""
    clear_cache()  # a store of an earlier test may have had this href
    storage = LocalStorage(data_dir)
    key = f"cubes/{collection_id}/cube.zarr"
    s2_dataset(size, count).to_zarr(storage.path(key), mode="w", consolidated=False)
    found = []
    for factor in overviews:
        over = f"cubes/{collection_id}/overview-{factor}.zarr"
        s2_dataset(size, count, factor).to_zarr(storage.path(over), mode="w", consolidated=False)
        found.append(CubeOverview(f"storage:{over}", factor, size // factor, size // factor))
    return Cube(
        collection_id=collection_id, href=f"storage:{key}", format="zarr", crs=CRS,
        transform=(X0, PIXEL, 0.0, Y0, 0.0, -PIXEL), width=size, height=size, x_dim="x",
        y_dim="y", time_dim="time", band_dim=None,
        layers=tuple(CubeLayer(b, b, dtype="uint16", nodata=0 if b == "B04" else None)
                     for b in bands),
        times=tuple(times(count)), overviews=tuple(found),
    )  # fmt: skip


async def store_cube(engine: AsyncEngine, cube: Cube) -> None:
    """The cube's ``datacubes`` row, with ``put_cube``."""
    async with engine.begin() as conn:
        await put_cube(conn, cube)


def make_cube(
    client: TestClient,
    data_dir: Path,
    collection_id: str = "cube",
    size: int = 64,
    count: int = 40,
    overviews: tuple[int, ...] = (2, 4),
    bands: tuple[str, ...] = BANDS,
    **doc: Any,
) -> MadeCube:
    """Collection ``collection_id`` (POSTed) as a datacube (``write_cube``, ``store_cube``)."""
    r = client.post("/collections", json=collection(collection_id, **doc), headers=ADMIN)
    assert r.status_code == 201, r.text
    cube = write_cube(data_dir, collection_id, size, count, overviews, bands)
    engine = client.app.state.repository.engine  # type: ignore[attr-defined]
    assert client.portal is not None
    client.portal.call(store_cube, engine, cube)
    return MadeCube(cube, size, count)
