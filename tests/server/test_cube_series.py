"""GET/POST /collections/{id}/aggregate/time-series and /statistics of a datacube collection,
against the same numbers computed here with numpy on the pixels whose centre is inside."""

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient
from pyproj import Transformer

from tests import cubes
from tests.conftest import ADMIN, Databases
from tests.factories import collection

SERIES = "/collections/s2/aggregate/time-series"
STATS = "/collections/s2/aggregate/statistics"
MAX_VALUES = 300_000  # the whole cube's B04, B08 and SCL (491 520 values) is too many
TO_UTM = Transformer.from_crs("EPSG:4326", cubes.CRS, always_xy=True)


@dataclass
class World:
    """The app with the cube ``s2`` (public) and ``nonir`` (no NIR band), and the area."""

    client: TestClient
    area: dict[str, Any]  # GeoJSON polygon, lon/lat
    inside: np.ndarray  # (y, x) pixel centres inside the area (shapely, not rasterio)


def _area() -> tuple[dict[str, Any], np.ndarray]:
    """A triangle over about 30 x 30 pixels, vertices off the pixel grid."""
    utm = [(cubes.X0 + x, cubes.Y0 - y) for x, y in ((103.3, 91.7), (421.9, 97.1), (277.3, 409.9))]
    ring = [cubes.lonlat(x, y) for x, y in utm]
    area = {"type": "Polygon", "coordinates": [[*map(list, ring), list(ring[0])]]}
    projected = shapely.Polygon([TO_UTM.transform(lon, lat) for lon, lat in ring])
    size = 64
    xs = cubes.X0 + cubes.RES * (np.arange(size) + 0.5)
    ys = cubes.Y0 - cubes.RES * (np.arange(size) + 0.5)
    gx, gy = np.meshgrid(xs, ys)
    return area, shapely.contains_xy(projected, gx, gy)


