"""Time series and EDR of cubes that went through the real ingest (upload set, worker):
cube-ingest's Sentinel-2-like Zarr store and lat/lon model cube in NetCDF, against xarray on the
data the test made (tests/cube_data.py), pixels chosen here with shapely (centre-inside)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from covjson_pydantic.coverage import Coverage
from fastapi.testclient import TestClient
from pyproj import Transformer

from catalog.cubes.store import clear_cache
from server.settings import Settings
from tests.catalog.cube_uploads import tune
from tests.catalog.vector_uploads import loaded, start_worker, upload
from tests.cube_data import S2_ORIGIN, model_cube, s2_cube, write_netcdf, write_zarr, zip_store
from tests.workers import MakeWorker


@pytest.fixture
def worker(settings: Settings, make_worker: MakeWorker) -> None:
    tune(settings)
    clear_cache()
    start_worker(settings, make_worker)


def _centres_inside(area: shapely.Geometry, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    gx, gy = np.meshgrid(xs, ys)
    return np.asarray(shapely.contains_xy(area, gx, gy))


def test_weekly_mean_ndvi_of_an_ingested_zarr_cube(
    client: TestClient, admin: dict[str, str], worker: None, tmp_path: Path
) -> None:
    source = s2_cube()
    store = write_zarr(source, tmp_path / "s2.zarr")
    data = zip_store(store, tmp_path / "s2.zip").read_bytes()
    assert loaded(upload(client, admin, "s2", "s2.zip", data)) == ["s2"]
    west, north = S2_ORIGIN
    utm = shapely.Polygon([(west + 73.3, north - 41.9), (west + 388.1, north - 102.7),
                           (west + 201.7, north - 455.3)])  # fmt: skip
    to_lonlat = Transformer.from_crs(32631, 4326, always_xy=True)
    ring = [list(to_lonlat.transform(x, y)) for x, y in utm.exterior.coords]
    area = {"type": "Polygon", "coordinates": [ring]}
    body = {"intersects": area, "layers": ["ndvi"], "resolution": "P1W"}
    response = client.post("/collections/s2/aggregate/time-series", headers=admin, json=body)
    assert response.status_code == 200, response.text
    rows = response.json()["series"]
    # what the test computes: xarray on the cube it made, the same pixels, by ISO week
    back = Transformer.from_crs(4326, 32631, always_xy=True)
    polygon = shapely.Polygon([back.transform(*p) for p in ring])
    inside = _centres_inside(polygon, source.x.values, source.y.values)
    ndvi = ((source.B08 - source.B04) / (source.B08 + source.B04)).astype("float64")
    ndvi = ndvi.where(xr.DataArray(inside, dims=("y", "x")))
    weeks = ndvi.time.to_index().to_period("W-SUN").start_time  # Monday to Sunday
    by_week: dict[pd.Timestamp, list[np.ndarray]] = {}
    for t, week in enumerate(weeks):
        by_week.setdefault(week, []).append(ndvi.isel(time=t).values[inside])
    assert [r["datetime"] for r in rows] == [w.strftime("%Y-%m-%dT%H:%M:%SZ") for w in by_week]
    for row, values in zip(rows, by_week.values(), strict=True):
        pooled = np.concatenate(values)
        assert row["ndvi_count"] == pooled.size
        assert row["ndvi"] == pytest.approx(pooled.mean(), rel=1e-6)


def test_model_cube_in_netcdf_time_series_and_position(
    client: TestClient, admin: dict[str, str], worker: None, tmp_path: Path
) -> None:
    source = model_cube()
    data = write_netcdf(source, tmp_path / "model.nc").read_bytes()
    assert loaded(upload(client, admin, "era", "forecast.nc", data)) == ["era"]
    area = shapely.Polygon([(4.1, 44.3), (9.7, 45.1), (6.2, 48.8)])
    params = {"intersects": json.dumps(shapely.geometry.mapping(area)), "layers": "t2m,precip",
              "aggregation": "max"}  # fmt: skip
    response = client.get("/collections/era/aggregate/time-series", params=params, headers=admin)
    assert response.status_code == 200, response.text
    rows = response.json()["series"]
    inside = _centres_inside(area, source.longitude.values, source.latitude.values)
    assert [r["datetime"] for r in rows] == [
        pd.Timestamp(t).strftime("%Y-%m-%dT%H:%M:%SZ") for t in source.time.values]  # fmt: skip
    for t, row in enumerate(rows):
        for name in ("t2m", "precip"):
            values = source[name].isel(time=t).values[inside]
            assert row[f"{name}_count"] == values.size
            assert row[name] == pytest.approx(float(values.max()), rel=1e-6)
    # EDR position at a cell's centre: its values, every step
    lon, lat = float(source.longitude[7]), float(source.latitude[11])
    edr = client.get("/collections/era/position", headers=admin,
                     params={"coords": f"POINT({lon} {lat})", "parameter-name": "t2m"})  # fmt: skip
    assert edr.status_code == 200, edr.text
    Coverage.model_validate(edr.json())
    got = edr.json()["ranges"]["t2m"]["values"]
    assert got == pytest.approx(source.t2m.isel(latitude=11, longitude=7).values.tolist())
