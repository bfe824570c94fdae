"""The items routes keep each vector collection's layer in memory and check, in the page's own
statement, that it is still the collection's: a layer changed by another server process (an
append with new properties, more features) or removed is read again, never served stale. Facets
over every feature read the ranges the layer's row keeps, only from the version they were given."""

from functools import partial
from typing import Any

import pytest
import shapely
from fastapi.testclient import TestClient

from catalog.db.engine import connect
from catalog.vector.facets import facet_counts
from catalog.vector.load import sync_document
from catalog.vector.query import FeatureQuery
from catalog.vector.repository import (
    add_properties,
    copy_features,
    create_layer,
    get_layer,
    refresh_extent,
)
from catalog.vector.schema import PropertyType
from tests.factories import collection

PROPS = [("crop", PropertyType.STRING), ("area", PropertyType.NUMBER)]
ITEMS = "/collections/fields/items"


async def _fill(engine: Any) -> None:
    async with connect(engine, True) as conn:
        layer = await create_layer(conn, "fields", PROPS, "Polygon", "EPSG:4326")
        rows = [(shapely.to_wkb(shapely.box(i, 0, i + 1, 1)), "wheat", 1.5 + i) for i in range(3)]
        await copy_features(conn, layer, [n for n, _ in PROPS], rows)
        await sync_document(conn, await refresh_extent(conn, layer))


async def _append_elsewhere(engine: Any) -> None:
    """What another server process does for an append with a new property: in the database
    only, this process's memory untouched."""
    async with connect(engine, True) as conn:
        layer = await get_layer(conn, "fields")
        assert layer is not None
        layer = await add_properties(conn, layer, [("farmer", PropertyType.STRING)])
        rows = [(shapely.to_wkb(shapely.box(0, 2, 1, 3)), "rye", 9.0, "Ann")]
        await copy_features(conn, layer, ["crop", "area", "farmer"], rows)
        await sync_document(conn, await refresh_extent(conn, layer))


@pytest.fixture
def fields(client: TestClient, admin: dict[str, str]) -> str:
    r = client.post("/collections", json=collection("fields"), headers=admin)
    assert r.status_code == 201, r.text
    client.portal.call(partial(_fill, client.app.state.repository.engine))
    return "fields"


def test_a_layer_changed_elsewhere_is_read_again(
    client: TestClient, admin: dict[str, str], fields: str
) -> None:
    for params in ({}, {"bbox": "-1,-1,10,10", "sortby": "-area"}):
        first = client.get(ITEMS, params=params, headers=admin).json()
        assert first["numberMatched"] == 3
        assert set(first["features"][0]["properties"]) == {"crop", "area"}
    client.portal.call(partial(_append_elsewhere, client.app.state.repository.engine))

    # the same requests: the new feature, its new property, the new count
    got = client.get(ITEMS, params={"bbox": "-1,-1,10,10", "sortby": "-area"}, headers=admin)
    assert got.status_code == 200, got.text
    assert got.json()["numberMatched"] == 4
    assert got.json()["features"][0]["properties"] == {"crop": "rye", "area": 9.0, "farmer": "Ann"}
    assert client.get(ITEMS, headers=admin).json()["numberMatched"] == 4


def test_a_parameter_naming_a_property_added_elsewhere_is_accepted(
    client: TestClient, admin: dict[str, str], fields: str
) -> None:
    assert client.get(ITEMS, headers=admin).status_code == 200  # the layer is kept
    r = client.get(ITEMS, params={"properties": "farmer"}, headers=admin)
    assert r.status_code == 400 and "queryables: crop, area" in r.text
    client.portal.call(partial(_append_elsewhere, client.app.state.repository.engine))
    r = client.get(ITEMS, params={"properties": "farmer"}, headers=admin)
    assert r.status_code == 200, r.text
    assert [f["properties"] for f in r.json()["features"]] == [{"farmer": None}] * 3 + [
        {"farmer": "Ann"}
    ]
    r = client.get(ITEMS, params={"sortby": "farmer", "limit": "1"}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["features"][0]["properties"]["farmer"] == "Ann"


def test_a_deleted_collection_is_not_served_from_memory(
    client: TestClient, admin: dict[str, str], fields: str
) -> None:
    assert client.get(ITEMS, params={"bbox": "-1,-1,10,10"}, headers=admin).status_code == 200
    assert client.delete("/collections/fields", headers=admin).status_code == 204
    r = client.get(ITEMS, params={"bbox": "-1,-1,10,10"}, headers=admin)
    assert r.status_code == 404, r.text


def test_facets_of_every_feature_read_the_ranges_of_the_layer_as_it_is(
    client: TestClient, admin: dict[str, str], fields: str
) -> None:
    """Facets over every feature bucket with the ranges the layer's row keeps; a layer read
    before another process's write (older ``updated``) is counted with a scan instead."""
    engine = client.app.state.repository.engine

    async def count(layer: Any) -> Any:
        async with connect(engine) as conn:
            return await facet_counts(conn, layer, FeatureQuery(), ["area"], 10, 4)

    async def layer_now() -> Any:
        async with connect(engine) as conn:
            return await get_layer(conn, "fields")

    before = client.portal.call(layer_now)
    assert before.bounded == ("area",)
    first = client.portal.call(count, before).facets["area"]
    assert (first.min, first.max) == (1.5, 3.5)
    client.portal.call(partial(_append_elsewhere, engine))
    stale = client.portal.call(count, before)  # the layer as read before the append
    assert stale.matched == 4
    assert (stale.facets["area"].min, stale.facets["area"].max) == (1.5, 9.0)
    assert [b["count"] for b in stale.facets["area"].buckets] == [2, 1, 0, 1]
    fresh = client.portal.call(count, client.portal.call(layer_now))
    assert fresh.to_json() == stale.to_json()
