"""Mosaic tiles and TileJSON of collections and saved searches, over real ingested COGs.

Two 512 x 512 px items at 10 m in EPSG:32633 overlap by half: ``red`` (older) from x = 500 km,
``blue`` (newer) 2560 m further east. Tiles are picked wholly inside one region. The mosaic
is made once for the module; a test that adds to it gets its own (``own_mosaic``). The
collection's OGC API - Maps ``map`` (tiler/maps.py) draws the same mosaic.
"""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from rasterio.transform import from_origin
from rasterio.warp import transform
from rio_tiler.colormap import cmap

from server.settings import Settings
from tests import rasters
from tests.conftest import Databases
from tests.factories import collection, item
from tests.tiler.conftest import (
    TMS,
    SharedCatalogue,
    add_collection,
    decode,
    ingest_item,
    npy,
    shared_catalogue,
)

COLLECTION = "mosaic"
SIZE, PIXEL = 512, 10.0
X0, TOP = rasters.UTM_ORIGIN
SHIFT = SIZE * PIXEL / 2  # blue starts halfway across red
RED, BLUE = (255, 0, 0), (0, 0, 255)
EXTENT = [14.9, 50.4, 15.2, 50.6]
BASE = f"/collections/{COLLECTION}/tiles/WebMercatorQuad"


def solid_tif(folder: Path, name: str, color: tuple[int, int, int], x0: float) -> Path:
    def fill(count: int, height: int, width: int) -> np.ndarray:
        return np.stack([np.full((height, width), v, "uint8") for v in color])

    return rasters.write_geotiff(
        folder / f"{name}.tif", width=SIZE, height=SIZE, count=3, dtype="uint8",
        crs="EPSG:32633", transform=from_origin(x0, TOP, PIXEL, PIXEL), photometric="RGB",
        fill=fill,
    )  # fmt: skip


def load_mosaic(client: TestClient, settings: Settings, folder: Path) -> None:
    """Collection ``mosaic`` with ``blue`` (2024-06) ingested before ``red`` (2024-01)."""
    add_collection(client, collection(COLLECTION, bbox=EXTENT))
    for name, color, x0, when in (
        ("blue", BLUE, X0 + SHIFT, datetime(2024, 6, 1, tzinfo=UTC)),
        ("red", RED, X0, datetime(2024, 1, 1, tzinfo=UTC)),
    ):
        ingest_item(client, settings, solid_tif(folder, name, color, x0), name, COLLECTION, when)


@pytest.fixture(scope="module")
def mosaic_catalogue(
    databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedCatalogue]:
    """The mosaic, made once for the tests that only read it."""
    with shared_catalogue(databases, "mosaic", tmp_path_factory) as shared:
        load_mosaic(shared.client, shared.settings, shared.source_folder("sources"))
        yield shared


@pytest.fixture
def mosaic(mosaic_catalogue: SharedCatalogue) -> Iterator[TestClient]:
    """A client on the shared mosaic (read only); searches a test saves are deleted after it."""
    yield mosaic_catalogue.client
    mosaic_catalogue.forget_searches()


@pytest.fixture
def own_mosaic(client: TestClient, settings: Settings, tmp_path: Path) -> TestClient:
    """The mosaic in the test's own database, for a test that adds to it."""
    folder = tmp_path / "sources"
    folder.mkdir()
    load_mosaic(client, settings, folder)
    return client


def tile_in(west: float, east: float, zoom: int = 16) -> tuple[int, int, int]:
    """A tile wholly inside UTM x in [west, east] (and the items' rows)."""
    middle_y = TOP - SIZE * PIXEL / 2
    (lon,), (lat,) = transform("EPSG:32633", "EPSG:4326", [(west + east) / 2], [middle_y])
    tile = TMS.tile(lon, lat, zoom)
    b = TMS.bounds(tile)
    xs, ys = transform("EPSG:4326", "EPSG:32633", [b.left, b.right] * 2,
                       [b.bottom] * 2 + [b.top] * 2)  # fmt: skip
    assert all(west < x < east for x in xs) and all(TOP - SIZE * PIXEL < y < TOP for y in ys)
    return tile.z, tile.x, tile.y


RED_ONLY = (X0, X0 + SHIFT)
OVERLAP = (X0 + SHIFT, X0 + 2 * SHIFT)


