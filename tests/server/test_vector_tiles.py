"""Vector tiles of item footprints rendered by PostGIS (ogc/vector_tiles.py, catalog/maps/tiles)."""

import math
from collections.abc import Iterator
from typing import Any

import mapbox_vector_tile
import morecantile
import pytest
from fastapi.testclient import TestClient

from catalog.maps.tiles import FEATURE_PROPERTIES
from catalog.stac.queryables import Kind
from ogc.settings import TileSettings
from server.app import create_app
from server.settings import Settings
from tests.factories import collection, item

MVT = "application/vnd.mapbox-vector-tile"
WEB = morecantile.tms.get("WebMercatorQuad")
CRS84 = morecantile.tms.get("WorldCRS84Quad")
EXTENT = 4096


def url(tms: str, z: int, x: int, y: int, collection_id: str = "c1") -> str:
    return f"/collections/{collection_id}/items/tiles/{tms}/{z}/{x}/{y}.mvt"


def decode(content: bytes) -> dict[str, Any]:
    """Layers of a tile, coordinates in tile units with y down as encoded."""
    return mapbox_vector_tile.decode(content, default_options={"y_coord_down": True})


def features(content: bytes, layer: str = "c1") -> dict[str, dict[str, Any]]:
    layers = decode(content)
    assert set(layers) == {layer}, layers.keys()
    assert layers[layer]["extent"] == EXTENT
    return {f["properties"]["id"]: f for f in layers[layer]["features"]}


def ring(feature: dict[str, Any]) -> list[tuple[float, float]]:
    geometry = feature["geometry"]
    assert geometry["type"] == "Polygon", geometry
    return [tuple(p) for p in geometry["coordinates"][0]]


def expected_px(
    tms: morecantile.TileMatrixSet, tile: morecantile.Tile, lon: float, lat: float
) -> tuple[float, float]:
    """Where (lon, lat) falls in the tile, in tile units, y down."""
    b = tms.xy_bounds(tile)
    x, y = tms.xy(lon, lat) if tms is WEB else (lon, lat)
    return (x - b.left) / (b.right - b.left) * EXTENT, (b.top - y) / (b.top - b.bottom) * EXTENT


def assert_square_at(
    feature: dict[str, Any],
    tms: morecantile.TileMatrixSet,
    tile: morecantile.Tile,
    lon: float,
    lat: float,
    size: float,
) -> None:
    points = ring(feature)
    assert all(0 <= x <= EXTENT and 0 <= y <= EXTENT for x, y in points), points
    corners = [(lon, lat), (lon + size, lat), (lon + size, lat + size), (lon, lat + size)]
    for corner in corners:
        want = expected_px(tms, tile, *corner)
        assert any(math.dist(want, p) <= 1.5 for p in points), (corner, want, points)


def seed(
    client: TestClient, admin: dict[str, str], *items: dict[str, Any], cid: str = "c1"
) -> None:
    if client.get(f"/collections/{cid}").status_code == 404:
        r = client.post("/collections", json=collection(cid), headers=admin)
        assert r.status_code == 201, r.text
    for doc in items:
        r = client.post(f"/collections/{cid}/items", json=doc, headers=admin)
        assert r.status_code == 201, r.text


@pytest.fixture
def app_with(settings: Settings) -> Iterator[Any]:
    """Open an app with tile settings of the test's choice."""
    opened: list[TestClient] = []

    def open_app(**values: str) -> TestClient:
        own = settings.model_copy(update={"tiles": TileSettings(**values)})  # type: ignore[arg-type]
        client = TestClient(create_app(own))
        client.__enter__()
        opened.append(client)
        return client

    yield open_app
    for client in opened:
        client.__exit__(None, None, None)


# -- content ------------------------------------------------------------------------------------
def test_tile_holds_the_footprints_where_they_are(
    client: TestClient, admin: dict[str, str]
) -> None:
    seed(
        client, admin,
        item("a", 10.0, 45.0, "2021-06-01T10:00:00Z", size=0.5, gsd=10, platform="sentinel-2a",
             title="Scene A", **{"eo:cloud_cover": 12.5}),
        item("b", 11.0, 44.0, "2021-06-02T10:00:00.250Z", size=0.25),
        item("far", -120.0, 40.0),
    )  # fmt: skip
    tile = WEB.tile(10.5, 44.8, 5)  # 0 to 11.25 E, 41 to 48.9 N: both squares inside
    r = client.get(url("WebMercatorQuad", tile.z, tile.x, tile.y))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == MVT
    assert "max-age" in r.headers["cache-control"]
    assert "x-terracat-features-capped" not in r.headers
    found = features(r.content)
    assert set(found) == {"a", "b"}
    assert_square_at(found["a"], WEB, tile, 10.0, 45.0, 0.5)
    assert_square_at(found["b"], WEB, tile, 11.0, 44.0, 0.25)
    assert found["a"]["properties"] == {
        "id": "a", "collection": "c1", "datetime": "2021-06-01T10:00:00Z", "gsd": 10.0,
        "eo:cloud_cover": 12.5, "platform": "sentinel-2a", "title": "Scene A",
    }  # fmt: skip
    assert found["b"]["properties"] == {
        "id": "b", "collection": "c1", "datetime": "2021-06-02T10:00:00.250000Z"
    }  # fmt: skip


