"""Map images (OGC API - Maps) of vector and hybrid collections (issue 18), decoded and read
pixel by pixel: a feature's colour where it is, transparency elsewhere, Web Mercator maps,
filters, JPEG, the size cap; a raster collection with its annotations drawn over its mosaic."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pyproj
import pytest
import shapely
from fastapi.testclient import TestClient
from rasterio.transform import from_origin

from catalog.vector.schema import PropertyType as T
from ogc.styles import collection_colour
from server.settings import Settings
from tests import rasters
from tests.factories import collection
from tests.tiler.conftest import add_collection, ingest_item

from .tiles_data import load

SQUARE = shapely.box(10, 40, 12, 42)
OTHER = shapely.box(14, 40, 15, 41)


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def png(r: Any) -> np.ndarray:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    pixels = np.asarray(imagecodecs.png_decode(r.content))
    assert pixels.shape[2] == 4
    return pixels


def at(pixels: np.ndarray, box: tuple[float, ...], lon: float, lat: float) -> np.ndarray:
    """The pixel of a CRS84 map over ``box`` at lon/lat."""
    height, width = pixels.shape[:2]
    col = int((lon - box[0]) / (box[2] - box[0]) * width)
    row = int((box[3] - lat) / (box[3] - box[1]) * height)
    return pixels[row, col]


@pytest.fixture
def fields(client: TestClient, database_url: str) -> None:
    load(database_url, "fields", [("crop", T.STRING)], "Polygon",
         [(SQUARE, "wheat"), (OTHER, "maize")])  # fmt: skip


def test_a_vector_map_draws_features_in_their_style_colour(
    client: TestClient, fields: None
) -> None:
    box = (9.0, 39.0, 16.0, 43.0)
    r = client.get("/collections/fields/map", params={"bbox": ",".join(map(str, box)),
                                                      "width": 350, "height": 200})  # fmt: skip
    pixels = png(r)
    assert pixels.shape[:2] == (200, 350)
    assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"
    inside = at(pixels, box, 11, 41)
    assert tuple(inside[:3]) == rgb(collection_colour("fields"))
    assert abs(int(inside[3]) - 128) <= 1  # the generated style's fill-opacity, 0.5
    assert at(pixels, box, 13, 41)[3] == 0  # between the squares: transparent
    assert at(pixels, box, 9.5, 42.5)[3] == 0
    # The outline, opaque, along the square's west edge
    edge = at(pixels, box, 10.0, 41)
    assert edge[3] == 255 and tuple(edge[:3]) == rgb(collection_colour("fields"))
    # The extent by default
    whole = png(client.get("/collections/fields/map", params={"width": 100}))
    assert whole.shape[:2] == (40, 100)


def test_a_stored_style_colours_the_map_and_a_filter_selects(
    client: TestClient, fields: None, admin: dict[str, str]
) -> None:
    style = client.get("/collections/fields/styles/default").json()
    style["layers"] = [{"id": "f", "type": "fill", "source": "fields", "source-layer": "fields",
                        "paint": {"fill-color": "#00ff00"}}]  # fmt: skip
    assert client.put("/collections/fields/styles/default", json=style,
                      headers=admin).status_code == 201  # fmt: skip
    box = (9.0, 39.0, 16.0, 43.0)
    params = {"bbox": ",".join(map(str, box)), "width": 140, "height": 80}
    pixels = png(client.get("/collections/fields/map", params=params))
    assert tuple(at(pixels, box, 11, 41)) == (0, 255, 0, 255)
    assert tuple(at(pixels, box, 14.5, 40.5)) == (0, 255, 0, 255)
    only = png(client.get("/collections/fields/map", params={**params, "filter": "crop = 'maize'"}))
    assert at(only, box, 11, 41)[3] == 0
    assert tuple(at(only, box, 14.5, 40.5)) == (0, 255, 0, 255)
    jpeg = client.get("/collections/fields/map", params={**params, "f": "jpeg"})
    assert jpeg.headers["content-type"] == "image/jpeg"
    pixels = np.asarray(imagecodecs.jpeg8_decode(jpeg.content))
    assert pixels.shape == (80, 140, 3)
    assert (abs(at(pixels, box, 13, 42.5).astype(int) - 255) < 8).all()  # white background
    green = at(pixels, box, 11, 41).astype(int)
    assert green[1] > 240 and green[0] < 16 and green[2] < 16


def test_web_mercator_maps_put_features_where_pyproj_does(
    client: TestClient, database_url: str
) -> None:
    load(database_url, "north", [], "Polygon", [(shapely.box(20, 60, 21, 61),)])
    box = (18.0, 58.0, 24.0, 64.0)
    r = client.get("/collections/north/map", params={"bbox": ",".join(map(str, box)),
                                                     "width": 300, "crs": "EPSG:3857"})  # fmt: skip
    pixels = png(r)
    to = pyproj.Transformer.from_crs(4326, 3857, always_xy=True)
    (x0, x1), (y0, y1) = to.transform([box[0], box[2]], [box[1], box[3]])
    assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/3857>"
    height, width = pixels.shape[:2]
    assert width == 300 and height == round(300 * (y1 - y0) / (x1 - x0))
    painted = np.argwhere(pixels[..., 3] > 0)
    rows, cols = painted[:, 0], painted[:, 1]
    (fx0, fx1), (fy0, fy1) = to.transform([20, 21], [60, 61])
    expect_rows = ((y1 - fy1) / (y1 - y0) * height, (y1 - fy0) / (y1 - y0) * height)
    expect_cols = ((fx0 - x0) / (x1 - x0) * width, (fx1 - x0) / (x1 - x0) * width)
    assert abs(rows.min() - expect_rows[0]) <= 1.5 and abs(rows.max() + 1 - expect_rows[1]) <= 1.5
    assert abs(cols.min() - expect_cols[0]) <= 1.5 and abs(cols.max() + 1 - expect_cols[1]) <= 1.5


def test_points_and_lines_are_drawn(client: TestClient, database_url: str) -> None:
    load(database_url, "wells", [], "Point", [(shapely.Point(5, 5),)])
    load(database_url, "roads", [], "LineString", [(shapely.LineString([(0, 0), (10, 0)]),)])
    box = (0.0, -1.0, 10.0, 9.0)
    params = {"bbox": ",".join(map(str, box)), "width": 100, "height": 100}
    wells = png(client.get("/collections/wells/map", params=params))
    assert tuple(at(wells, box, 5, 5)[:3]) == rgb(collection_colour("wells"))
    assert (wells[..., 3] > 0).sum() < 120  # a dot of radius 4 (+ its stroke)
    roads = png(client.get("/collections/roads/map", params=params))
    assert tuple(at(roads, box, 5, 0)[:3]) == rgb(collection_colour("roads"))
    assert at(roads, box, 5, 5)[3] == 0


def test_bad_map_requests_and_the_size_cap(
    client: TestClient, fields: None, settings: Settings
) -> None:
    for params, code in [
        ({"crs": "EPSG:27700"}, "maps.UnsupportedCrs"),
        ({"bbox": "12,40,11,41"}, "search.InvalidBBox"),
        ({"filter": "colour = 'red'"}, "search.UnknownQueryable"),
        ({"width": settings.tiler.max_image_size + 1}, None),
    ]:
        r = client.get("/collections/fields/map", params=params)
        assert r.status_code == 400, (params, r.text)
        assert code is None or r.json()["code"] == code
    assert client.get("/collections/nope/map").status_code == 404


def green_tif(folder: Path) -> Path:
    def fill(count: int, height: int, width: int) -> np.ndarray:
        return np.stack([np.full((height, width), v, "uint8") for v in (0, 200, 0)])

    return rasters.write_geotiff(
        folder / "green.tif", width=256, height=256, count=3, dtype="uint8",
        crs="EPSG:32633", transform=from_origin(*rasters.UTM_ORIGIN, 20, 20),
        photometric="RGB", fill=fill,
    )  # fmt: skip


def test_a_hybrid_map_draws_annotations_over_the_imagery(
    client: TestClient, settings: Settings, database_url: str, tmp_path: Path,
    admin: dict[str, str],
) -> None:  # fmt: skip
    add_collection(client, collection("imagery"))
    ingest_item(client, settings, green_tif(tmp_path), "green", "imagery",
                datetime(2024, 1, 1, tzinfo=UTC))  # fmt: skip
    extent = client.get("/collections/imagery/items/green").json()["bbox"]
    west, south, east, north = extent
    mid_lon, mid_lat = (west + east) / 2, (south + north) / 2
    tree = shapely.box(mid_lon - 0.005, mid_lat - 0.005, mid_lon + 0.005, mid_lat + 0.005)
    load(database_url, "imagery-trees", [], "Polygon", [(tree,)], annotates="imagery")
    style = client.get("/collections/imagery-trees/styles/default").json()
    paint = {"fill-color": "#ff0000", "fill-opacity": 0.5}
    style["layers"] = [{"id": "t", "type": "fill", "source": "imagery-trees",
                        "source-layer": "imagery-trees", "paint": paint}]  # fmt: skip
    client.put("/collections/imagery-trees/styles/default", json=style, headers=admin)
    box = (west - 0.02, south - 0.02, east + 0.02, north + 0.02)
    pixels = png(client.get("/collections/imagery/map", params={
        "bbox": ",".join(map(str, box)), "width": 200, "height": 200}))  # fmt: skip
    assert tuple(at(pixels, box, mid_lon, mid_lat)) == (128, 100, 0, 255)  # red half over green
    assert tuple(at(pixels, box, west + 0.004, mid_lat)) == (0, 200, 0, 255)
    assert at(pixels, box, west - 0.01, mid_lat)[3] == 0
    # EPSG:4326 is the same map; Web Mercator is for vector collections only
    plain = png(
        client.get(
            "/collections/imagery/map",
            params={
                "bbox": ",".join(map(str, box)),
                "width": 200,
                "height": 200,
                "crs": "EPSG:4326",
            },
        )
    )
    assert tuple(at(plain, box, mid_lon, mid_lat)) == (128, 100, 0, 255)
    r = client.get("/collections/imagery/map", params={"crs": "EPSG:3857"})
    assert r.status_code == 400 and r.json()["code"] == "maps.UnsupportedCrs"


def test_the_feature_cap_of_maps_says_so(
    settings: Settings, apps: Any, database_url: str, client: TestClient
) -> None:
    load(database_url, "many", [], "Point", [(shapely.Point(i, 0),) for i in range(5)])
    settings.tiles.map_max_features = 3
    with apps.client(settings) as capped:
        r = capped.get("/collections/many/map", params={"bbox": "-1,-1,5,1", "width": 120})
        pixels = png(r)
        assert r.headers["x-terracat-features-capped"] == "3"
        columns = np.unique(np.argwhere(pixels[..., 3] > 0)[:, 1])
        assert 1 + int((np.diff(columns) > 1).sum()) == 3  # three dots, apart


def test_a_stored_data_driven_style_colours_each_feature(
    client: TestClient, fields: None, admin: dict[str, str]
) -> None:
    style = client.get("/collections/fields/styles/default", params={"color_by": "crop"}).json()
    r = client.put("/collections/fields/styles/default", json=style, headers=admin)
    assert r.status_code == 201
    fill = style["layers"][0]["paint"]["fill-color"]
    colours = dict(zip(fill[2:-1:2], fill[3:-1:2], strict=True))
    assert colours["wheat"] != colours["maize"]
    box = (9.0, 39.0, 16.0, 43.0)
    params = {"bbox": ",".join(map(str, box)), "width": 140, "height": 80}
    pixels = png(client.get("/collections/fields/map", params=params))
    for (lon, lat), crop in [((11, 41), "wheat"), ((14.5, 40.5), "maize")]:
        pixel = at(pixels, box, lon, lat)
        assert tuple(pixel[:3]) == rgb(colours[crop]) and abs(int(pixel[3]) - 128) <= 1, crop


def test_color_by_draws_the_generated_classes(client: TestClient, fields: None) -> None:
    style = client.get("/collections/fields/styles/default", params={"color_by": "crop"}).json()
    fill = style["layers"][0]["paint"]["fill-color"]
    colours = dict(zip(fill[2:-1:2], fill[3:-1:2], strict=True))
    box = (9.0, 39.0, 16.0, 43.0)
    params = {"bbox": ",".join(map(str, box)), "width": 140, "height": 80, "color_by": "crop"}
    pixels = png(client.get("/collections/fields/map", params=params))
    assert tuple(at(pixels, box, 14.5, 40.5)[:3]) == rgb(colours["maize"])
    r = client.get("/collections/fields/map", params={**params, "color_by": "colour"})
    assert r.status_code == 400 and r.json()["code"] == "search.UnknownQueryable"
