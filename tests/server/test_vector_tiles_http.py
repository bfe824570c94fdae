"""Footprint vector tiles on the wire (issue 14 #2): gzip when accepted, ETag and 304, caching
headers, and a dense low-zoom tile that stays small without losing a visible footprint."""

import random
from typing import Any

import mapbox_vector_tile
import morecantile
import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient

from tests.factories import collection, item

WEB = morecantile.tms.get("WebMercatorQuad")
PATH = "/collections/c1/items/tiles/WebMercatorQuad/{z}/{x}/{y}.mvt"
TILE = WEB.tile(10.5, 45.5, 6)


def bulk(client: TestClient, admin: dict[str, str], docs: list[dict[str, Any]]) -> None:
    if client.get("/collections/c1").status_code == 404:
        r = client.post("/collections", json=collection("c1"), headers=admin)
        assert r.status_code == 201, r.text
    for start in range(0, len(docs), 2500):
        body = {"items": {d["id"]: d for d in docs[start : start + 2500]}, "method": "insert"}
        r = client.post("/collections/c1/bulk_items", json=body, headers=admin)
        assert r.status_code == 200, r.text


def ids(content: bytes) -> set[str]:
    layers = mapbox_vector_tile.decode(content) if content else {}
    return {f["properties"]["id"] for layer in layers.values() for f in layer["features"]}


def _cluster(n: int) -> list[dict[str, Any]]:
    """``n`` small footprints around (10.5, 45.5), all inside TILE."""
    rng = random.Random(3)
    return [
        item(f"i{i:03d}", 10.0 + rng.random(), 45.0 + rng.random(), size=0.05,
             platform=f"sat-{i % 3}", gsd=10.0, **{"eo:cloud_cover": float(i % 90)})
        for i in range(n)
    ]  # fmt: skip


def test_tile_is_gzipped_when_the_client_accepts_gzip(
    client: TestClient, admin: dict[str, str]
) -> None:
    bulk(client, admin, _cluster(60))
    path = PATH.format(z=TILE.z, x=TILE.x, y=TILE.y)
    plain = client.get(path, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200, plain.text
    assert "content-encoding" not in plain.headers
    assert len(ids(plain.content)) == 60
    zipped = client.get(path, headers={"Accept-Encoding": "br, gzip, deflate"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in zipped.headers["vary"].lower()
    assert zipped.content == plain.content  # decoded by the client: the same tile
    assert zipped.num_bytes_downloaded < len(plain.content) / 2
    refused = client.get(path, headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in refused.headers
    assert refused.content == plain.content
    # A tile of one small footprint is not worth compressing.
    lone = WEB.tile(100.5, -30.5, 6)
    bulk(client, admin, [item("lone", 100.2, -30.8, size=0.5)])
    small = client.get(
        PATH.format(z=lone.z, x=lone.x, y=lone.y), headers={"Accept-Encoding": "gzip"}
    )
    assert small.status_code == 200 and "content-encoding" not in small.headers
    assert ids(small.content) == {"lone"}


def test_etag_answers_if_none_match_with_304_until_the_tile_changes(
    client: TestClient, admin: dict[str, str]
) -> None:
    bulk(client, admin, _cluster(30))
    path = PATH.format(z=TILE.z, x=TILE.x, y=TILE.y)
    gz = {"Accept-Encoding": "gzip"}
    first = client.get(path, headers=gz)
    etag = first.headers["etag"]
    assert etag.startswith('"') and first.headers["cache-control"] == "public, max-age=60"
    again = client.get(path, headers={**gz, "If-None-Match": f'"other", {etag}'})
    assert again.status_code == 304
    assert again.content == b"" and again.headers["etag"] == etag
    # The same tile without gzip is another representation with its own strong ETag, yet
    # a cache holding the gzipped one still has the tile.
    plain = client.get(path, headers={"Accept-Encoding": "identity", "If-None-Match": etag})
    assert plain.status_code == 304 and plain.headers["etag"] not in ("", etag)
    bulk(client, admin, [item("new", 10.2, 45.2, size=0.1)])
    changed = client.get(path, headers={**gz, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert "new" in ids(changed.content)
    empty = client.get(PATH.format(z=6, x=0, y=0), headers=gz)
    assert empty.status_code == 204 and empty.headers["cache-control"] == "public, max-age=60"
    assert client.get(path, headers={"If-None-Match": empty.headers["etag"]}).status_code == 200


def test_a_footprint_about_one_tile_unit_wide_stays_at_z0(
    client: TestClient, admin: dict[str, str]
) -> None:
    # 0.1 degree is ~1.1 of the 4096 units of the z0 tile: Douglas-Peucker simplification
    # flattened it and the tile came back empty.
    bulk(client, admin, [item("speck", 10.0, 45.0, size=0.1)])
    r = client.get(PATH.format(z=0, x=0, y=0))
    assert r.status_code == 200 and ids(r.content) == {"speck"}


def _world(n: int) -> list[dict[str, Any]]:
    """``n`` footprints over the world, 0.02 to 1 degree wide (a z2 pixel is ~0.18 degree)."""
    rng = random.Random(14)
    return [
        item(f"w{i:05d}", rng.uniform(-179.0, 178.0), rng.uniform(-75.0, 74.0),
             when=f"2021-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00Z",
             size=rng.choice((0.02, 0.2, 0.5, 1.0)), platform=f"sat-{i % 5}", gsd=10.0,
             **{"eo:cloud_cover": float(i % 100)})
        for i in range(n)
    ]  # fmt: skip


@pytest.mark.parametrize("z", [2])
def test_dense_low_zoom_tiles_stay_small_and_keep_every_visible_footprint(
    client: TestClient, admin: dict[str, str], z: int
) -> None:
    docs = _world(10_000)
    bulk(client, admin, docs)
    shapes = np.array([shapely.geometry.shape(d["geometry"]) for d in docs])
    sizes = np.array([d["bbox"][2] - d["bbox"][0] for d in docs])
    names = np.array([d["id"] for d in docs])
    for tile in WEB.tiles(-180, -85, 180, 85, [z]):
        r = client.get(
            PATH.format(z=tile.z, x=tile.x, y=tile.y), headers={"Accept-Encoding": "gzip"}
        )
        assert r.status_code in (200, 204), r.text
        assert len(r.content) <= 250_000, (tile, len(r.content))
        west, south, east, north = WEB.bounds(tile)
        # A footprint at least a pixel wide (of a tile drawn 512 pixels wide) must be drawn.
        pixel = (east - west) / 512
        meets = shapely.intersects(shapes, shapely.box(west, south, east, north))
        visible = set(names[meets & (sizes >= pixel)])
        got = ids(r.content)
        assert visible <= got, (tile, sorted(visible - got)[:5])