def test_every_feature_property_reaches_the_tile(client: TestClient, admin: dict[str, str]) -> None:
    """What the items keep for WebMercatorQuad tiles (migration 0019) follows FEATURE_PROPERTIES:
    each, given with its JSON type, is in the feature, and the same as a WorldCRS84Quad tile's,
    which reads the properties themselves."""
    given = {
        name: ("x" if kind is Kind.STRING else 1.5) for name, kind in FEATURE_PROPERTIES.items()
    }
    seed(client, admin, item("a", 10.0, 45.0, **given))
    web = WEB.tile(10.2, 45.2, 6)
    crs84 = CRS84.tile(10.2, 45.2, 6)
    found = features(client.get(url("WebMercatorQuad", web.z, web.x, web.y)).content)
    assert found["a"]["properties"] == {
        "id": "a", "collection": "c1", "datetime": "2021-06-01T10:00:00Z", **given
    }  # fmt: skip
    other = features(client.get(url("WorldCRS84Quad", crs84.z, crs84.x, crs84.y)).content)
    assert other["a"]["properties"] == found["a"]["properties"]


def test_tile_follows_an_updated_item(client: TestClient, admin: dict[str, str]) -> None:
    """A value of another JSON type is left out; a replaced item's footprint and properties
    show in the next tile (they are generated columns of the item's row)."""
    seed(client, admin, item("a", 10.0, 45.0, gsd="ten", platform=5, title="T"))
    tile = WEB.tile(10.5, 45.5, 6)
    found = features(client.get(url("WebMercatorQuad", tile.z, tile.x, tile.y)).content)
    assert found["a"]["properties"] == {
        "id": "a", "collection": "c1", "datetime": "2021-06-01T10:00:00Z", "title": "T"
    }  # fmt: skip
    moved = item("a", 10.25, 45.25, "2021-06-03T10:00:00Z", size=0.25, gsd=20)
    r = client.put("/collections/c1/items/a", json=moved, headers=admin)
    assert r.status_code == 204, r.text
    found = features(client.get(url("WebMercatorQuad", tile.z, tile.x, tile.y)).content)
    assert found["a"]["properties"] == {
        "id": "a", "collection": "c1", "datetime": "2021-06-03T10:00:00Z", "gsd": 20
    }  # fmt: skip
    assert_square_at(found["a"], WEB, tile, 10.25, 45.25, 0.25)


def test_tile_follows_a_bulk_upsert(client: TestClient, admin: dict[str, str]) -> None:
    """Items written through bulk_items (COPY, then INSERT ... ON CONFLICT DO UPDATE) carry
    their tile columns too, on insert and on upsert."""
    seed(client, admin)
    tile = WEB.tile(10.5, 43.2, 6)  # 5.6 to 11.25 E, 41 to 45.1 N: both places inside
    for gsd, lon in ((10, 10.0), (30, 10.5)):
        body = {"items": {"a": item("a", lon, 43.0, gsd=gsd)}, "method": "upsert"}
        r = client.post("/collections/c1/bulk_items", json=body, headers=admin)
        assert r.status_code == 200 and r.json()["success"] == 1, r.text
        found = features(client.get(url("WebMercatorQuad", tile.z, tile.x, tile.y)).content)
        assert found["a"]["properties"]["gsd"] == gsd
        assert_square_at(found["a"], WEB, tile, lon, 43.0, 0.5)


def test_format_parameter_without_suffix(client: TestClient, admin: dict[str, str]) -> None:
    seed(client, admin, item("a"))
    tile = WEB.tile(10.2, 45.2, 8)
    path = f"/collections/c1/items/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}"
    with_suffix = client.get(path + ".mvt")
    for params in ({"f": "mvt"}, {}):
        r = client.get(path, params=params)
        assert r.status_code == 200 and r.headers["content-type"] == MVT
        assert r.content == with_suffix.content
    bad = client.get(path, params={"f": "png"})
    assert bad.status_code == 400 and bad.json()["code"] == "request.InvalidParameter"