def colour(client: TestClient, path: str, **params: Any) -> tuple[int, ...]:
    """The one colour of an opaque PNG tile (fails if it has several or is transparent)."""
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    pixels = decode(r.content)
    assert pixels.shape == (4, 256, 256)
    assert (pixels[3] == 255).all()
    rgb = pixels[:3].reshape(3, -1)
    assert (rgb == rgb[:, :1]).all(), "the tile has more than one colour"
    return tuple(int(v) for v in rgb[:, 0])


def path_of(tile: tuple[int, int, int], base: str = BASE, suffix: str = "") -> str:
    z, x, y = tile
    return f"{base}/{z}/{x}/{y}{suffix}"


# -- collection mosaics --------------------------------------------------------------------------
def test_newest_item_on_top(mosaic: TestClient) -> None:
    overlap = path_of(tile_in(*OVERLAP))
    assert colour(mosaic, overlap) == BLUE
    assert colour(mosaic, path_of(tile_in(*RED_ONLY))) == RED
    r = mosaic.get(overlap)
    assert r.headers["cache-control"] == "public, max-age=60"


@pytest.mark.parametrize(
    ("method", "expected"),
    [("first", BLUE), ("highest", (255, 0, 255)), ("lowest", (0, 0, 0)), ("mean", (127, 0, 127))],
)
def test_pixel_selection(mosaic: TestClient, method: str, expected: tuple[int, ...]) -> None:
    got = colour(mosaic, path_of(tile_in(*OVERLAP)), pixel_selection=method)
    assert all(abs(a - b) <= 1 for a, b in zip(got, expected, strict=True)), got


def test_tile_without_items_is_204(mosaic: TestClient) -> None:
    far = TMS.tile(-40.0, 10.0, 12)
    r = mosaic.get(path_of((far.z, far.x, far.y)))
    assert r.status_code == 204 and r.content == b""
    assert "cache-control" not in r.headers


def test_tile_half_outside_the_data_is_transparent_there(mosaic: TestClient) -> None:
    east_edge = X0 + SHIFT + SIZE * PIXEL
    (lon,), (lat,) = transform("EPSG:32633", "EPSG:4326", [east_edge], [TOP - 2000])
    tile = TMS.tile(lon, lat, 15)
    pixels = decode(mosaic.get(path_of((tile.z, tile.x, tile.y))).content)
    alpha = pixels[3]
    assert (alpha == 0).any() and (alpha == 255).any()
    assert (pixels[:3, alpha == 255].T == BLUE).all()


def test_items_not_in_our_storage_are_left_out(
    own_mosaic: TestClient, admin: dict[str, str]
) -> None:
    # Newest and covering everything, but its asset is s3://...: never read, not drawn.
    foreign = item("foreign", lon=14.8, lat=50.3, size=0.5, when="2025-01-01T00:00:00Z")
    r = own_mosaic.post(f"/collections/{COLLECTION}/items", json=foreign, headers=admin)
    assert r.status_code == 201, r.text
    assert colour(own_mosaic, path_of(tile_in(*OVERLAP))) == BLUE


@pytest.mark.parametrize(
    ("suffix", "media_type", "shape"),
    [
        (".png", "image/png", (4, 256, 256)),
        (".jpg", "image/jpg", (3, 256, 256)),
        (".jpeg", "image/jpeg", (3, 256, 256)),
        (".webp", "image/webp", (3, 256, 256)),  # opaque: WEBP drops the alpha band
        (".tif", "image/tiff; application=geotiff", (4, 256, 256)),  # with the mask band
        ("@2x", "image/png", (4, 512, 512)),
        ("@2x.webp", "image/webp", (3, 512, 512)),
    ],
)
def test_formats_and_scales(
    mosaic: TestClient, suffix: str, media_type: str, shape: tuple[int, ...]
) -> None:
    r = mosaic.get(path_of(tile_in(*OVERLAP), suffix=suffix))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media_type
    assert decode(r.content).shape == shape


def test_npy_tiles(mosaic: TestClient) -> None:
    r = mosaic.get(path_of(tile_in(*OVERLAP), suffix=".npy"))
    assert r.status_code == 200
    array = npy(r.content)
    assert array.shape[1:] == (256, 256)
    assert tuple(array[:3, 0, 0]) == BLUE


