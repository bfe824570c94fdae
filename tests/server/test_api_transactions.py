"""Transactions: collections and items created, replaced, patched, deleted; bulk load."""

from fastapi.testclient import TestClient

from tests.factories import collection, item


def _setup(client: TestClient, admin: dict[str, str], cid: str = "c1") -> None:
    r = client.post("/collections", json=collection(cid), headers=admin)
    assert r.status_code == 201, r.text


def test_collection_lifecycle(client: TestClient, admin: dict[str, str]) -> None:
    r = client.post("/collections", json=collection("s2", keywords=["optical"]), headers=admin)
    assert r.status_code == 201
    assert r.headers["location"].endswith("/collections/s2")
    body = r.json()
    assert body["id"] == "s2" and body["type"] == "Collection"
    rels = {link["rel"] for link in body["links"]}
    assert {"self", "root", "parent", "items"} <= rels

    assert client.post("/collections", json=collection("s2"), headers=admin).status_code == 409

    updated = collection("s2", title="Sentinel-2 L2A")
    r = client.put("/collections/s2", json=updated, headers=admin)
    assert r.status_code == 204 and not r.content
    assert client.get("/collections/s2").json()["title"] == "Sentinel-2 L2A"
    prefer = {**admin, "Prefer": "return=representation"}
    r = client.put("/collections/s2", json=updated, headers=prefer)
    assert r.status_code == 200 and r.json()["title"] == "Sentinel-2 L2A"

    r = client.patch("/collections/s2", json={"title": "Patched", "keywords": None}, headers=admin)
    assert r.status_code == 204, r.text
    stored = client.get("/collections/s2").json()
    assert stored["title"] == "Patched" and "keywords" not in stored

    r = client.put("/collections/s2", json=collection("other"), headers=admin)
    assert r.status_code == 400 and r.json()["code"] == "stac.Invalid"

    assert client.delete("/collections/s2", headers=admin).status_code == 204
    assert client.get("/collections/s2").status_code == 404
    assert client.delete("/collections/s2", headers=admin).status_code == 204  # idempotent