def test_footprint_across_tile_edges_is_clipped_to_the_buffer(
    client: TestClient, admin: dict[str, str]
) -> None:
    seed(client, admin, item("big", 5.0, 40.0, size=10.0))
    tile = WEB.tile(10.0, 45.0, 8)  # well inside the footprint
    found = features(client.get(url("WebMercatorQuad", tile.z, tile.x, tile.y)).content)
    xs, ys = zip(*ring(found["big"]), strict=True)
    assert min(xs) == min(ys) == -64 and max(xs) == max(ys) == EXTENT + 64


def test_footprint_reaching_the_pole(client: TestClient, admin: dict[str, str]) -> None:
    """Latitude 90 has no place in Web Mercator: footprints are cut before projecting."""
    seed(client, admin, item("polar", 0.0, 89.0, size=1.0), item("arctic", 20.0, 80.0, size=10.0))
    r = client.get(url("WebMercatorQuad", 0, 0, 0))
    assert r.status_code == 200, r.text
    found = features(r.content)
    assert set(found) == {"arctic"}  # "polar" lies north of Web Mercator's 85.05 degrees
    assert min(y for _, y in ring(found["arctic"])) == -64  # cut at the buffer's edge
    r = client.get(url("WorldCRS84Quad", 0, 1, 0))
    assert set(features(r.content)) == {"polar", "arctic"}


def test_world_crs84_quad_tile(client: TestClient, admin: dict[str, str]) -> None:
    seed(client, admin, item("a", 10.0, 46.0, size=0.5), item("south", 10.0, -45.0))
    tile = CRS84.tile(10.2, 46.2, 5)
    assert (tile.x, tile.y) == (33, 7)  # 64 x 32 tiles of 5.625 degrees from (-180, 90)
    r = client.get(url("WorldCRS84Quad", tile.z, tile.x, tile.y))
    assert r.status_code == 200, r.text
    found = features(r.content)
    assert set(found) == {"a"}
    assert_square_at(found["a"], CRS84, tile, 10.0, 46.0, 0.5)
    # Matrix 0 is two tiles wide: the eastern one holds both items, the western none.
    assert set(features(client.get(url("WorldCRS84Quad", 0, 1, 0)).content)) == {"a", "south"}
    assert client.get(url("WorldCRS84Quad", 0, 0, 0)).status_code == 204


# -- empty, missing and invalid -----------------------------------------------------------------
def test_empty_tile_is_204(client: TestClient, admin: dict[str, str]) -> None:
    seed(client, admin, item("a", 10.0, 45.0))
    tile = WEB.tile(-100.0, -30.0, 7)
    r = client.get(url("WebMercatorQuad", tile.z, tile.x, tile.y))
    assert r.status_code == 204 and r.content == b""
    assert "max-age" in r.headers["cache-control"]
    seed(client, admin, cid="empty")
    assert client.get(url("WebMercatorQuad", 0, 0, 0, "empty")).status_code == 204


def test_unknown_collection(client: TestClient) -> None:
    r = client.get(url("WebMercatorQuad", 0, 0, 0, "nope"))
    assert r.status_code == 404 and r.json()["code"] == "catalog.NotFound"


@pytest.mark.parametrize("tms", ["NoSuchQuad", "EuropeanETRS89_LAEAQuad", "webmercatorquad"])
def test_unknown_tile_matrix_set(client: TestClient, admin: dict[str, str], tms: str) -> None:
    seed(client, admin)
    r = client.get(url(tms, 0, 0, 0))
    assert r.status_code == 404 and r.json()["code"] == "tiles.UnknownTileMatrixSet"
    assert "WebMercatorQuad" in r.json()["description"]


@pytest.mark.parametrize(
    ("tms", "z", "x", "y"),
    [
        ("WebMercatorQuad", 25, 0, 0),
        ("WebMercatorQuad", -1, 0, 0),
        ("WebMercatorQuad", 3, 8, 0),
        ("WebMercatorQuad", 3, 0, 8),
        ("WebMercatorQuad", 3, -1, 0),
        ("WorldCRS84Quad", 0, 2, 0),
        ("WorldCRS84Quad", 0, 0, 1),
        ("WorldCRS84Quad", 24, 0, 0),
    ],
)
def test_tile_outside_the_matrix_is_404(
    client: TestClient, admin: dict[str, str], tms: str, z: int, x: int, y: int
) -> None:
    seed(client, admin)
    r = client.get(url(tms, z, x, y))
    assert r.status_code == 404 and r.json()["code"] == "tiles.InvalidTile", r.text


