"""``filter-crs`` on vector collections (OGC API - Features Part 3): geometry literals in any CRS
the items route serves (``crs``/``bbox-crs``) select what the same shape selects in that CRS,
as shapely and pyproj compute it here; STAC searches keep CRS84 only."""

import json
from functools import partial
from typing import Any

import imagecodecs
import mapbox_vector_tile
import numpy
import pyproj
import pytest
import shapely
from fastapi.testclient import TestClient

from catalog.db.engine import connect
from catalog.vector.load import sync_document
from catalog.vector.repository import copy_features, create_layer, refresh_extent
from catalog.vector.schema import PropertyType
from tests.factories import collection

EPSG = "http://www.opengis.net/def/crs/EPSG/0/"
# a grid of points over France, inside Lambert-93's area of use
LON, LAT = (a.ravel() for a in numpy.meshgrid(numpy.arange(1, 5.01, 0.25),
                                              numpy.arange(44, 48.01, 0.25)))  # fmt: skip
POLYGONS = {
    2154: shapely.Polygon(
        [(560000, 6380000), (800000, 6420000), (760000, 6700000), (600000, 6650000)]
    ),
    3857: shapely.Polygon([(150000, 5500000), (520000, 5520000), (330000, 6050000)]),
}


async def _fill(engine: Any, collection_id: str) -> None:
    async with connect(engine, True) as conn:
        layer = await create_layer(conn, collection_id, [("n", PropertyType.INTEGER)], "Point")
        rows = [(shapely.to_wkb(shapely.Point(x, y)), i)
                for i, (x, y) in enumerate(zip(LON, LAT, strict=True))]  # fmt: skip
        await copy_features(conn, layer, ["n"], rows)
        await sync_document(conn, await refresh_extent(conn, layer))


@pytest.fixture
def grid(client: TestClient, admin: dict[str, str]) -> str:
    r = client.post("/collections", json=collection("grid"), headers=admin)
    assert r.status_code == 201, r.text
    client.portal.call(partial(_fill, client.app.state.repository.engine, "grid"))
    return "grid"


def _selected(client: TestClient, headers: dict[str, str], **params: str) -> set[int]:
    r = client.get("/collections/grid/items", params={"limit": "1000", **params}, headers=headers)
    assert r.status_code == 200, r.text
    return {f["properties"]["n"] for f in r.json()["features"]}


def _expected(srid: int, shape: shapely.Geometry) -> set[int]:
    """The points the shape holds in its own CRS (none is within 100 m of its edge)."""
    x, y = pyproj.Transformer.from_crs(4326, srid, always_xy=True).transform(LON, LAT)
    points = shapely.points(x, y)
    assert shapely.distance(shape.boundary, points).min() > 100
    return {int(i) for i in numpy.flatnonzero(shapely.contains(shape, points))}


@pytest.mark.parametrize("srid", [3857, 2154])
def test_polygon_literals_in_a_projected_crs(
    client: TestClient, admin: dict[str, str], grid: str, srid: int
) -> None:
    shape = POLYGONS[srid]
    expected = _expected(srid, shape)
    assert 50 < len(expected) < len(LON) - 50  # the polygon's edges matter
    for crs in (f"EPSG:{srid}", f"{EPSG}{srid}"):
        got = _selected(client, admin, filter=f"S_INTERSECTS(geometry, {shape.wkt})",
                        **{"filter-crs": crs})  # fmt: skip
        assert got == expected
    # CQL2-JSON, and a bbox literal (a rectangle in the projected CRS)
    as_json = {"op": "s_intersects", "args": [{"property": "geometry"},
                                              shapely.geometry.mapping(shape)]}  # fmt: skip
    got = _selected(client, admin, filter=json.dumps(as_json), **{"filter-lang": "cql2-json",
                    "filter-crs": f"EPSG:{srid}"})  # fmt: skip
    assert got == expected
    x0, y0, x1, y1 = shape.bounds
    box = shapely.box(x0 + 20000, y0 + 30000, x1 - 25000, y1 - 35000)
    got = _selected(client, admin, filter=f"S_INTERSECTS(geometry, BBOX({x0 + 20000}, "
                    f"{y0 + 30000}, {x1 - 25000}, {y1 - 35000}))",
                    **{"filter-crs": f"EPSG:{srid}"})  # fmt: skip
    assert got == _expected(srid, box)
    # the same coordinates read as CRS84 select nothing (they are far off the globe's range)
    r = client.get("/collections/grid/items", headers=admin,
                   params={"filter": f"S_INTERSECTS(geometry, {shape.wkt})"})  # fmt: skip
    assert r.status_code == 400 or r.json()["features"] == []


