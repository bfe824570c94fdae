"""OGC API - Maps - Part 1 as a client checks it: the classes /conformance declares, the map
link of a collection, maps in every CRS the collection lists (decoded with rasterio, the
features where pyproj puts them), the size from scale-denominator, the format from Accept, and
the response headers of core."""

import warnings
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyproj
import pytest
import shapely
from fastapi.testclient import TestClient
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from catalog.vector.schema import PropertyType as T

from .tiles_data import load

CONF = "http://www.opengis.net/spec/ogcapi-maps-1/1.0/conf/"
MAP_REL = "http://www.opengis.net/def/rel/ogc/1.0/map"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
SQUARES = [shapely.box(13, 45, 13.5, 45.5), shapely.box(15, 46, 15.4, 46.4)]
SEEN = [datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 7, 15, 12, tzinfo=UTC)]


@pytest.fixture
def plots(client: TestClient, database_url: str) -> str:
    load(database_url, "plots", [("seen", T.DATETIME)], "Polygon",
         list(zip(SQUARES, SEEN, strict=True)), datetime_property="seen")  # fmt: skip
    return "/collections/plots"


def decoded(r: Any) -> np.ndarray:
    """The image's bands (rows, columns, bands), read by GDAL through rasterio."""
    assert r.status_code == 200, r.text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG has no georeference
        with MemoryFile(r.content) as memory, memory.open() as image:
            assert (
                image.driver
                == {"image/png": "PNG", "image/jpeg": "JPEG"}[r.headers["content-type"]]
            )
            return np.moveaxis(image.read(), 0, -1)


def pixel(r: Any, pixels: np.ndarray, x: float, y: float) -> np.ndarray:
    """The pixel at (x, y) in the map's CRS, placed by its Content-Bbox."""
    x0, y0, x1, y1 = (float(v) for v in r.headers["content-bbox"].split(","))
    height, width = pixels.shape[:2]
    col = int((x - x0) / (x1 - x0) * width)
    row = int((y1 - y) / (y1 - y0) * height)
    return pixels[row, col]


def test_conformance_declares_the_classes_met(client: TestClient) -> None:
    declared = {c for c in client.get("/conformance").json()["conformsTo"] if c.startswith(CONF)}
    assert declared == {CONF + c for c in ("core", "collection-map", "crs", "scaling", "png",
                                           "jpeg")}  # fmt: skip


def test_every_listed_crs_draws_the_features_where_pyproj_puts_them(
    client: TestClient, plots: str
) -> None:
    doc = client.get(plots).json()
    links = [link for link in doc["links"] if link["rel"] == MAP_REL]
    assert {link["type"] for link in links} == {"image/png", "image/jpeg"}
    png_link = next(link for link in links if link["type"] == "image/png")
    assert png_link["href"] == "http://testserver/collections/plots/map"
    listed = doc["crs"]
    assert "http://www.opengis.net/def/crs/EPSG/0/32633" in listed and len(listed) == 4
    for crs in listed:
        r = client.get(png_link["href"], params={"crs": crs, "width": 240, "height": 200})
        pixels = decoded(r)
        assert pixels.shape == (200, 240, 4), crs
        # CRS84 has no EPSG code; EPSG:4326 maps are drawn in CRS84 (lon/lat) as well
        drawn = pyproj.CRS.from_user_input(crs).to_epsg() or 4326
        assert r.headers["content-crs"] == (
            f"<{CRS84}>" if drawn == 4326 else f"<http://www.opengis.net/def/crs/EPSG/0/{drawn}>"
        )
        to_map = pyproj.Transformer.from_crs(4326, drawn, always_xy=True)
        for square in SQUARES:
            x, y = to_map.transform(square.centroid.x, square.centroid.y)
            assert pixel(r, pixels, x, y)[3] > 0, (crs, square.bounds)
        x, y = to_map.transform(14.2, 45.2)  # between the squares
        assert pixel(r, pixels, x, y)[3] == 0, crs
        assert r.headers["content-datetime"] == "2024-05-01T00:00:00Z/2024-07-15T12:00:00Z"


def test_scale_denominator_sets_the_size(client: TestClient, plots: str) -> None:
    box = (13.0, 45.0, 15.4, 46.4)
    scale = 2_000_000
    r = client.get(f"{plots}/map", params={"bbox": ",".join(map(str, box)),
                                          "scale-denominator": scale})  # fmt: skip
    pixels = decoded(r)
    geod = pyproj.Geod(ellps="WGS84")
    middle_lat, middle_lon = (box[1] + box[3]) / 2, (box[0] + box[2]) / 2
    across = shapely.segmentize(shapely.LineString([(box[0], middle_lat),
                                                    (box[2], middle_lat)]), 0.01)  # fmt: skip
    down = shapely.LineString([(middle_lon, box[1]), (middle_lon, box[3])])
    metres_per_pixel = 0.28e-3 * scale
    expected = (geod.geometry_length(down) / metres_per_pixel,
                geod.geometry_length(across) / metres_per_pixel)  # fmt: skip
    assert abs(pixels.shape[0] - expected[0]) <= 1 and abs(pixels.shape[1] - expected[1]) <= 1
    # the same ground in Web Mercator: about the same size
    mercator = decoded(
        client.get(
            f"{plots}/map",
            params={
                "bbox": ",".join(map(str, box)),
                "scale-denominator": scale,
                "crs": "EPSG:3857",
            },
        )
    )
    assert abs(mercator.shape[1] - pixels.shape[1]) <= 2
    for params, status, code in [
        ({"scale-denominator": scale, "width": 100}, 400, "request.InvalidParameter"),
        ({"scale-denominator": 10, "bbox": "13,45,15,46"}, 413, "maps.TooLarge"),
        ({"scale-denominator": 0}, 400, None),
        ({"width": 0}, 400, None),
    ]:
        r = client.get(f"{plots}/map", params=params)
        assert r.status_code == status, (params, r.text)
        assert code is None or r.json()["code"] == code


def test_the_format_is_negotiated(client: TestClient, plots: str) -> None:
    for accept, media_type in [(None, "image/png"), ("image/jpeg", "image/jpeg"),
                               ("image/png;q=0.5, image/jpeg", "image/jpeg"),
                               ("image/*", "image/png"), ("*/*", "image/png")]:  # fmt: skip
        headers = {"Accept": accept} if accept else {}
        r = client.get(f"{plots}/map", params={"width": 50}, headers=headers)
        assert r.headers["content-type"] == media_type, accept
        assert decoded(r).shape[1] == 50
        assert "Accept" in r.headers["vary"]
    r = client.get(f"{plots}/map", headers={"Accept": "image/tiff"})
    assert r.status_code == 406 and r.json()["code"] == "maps.NotAcceptable"
    r = client.get(f"{plots}/map", params={"f": "jpeg"}, headers={"Accept": "image/png"})
    assert r.headers["content-type"] == "image/jpeg"  # f wins


def test_content_datetime_is_the_time_drawn(client: TestClient, plots: str) -> None:
    r = client.get(f"{plots}/map", params={"width": 60, "datetime": "2024-06-01T00:00:00Z/.."})
    assert r.headers["content-datetime"] == "2024-06-01T00:00:00Z/.."
    only = decoded(r)
    first = SQUARES[0].centroid
    assert pixel(r, only, first.x, first.y)[3] == 0  # seen before June: not drawn
    assert pixel(r, only, SQUARES[1].centroid.x, SQUARES[1].centroid.y)[3] > 0