def test_non_integer_tile_address_is_400(client: TestClient, admin: dict[str, str]) -> None:
    seed(client, admin)
    r = client.get("/collections/c1/items/tiles/WebMercatorQuad/1/zero/0.mvt")
    assert r.status_code == 400 and r.json()["code"] == "request.InvalidParameter"


# -- datetime, cap, simplification --------------------------------------------------------------
def test_datetime_filter(client: TestClient, admin: dict[str, str]) -> None:
    seed(
        client, admin,
        item("y2020", when="2020-03-01T00:00:00Z"),
        item("y2022", when="2022-03-01T00:00:00Z"),
    )  # fmt: skip
    tile = WEB.tile(10.2, 45.2, 5)
    path = url("WebMercatorQuad", tile.z, tile.x, tile.y)
    assert set(features(client.get(path).content)) == {"y2020", "y2022"}
    r = client.get(path, params={"datetime": "2021-01-01T00:00:00Z/.."})
    assert set(features(r.content)) == {"y2022"}
    r = client.get(path, params={"datetime": "2020-03-01T00:00:00Z"})
    assert set(features(r.content)) == {"y2020"}
    r = client.get(path, params={"datetime": "../2019-12-31T00:00:00Z"})
    assert r.status_code == 204
    r = client.get(path, params={"datetime": "last tuesday"})
    assert r.status_code == 400 and r.json()["code"] == "search.InvalidDatetime"


def test_feature_cap_keeps_the_newest(app_with: Any, admin: dict[str, str]) -> None:
    capped = app_with(max_features="2")
    seed(capped, admin, *(item(f"i{d}", when=f"2021-06-0{d}T10:00:00Z") for d in (3, 1, 4, 2)))
    tile = WEB.tile(10.2, 45.2, 6)
    path = url("WebMercatorQuad", tile.z, tile.x, tile.y)
    r = capped.get(path)
    assert r.status_code == 200
    assert r.headers["x-terracat-features-capped"] == "2"
    assert set(features(r.content)) == {"i4", "i3"}
    r = capped.get(path, params={"datetime": "../2021-06-02T12:00:00Z"})
    assert "x-terracat-features-capped" not in r.headers
    assert set(features(r.content)) == {"i1", "i2"}
    uncapped = app_with()
    r = uncapped.get(path)
    assert "x-terracat-features-capped" not in r.headers
    assert set(features(r.content)) == {"i1", "i2", "i3", "i4"}


def _wiggly_polygon(lon: float, lat: float, radius: float, vertices: int) -> dict[str, Any]:
    """A star-ish ring with many small teeth: detail no low-zoom tile can show."""
    points = []
    for i in range(vertices):
        angle = 2 * math.pi * i / vertices
        r = radius * (1 + 0.001 * (i % 2))
        points.append([round(lon + r * math.cos(angle), 7), round(lat + r * math.sin(angle), 7)])
    points.append(points[0])
    return {"type": "Polygon", "coordinates": [points]}


def test_simplification_keeps_low_zoom_tiles_small(app_with: Any, admin: dict[str, str]) -> None:
    doc = item("detailed")
    doc["geometry"] = _wiggly_polygon(10.0, 45.0, 3.0, 8000)
    xs = [p[0] for p in doc["geometry"]["coordinates"][0]]
    ys = [p[1] for p in doc["geometry"]["coordinates"][0]]
    doc["bbox"] = [min(xs), min(ys), max(xs), max(ys)]
    simplified = app_with()
    seed(simplified, admin, doc)
    raw = app_with(simplify="0")
    for z in (2, 5):
        tile = WEB.tile(10.0, 45.0, z)
        path = url("WebMercatorQuad", tile.z, tile.x, tile.y)
        small, large = simplified.get(path).content, raw.get(path).content
        assert set(features(small)) == set(features(large)) == {"detailed"}
        assert len(small) * 2 < len(large), (z, len(small), len(large))
    # At a high zoom a tooth is many units wide: both keep the detail.
    tile = WEB.tile(13.0, 45.0, 12)
    path = url("WebMercatorQuad", tile.z, tile.x, tile.y)
    small, large = simplified.get(path).content, raw.get(path).content
    assert len(ring(features(small)["detailed"])) > 10
    assert len(small) > 0.8 * len(large)