def test_item_lifecycle(client: TestClient, admin: dict[str, str]) -> None:
    _setup(client, admin)
    r = client.post("/collections/c1/items", json=item("a", **{"eo:cloud_cover": 5}), headers=admin)
    assert r.status_code == 201, r.text
    assert r.headers["location"].endswith("/collections/c1/items/a")
    created = r.json()
    assert created["collection"] == "c1"
    # Server-made links are generated, the item's own links are kept once.
    rels = [link["rel"] for link in created["links"]]
    assert rels.count("self") == 1 and "license" in rels

    dup = client.post("/collections/c1/items", json=item("a"), headers=admin)
    assert dup.status_code == 409 and dup.json()["code"] == "catalog.Conflict"

    replaced = item("a", **{"eo:cloud_cover": 50})
    r = client.put("/collections/c1/items/a", json=replaced, headers=admin)
    assert r.status_code == 204
    prefer = {**admin, "Prefer": "return=representation"}
    r = client.put("/collections/c1/items/a", json=replaced, headers=prefer)
    assert r.status_code == 200 and r.json()["properties"]["eo:cloud_cover"] == 50
    assert r.headers["content-type"] == "application/geo+json"
    assert client.get("/collections/c1/items/a").json()["properties"]["eo:cloud_cover"] == 50

    r = client.put("/collections/c1/items/zzz", json=item("zzz"), headers=admin)
    assert r.status_code == 404

    merge = {"properties": {"eo:cloud_cover": 7, "platform": "sentinel-2a"}}
    r = client.patch(
        "/collections/c1/items/a",
        json=merge,
        headers={**admin, "Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 204, r.text
    props = client.get("/collections/c1/items/a").json()["properties"]
    assert props["eo:cloud_cover"] == 7 and props["platform"] == "sentinel-2a"

    ops = [
        {"op": "replace", "path": "/properties/eo:cloud_cover", "value": 8},
        {"op": "remove", "path": "/properties/platform"},
    ]
    r = client.patch(
        "/collections/c1/items/a",
        json=ops,
        headers={**admin, "Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 204, r.text
    props = client.get("/collections/c1/items/a").json()["properties"]
    assert props["eo:cloud_cover"] == 8 and "platform" not in props

    bad_ops = [{"op": "remove", "path": "/properties/nothing-here"}]
    r = client.patch(
        "/collections/c1/items/a",
        json=bad_ops,
        headers={**admin, "Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 400

    assert client.delete("/collections/c1/items/a", headers=admin).status_code == 204
    assert client.get("/collections/c1/items/a").status_code == 404
    assert client.delete("/collections/c1/items/a", headers=admin).status_code == 204
    assert client.delete("/collections/nope/items/a", headers=admin).status_code == 404


def test_item_into_missing_collection_is_404(client: TestClient, admin: dict[str, str]) -> None:
    r = client.post("/collections/nope/items", json=item("a"), headers=admin)
    assert r.status_code == 404 and r.json()["code"] == "catalog.NotFound"


def test_feature_collection_post(client: TestClient, admin: dict[str, str]) -> None:
    _setup(client, admin)
    fc = {"type": "FeatureCollection", "features": [item(f"f{i}") for i in range(5)]}
    r = client.post("/collections/c1/items", json=fc, headers=admin)
    assert r.status_code == 201, r.text
    assert client.get("/collections/c1/items").json()["numberMatched"] == 5


def test_invalid_items_are_refused_with_reasons(client: TestClient, admin: dict[str, str]) -> None:
    _setup(client, admin)
    no_datetime = item("x")
    del no_datetime["properties"]["datetime"]
    interval_missing_end = item("y", when=None, start_datetime="2020-01-01T00:00:00Z")
    wrong_collection = {**item("z"), "collection": "other"}
    slash_id = item("a/b")
    bad_geometry = {**item("g"), "geometry": {"type": "Polygon", "coordinates": "nope"}}
    backwards = item("w", when=None, start_datetime="2021-01-01T00:00:00Z",
                     end_datetime="2020-01-01T00:00:00Z")  # fmt: skip
    for doc in (no_datetime, interval_missing_end, wrong_collection, slash_id, bad_geometry,
                backwards):  # fmt: skip
        r = client.post("/collections/c1/items", json=doc, headers=admin)
        assert r.status_code == 400, (doc["id"], r.text)
        assert r.json()["code"] in ("stac.Invalid", "request.InvalidParameter"), r.text
        assert r.json()["description"]
    assert client.get("/collections/c1/items").json()["numberMatched"] == 0


def test_geometry_is_made_valid_and_split_at_antimeridian(
    client: TestClient, admin: dict[str, str]
) -> None:
    _setup(client, admin)
    crossing = item("am")
    crossing["geometry"] = {
        "type": "Polygon",
        "coordinates": [[[179.0, 0.0], [-179.0, 0.0], [-179.0, 1.0], [179.0, 1.0], [179.0, 0.0]]],
    }
    crossing["bbox"] = [179.0, 0.0, -179.0, 1.0]
    r = client.post("/collections/c1/items", json=crossing, headers=admin)
    assert r.status_code == 201, r.text
    stored = client.get("/collections/c1/items/am").json()
    assert stored["geometry"]["type"] == "MultiPolygon"
    # A box around the antimeridian finds it; one across the whole globe's middle does not.
    assert [f["id"] for f in client.get("/search?bbox=178,0,-178,1").json()["features"]] == ["am"]
    assert client.get("/search?bbox=-10,0,10,1").json()["features"] == []

    bowtie = item("bow")
    bowtie["geometry"] = {
        "type": "Polygon",
        "coordinates": [[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]],
    }
    r = client.post("/collections/c1/items", json=bowtie, headers=admin)
    assert r.status_code == 201, r.text
    assert client.get("/collections/c1/items/bow").json()["geometry"]["type"] == "MultiPolygon"


def test_bulk_insert_upsert_and_atomic_conflict(client: TestClient, admin: dict[str, str]) -> None:
    _setup(client, admin)
    batch = {f"b{i:03d}": item(f"b{i:03d}", lon=i % 170, **{"eo:cloud_cover": i % 100})
             for i in range(300)}  # fmt: skip
    r = client.post("/collections/c1/bulk_items", json={"items": batch}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["success"] == 300

    # An atomic batch with one existing id inserts nothing.
    clash = {"new1": item("new1"), "b005": item("b005")}
    r = client.post(
        "/collections/c1/bulk_items", json={"items": clash, "atomic": True}, headers=admin
    )
    assert r.status_code == 409 and "b005" in r.json()["description"]
    assert client.get("/collections/c1/items/new1").status_code == 404

    clash["b005"]["properties"]["eo:cloud_cover"] = 99.5
    r = client.post(
        "/collections/c1/bulk_items", json={"items": clash, "method": "upsert"}, headers=admin
    )
    assert r.status_code == 200 and r.json()["success"] == 2
    assert client.get("/collections/c1/items/b005").json()["properties"]["eo:cloud_cover"] == 99.5
    assert client.get("/collections/c1/items").json()["numberMatched"] == 301

    mismatch = {"k": item("not-k")}
    r = client.post("/collections/c1/bulk_items", json={"items": mismatch}, headers=admin)
    assert r.status_code == 200 and r.json()["errors"][0]["code"] == "stac.Invalid"


def test_writes_need_the_token(client: TestClient, admin: dict[str, str]) -> None:
    r = client.post("/collections", json=collection("x"))
    assert r.status_code == 401 and r.json()["code"] == "auth.Unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = client.post("/collections", json=collection("x"), headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    r = client.post("/collections", json=collection("x"), headers={"Authorization": "Basic abc"})
    assert r.status_code == 401
    _setup(client, admin, "x")
    for method, path in (
        ("put", "/collections/x"),
        ("patch", "/collections/x"),
        ("delete", "/collections/x"),
        ("post", "/collections/x/items"),
        ("put", "/collections/x/items/i"),
        ("patch", "/collections/x/items/i"),
        ("delete", "/collections/x/items/i"),
        ("post", "/collections/x/bulk_items"),
    ):
        r = client.request(method.upper(), path, json={})
        assert r.status_code == 401, (method, path, r.status_code)
    assert client.get("/collections/x").status_code == 200


def test_declared_extensions_are_validated(client: TestClient, admin: dict[str, str]) -> None:
    _setup(client, admin)
    bad = item("bad", **{"eo:cloud_cover": "very cloudy"})
    r = client.post("/collections/c1/items", json=bad, headers=admin)
    assert r.status_code == 400 and r.json()["code"] == "stac.Invalid"
    assert "eo" in r.json()["description"] and r.json()["path"] == "properties.eo:cloud_cover"
    r = client.post("/collections/c1/bulk_items", json={"items": {"bad": bad}}, headers=admin)
    assert r.status_code == 200 and r.json()["errors"][0]["path"] == "properties.eo:cloud_cover"
    unknown = {**item("ok"), "stac_extensions": ["https://example.com/my-ext/v1.0.0/schema.json"]}
    assert client.post("/collections/c1/items", json=unknown, headers=admin).status_code == 201
