"""Vector files through the ingest process and a real worker: each format, several CRSs,
multi-layer files, repaired geometries; features, types and extent are what the file held."""

import datetime as dt
import io
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from server.settings import Settings
from tests.workers import MakeWorker

from .vector_uploads import (
    AREAS,
    COUNTS,
    CROPS,
    DAYS,
    features,
    layer_row,
    loaded,
    lonlat,
    polygons_in,
    start_worker,
    upload,
    write_layer,
)

TYPES = {"crop": "string", "area": "number", "count": "integer", "day": "datetime"}


@pytest.fixture
def worker(settings: Settings, make_worker: MakeWorker) -> None:
    start_worker(settings, make_worker)


def _check_layer(engine: Engine, collection_id: str, crs: str, geoms: list[shapely.Geometry],
                 source_crs: str) -> None:  # fmt: skip
    layer = layer_row(engine, collection_id)
    assert {p["name"]: p["type"] for p in layer["properties"]} == TYPES
    assert layer["source_crs"] == source_crs and layer["geometry_type"] == "Polygon"
    assert layer["feature_count"] == 3 and layer["datetime_property"] == "day"
    # Matched by ``count`` (unique): FlatGeobuf stores features in its index's order.
    got = {f["count"]: f for f in features(engine, collection_id)}
    expected = [lonlat(g, crs) for g in geoms]
    for i, want in enumerate(expected):
        feature = got[int(COUNTS[i])]
        assert shapely.equals_exact(shapely.normalize(feature["geom"]), shapely.normalize(want),
                                    tolerance=1e-7)  # fmt: skip
        assert feature["crop"] == CROPS[i] and feature["area"] == AREAS[i]
        assert feature["day"] == DAYS[i].astype(dt.datetime).replace(tzinfo=dt.UTC)
    west, south, east, north = shapely.total_bounds(expected)
    assert np.allclose([layer["west"], layer["south"], layer["east"], layer["north"]],
                       [west, south, east, north], atol=1e-9)  # fmt: skip
    assert layer["start_datetime"] == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("crs", "driver", "name"),
    [
        ("EPSG:2154", "GPKG", "fields.gpkg"),
        ("EPSG:32631", "FlatGeobuf", "fields.fgb"),
        ("EPSG:4326", "GeoJSON", "fields.geojson"),
    ],
)
def test_a_file_becomes_a_vector_collection(
    client: TestClient, admin: dict[str, str], worker: None, sync_engine: Engine,
    tmp_path: Path, crs: str, driver: str, name: str,
) -> None:  # fmt: skip
    geoms = polygons_in(crs, (2.35, 48.85), 100 if crs != "EPSG:4326" else 0.001)
    path = write_layer(tmp_path / name, geoms, crs, driver)
    # A name that says nothing: the content decides.
    record = upload(client, admin, "fields", "upload.bin", path.read_bytes())
    assert loaded(record) == ["fields"]
    _check_layer(sync_engine, "fields", crs, geoms, crs)
    doc = client.get("/collections/fields", headers=admin).json()
    assert doc["terracat:kind"] == "vector" and doc["itemType"] == "feature"