@pytest.fixture(scope="module")
def world(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("cube-series")
    with cubes.cube_client(databases, folder, "cubes", max_values=MAX_VALUES) as client:
        assert client.post("/collections", json=collection("nonir"), headers=ADMIN).is_success
        small = cubes.s2_cube(folder / "data", "nonir", times=3, size=8)
        kept = tuple(layer for layer in small.layers if layer.name in ("B04", "B02"))
        cubes.register(client, replace(small, layers=kept))
        area, inside = _area()
        yield World(client, area, inside)


# -- what the answers should be, computed here --------------------------------------------------
def expected_layers(world: World, masked: bool = True) -> dict[str, np.ndarray]:
    """ndvi and B04 of every step over the area as (time, pixels) float arrays, NaN where
    invalid: B04 nodata, or (``masked``) an SCL cloud class."""
    ds = cubes.s2_dataset()
    b04 = ds["B04"].values[:, world.inside].astype("float64")
    b08 = ds["B08"].values[:, world.inside].astype("float64")
    valid = b04 != 0
    if masked:
        valid &= ~np.isin(ds["SCL"].values[:, world.inside], (3, 8, 9, 10))
    ndvi = (b08 - b04) / (b08 + b04)
    return {"ndvi": np.where(valid, ndvi, np.nan), "B04": np.where(valid, b04, np.nan)}


def week_of(t: datetime) -> datetime:
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def series(world: World, **params: Any) -> dict[str, Any]:
    params = {"intersects": json.dumps(world.area), "layers": "ndvi,B04", **params}
    response = world.client.get(SERIES, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


REDUCE = {
    "mean": np.nanmean, "min": np.nanmin, "max": np.nanmax, "median": np.nanmedian,
    "std": np.nanstd, "sum": np.nansum, "count": lambda v: np.count_nonzero(~np.isnan(v)),
    "percentile_90": lambda v: np.nanpercentile(v, 90),
}  # fmt: skip


# -- tests ----------------------------------------------------------------------------------------
def test_weekly_mean_ndvi_is_the_mean_of_the_weeks_valid_pixels(world: World) -> None:
    doc = series(world, layers="ndvi", resolution="P1W")
    values = expected_layers(world)["ndvi"]
    weeks: dict[datetime, list[int]] = {}
    for i, t in enumerate(cubes.START + cubes.STEP * n for n in range(40)):
        weeks.setdefault(week_of(t), []).append(i)
    assert [row["datetime"] for row in doc["series"]] == [_stamp(w) for w in weeks]
    for row, steps in zip(doc["series"], weeks.values(), strict=True):
        pooled = values[steps]
        assert row["steps"] == len(steps)
        assert row["ndvi_count"] == np.count_nonzero(~np.isnan(pooled))
        assert row["ndvi"] == pytest.approx(np.nanmean(pooled), rel=1e-12)
    assert doc["area"] == {"pixels": int(world.inside.sum()), "pixelRule": "centre-inside"}
    assert doc["columns"] == ["datetime", "steps", "ndvi", "ndvi_count"]


@pytest.mark.parametrize("aggregation", list(REDUCE))
def test_every_aggregation_per_time_step(world: World, aggregation: str) -> None:
    doc = series(world, aggregation=aggregation)
    assert doc["aggregation"] == aggregation and len(doc["series"]) == 40
    for name, values in expected_layers(world).items():
        for t, row in enumerate(doc["series"]):
            assert row["datetime"] == _stamp(cubes.START + cubes.STEP * t)
            valid = np.count_nonzero(~np.isnan(values[t]))
            assert row[f"{name}_count"] == valid
            if valid == 0:
                assert row[name] is None
            else:
                assert row[name] == pytest.approx(REDUCE[aggregation](values[t]), rel=1e-9)


def test_nodata_and_the_cloud_mask_leave_pixels_out(world: World) -> None:
    pixels = int(world.inside.sum())
    default = series(world, layers="B04")["series"]
    unmasked = series(world, layers="B04", mask="none")["series"]
    ds = cubes.s2_dataset()
    nodata = (ds["B04"].values[:, world.inside] == 0).sum(axis=1)
    cloud = np.isin(ds["SCL"].values[:, world.inside], (9,))
    for t in range(40):
        assert unmasked[t]["B04_count"] == pixels - nodata[t]  # nodata always out
        expected = pixels - int(((ds["B04"].values[t, world.inside] == 0) | cloud[t]).sum())
        assert default[t]["B04_count"] == expected
    assert nodata.sum() > 0
    assert all(default[t]["B04_count"] < unmasked[t]["B04_count"] for t in cubes.CLOUDY)
    # classes 4 and 9 (vegetation, cloud: every pixel here) leave nothing
    empty = series(world, layers="B04", mask="SCL:4,9")["series"]
    assert all(row["B04"] is None and row["B04_count"] == 0 for row in empty)


def test_csv_parses_to_the_same_numbers(world: World) -> None:
    params = {"intersects": json.dumps(world.area), "layers": "ndvi,B04", "resolution": "P1M"}
    doc = world.client.get(SERIES, params=params).json()
    for extra in ({"f": "csv"}, {}):
        headers = {} if extra else {"Accept": "text/csv"}
        response = world.client.get(SERIES, params={**params, **extra}, headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert list(rows[0]) == doc["columns"]
        assert len(rows) == len(doc["series"]) == 4  # April to July
        for row, want in zip(rows, doc["series"], strict=True):
            assert row["datetime"] == want["datetime"]
            for name in ("ndvi", "B04"):
                assert float(row[name]) == want[name]
                assert int(row[f"{name}_count"]) == want[f"{name}_count"]


def test_post_body_and_bbox(world: World) -> None:
    body = {
        "intersects": world.area,
        "layers": ["ndvi"],
        "aggregation": "median",
        "resolution": "P1D",
        "datetime": "2024-04-10T00:00:00Z/2024-05-01T00:00:00Z",
    }
    posted = world.client.post(SERIES, json=body)
    assert posted.status_code == 200, posted.text
    got = series(world, layers="ndvi", aggregation="median", resolution="P1D",
                 datetime=body["datetime"])  # fmt: skip
    assert posted.json()["series"] == got["series"] and len(got["series"]) == 7
    assert got["series"][0]["datetime"] == "2024-04-10T00:00:00Z"
    # a bbox is the polygon of its corners: every pixel of a window of the grid
    west, south = cubes.lonlat(cubes.X0 + 52, cubes.Y0 - 148)
    east, north = cubes.lonlat(cubes.X0 + 148, cubes.Y0 - 52)
    params = {"bbox": f"{west},{south},{east},{north}", "layers": "B02", "aggregation": "min"}
    boxed = world.client.get(SERIES, params=params).json()
    assert boxed["area"]["pixels"] == 100  # 10 x 10 pixel centres
    first = cubes.band("B02", np.array(0), np.arange(5, 15)[:, None], np.arange(5, 15))
    assert boxed["series"][0]["B02"] == first.min()


def test_statistics_histogram_and_percentiles(world: World) -> None:
    params = {"intersects": json.dumps(world.area), "layers": "ndvi,B04", "bins": 7,
              "percentiles": "5,50,95", "datetime": "../2024-05-31T00:00:00Z"}  # fmt: skip
    response = world.client.get(STATS, params=params)
    assert response.status_code == 200, response.text
    doc = response.json()
    end = datetime(2024, 5, 31, tzinfo=UTC)
    steps = [t for t in range(40) if cubes.START + cubes.STEP * t <= end]
    assert doc["steps"] == len(steps)
    for name, values in expected_layers(world).items():
        valid = values[steps][~np.isnan(values[steps])]
        stats = doc["statistics"][name]
        assert stats["count"] == valid.size
        assert stats["min"] == valid.min() and stats["max"] == valid.max()
        assert stats["mean"] == pytest.approx(valid.mean(), rel=1e-12)
        for p in (5, 50, 95):
            assert stats[f"percentile_{p}"] == pytest.approx(np.percentile(valid, p), rel=1e-12)
        counts, edges = np.histogram(valid, bins=7)
        assert stats["histogram"][0] == counts.tolist()
        assert stats["histogram"][1] == pytest.approx(edges.tolist())
    posted = world.client.post(STATS, json={"intersects": world.area, "layers": "B04", "bins": 7,
                                            "percentiles": [5, 50, 95],
                                            "datetime": params["datetime"]})  # fmt: skip
    assert posted.json()["statistics"]["B04"] == doc["statistics"]["B04"]


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"layers": "ndvi"}, 400, "request.InvalidParameter"),  # no area
        ({"layers": "nope"}, 400, "cube.UnknownLayer"),
        ({"layers": "rgb"}, 400, "cube.UnknownLayer"),  # a composite is no single value
        ({"aggregation": "mode"}, 400, "cube.InvalidAggregation"),
        ({"aggregation": "percentile_101"}, 400, "cube.InvalidAggregation"),
        ({"resolution": "P2D"}, 400, "cube.InvalidAggregation"),
        ({"mask": "SCL"}, 400, "cube.InvalidMask"),
        ({"mask": "QA:1"}, 400, "cube.InvalidMask"),
        ({"datetime": "2024-05-01"}, 400, "search.InvalidDatetime"),
        ({"bbox": "10,40,11,41"}, 400, "cube.AreaOutside"),
        ({"bbox": "2.99,45.1,3.02,45.16"}, 413, "cube.AreaTooLarge"),  # the whole cube
        ({"intersects": '{"type": "Point", "coordinates": [3, 45]}'}, 400,
         "search.InvalidGeometry"),
        ({"intersects": "{nope"}, 400, "search.InvalidGeometry"),
    ],
)  # fmt: skip
def test_bad_requests_have_their_codes(
    world: World, params: dict[str, Any], status: int, code: str
) -> None:
    query = {"layers": "ndvi", **params}
    if "bbox" not in params and "intersects" not in params and params != {"layers": "ndvi"}:
        query["intersects"] = json.dumps(world.area)
    response = world.client.get(SERIES, params=query)
    assert (response.status_code, response.json()["code"]) == (status, code), response.text


