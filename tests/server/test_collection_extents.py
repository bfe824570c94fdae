"""A collection's extent follows its items through every kind of write (migration 0005)."""

import functools
import json
from typing import Any

import pystac
import pytest
import shapely.geometry
from fastapi.testclient import TestClient
from pystac.validation import JsonSchemaSTACValidator, set_validator

from catalog.stac.validation import SCHEMA_DIR, _urlmap
from tests.factories import collection, item

DECLARED_BBOX = [-180.0, -90.0, 180.0, 90.0]
DECLARED_INTERVAL = ["2020-01-01T00:00:00Z", None]


def items_extent(client: TestClient, cid: str) -> tuple[list[float], list[str]] | None:
    """The extent of the collection's items, brute force over all of them."""
    features = client.get(f"/collections/{cid}/items", params={"limit": 1000}).json()["features"]
    if not features:
        return None
    bounds = [shapely.geometry.shape(f["geometry"]).bounds for f in features]
    box = [min(b[0] for b in bounds), min(b[1] for b in bounds),
           max(b[2] for b in bounds), max(b[3] for b in bounds)]  # fmt: skip
    starts = [f["properties"].get("start_datetime") or f["properties"]["datetime"]
              for f in features]  # fmt: skip
    ends = [f["properties"].get("end_datetime") or f["properties"]["datetime"] for f in features]
    return box, [min(starts), max(ends)]


@functools.cache
def _offline_validator() -> JsonSchemaSTACValidator:
    """pystac's validator on catalog/schemas: served collections declare the authentication
    extension, whose schema pystac does not bundle."""
    validator = JsonSchemaSTACValidator()
    for url, relative in _urlmap().items():
        validator.schema_cache[url] = json.loads((SCHEMA_DIR / relative).read_text())
    return validator


def served_extent(client: TestClient, cid: str) -> tuple[list[float], list[Any]]:
    doc = client.get(f"/collections/{cid}").json()
    set_validator(_offline_validator())
    try:
        pystac.Collection.from_dict({**doc, "links": []}).validate()  # offline STAC schemas
    finally:
        set_validator(JsonSchemaSTACValidator())
    return doc["extent"]["spatial"]["bbox"][0], doc["extent"]["temporal"]["interval"][0]


def assert_follows_items(client: TestClient, cid: str) -> None:
    expected = items_extent(client, cid)
    box, interval = served_extent(client, cid)
    if expected is None:
        assert (box, interval) == (DECLARED_BBOX, DECLARED_INTERVAL)
        return
    assert box == pytest.approx(expected[0], abs=1e-9)
    assert interval == expected[1]
    tilejson = client.get(f"/collections/{cid}/tiles/WebMercatorQuad/tilejson.json").json()
    assert tilejson["bounds"] == pytest.approx(expected[0], abs=1e-9)
    west, south, east, north = expected[0]
    assert tilejson["center"][:2] == pytest.approx([(west + east) / 2, (south + north) / 2])


def found_by_bbox(client: TestClient, bbox: list[float]) -> list[str]:
    r = client.get("/collections", params={"bbox": ",".join(map(str, bbox))})
    return [c["id"] for c in r.json()["collections"]]


def test_extent_follows_transactions_and_bulk(
    client: TestClient, admin: dict[str, str], offline_network: Any
) -> None:
    assert client.post("/collections", json=collection("c1"), headers=admin).status_code == 201
    assert_follows_items(client, "c1")  # no items: the extent as given
    r = client.post("/collections/c1/items", json=item("a", 10, 45, "2021-06-01T10:00:00Z"),
                    headers=admin)  # fmt: skip
    assert r.status_code == 201
    assert served_extent(client, "c1") == (
        [10, 45, 10.5, 45.5],
        ["2021-06-01T10:00:00Z", "2021-06-01T10:00:00Z"],
    )
    fc = {"type": "FeatureCollection", "features": [
        item("b", -3, 40, "2019-02-03T04:05:06.5Z"),
        item("c", 20, 50, "2022-01-01T00:00:00Z", start_datetime="2022-01-01T00:00:00Z",
             end_datetime="2022-12-31T23:59:59Z"),
    ]}  # fmt: skip
    assert client.post("/collections/c1/items", json=fc, headers=admin).status_code == 201
    assert_follows_items(client, "c1")
    assert served_extent(client, "c1")[1] == ["2019-02-03T04:05:06.5Z", "2022-12-31T23:59:59Z"]
    assert found_by_bbox(client, [-3.2, 39.8, -2.9, 40.1]) == ["c1"]
    assert found_by_bbox(client, [100, 0, 101, 1]) == []  # no longer the whole world

    # Replacing the item on an edge with one inside shrinks the extent; patching widens it.
    inside = item("c", 5, 44, "2021-01-01T00:00:00Z")
    assert client.put("/collections/c1/items/c", json=inside, headers=admin).status_code == 204
    assert_follows_items(client, "c1")
    patch = {"properties": {"datetime": "2023-03-03T00:00:00Z"}}
    assert client.patch("/collections/c1/items/a", json=patch, headers=admin).status_code == 204
    assert_follows_items(client, "c1")

    bulk = {"items": {f"k{n}": item(f"k{n}", -60 + n, -30 + n, f"2018-0{n + 1}-01T00:00:00Z")
                      for n in range(3)}, "method": "insert"}  # fmt: skip
    assert client.post("/collections/c1/bulk_items", json=bulk, headers=admin).status_code == 200
    assert_follows_items(client, "c1")
    bulk = {"items": {"k0": item("k0", 1, 1, "2021-01-01T00:00:00Z")}, "method": "upsert"}
    assert client.post("/collections/c1/bulk_items", json=bulk, headers=admin).status_code == 200
    assert_follows_items(client, "c1")

    for item_id in ("b", "a", "k1"):  # each on an edge when deleted
        assert client.delete(f"/collections/c1/items/{item_id}", headers=admin).status_code == 204
        assert_follows_items(client, "c1")
    assert client.delete("/collections/c1/items/c", headers=admin).status_code == 204  # inside
    assert_follows_items(client, "c1")

    # Writing the collection keeps its items' extent; its declared extent stays as written.
    r = client.patch("/collections/c1", json={"title": "Patched"},
                     headers={**admin, "Prefer": "return=representation"})  # fmt: skip
    assert r.status_code == 200
    assert r.json()["extent"]["spatial"]["bbox"][0] == pytest.approx([-58, -28, 1.5, 1.5])
    assert client.put("/collections/c1", json=collection("c1", title="Put"),
                      headers=admin).status_code == 204  # fmt: skip
    assert_follows_items(client, "c1")
    for item_id in ("k0", "k2"):
        assert client.delete(f"/collections/c1/items/{item_id}", headers=admin).status_code == 204
    assert_follows_items(client, "c1")  # empty again: the declared extent