def test_render_options(mosaic: TestClient) -> None:
    overlap = path_of(tile_in(*OVERLAP))
    assert colour(mosaic, overlap, bidx=[3, 2, 1]) == RED  # blue's bands reversed
    assert colour(mosaic, overlap, expression="b3;b3;b1", rescale="0,255") == (255, 255, 0)
    assert colour(mosaic, overlap, bands=["blue", "green", "red"]) == RED
    assert colour(mosaic, overlap, preset="rgb") == BLUE
    last = tuple(int(v) for v in cmap.get("greys")[255][:3])
    assert colour(mosaic, overlap, expression="b3", rescale="0,255", colormap_name="greys") == last
    assert colour(mosaic, overlap, pixel_selection="highest", assets="data") == (255, 0, 255)


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("{base}/{z}/{x}/{y}", {"pixel_selection": "prettiest"}, 400, "request.InvalidParameter"),
        ("{base}/{z}/{x}/{y}.gif", {}, 400, "tiler.InvalidFormat"),
        ("{base}/{z}/{x}/{y}@9x", {}, 400, "request.InvalidParameter"),
        ("{base}/{z}/{x}/{y}", {"preset": "ndvi", "expression": "b1"}, 400, "tiler.InvalidLayer"),
        ("{base}/{z}/{x}/{y}", {"preset": "sparkle"}, 400, "tiler.UnknownPreset"),
        ("{base}/{z}/{x}/{y}", {"preset": "ndvi"}, 400, "tiler.PresetUnavailable"),
        ("{base}/{z}/{x}/{y}", {"expression": "b1+"}, 400, "tiler.InvalidExpression"),
        ("{base}/{z}/{x}/{y}", {"assets": "nope"}, 404, "tiler.InvalidAssetName"),
        ("{base}/{z}/{x}/{y}", {"colormap": '{"a": 1}'}, 400, "tiler.InvalidColorMap"),
        ("{base}/{z}/{x}/{y}", {"tilesize": 100000}, 400, "tiler.ImageTooLarge"),
        ("{base}/{z}/99999/{y}", {}, 404, "tiler.TileOutsideBounds"),
        ("{base}/40/1/1", {}, 404, "tiler.TileOutsideBounds"),
        ("{base}/{z}/x/{y}", {}, 400, "request.InvalidParameter"),
        ("/collections/mosaic/tiles/Mars/{z}/{x}/{y}", {}, 404, "tiles.UnknownTileMatrixSet"),
        ("/collections/nope/tiles/WebMercatorQuad/{z}/{x}/{y}", {}, 404, "catalog.NotFound"),
        ("/collections/nope/tiles/WebMercatorQuad/tilejson.json", {}, 404, "catalog.NotFound"),
        ("/collections/mosaic/tiles/Mars/tilejson.json", {}, 404, "tiles.UnknownTileMatrixSet"),
    ],
)
def test_bad_tile_requests(
    mosaic: TestClient, path: str, params: dict[str, Any], status: int, code: str
) -> None:
    z, x, y = tile_in(*OVERLAP)
    r = mosaic.get(path.format(base=BASE, z=z, x=x, y=y), params=params)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert r.json()["description"]