def test_epsg_4326_literals_are_latitude_first(
    client: TestClient, admin: dict[str, str], grid: str
) -> None:
    lonlat = shapely.Polygon([(1.6, 44.6), (4.4, 45.1), (3.1, 47.6)])
    expected = {int(i) for i in numpy.flatnonzero(
        shapely.contains(lonlat, shapely.points(LON, LAT)))}  # fmt: skip
    latlon = shapely.transform(lonlat, lambda xy: xy[:, ::-1])
    got = _selected(client, admin, filter=f"S_INTERSECTS(geometry, {latlon.wkt})",
                    **{"filter-crs": "EPSG:4326"})  # fmt: skip
    assert got == expected and expected
    got = _selected(client, admin, filter=f"S_INTERSECTS(geometry, {lonlat.wkt})",
                    **{"filter-crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"})  # fmt: skip
    assert got == expected
    box = _selected(client, admin, filter="S_INTERSECTS(geometry, BBOX(45.1, 1.9, 46.4, 3.1))",
                    **{"filter-crs": "EPSG:4326"})  # fmt: skip
    inside = (LON > 1.9) & (LON < 3.1) & (LAT > 45.1) & (LAT < 46.4)
    assert box == {int(i) for i in numpy.flatnonzero(inside)}


def test_unsupported_filter_crs(client: TestClient, admin: dict[str, str], grid: str) -> None:
    for crs in ("EPSG:27700", "urn:foo"):
        r = client.get("/collections/grid/items", headers=admin,
                       params={"filter": "n > 3", "filter-crs": crs})  # fmt: skip
        assert r.status_code == 400 and r.json()["code"] == "search.InvalidFilter", r.text
    # STAC item search keeps CRS84 only
    r = client.get("/search", params={"filter": "id = 'a'", "filter-crs": "EPSG:3857"})
    assert r.status_code == 400 and r.json()["code"] == "search.InvalidFilter"


def test_aggregates_maps_and_tiles_take_filter_crs_too(
    client: TestClient, admin: dict[str, str], grid: str
) -> None:
    shape = POLYGONS[2154]
    expected = _expected(2154, shape)
    params = {"filter": f"S_INTERSECTS(geometry, {shape.wkt})", "filter-crs": "EPSG:2154"}
    r = client.get("/collections/grid/aggregate", params=params, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["groups"] == [{"count": len(expected)}]
    # the map draws exactly those points (0.25 degree apart: 25 pixels at 0.01 a pixel)
    box = (0.875, 43.875, 5.125, 48.125)
    r = client.get("/collections/grid/map", headers=admin, params={
        **params, "bbox": ",".join(map(str, box)), "width": 425, "height": 425})  # fmt: skip
    assert r.status_code == 200, r.text
    alpha = imagecodecs.png_decode(r.content)[..., 3]
    cols = numpy.round((LON - box[0]) / 0.01).astype(int)
    rows = numpy.round((box[3] - LAT) / 0.01).astype(int)
    drawn = {int(i) for i in numpy.flatnonzero(alpha[rows.clip(0, 424), cols.clip(0, 424)] > 0)}
    assert drawn == expected
    # a vector tileset carries filter-crs to its tiles
    tileset = client.get("/collections/grid/items/tiles/WebMercatorQuad", params=params,
                         headers=admin).json()  # fmt: skip
    [template] = tileset["tiles"]
    assert "filter-crs=EPSG%3A2154" in template
    tile = client.get(template.format(z=4, x=8, y=5), headers=admin)  # all of the grid
    assert tile.status_code == 200, tile.text
    features = mapbox_vector_tile.decode(tile.content)["grid"]["features"]
    assert len(features) == len(expected)  # (no properties at this zoom: counted)
    r = client.get("/collections/grid/items", headers=admin,
                   params={**params, "filter-crs": "EPSG:27700"})  # fmt: skip
    assert r.status_code == 400