def test_extent_across_the_antimeridian(
    client: TestClient, admin: dict[str, str], offline_network: Any
) -> None:
    assert client.post("/collections", json=collection("fiji"), headers=admin).status_code == 201
    crossing = item("crossing", when="2024-01-01T00:00:00Z")
    crossing["geometry"]["coordinates"] = [[[179.5, -17], [-179.5, -17], [-179.5, -16],
                                            [179.5, -16], [179.5, -17]]]  # fmt: skip
    crossing["bbox"] = [179.5, -17, -179.5, -16]
    fc = {"type": "FeatureCollection",
          "features": [crossing, item("east", 178, -19, "2024-02-01T00:00:00Z")]}  # fmt: skip
    assert client.post("/collections/fiji/items", json=fc, headers=admin).status_code == 201
    box, _ = served_extent(client, "fiji")
    assert box == pytest.approx([178, -19, -179.5, -16])  # west > east: crosses 180
    assert found_by_bbox(client, [-179.8, -17, -179.6, -16.5]) == ["fiji"]
    assert found_by_bbox(client, [0, -17, 1, -16]) == []
    tilejson = client.get("/collections/fiji/tiles/WebMercatorQuad/tilejson.json").json()
    assert tilejson["center"][:2] == pytest.approx([179.25, -17.5])  # not at longitude 0

    # An item around longitude 0 as well: no narrower box than the whole width.
    r = client.post("/collections/fiji/items", json=item("zero", -1, -18, size=2), headers=admin)
    assert r.status_code == 201
    assert served_extent(client, "fiji")[0] == pytest.approx([-180, -19, 180, -16])
    assert client.delete("/collections/fiji/items/zero", headers=admin).status_code == 204
    assert served_extent(client, "fiji")[0] == pytest.approx([178, -19, -179.5, -16])


def test_an_edge_shared_by_two_items_stays_until_both_go(
    client: TestClient, admin: dict[str, str], offline_network: Any
) -> None:
    assert client.post("/collections", json=collection("grid"), headers=admin).status_code == 201
    tiles = [item(f"r{row}c{n}", lon=n * 0.5, lat=row * 0.5, when=f"202{row}-01-01T00:00:00Z")
             for n in range(3) for row in range(2)]  # fmt: skip
    fc = {"type": "FeatureCollection", "features": tiles}
    assert client.post("/collections/grid/items", json=fc, headers=admin).status_code == 201
    whole = served_extent(client, "grid")
    r = client.delete("/collections/grid/items/r0c0", headers=admin)  # west, south, first
    assert r.status_code == 204 and served_extent(client, "grid") == whole  # all still reached
    for item_id in ("r1c0", "r0c2", "r0c1"):  # the west edge goes; the east stays; row 0 goes
        assert client.delete(f"/collections/grid/items/{item_id}", headers=admin).status_code == 204
        assert_follows_items(client, "grid")
    assert served_extent(client, "grid") == (
        [0.5, 0.5, 1.5, 1.0],
        ["2021-01-01T00:00:00Z", "2021-01-01T00:00:00Z"],
    )


def test_items_without_geometry_keep_the_declared_bbox(
    client: TestClient, admin: dict[str, str], offline_network: Any
) -> None:
    doc = collection("nogeo", bbox=[5, 5, 6, 6])
    assert client.post("/collections", json=doc, headers=admin).status_code == 201
    bare = {**item("bare", when="2022-02-02T00:00:00Z"), "geometry": None}
    del bare["bbox"]
    assert client.post("/collections/nogeo/items", json=bare, headers=admin).status_code == 201
    assert served_extent(client, "nogeo") == (
        [5, 5, 6, 6],
        ["2022-02-02T00:00:00Z", "2022-02-02T00:00:00Z"],
    )
