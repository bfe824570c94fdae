"""Feature writes (OGC API - Features Part 4) whose properties the layer lacks extend its schema
as an append does: a typed column, listed at once by the queryables, the TileJSON and the
features; a value of another type than its property's is a ``features.TypeConflict``."""

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

PROPS = [("crop", PropertyType.STRING), ("area", PropertyType.NUMBER)]
TILEJSON = "/collections/fields/tiles/WebMercatorQuad/tilejson.json"


async def _fill(engine: Any, collection_id: str) -> None:
    async with connect(engine, True) as conn:
        layer = await create_layer(conn, collection_id, PROPS, "Polygon", "EPSG:4326")
        rows = [(shapely.to_wkb(shapely.box(0, 0, 1, 1)), "wheat", 1.5)]
        await copy_features(conn, layer, [n for n, _ in PROPS], rows)
        await sync_document(conn, await refresh_extent(conn, layer))


@pytest.fixture
def fields(client: TestClient, admin: dict[str, str]) -> str:
    r = client.post("/collections", json=collection("fields"), headers=admin)
    assert r.status_code == 201, r.text
    client.portal.call(partial(_fill, client.app.state.repository.engine, "fields"))
    return "fields"


def _feature(geom: shapely.Geometry, **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": shapely.geometry.mapping(geom), "properties": props}


def _columns(engine: Engine) -> dict[str, str]:
    """The feature table's columns and their PostgreSQL types, as the catalogue sees them."""
    with engine.connect() as conn:
        table = conn.execute(text("SELECT table_name FROM vector_layers")).scalar_one()
        rows = conn.execute(
            text("SELECT column_name, data_type FROM information_schema.columns "
                 "WHERE table_schema = 'features' AND table_name = :t"),
            {"t": table},
        )  # fmt: skip
        return {str(row[0]): str(row[1]) for row in rows}


def _fields(client: TestClient, admin: dict[str, str]) -> dict[str, str]:
    tilejson = client.get(TILEJSON, headers=admin).json()
    (layer,) = tilejson["vector_layers"]
    return dict(layer["fields"])


def test_new_properties_extend_the_schema(
    client: TestClient, admin: dict[str, str], fields: str, sync_engine: Engine
) -> None:
    # the TileJSON is read (and the layer cached) before the write: the write must refresh it
    assert set(_fields(client, admin)) == {"crop", "area"}
    many = {"type": "FeatureCollection", "features": [
        _feature(shapely.box(2, 2, 3, 3), crop="rye", farmer="Ann", plots=3, seen=None),
        _feature(shapely.box(4, 4, 5, 5), farmer="Bob", plots=2.5, organic=True,
                 notes={"soil": "clay"}, **{"yield t/ha": 7}),
    ]}  # fmt: skip
    r = client.post("/collections/fields/items", json=many, headers=admin)
    assert r.status_code == 201, r.text
    columns = _columns(sync_engine)
    # typed columns; a name that is no SQL identifier gets its p{n} column; null-only adds none
    assert {k: v for k, v in columns.items() if k not in ("fid", "geom", "crop", "area")} == {
        "farmer": "text", "plots": "double precision", "organic": "boolean", "notes": "jsonb",
        "p6": "bigint",
    }  # fmt: skip

    queryables = client.get("/collections/fields/queryables", headers=admin).json()
    assert {k: v.get("type") for k, v in queryables["properties"].items()
            if k not in ("id", "geometry", "crop", "area")} == {
        "farmer": "string", "plots": "number", "organic": "boolean", "notes": None,
        "yield t/ha": "integer"}  # fmt: skip
    assert set(_fields(client, admin)) >= {"crop", "area", "farmer", "plots", "organic"}

    # the new properties are served, filtered and sorted like the old ones
    got = client.get("/collections/fields/items", headers=admin,
                     params={"filter": "plots > 2.7", "sortby": "-farmer"}).json()  # fmt: skip
    assert [f["properties"]["farmer"] for f in got["features"]] == ["Ann"]
    assert got["features"][0]["properties"] == {
        "crop": "rye", "area": None, "farmer": "Ann", "plots": 3, "organic": None,
        "notes": None, "yield t/ha": None}  # fmt: skip
    bob = client.get("/collections/fields/items", headers=admin,
                     params={"filter": "organic = true"}).json()["features"]  # fmt: skip
    assert bob[0]["properties"]["notes"] == {"soil": "clay"}
    assert bob[0]["properties"]["yield t/ha"] == 7

    # PUT and PATCH extend it too
    r = client.put(
        "/collections/fields/items/1",
        headers=admin,
        json=_feature(shapely.box(0, 0, 1, 1), crop="oat", sown="2024-04-01"),
    )
    assert r.status_code == 204, r.text
    r = client.patch("/collections/fields/items/1", json={"properties": {"rank": 1}},
                     headers={**admin, "Prefer": "return=representation"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["sown"] == "2024-04-01" and r.json()["properties"]["rank"] == 1
    assert {"sown": "text", "rank": "bigint"}.items() <= _columns(sync_engine).items()
    assert {"sown", "rank"} <= set(_fields(client, admin))


def test_type_conflicts_are_refused_and_change_nothing(
    client: TestClient, admin: dict[str, str], fields: str, sync_engine: Engine
) -> None:
    box = shapely.box(0, 0, 1, 1)
    before = _columns(sync_engine)
    cases = [
        (_feature(box, area="large"), "property 'area' of 'fields' is number"),
        (_feature(box, crop=5), "property 'crop' of 'fields' is string"),
        ({"type": "FeatureCollection", "features": [_feature(box, colour="red"),
                                                    _feature(box, colour=3)]},
         "new property 'colour' is string in one feature and integer in another"),
        # a new property typed, then an old one refused: the new column is not kept either
        (_feature(box, colour="red", area=True), "property 'area' of 'fields' is number"),
    ]  # fmt: skip
    for body, message in cases:
        r = client.post("/collections/fields/items", json=body, headers=admin)
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "features.TypeConflict", r.text
        assert message in r.json()["description"]
    r = client.patch("/collections/fields/items/1", json={"properties": {"area": "x"}},
                     headers=admin)  # fmt: skip
    assert r.status_code == 409 and r.json()["code"] == "features.TypeConflict"
    assert _columns(sync_engine) == before
    assert set(_fields(client, admin)) == {"crop", "area"}
    # integers fit a number property, as in an append
    r = client.post("/collections/fields/items", json=_feature(box, area=4), headers=admin)
    assert r.status_code == 201 and r.json()["properties"]["area"] == 4
