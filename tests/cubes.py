"""Datacubes made by the tests: a Sentinel-2-like Zarr store with known values, and its row.

``s2_cube`` writes (time, y, x) bands B02..B12 (uint16, nodata 0) and a scene classification
``SCL`` (uint8) in UTM 31N (EPSG:32631), 10 m pixels, into the app's storage, and returns the
``Cube`` that describes it; ``register`` stores that row with ``put_cube`` as the ingest job
would. The values are formulas of (t, row, col) the tests recompute with numpy (``band``).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from fastapi.testclient import TestClient

from catalog.cubes.model import Cube, CubeLayer, put_cube
from catalog.storage.base import stored_href

BANDS = {"B02": "blue", "B03": "green", "B04": "red", "B05": "rededge071", "B08": "nir",
         "B8A": "nir08", "B11": "swir16", "B12": "swir22"}  # fmt: skip
CRS = "EPSG:32631"
X0, Y0, RES = 500_000.0, 5_000_000.0, 10.0  # west and north edges, pixel size
START = datetime(2024, 4, 1, 10, 30, tzinfo=UTC)
STEP = timedelta(days=3)
CLOUDY = (5, 9)  # time steps whose SCL marks a cloud (9) over rows 0..15


def band(name: str, t: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """The value of band ``name`` at time step ``t`` and pixel (``row``, ``col``)."""
    k = list(BANDS).index(name) + 1
    value = 1000 + 100 * k + 3 * t + 2 * row + col
    if name == "B08":  # NIR grows through the season: NDVI rises
        value = value + 40 * t
    return np.asarray(value, dtype="uint16")


def nodata_at(t: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Where B04 is nodata (0): a diagonal stripe on even time steps."""
    return (t % 2 == 0) & ((row + col) % 11 == 0)


def scl(t: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Scene classification: vegetation (4) everywhere, cloud (9) on rows 0..15 of CLOUDY."""
    return np.where(np.isin(t, CLOUDY) & (row < 16), 9, 4).astype("uint8")


def s2_dataset(times: int = 40, size: int = 64) -> xr.Dataset:
    """The cube as an xarray Dataset (CRS written with rioxarray)."""
    t, row, col = np.meshgrid(np.arange(times), np.arange(size), np.arange(size), indexing="ij")
    data: dict[str, Any] = {}
    for name in BANDS:
        values = band(name, t, row, col)
        if name == "B04":
            values = np.where(nodata_at(t, row, col), 0, values).astype("uint16")
        data[name] = (("time", "y", "x"), values)
    data["SCL"] = (("time", "y", "x"), scl(t, row, col))
    stamps = [(START + STEP * i).replace(tzinfo=None) for i in range(times)]
    ds = xr.Dataset(
        data,
        coords={
            "time": np.array(stamps, dtype="datetime64[ns]"),
            "y": Y0 - RES * (np.arange(size) + 0.5),
            "x": X0 + RES * (np.arange(size) + 0.5),
        },
    )
    return ds.rio.write_crs(CRS)


def s2_cube(data_dir: Path, collection_id: str, times: int = 40, size: int = 64) -> Cube:
    """Write the cube into the storage under ``data_dir``; its row."""
    key = f"cubes/{collection_id}/cube.zarr"
    ds = s2_dataset(times, size)
    ds.to_zarr(data_dir / key, mode="w", consolidated=False)
    layers = [CubeLayer(name, name, common_name=common, dtype="uint16", nodata=0)
              for name, common in BANDS.items()]  # fmt: skip
    layers.append(CubeLayer("SCL", "SCL", dtype="uint8", description="scene classification"))
    return Cube(
        collection_id=collection_id, href=stored_href(key), format="zarr", crs=CRS,
        transform=(X0, RES, 0.0, Y0, 0.0, -RES), width=size, height=size,
        x_dim="x", y_dim="y", time_dim="time", band_dim=None, layers=tuple(layers),
        times=tuple(START + STEP * i for i in range(times)),
    )  # fmt: skip


def register(client: TestClient, cube: Cube) -> None:
    """Store the cube's row (the collection must exist)."""
    engine = client.app.state.repository.engine  # type: ignore[attr-defined]

    async def put() -> None:
        async with engine.begin() as conn:
            await put_cube(conn, cube)

    portal = client.portal
    if portal is None:
        raise RuntimeError("the client is not started")
    portal.call(put)


def lonlat(x: float, y: float) -> tuple[float, float]:
    """A point of the cube's CRS in lon/lat."""
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(x, y)
    return float(lon), float(lat)


@contextmanager
def cube_client(databases: Any, folder: Path, name: str, **settings: Any) -> Iterator[TestClient]:
    """An app on a database of its own with the public cube collection ``s2``; ``settings``
    set on ``settings.cube_series``."""
    from server.app import create_app
    from tests.conftest import ADMIN, app_settings
    from tests.factories import collection

    app = app_settings(databases.create(f"terracat_{name}_{databases.suffix}"), folder / "data")
    for key, value in settings.items():
        setattr(app.cube_series, key, value)
    with TestClient(create_app(app)) as client:
        if not client.post("/collections", json=collection("s2"), headers=ADMIN).is_success:
            raise RuntimeError("the collection s2 was not made")
        register(client, s2_cube(folder / "data", "s2"))
        yield client