def test_a_derived_layer_names_the_bands_it_lacks(world: World) -> None:
    west, south = cubes.lonlat(cubes.X0 + 5, cubes.Y0 - 75)
    east, north = cubes.lonlat(cubes.X0 + 75, cubes.Y0 - 5)
    params = {"bbox": f"{west},{south},{east},{north}", "layers": "ndvi"}
    response = world.client.get("/collections/nonir/aggregate/time-series", params=params)
    assert response.status_code == 400
    doc = response.json()
    assert doc["code"] == "cube.BandsMissing" and doc["missing"] == ["nir"]
    assert doc["bands"] == ["nir", "red"]
    ok = world.client.get("/collections/nonir/aggregate/time-series",
                          params={**params, "layers": "B04"})  # fmt: skip
    assert ok.status_code == 200 and len(ok.json()["series"]) == 3


def test_a_private_cube_is_invisible_to_others(world: World) -> None:
    accounts = world.client.app.state.accounts  # type: ignore[attr-defined]
    portal = world.client.portal
    assert portal is not None
    params = {"intersects": json.dumps(world.area), "layers": "ndvi"}
    portal.call(accounts.set_visibility, "s2", "private")
    try:
        hidden = world.client.get(SERIES, params=params)
        missing = world.client.get(SERIES.replace("s2", "nothing"), params=params)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["description"] == missing.json()["description"].replace(
            "nothing", "s2"
        )
        assert world.client.get(STATS, params=params).status_code == 404
        assert world.client.get(SERIES, params=params, headers=ADMIN).status_code == 200
    finally:
        portal.call(accounts.set_visibility, "s2", "public")


