"""OGC API - EDR position and area queries of a datacube: CoverageJSON (checked with KNMI's
covjson-pydantic models) whose values are the cube's at the same pixels, computed here."""

from collections.abc import Iterator

import numpy as np
import pytest
import shapely
from covjson_pydantic.coverage import Coverage
from fastapi.testclient import TestClient
from pyproj import Transformer

from tests import cubes
from tests.conftest import ADMIN, Databases
from tests.factories import collection

TO_UTM = Transformer.from_crs("EPSG:4326", cubes.CRS, always_xy=True)
CLOUD = (3, 8, 9, 10)


@pytest.fixture(scope="module")
def client(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("cube-edr")
    with cubes.cube_client(databases, folder, "edr", edr_max_values=100_000) as client:
        assert client.post("/collections", json=collection("plain"), headers=ADMIN).is_success
        yield client


def _expected(masked: bool = True) -> dict[str, np.ndarray]:
    """ndvi and B04 of the whole cube, (time, y, x), NaN where invalid."""
    ds = cubes.s2_dataset()
    b04, b08 = (ds[b].values.astype("float64") for b in ("B04", "B08"))
    valid = (b04 != 0) & ~np.isin(ds["SCL"].values, CLOUD) if masked else b04 != 0
    return {"ndvi": np.where(valid, (b08 - b04) / (b08 + b04), np.nan),
            "B04": np.where(valid, b04, np.nan)}  # fmt: skip


def _nulls(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values.ravel()]


def test_position_is_the_point_series_of_its_pixel(client: TestClient) -> None:
    row, col = 14, 41  # nodata on even steps ((14 + 41) % 11 == 0), cloudy on CLOUDY steps
    lon, lat = cubes.lonlat(cubes.X0 + 10 * col + 2.5, cubes.Y0 - 10 * row - 7.5)
    params = {"coords": f"POINT({lon} {lat})", "parameter-name": "ndvi,B04"}
    response = client.get("/collections/s2/position", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/prs.coverage+json"
    doc = response.json()
    Coverage.model_validate(doc)
    assert doc["domain"]["domainType"] == "PointSeries"
    assert doc["domain"]["axes"]["x"]["values"] == [lon]
    times = doc["domain"]["axes"]["t"]["values"]
    assert times[0] == "2024-04-01T10:30:00Z" and len(times) == 40
    for name, values in _expected().items():
        assert doc["ranges"][name]["shape"] == [40]
        assert doc["ranges"][name]["values"] == pytest.approx(_nulls(values[:, row, col]))
    b04 = doc["ranges"]["B04"]["values"]
    assert [t for t, v in enumerate(b04) if v is None] == sorted({*range(0, 40, 2), *cubes.CLOUDY})
    unmasked = client.get("/collections/s2/position", params={
        "coords": f"POINT({lon} {lat})", "parameter-name": "B04", "mask": "none",
        "datetime": "2024-04-14T00:00:00Z/2024-04-30T00:00:00Z"}).json()  # fmt: skip
    assert unmasked["domain"]["axes"]["t"]["values"][0] == "2024-04-16T10:30:00Z"
    assert unmasked["ranges"]["B04"]["values"] == pytest.approx(
        _nulls(_expected(masked=False)["B04"][5:10, row, col]))  # fmt: skip


def test_area_is_the_grid_of_the_window_with_nulls_outside(client: TestClient) -> None:
    utm = [(cubes.X0 + 33.3, cubes.Y0 - 21.7), (cubes.X0 + 151.9, cubes.Y0 - 47.1),
           (cubes.X0 + 77.3, cubes.Y0 - 139.9)]  # fmt: skip
    ring = [cubes.lonlat(x, y) for x, y in utm]
    wkt = shapely.Polygon(ring).wkt
    response = client.get("/collections/s2/area", params={"coords": wkt,
                                                          "parameter-name": "ndvi"})  # fmt: skip
    assert response.status_code == 200, response.text
    doc = response.json()
    Coverage.model_validate(doc)
    domain = doc["domain"]
    assert domain["domainType"] == "Grid"
    system = domain["referencing"][0]["system"]
    assert system == {"type": "ProjectedCRS", "id": "http://www.opengis.net/def/crs/EPSG/0/32631"}
    xs, ys = np.array(domain["axes"]["x"]["values"]), np.array(domain["axes"]["y"]["values"])
    cols = ((xs - cubes.X0) / cubes.RES - 0.5).round().astype(int)
    rows = ((cubes.Y0 - ys) / cubes.RES - 0.5).round().astype(int)
    assert cols.tolist() == list(range(cols[0], cols[-1] + 1)) and cols[0] == 3
    assert rows.tolist() == list(range(rows[0], rows[-1] + 1)) and rows[0] == 2
    projected = shapely.Polygon([TO_UTM.transform(lon, lat) for lon, lat in ring])
    gx, gy = np.meshgrid(xs, ys)
    inside = shapely.contains_xy(projected, gx, gy)
    want = _expected()["ndvi"][:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    want = np.where(inside, want, np.nan)
    ndvi = doc["ranges"]["ndvi"]
    assert ndvi["axisNames"] == ["t", "y", "x"] and ndvi["shape"] == list(want.shape)
    assert ndvi["values"] == pytest.approx(_nulls(want))
    assert 0 < inside.sum() < inside.size


@pytest.mark.parametrize(
    ("path", "coords", "status", "code"),
    [
        ("/collections/plain/position", "POINT(3 45)", 404, "cube.NotACube"),
        ("/collections/nothing/position", "POINT(3 45)", 404, "catalog.NotFound"),
        ("/collections/s2/position", "POINT(3", 400, "search.InvalidGeometry"),
        ("/collections/s2/position", "POLYGON((3 45, 3.1 45, 3 45.1, 3 45))", 400,
         "search.InvalidGeometry"),
        ("/collections/s2/position", "POINT(10 45)", 400, "cube.AreaOutside"),
        ("/collections/s2/area", "POINT(3 45)", 400, "search.InvalidGeometry"),
        ("/collections/s2/area", "POLYGON((2 44, 4 44, 4 46, 2 44))", 413, "cube.AreaTooLarge"),
    ],
)  # fmt: skip
def test_bad_queries_have_their_codes(
    client: TestClient, path: str, coords: str, status: int, code: str
) -> None:
    response = client.get(path, params={"coords": coords, "parameter-name": "ndvi"})
    assert (response.status_code, response.json()["code"]) == (status, code), response.text


def test_conformance_declares_edr(client: TestClient) -> None:
    classes = client.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-edr-1/1.0/conf/core" in classes
    assert "http://www.opengis.net/spec/ogcapi-edr-1/1.0/conf/covjson" in classes


def test_datacube_collections_declare_their_queries(client: TestClient) -> None:
    doc = client.get("/collections/s2").json()
    queries = doc["data_queries"]
    assert queries["position"]["link"]["href"] == "http://testserver/collections/s2/position"
    assert queries["area"]["link"]["variables"]["query_type"] == "area"
    assert queries["area"]["link"]["variables"]["output_formats"] == ["CoverageJSON"]
    series = [link for link in doc["links"] if link["rel"] == "time-series"]
    assert series[0]["href"] == "http://testserver/collections/s2/aggregate/time-series"
    listed = {c["id"]: c for c in client.get("/collections").json()["collections"]}
    assert "data_queries" in listed["s2"] and "data_queries" not in listed["plain"]
