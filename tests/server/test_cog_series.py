"""The time series of a COG collection (one RGBN item per date): NDVI and a band over a
polygon, against the stored COGs' pixels read here with rasterio (centre-inside, nodata out)."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely
from fastapi.testclient import TestClient
from pyproj import Transformer
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from catalog.storage.base import stored_key
from server.app import create_app
from tests import rasters
from tests.conftest import ADMIN, Databases, app_settings
from tests.factories import collection
from tests.stored import ingest_local, store_item

DATES = [datetime(2024, 5, 1, 10, tzinfo=UTC), datetime(2024, 5, 3, 10, tzinfo=UTC),
         datetime(2024, 5, 10, 10, tzinfo=UTC), datetime(2024, 6, 2, 10, tzinfo=UTC)]  # fmt: skip
ORIGIN = rasters.UTM_ORIGIN  # EPSG:32633
RES, SIZE = 20.0, 64
TO_LONLAT = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
SERIES = "/collections/flights/aggregate/time-series"


def _fill(n: int) -> rasters.Fill:
    def fill(count: int, height: int, width: int) -> np.ndarray:
        y, x = np.mgrid[0:height, 0:width]
        red = 1000 + 5 * x + 3 * y + 50 * n
        nir = 3000 + 2 * x - y + 400 * n
        data = np.stack([red, red + 100, red + 200, nir]).astype("uint16")
        data[:, (x + y + n) % 9 == 0] = 0  # nodata
        return data

    return fill


@dataclass
class World:
    client: TestClient
    area: dict[str, Any]
    files: list[Path]  # the stored COGs, in DATES order


def _flight(folder: Path, n: int) -> Path:
    return rasters.write_geotiff(
        folder / f"flight{n}.tif", width=SIZE, height=SIZE, count=4, dtype="uint16",
        crs="EPSG:32633", transform=from_origin(*ORIGIN, RES, RES), nodata=0,
        photometric="MINISBLACK", fill=_fill(n),
        colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.nir],
    )  # fmt: skip


@pytest.fixture(scope="module")
def world(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("cog-series")
    data = folder / "data"
    settings = app_settings(databases.create(f"terracat_cogs_{databases.suffix}"), data)
    with TestClient(create_app(settings)) as client:
        assert client.post("/collections", json=collection("flights"), headers=ADMIN).is_success
        files = []
        for n, when in enumerate(DATES):
            doc = ingest_local(_flight(folder, n), "flights", f"f{n}", data, settings.ingest,
                               when=when)  # fmt: skip
            store_item(str(settings.db.url), doc)
            files.append(data / str(stored_key(doc["assets"]["data"]["href"])))
        utm = [(ORIGIN[0] + 101.1, ORIGIN[1] - 93.3), (ORIGIN[0] + 811.7, ORIGIN[1] - 201.9),
               (ORIGIN[0] + 377.7, ORIGIN[1] - 897.1)]  # fmt: skip
        ring = [list(TO_LONLAT.transform(x, y)) for x, y in utm]
        area = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
        yield World(client, area, files)


def _pixels(world: World, path: Path) -> dict[str, np.ndarray]:
    """red and ndvi of the pixels whose centre is inside the area (rasterio + shapely)."""
    with rasterio.open(path) as src:
        red, nir = (src.read(i).astype("float64") for i in (1, 4))
        valid = src.read_masks(1) > 0
        rows, cols = np.mgrid[0 : src.height, 0 : src.width]
        xs, ys = rasterio.transform.xy(src.transform, rows, cols)
        to_utm = Transformer.from_crs("EPSG:4326", src.crs, always_xy=True)
    polygon = shapely.Polygon([to_utm.transform(*p) for p in world.area["coordinates"][0]])
    xs, ys = np.asarray(xs).reshape(rows.shape), np.asarray(ys).reshape(rows.shape)
    inside = shapely.contains_xy(polygon, xs, ys) & valid
    red, nir = red[inside], nir[inside]
    return {"red": red, "ndvi": (nir - red) / (nir + red)}


def test_each_item_is_a_step_of_the_series(world: World) -> None:
    params = {"intersects": json.dumps(world.area), "layers": "ndvi,red",
              "expression": "(nir - red) / (nir + red)"}  # fmt: skip
    response = world.client.get(SERIES, params=params)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert [r["datetime"] for r in doc["series"]] == [
        d.isoformat().replace("+00:00", "Z") for d in DATES]  # fmt: skip
    for row, path in zip(doc["series"], world.files, strict=True):
        want = _pixels(world, path)
        for name in ("ndvi", "red"):
            assert row[f"{name}_count"] == want[name].size > 100
            assert row[name] == pytest.approx(want[name].mean(), rel=1e-9)
        assert row["expression"] == pytest.approx(row["ndvi"], rel=1e-6)


@pytest.mark.parametrize("aggregation", ["max", "median", "percentile_10", "count"])
def test_weekly_buckets_pool_the_weeks_items(world: World, aggregation: str) -> None:
    body = {
        "intersects": world.area,
        "layers": ["ndvi"],
        "resolution": "P1W",
        "aggregation": aggregation,
        "datetime": "2024-04-01T00:00:00Z/2024-05-31T00:00:00Z",
    }
    response = world.client.post(SERIES, json=body)
    assert response.status_code == 200, response.text
    rows = response.json()["series"]
    weeks = {}
    for when, path in zip(DATES[:3], world.files[:3], strict=True):
        week = (when - timedelta(days=when.weekday())).replace(hour=0)
        weeks.setdefault(week, []).append(_pixels(world, path)["ndvi"])
    reduce = {"max": np.max, "median": np.median, "count": np.size,
              "percentile_10": lambda v: np.percentile(v, 10)}[aggregation]  # fmt: skip
    assert [r["steps"] for r in rows] == [2, 1]
    for row, values in zip(rows, weeks.values(), strict=True):
        assert row["ndvi"] == pytest.approx(reduce(np.concatenate(values)), rel=1e-9)


def test_statistics_pool_every_item(world: World) -> None:
    params = {"intersects": json.dumps(world.area), "layers": "red", "bins": 5}
    doc = world.client.get("/collections/flights/aggregate/statistics", params=params).json()
    pooled = np.concatenate([_pixels(world, p)["red"] for p in world.files])
    stats = doc["statistics"]["red"]
    assert doc["steps"] == 4 and stats["count"] == pooled.size
    assert stats["histogram"][0] == np.histogram(pooled, bins=5)[0].tolist()
    assert stats["percentile_98"] == pytest.approx(np.percentile(pooled, 98))


def test_cog_layers_and_masks_are_checked(world: World) -> None:
    area = json.dumps(world.area)
    cases = [
        ({"layers": "rgb"}, 400, "tiler.InvalidLayer"),
        ({"layers": "ndmi"}, 400, "tiler.PresetUnavailable"),
        ({"layers": "red", "mask": "SCL:9"}, 400, "cube.InvalidMask"),
        ({"layers": "nope"}, 404, "tiler.InvalidBandName"),  # as the item routes answer it
        ({"layers": "red", "bins": "0"}, 400, "request.InvalidParameter"),
    ]
    for params, status, code in cases:
        response = world.client.get(SERIES, params={"intersects": area, **params})
        if "bins" in params:
            response = world.client.get(SERIES.replace("time-series", "statistics"),
                                        params={"intersects": area, **params})  # fmt: skip
        assert (response.status_code, response.json()["code"]) == (status, code), response.text