def test_a_band_dimension_gives_the_same_series(world: World, tmp_path_factory: Any) -> None:
    """The bands as one variable ``reflectance`` along a ``band`` dimension (and SCL apart)."""
    ds = cubes.s2_dataset()
    banded = ds[list(cubes.BANDS)].to_array("band").rename("reflectance").to_dataset()
    banded["SCL"] = ds["SCL"]
    folder = world.client.app.state.settings.ingest.data_dir  # type: ignore[attr-defined]
    banded.to_zarr(folder / "cubes/banded/cube.zarr", mode="w", consolidated=False)
    s2 = cubes.s2_cube(tmp_path_factory.mktemp("unused"), "banded")
    layers = tuple(
        replace(layer, variable="reflectance", band=layer.name) if layer.name != "SCL" else layer
        for layer in s2.layers
    )
    assert world.client.post("/collections", json=collection("banded"), headers=ADMIN).is_success
    cubes.register(world.client, replace(s2, band_dim="band", layers=layers))
    params = {"intersects": json.dumps(world.area), "layers": "ndvi,B04", "resolution": "P1W"}
    banded_rows = world.client.get(SERIES.replace("s2", "banded"), params=params).json()
    assert banded_rows["series"] == series(world, resolution="P1W")["series"]


def test_an_expression_of_layers_is_one_more_column(world: World) -> None:
    doc = series(world, expression="(B08 - B04) / (nir + red)", resolution="P1W")
    assert doc["columns"][-2:] == ["expression", "expression_count"]
    assert doc["expression"] == "(B08 - B04) / (nir + red)"
    for row in doc["series"]:
        assert row["expression"] == pytest.approx(row["ndvi"], rel=1e-12)
        assert row["expression_count"] == row["ndvi_count"]
    area = json.dumps(world.area)
    bad = [("B08 ** 2", "cube.InvalidExpression"), ("B08 +", "cube.InvalidExpression"),
           ("nope / 2", "cube.UnknownLayer"), ("2 * 3", "cube.InvalidExpression")]  # fmt: skip
    for expression, code in bad:
        response = world.client.get(SERIES, params={"intersects": area, "expression": expression})
        assert (response.status_code, response.json()["code"]) == (400, code), response.text