def test_collection_tilejson(mosaic: TestClient) -> None:
    r = mosaic.get(f"{BASE}/tilejson.json", params={"pixel_selection": "highest"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["tilejson"] == "3.0.0"
    # The collection's extent, which is its items' (declared EXTENT is only a first guess).
    boxes = [f["bbox"] for f in mosaic.get(f"/collections/{COLLECTION}/items").json()["features"]]
    west, south = min(b[0] for b in boxes), min(b[1] for b in boxes)
    east, north = max(b[2] for b in boxes), max(b[3] for b in boxes)
    assert doc["bounds"] == pytest.approx([west, south, east, north], abs=1e-9)
    assert doc["bounds"] != EXTENT
    assert doc["center"] == pytest.approx([(west + east) / 2, (south + north) / 2, 13])
    # 10 m pixels: zoom 14; a whole 5.12 km item in one 256 px tile: zoom 13
    assert (doc["minzoom"], doc["maxzoom"]) == (13, 14)
    assert doc["tiles"] == [f"http://testserver{BASE}/{{z}}/{{x}}/{{y}}?pixel_selection=highest"]
    scaled = mosaic.get(f"{BASE}/tilejson.json", params={"tile_format": "webp", "tile_scale": 2})
    assert scaled.json()["tiles"] == [f"http://testserver{BASE}/{{z}}/{{x}}/{{y}}@2x.webp"]
    geographic = mosaic.get(f"/collections/{COLLECTION}/tiles/WorldCRS84Quad/tilejson.json")
    doc = geographic.json()
    assert doc["bounds"] == pytest.approx([west, south, east, north], abs=1e-9)
    assert 0 <= doc["minzoom"] <= doc["maxzoom"] <= 17


def test_tilejson_of_an_empty_collection(client: TestClient, admin: dict[str, str]) -> None:
    client.post("/collections", json=collection("empty", bbox=[-10, -10, 10, 10]), headers=admin)
    doc = client.get("/collections/empty/tiles/WebMercatorQuad/tilejson.json").json()
    assert doc["bounds"] == [-10, -10, 10, 10]
    assert (doc["minzoom"], doc["maxzoom"]) == (0, 24)


def test_ogc_tileset_template_serves_the_mosaic(mosaic: TestClient) -> None:
    tileset = mosaic.get(f"/collections/{COLLECTION}/tiles/WebMercatorQuad").json()
    template = next(link["href"] for link in tileset["links"] if link["rel"] == "item")
    z, x, y = tile_in(*OVERLAP)
    url = template.format(tileMatrix=z, tileCol=x, tileRow=y).replace("http://testserver", "")
    assert colour(mosaic, url) == BLUE


# -- saved searches ------------------------------------------------------------------------------
def register(client: TestClient, admin: dict[str, str], body: dict[str, Any]) -> str:
    r = client.post("/searches", json=body, headers=admin)
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def test_saved_search_with_a_filter_renders_only_its_items(
    mosaic: TestClient, admin: dict[str, str]
) -> None:
    body = {"collections": [COLLECTION], "filter": "datetime < TIMESTAMP('2024-03-01T00:00:00Z')"}
    sid = register(mosaic, admin, body)
    base = f"/searches/{sid}/tiles/WebMercatorQuad"
    assert colour(mosaic, path_of(tile_in(*OVERLAP), base)) == RED
    blue_only = (X0 + 2 * SHIFT, X0 + 3 * SHIFT)
    assert mosaic.get(path_of(tile_in(*blue_only), base)).status_code == 204
    everything = register(mosaic, admin, {"collections": [COLLECTION]})
    base = f"/searches/{everything}/tiles/WebMercatorQuad"
    assert colour(mosaic, path_of(tile_in(*blue_only), base)) == BLUE


def test_saved_search_sortby_orders_the_mosaic(mosaic: TestClient, admin: dict[str, str]) -> None:
    oldest_first = {"collections": [COLLECTION],
                    "sortby": [{"field": "datetime", "direction": "asc"}]}  # fmt: skip
    sid = register(mosaic, admin, oldest_first)
    tile = path_of(tile_in(*OVERLAP), f"/searches/{sid}/tiles/WebMercatorQuad")
    assert colour(mosaic, tile) == RED
    assert colour(mosaic, tile.replace("/16/", "/16/"), pixel_selection="highest") == (255, 0, 255)


def test_saved_search_tilejson(mosaic: TestClient, admin: dict[str, str]) -> None:
    sid = register(mosaic, admin, {"collections": [COLLECTION], "ids": ["blue"]})
    r = mosaic.get(f"/searches/{sid}/tiles/WebMercatorQuad/tilejson.json")
    assert r.status_code == 200, r.text
    doc = r.json()
    blue = mosaic.get(f"/collections/{COLLECTION}/items/blue").json()
    assert doc["bounds"] == pytest.approx(blue["bbox"])  # the items' extent
    assert (doc["minzoom"], doc["maxzoom"]) == (13, 14)
    assert doc["tiles"] == [
        f"http://testserver/searches/{sid}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}"
    ]
    nothing = register(mosaic, admin, {"collections": [COLLECTION], "ids": ["none"]})
    doc = mosaic.get(f"/searches/{nothing}/tiles/WebMercatorQuad/tilejson.json").json()
    assert (doc["minzoom"], doc["maxzoom"]) == (0, 24)
    assert doc["bounds"] == pytest.approx([-180, -85.0511287798066, 180, 85.0511287798066])


# -- the collection map (OGC API - Maps) ---------------------------------------------------------
MAP = f"/collections/{COLLECTION}/map"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


def box_in(west: float, east: float) -> str:
    """A lon/lat bbox wholly inside UTM x in [west, east] and the items' rows."""
    xs = [west + 300, east - 300]
    ys = [TOP - SIZE * PIXEL + 300, TOP - 300]
    lons, lats = transform("EPSG:32633", "EPSG:4326", xs * 2, [ys[0]] * 2 + [ys[1]] * 2)
    return f"{max(lons[0], lons[2])},{max(lats[:2])},{min(lons[1], lons[3])},{min(lats[2:])}"


def drawn(client: TestClient, **params: Any) -> Any:
    r = client.get(MAP, params=params)
    assert r.status_code == 200, r.text
    return r, decode(r.content)


def test_the_map_shows_the_newest_item_on_top(mosaic: TestClient) -> None:
    for region, expected in ((OVERLAP, BLUE), (RED_ONLY, RED)):
        bbox = box_in(*region)
        r, pixels = drawn(mosaic, bbox=bbox, width=64, height=48)
        assert r.headers["content-type"] == "image/png"
        assert r.headers["content-crs"] == f"<{CRS84}>"
        assert [float(v) for v in r.headers["content-bbox"].split(",")] == [
            float(v) for v in bbox.split(",")
        ]
        assert pixels.shape == (4, 48, 64) and (pixels[3] == 255).all()
        assert (pixels[:3].reshape(3, -1).T == expected).all()


def test_map_sizes_and_formats(mosaic: TestClient) -> None:
    r, pixels = drawn(mosaic)  # the collection's extent (its items'), its longer side 1024 px
    extent = mosaic.get(f"/collections/{COLLECTION}").json()["extent"]["spatial"]["bbox"][0]
    west, south, east, north = extent
    assert [float(v) for v in r.headers["content-bbox"].split(",")] == pytest.approx(extent)
    assert pixels.shape == (4, round(1024 * (north - south) / (east - west)), 1024)
    assert (pixels[3] == 0).any() and (pixels[3] == 255).any()  # the items cover part of it
    opaque = pixels[:3, pixels[3] == 255].T
    assert {tuple(int(v) for v in p) for p in opaque} == {RED, BLUE}  # blue over the overlap
    _, pixels = drawn(mosaic, bbox="14,50,16,51", width=256)  # a box 600 times an item's
    assert 30 < (pixels[3] == 255).sum() < 300
    _, pixels = drawn(mosaic, bbox=box_in(*RED_ONLY), width=40)
    assert pixels.shape[2] == 40 and pixels.shape[1] > 1
    _, pixels = drawn(mosaic, bbox="14,50,24,51", height=1000)  # 10:1, within 4096 px
    assert pixels.shape[1:] == (410, 4096)
    r, pixels = drawn(mosaic, bbox=box_in(*RED_ONLY), width=32, height=32, f="jpeg")
    assert r.headers["content-type"] == "image/jpeg" and pixels.shape == (3, 32, 32)
    assert abs(int(pixels[0].mean()) - 255) < 4 and int(pixels[2].mean()) < 4


def test_a_map_without_items_is_transparent(mosaic: TestClient) -> None:
    _, pixels = drawn(mosaic, bbox="-40,10,-39,11", width=16, height=16)
    assert pixels.shape == (4, 16, 16) and (pixels[3] == 0).all()


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"bbox": "15,50,14,51"}, 400, "search.InvalidBBox"),
        ({"bbox": "15,50,16"}, 400, "search.InvalidBBox"),
        ({"bbox": "15,50,16,95"}, 400, "search.InvalidBBox"),
        ({"width": 100_000}, 400, None),
        ({"f": "gif"}, 400, None),
    ],
)
def test_bad_map_requests(
    mosaic: TestClient, params: dict[str, Any], status: int, code: str | None
) -> None:
    r = mosaic.get(MAP, params=params)
    assert r.status_code == status, r.text
    if code:
        assert r.json()["code"] == code


def test_unknown_collection_map_is_404(mosaic: TestClient) -> None:
    for params in ({}, {"bbox": "15,50,15.1,50.1"}):
        r = mosaic.get("/collections/nope/map", params=params)
        assert r.status_code == 404, r.text


def test_collections_link_their_map(mosaic: TestClient) -> None:
    doc = mosaic.get(f"/collections/{COLLECTION}").json()
    found = {link["type"]: link["href"] for link in doc["links"]
             if link["rel"] == "http://www.opengis.net/def/rel/ogc/1.0/map"}  # fmt: skip
    assert found == {
        "image/png": f"http://testserver{MAP}",
        "image/jpeg": f"http://testserver{MAP}?f=jpeg",
    }
    r = mosaic.get(found["image/jpeg"].removeprefix("http://testserver") + "&width=8")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
