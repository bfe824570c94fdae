"""Bulk loads: an outcome per item, the all-or-nothing option, antimeridian normalisation."""

from typing import Any

import shapely.geometry
from fastapi.testclient import TestClient

from tests.factories import collection, item
from tests.server.test_collection_extents import assert_follows_items, served_extent


def _setup(client: TestClient, admin: dict[str, str], cid: str = "c1") -> None:
    r = client.post("/collections", json=collection(cid), headers=admin)
    assert r.status_code == 201, r.text


def _ids(client: TestClient, **params: Any) -> list[str]:
    r = client.get("/search", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return sorted(f["id"] for f in r.json()["features"])


def _mixed_batch() -> dict[str, Any]:
    """Ten valid items with three invalid ones (and one existing id) among them."""
    batch: dict[str, Any] = {f"ok{n}": item(f"ok{n}", lon=n, lat=n) for n in range(10)}
    batch["ok3"] = item("ok3", lon=3, lat=3, when="yesterday")  # bad datetime
    # Far out west: stored, it would widen the collection's extent; refused, it must not.
    batch["ok6"] = item("ok6", lon=-170, lat=-60, **{"eo:cloud_cover": "cloudy"})
    batch["key"] = item("not-key")
    batch["old"] = item("old", lon=1, lat=1)
    return batch


def test_valid_items_are_stored_and_each_refused_one_reported(
    client: TestClient, admin: dict[str, str]
) -> None:
    _setup(client, admin)
    r = client.post("/collections/c1/items", json=item("old", lon=2, lat=2), headers=admin)
    assert r.status_code == 201
    r = client.post("/collections/c1/bulk_items", json={"items": _mixed_batch()}, headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["received"], body["success"], body["skipped"]) == (12, 8, 4)
    refused = {e["index"]: e for e in body["errors"]}
    assert sorted(refused) == [3, 6, 10, 11]
    assert [refused[i]["id"] for i in (3, 6, 10, 11)] == ["ok3", "ok6", "key", "old"]
    assert [refused[i]["code"] for i in (3, 6, 10, 11)] == [
        "stac.Invalid", "stac.Invalid", "stac.Invalid", "catalog.Conflict",
    ]  # fmt: skip
    assert "datetime" in refused[3]["reason"]
    assert "eo" in refused[6]["reason"] and refused[6]["path"] == "properties.eo:cloud_cover"
    assert "differs from its id" in refused[10]["reason"]
    assert "already exists" in refused[11]["reason"]
    assert all(e["msg"] == e["reason"] for e in body["errors"])  # stac-fastapi's field
    assert body["normalised"] == []

    stored = [f"ok{n}" for n in range(10) if n not in (3, 6)]
    assert _ids(client) == sorted([*stored, "old"])
    # The existing item was left as it was, and the extent is that of what was stored.
    assert client.get("/collections/c1/items/old").json()["bbox"] == [2, 2, 2.5, 2.5]
    assert_follows_items(client, "c1")
    assert served_extent(client, "c1")[0] == [0, 0, 9.5, 9.5]


def test_atomic_batch_stores_nothing_unless_all_pass(
    client: TestClient, admin: dict[str, str]
) -> None:
    _setup(client, admin)
    assert client.post("/collections/c1/items", json=item("old"), headers=admin).status_code == 201
    body = {"items": _mixed_batch(), "atomic": True}
    r = client.post("/collections/c1/bulk_items", json=body, headers=admin)
    assert r.status_code == 400 and r.json()["code"] == "stac.Invalid"
    assert [e["index"] for e in r.json()["errors"]] == [3, 6, 10]
    assert _ids(client) == ["old"]

    # Only an existing id wrong: still nothing stored, as before per-item outcomes.
    clash = {"items": {"new1": item("new1"), "old": item("old")}, "atomic": True}
    r = client.post("/collections/c1/bulk_items", json=clash, headers=admin)
    assert r.status_code == 409 and r.json()["code"] == "catalog.Conflict"
    assert r.json()["ids"] == ["old"]
    assert _ids(client) == ["old"]

    ok = {"items": {"new1": item("new1")}, "atomic": True}
    r = client.post("/collections/c1/bulk_items", json=ok, headers=admin)
    assert r.status_code == 200 and r.json()["success"] == 1 and r.json()["errors"] == []


def test_upsert_with_an_invalid_item(client: TestClient, admin: dict[str, str]) -> None:
    _setup(client, admin)
    first = {"items": {"a": item("a"), "b": item("b")}}
    assert (
        client.post("/collections/c1/bulk_items", json=first, headers=admin).json()["success"] == 2
    )
    again = {
        "items": {"a": item("a", lon=20), "bad": {"type": "Feature"}, "c": item("c")},
        "method": "upsert",
    }
    r = client.post("/collections/c1/bulk_items", json=again, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["success"] == 2
    assert [(e["index"], e["id"], e["code"]) for e in r.json()["errors"]] == [
        (1, "bad", "stac.Invalid")
    ]
    assert client.get("/collections/c1/items/a").json()["bbox"][0] == 20
    assert _ids(client) == ["a", "b", "c"]


def test_longitudes_beyond_180_are_normalised(client: TestClient, admin: dict[str, str]) -> None:
    _setup(client, admin)
    across = item("across", lon=178, lat=10, size=7)  # 178 .. 185 east
    west_side = item("west-side", lon=-186, lat=-20, size=4)  # -186 .. -182
    batch = {"items": {"plain": item("plain"), "across": across, "west-side": west_side}}
    r = client.post("/collections/c1/bulk_items", json=batch, headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] == 3 and body["errors"] == []
    assert [(n["index"], n["id"], n["code"]) for n in body["normalised"]] == [
        (1, "across", "stac.Normalised"), (2, "west-side", "stac.Normalised"),
    ]  # fmt: skip

    stored = client.get("/collections/c1/items/across").json()
    shape = shapely.geometry.shape(stored["geometry"])
    assert stored["geometry"]["type"] == "MultiPolygon" and shape.is_valid
    assert shape.area == 49.0  # nothing lost in the split
    assert stored["bbox"] == [178, 10, -175, 17]  # west > east: across the antimeridian
    assert shapely.geometry.shape(
        client.get("/collections/c1/items/west-side").json()["geometry"]
    ).bounds == (174, -20, 178, -16)

    # Found from either side of the antimeridian, and not from the middle of the map.
    assert _ids(client, bbox="179,11,179.5,12") == ["across"]
    assert _ids(client, bbox="-177,11,-176,12") == ["across"]
    assert _ids(client, bbox="175,-19,176,-18") == ["west-side"]
    assert _ids(client, bbox="-10,11,0,12") == []
    # The collection's extent crosses the antimeridian too.
    west, south, east, north = served_extent(client, "c1")[0]
    assert west > east and (west, south, east, north) == (10, -20, -175, 45.5)


def test_lines_beyond_180_are_refused(client: TestClient, admin: dict[str, str]) -> None:
    _setup(client, admin)
    line = {**item("line"), "geometry": {"type": "LineString", "coordinates": [[179, 0], [185, 1]]}}
    del line["bbox"]
    r = client.post("/collections/c1/bulk_items", json={"items": {"line": line}}, headers=admin)
    assert r.status_code == 200 and r.json()["success"] == 0
    assert r.json()["errors"][0]["code"] == "stac.Invalid"
    assert "[-180, 180]" in r.json()["errors"][0]["reason"]


def test_batch_of_unusual_items(client: TestClient, admin: dict[str, str]) -> None:
    """Items off the batch's fast path (not a plain polygon) are read one by one, as alone."""
    _setup(client, admin)
    bowtie = item("bowtie")
    bowtie["geometry"]["coordinates"] = [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]
    del bowtie["bbox"]
    holed = item("holed", lon=0, lat=0, size=4)
    holed["geometry"]["coordinates"].append([[1, 1], [2, 1], [2, 2], [1, 2], [1, 1]])
    point = {**item("point"), "geometry": {"type": "Point", "coordinates": [185, 5]}}
    del point["bbox"]
    nul = item("nul", title="bad\u0000title")
    batch = {"bowtie": bowtie, "holed": holed, "point": point, "nul": nul}
    r = client.post("/collections/c1/bulk_items", json={"items": batch}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["success"] == 3
    assert [(e["index"], e["code"]) for e in r.json()["errors"]] == [(3, "request.InvalidValue")]
    assert [n["id"] for n in r.json()["normalised"]] == ["point"]
    stored = client.get("/collections/c1/items/bowtie").json()
    assert stored["geometry"]["type"] == "MultiPolygon" and stored["bbox"] == [0, 0, 1, 1]
    assert (
        shapely.geometry.shape(client.get("/collections/c1/items/holed").json()["geometry"]).area
        == 15
    )
    assert client.get("/collections/c1/items/point").json()["geometry"]["coordinates"] == [-175, 5]
    assert _ids(client, bbox="1.2,1.2,1.8,1.8") == []  # the hole


def _unusual_values() -> dict[str, Any]:
    """Items whose values test each column of the bulk COPY: time zones, microseconds, the
    first and last years, a null geometry, text beyond ASCII, large and fractional numbers."""
    offset = item("offset", when="2024-02-29T23:59:59.123456+02:00", title="Zürich 東京 🛰")
    offset["properties"].update({"big": 2**62, "small": -1.5e-300, "nested": [[1, None], {}]})
    edges = item("edges", when="0001-01-01T00:00:00Z")
    edges["properties"].update(
        {"start_datetime": "0001-01-01T00:00:00Z", "end_datetime": "9999-12-31T23:59:59.999999Z"}
    )
    nowhere = {**item("nowhere"), "geometry": None}
    del nowhere["bbox"]
    return {"offset": offset, "edges": edges, "nowhere": nowhere}


def test_bulk_items_read_back_as_items_written_alone(
    client: TestClient, admin: dict[str, str]
) -> None:
    _setup(client, admin, "bulk")
    _setup(client, admin, "alone")
    batch = _unusual_values()
    r = client.post("/collections/bulk/bulk_items", json={"items": batch}, headers=admin)
    assert r.status_code == 200 and r.json()["success"] == 3, r.text
    for doc in batch.values():
        r = client.post("/collections/alone/items", json=doc, headers=admin)
        assert r.status_code == 201, r.text
    for item_id in batch:
        bulk = client.get(f"/collections/bulk/items/{item_id}").json()
        alone = client.get(f"/collections/alone/items/{item_id}").json()
        for key in ("geometry", "bbox", "properties", "assets", "stac_extensions"):
            assert bulk.get(key) == alone.get(key), (item_id, key)
    offset = client.get("/collections/bulk/items/offset").json()["properties"]
    assert offset["big"] == 2**62 and offset["title"] == "Zürich 東京 🛰"
    # The stored instant is the same moment in UTC, to the microsecond ("edges" spans all).
    at = _ids(client, collections="bulk", datetime="2024-02-29T21:59:59.123456Z")
    after = _ids(client, collections="bulk", datetime="2024-02-29T21:59:59.123457Z")
    assert (at, after) == (["edges", "offset"], ["edges"])
    assert _ids(client, collections="bulk", datetime="9999-12-31T23:59:59.999999Z") == ["edges"]
