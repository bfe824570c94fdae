"""Pictures on the map: points with their heading in the collection's vector tiles, sequence
lines (GeoJSON and vector tiles), the nearest pictures, the generated MapLibre style."""

import datetime as dt
import gzip
import math
from typing import Any

import mapbox_vector_tile
import morecantile
import numpy as np
import pytest
from fastapi.testclient import TestClient

from server.settings import Settings
from tests.catalog.vector_uploads import start_worker
from tests.server.test_styles import maplibre_errors
from tests.workers import MakeWorker

from .photos import along, haversine, photo
from .uploads import new_set, ready, send

START = dt.datetime(2026, 6, 1, 8, 0, tzinfo=dt.UTC)
ORIGIN = (5.0, 45.0)
WEB = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture
def mapped(
    client: TestClient, admin: dict[str, str], settings: Settings, make_worker: MakeWorker
) -> dict[str, tuple[float, float]]:
    """Two sequences of 4 pictures 10 m apart, heading east then west, 20 minutes apart: the
    positions by item id."""
    start_worker(settings, make_worker)
    set_id = new_set(client, admin, "walk")
    where = {}
    for n in range(8):
        heading, metres = (90.0, 10.0 * n) if n < 4 else (270.0, 10.0 * (7 - n))
        point = along(*ORIGIN, metres)
        when = START + dt.timedelta(seconds=n + (1200 if n >= 4 else 0))
        # the way back runs 20 m north of the way out
        point = (point[0], point[1] + (0.00018 if n >= 4 else 0.0))
        send(client, admin, set_id, f"w{n}.jpg", photo(*point, when=when, heading=heading, seed=n))
        where[f"w{n}"] = point
    doc = ready(client, admin, set_id)
    assert doc["counts"]["ready"] == 8, doc["files"]
    return where


def _decode(content: bytes) -> dict[str, Any]:
    if content[:2] == b"\x1f\x8b":
        content = gzip.decompress(content)
    return mapbox_vector_tile.decode(content, default_options={"y_coord_down": True})


def _pixel(tile: morecantile.Tile, lon: float, lat: float) -> tuple[float, float]:
    """Where lon/lat falls in the tile, in MVT units (4096 a side, y down)."""
    box = WEB.xy_bounds(tile)
    x, y = WEB.xy(lon, lat)
    return ((x - box.left) / (box.right - box.left) * 4096,
            (box.top - y) / (box.top - box.bottom) * 4096)  # fmt: skip


def test_points_carry_their_heading(
    client: TestClient, admin: dict[str, str], mapped: dict[str, tuple[float, float]]
) -> None:
    tile = WEB.tile(*mapped["w1"], 17)
    r = client.get(f"/collections/walk/items/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}",
                   headers=admin)  # fmt: skip
    assert r.status_code == 200, r.text
    found = {f["properties"]["id"]: f for f in _decode(r.content)["walk"]["features"]}
    assert set(found) == set(mapped)  # 80 m of street fit in a z17 tile (~300 m)
    sequences = {f["properties"]["terracat:sequence"] for f in found.values()}
    assert len(sequences) == 2
    for item_id, (lon, lat) in mapped.items():
        feature = found[item_id]
        assert feature["geometry"]["type"] == "Point"
        assert feature["properties"]["view:azimuth"] == (90 if int(item_id[1]) < 4 else 270)
        x, y = feature["geometry"]["coordinates"]
        px, py = _pixel(tile, lon, lat)
        assert abs(x - px) <= 1 and abs(y - py) <= 1


