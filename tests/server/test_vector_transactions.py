"""Feature transactions on vector collections (OGC API - Features Part 4) through the STAC
transaction routes: create, replace, update, delete, each refreshing the extent; rights."""

from functools import partial
from typing import Any

import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from catalog.db.engine import connect
from catalog.vector.load import sync_document
from catalog.vector.repository import copy_features, create_layer, refresh_extent
from catalog.vector.schema import PropertyType
from tests.factories import collection
from tests.owners import person

PROPS = [("crop", PropertyType.STRING), ("area", PropertyType.NUMBER),
         ("plot", PropertyType.INTEGER), ("sown", PropertyType.DATE)]  # fmt: skip


async def _fill(engine: Any, collection_id: str) -> None:
    async with connect(engine, True) as conn:
        layer = await create_layer(conn, collection_id, PROPS, "Polygon", "EPSG:4326", "sown")
        rows = [(shapely.to_wkb(shapely.box(0, 0, 1, 1)), "wheat", 1.5, 7, None)]
        await copy_features(conn, layer, [n for n, _ in PROPS], rows)
        await sync_document(conn, await refresh_extent(conn, layer))


@pytest.fixture
def fields(client: TestClient, admin: dict[str, str]) -> str:
    r = client.post("/collections", json=collection("fields"), headers=admin)
    assert r.status_code == 201, r.text
    client.portal.call(partial(_fill, client.app.state.repository.engine, "fields"))
    return "fields"


def _layer(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM vector_layers")).mappings().one())


def _feature(geom: shapely.Geometry, **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": shapely.geometry.mapping(geom), "properties": props}


def test_create_replace_update_delete_keep_the_extent(
    client: TestClient, admin: dict[str, str], fields: str, sync_engine: Engine
) -> None:
    r = client.post("/collections/fields/items", headers=admin,
                    json=_feature(shapely.box(10, 10, 11, 12), crop="rye", plot=3))  # fmt: skip
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["id"] == 2 and made["properties"] == {"crop": "rye", "area": None, "plot": 3,
                                                      "sown": None}  # fmt: skip
    assert r.headers["location"] == "http://testserver/collections/fields/items/2"
    layer = _layer(sync_engine)
    assert (layer["feature_count"], layer["east"], layer["north"]) == (2, 11, 12)
    doc = client.get("/collections/fields", headers=admin).json()
    assert doc["extent"]["spatial"]["bbox"] == [[0, 0, 11, 12]]

    many = {"type": "FeatureCollection", "features": [
        _feature(shapely.Point(20, 5), crop="oat", sown="2024-04-01"),
        _feature(shapely.Point(-3, -4))]}  # fmt: skip
    r = client.post("/collections/fields/items", json=many, headers=admin)
    assert r.status_code == 201 and r.json() == {"created": 2, "ids": [3, 4]}, r.text
    layer = _layer(sync_engine)
    assert (layer["west"], layer["south"], layer["east"]) == (-3, -4, 20)
    assert layer["start_datetime"].date().isoformat() == "2024-04-01"

    # PUT replaces the whole feature: properties not given become null.
    r = client.put("/collections/fields/items/2", headers=admin,
                   json=_feature(shapely.box(1, 1, 2, 2), area=9.5))  # fmt: skip
    assert r.status_code == 204, r.text
    # PATCH merges: only what it names changes (Prefer asks for the result).
    r = client.patch("/collections/fields/items/2", json={"properties": {"crop": "barley"}},
                     headers={**admin, "Prefer": "return=representation"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["properties"] == {"crop": "barley", "area": 9.5, "plot": None, "sown": None}
    assert r.json()["geometry"]["coordinates"][0][0] in ([1, 1], [2, 1], [2, 2], [1, 2])
    assert _layer(sync_engine)["north"] == 5  # the box up to 12 moved
    # A JSON patch (RFC 6902) applies to the feature as served.
    ops = [{"op": "replace", "path": "/properties/plot", "value": 11},
           {"op": "remove", "path": "/properties/crop"}]  # fmt: skip
    r = client.patch("/collections/fields/items/2", json=ops,
                     headers={**admin, "Content-Type": "application/json-patch+json"})  # fmt: skip
    assert r.status_code == 204, r.text
    got = client.patch("/collections/fields/items/2", json={},
                       headers={**admin, "Prefer": "return=representation"})  # fmt: skip
    assert got.json()["properties"] == {"crop": None, "area": 9.5, "plot": 11, "sown": None}

    for fid in (3, 4, 4):  # deleting twice is fine
        assert client.delete(f"/collections/fields/items/{fid}", headers=admin).status_code == 204
    layer = _layer(sync_engine)
    assert (layer["feature_count"], layer["west"], layer["east"], layer["north"]) == (2, 0, 2, 2)
    assert layer["start_datetime"] is None


def test_bad_features_are_refused(
    client: TestClient, admin: dict[str, str], fields: str, sync_engine: Engine
) -> None:
    box = shapely.box(0, 0, 1, 1)
    cases = [
        # (a property the layer lacks extends it, another type conflicts:
        # test_vector_schema_writes.py)
        (_feature(box, sown="yesterday"), "property 'sown' of 'fields' is date"),
        (_feature(shapely.from_wkt("POLYGON ((0 0, 1 1, 2 2, 0 0))")), "invalid beyond repair"),
        ({"type": "Feature", "geometry": None, "properties": {}}, "needs a geometry"),
        ({"type": "Point", "coordinates": [1, 2]}, "must be a GeoJSON Feature"),
    ]
    for body, message in cases:
        r = client.post("/collections/fields/items", json=body, headers=admin)
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "features.InvalidFeature" and message in r.json()["description"]
    assert _layer(sync_engine)["feature_count"] == 1
    r = client.put("/collections/fields/items/99", json=_feature(box), headers=admin)
    assert r.status_code == 404 and r.json()["code"] == "catalog.NotFound"
    assert client.patch("/collections/fields/items/abc", json={},
                        headers=admin).status_code == 404  # fmt: skip
    # STAC items in bulk: refused, nothing stored (features go to POST .../items)
    stac_item = {"type": "Feature", "stac_version": "1.1.0", "id": "i1", "properties": {
        "datetime": "2024-01-01T00:00:00Z"}, "geometry": shapely.geometry.mapping(box),
        "bbox": [0, 0, 1, 1], "links": [], "assets": {}}  # fmt: skip
    r = client.post("/collections/fields/bulk_items", json={"items": {"i1": stac_item}},
                    headers=admin)  # fmt: skip
    assert r.status_code == 409 and r.json()["code"] == "stac.VectorCollection", r.text
    assert _layer(sync_engine)["feature_count"] == 1
    with sync_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM items")).scalar_one() == 0


def test_writes_need_the_write_right(
    client: TestClient, admin: dict[str, str], fields: str
) -> None:
    ann = person(client, "ann")
    body = _feature(shapely.Point(1, 1))
    r = client.post("/collections/fields/items", json=body, headers=ann.headers)
    assert r.status_code == 403, r.text
    assert client.delete("/collections/fields/items/1", headers=ann.headers).status_code == 403
    assert client.post("/collections/fields/items", json=body).status_code == 401