def test_sequence_lines(
    client: TestClient, admin: dict[str, str], mapped: dict[str, tuple[float, float]]
) -> None:
    r = client.get("/collections/walk/sequences", headers=admin)
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    lines = {tuple(f["properties"]["items"]): f for f in r.json()["features"]}
    out, back = ("w0", "w1", "w2", "w3"), ("w4", "w5", "w6", "w7")
    assert set(lines) == {out, back}
    for ids, feature in lines.items():
        assert feature["geometry"]["type"] == "LineString"
        want = np.array([mapped[i] for i in ids])  # EXIF keeps 1e-4 s of arc: 3 mm
        assert np.allclose(feature["geometry"]["coordinates"], want, rtol=0, atol=1e-7)
        assert feature["properties"]["picture_count"] == 4
        links = {lk["rel"]: lk["href"] for lk in feature["links"]}
        assert client.get(links["first"], headers=admin).json()["id"] == ids[0]
        assert client.get(links["self"], headers=admin).json() == feature
    tile = WEB.tile(*mapped["w0"], 16)
    r = client.get(f"/collections/walk/sequences/tiles/WebMercatorQuad/{tile.z}/{tile.x}/"
                   f"{tile.y}", headers=admin)  # fmt: skip
    assert r.status_code == 200, r.text
    decoded = _decode(r.content)["sequences"]["features"]
    assert sorted(f["properties"]["picture_count"] for f in decoded) == [4, 4]
    for feature in decoded:
        assert feature["geometry"]["type"] == "LineString"
        start = feature["geometry"]["coordinates"][0]
        ids = lines_by_id(lines)[feature["properties"]["id"]]
        px, py = _pixel(tile, *mapped[ids[0]])
        assert math.dist(start, (px, py)) <= 1.5
    empty = WEB.tile(-100.0, 40.0, 16)
    r = client.get(f"/collections/walk/sequences/tiles/WebMercatorQuad/16/{empty.x}/{empty.y}",
                   headers=admin)  # fmt: skip
    assert r.status_code == 204
    assert client.get("/collections/nope/sequences", headers=admin).status_code == 404
    for missing in ("not-a-uuid", "7f0b3f2e-6a3c-4d8e-9b1a-2c3d4e5f6a7b"):
        r = client.get(f"/collections/walk/sequences/{missing}", headers=admin)
        assert r.status_code == 404 and r.json()["code"] == "catalog.NotFound"
    bad = client.get("/collections/walk/sequences/tiles/WebMercatorQuad/3/9/0", headers=admin)
    assert bad.status_code == 404 and bad.json()["code"] == "tiles.InvalidTile"


def lines_by_id(lines: dict[tuple[str, ...], Any]) -> dict[str, tuple[str, ...]]:
    """Item ids of each sequence, by sequence id."""
    return {f["id"]: ids for ids, f in lines.items()}


def test_nearest_pictures(
    client: TestClient, admin: dict[str, str], mapped: dict[str, tuple[float, float]]
) -> None:
    here = along(*ORIGIN, 12.0)
    r = client.get("/collections/walk/pictures/nearest", headers=admin,
                   params={"lon": here[0], "lat": here[1], "limit": 3})  # fmt: skip
    assert r.status_code == 200, r.text
    got = [(f["id"], f["properties"]["distance"]) for f in r.json()["features"]]
    want = sorted(((i, haversine(here, p)) for i, p in mapped.items()), key=lambda t: t[1])[:3]
    assert [i for i, _ in got] == [i for i, _ in want]
    for (_, d), (_, w) in zip(got, want, strict=True):
        assert d == pytest.approx(w, rel=0.01)  # PostGIS on the spheroid, the test on a sphere
    r = client.get("/collections/walk/pictures/nearest", headers=admin,
                   params={"lon": here[0], "lat": here[1], "max_distance": 5})  # fmt: skip
    assert [f["id"] for f in r.json()["features"]] == ["w1"]
    r = client.get("/collections/walk/pictures/nearest", headers=admin,
                   params={"lon": 200, "lat": 0})  # fmt: skip
    assert r.status_code == 400


def test_style_draws_pictures_and_sequences(
    client: TestClient, admin: dict[str, str], mapped: dict[str, tuple[float, float]]
) -> None:
    style = client.get("/collections/walk/styles/default", headers=admin).json()
    assert maplibre_errors(style) == []
    kinds = {layer["id"]: layer["type"] for layer in style["layers"]}
    assert kinds == {"walk-sequences": "line", "walk-pictures": "circle"}
    template = style["sources"]["walk-sequences"]["tiles"][0]
    tile = WEB.tile(*mapped["w0"], 16)
    url = template.format(z=tile.z, x=tile.x, y=tile.y)
    assert url.startswith("http") and client.get(url, headers=admin).status_code == 200
    tilejson = client.get(style["sources"]["walk-pictures"]["url"], headers=admin)
    assert tilejson.status_code == 200
    fields = tilejson.json()["vector_layers"][0]["fields"]
    assert fields["view:azimuth"] == "Number" and fields["terracat:sequence"] == "String"
