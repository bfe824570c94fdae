"""Vector and hybrid collections in the one /collections namespace.

Their documents stay valid STAC Collections and say what their items are; queryables come from
the layer's types; rights are the collection's; raster collections answer as before; /search
never returns features.
"""

import re
from typing import Any

import pystac.validation
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from catalog.vector.schema import PropertyType
from tests.conftest import ADMIN
from tests.factories import collection, item
from tests.server.conftest import Offline
from tests.server.vector_fields import COLLECTION, FIELDS, fids, load, parcel
from tests.vector_data import vector_collection

OGC_CONF = "http://www.opengis.net/spec/ogcapi-features-"


@pytest.fixture
def hybrid(client: TestClient, database_url: str) -> str:
    """A raster collection ``scenes`` of two STAC items, annotated by ``parcels``."""
    assert client.post("/collections", json=collection("scenes"), headers=ADMIN).status_code == 201
    for name in ("s1", "s2"):
        r = client.post("/collections/scenes/items", json=item(name, lon=2.0, lat=48.5),
                        headers=ADMIN)  # fmt: skip
        assert r.status_code == 201, r.text
    load(database_url, annotates="scenes")
    return "scenes"


def _link(doc: dict[str, Any], rel: str) -> list[dict[str, Any]]:
    return [link for link in doc["links"] if link["rel"] == rel]


def test_vector_document_is_a_stac_and_ogc_collection(
    client: TestClient, hybrid: str, offline_network: Offline
) -> None:
    doc = client.get(f"/collections/{COLLECTION}").json()
    assert doc["itemType"] == "feature" and doc["terracat:kind"] == "vector"
    assert doc["extent"]["spatial"]["bbox"] == [[2.0, 48.5, 2.19, 48.61]]
    assert doc["extent"]["temporal"]["interval"] == [["2024-03-01T08:00:00Z",
                                                      "2024-06-21T09:00:00Z"]]  # fmt: skip
    assert doc["storageCrs"] == "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
    assert doc["crs"][:3] == [
        "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
        "http://www.opengis.net/def/crs/EPSG/0/4326",
        "http://www.opengis.net/def/crs/EPSG/0/3857",
    ]
    assert "http://www.opengis.net/def/crs/EPSG/0/32631" in doc["crs"]
    [items] = _link(doc, "items")
    assert items["type"] == "application/geo+json"
    assert items["href"] == "http://testserver/collections/parcels/items"
    [back] = _link(doc, "related")
    assert back["href"] == "http://testserver/collections/scenes"
    pystac.validation.validate_dict(doc)  # schemas served offline
    raster = client.get("/collections/scenes").json()
    assert "itemType" not in raster and "terracat:kind" not in raster
    [annotations] = _link(raster, "related")
    assert annotations == {"rel": "related", "type": "application/geo+json",
                           "href": "http://testserver/collections/parcels/items",
                           "title": "annotations: parcels"}  # fmt: skip
    pystac.validation.validate_dict(raster)
    listed = {c["id"]: c for c in client.get("/collections").json()["collections"]}
    assert listed[COLLECTION]["terracat:kind"] == "vector" and "crs" in listed[COLLECTION]
    assert _link(listed["scenes"], "related") == [annotations]


def test_raster_items_stay_stac_and_search_has_no_features(client: TestClient, hybrid: str) -> None:
    body = client.get("/collections/scenes/items").json()
    assert sorted(f["id"] for f in body["features"]) == ["s1", "s2"]
    assert all(f["stac_version"] for f in body["features"])
    assert client.get("/collections/scenes/items/s1").json()["collection"] == "scenes"
    r = client.get("/collections/scenes/items", params={"crs": "EPSG:3857"})  # ignored there
    assert r.status_code == 200 and len(r.json()["features"]) == 2
    assert "content-crs" not in r.headers
    for params in ({}, {"collections": COLLECTION}, {"collections": f"{COLLECTION},scenes"}):
        found = client.get("/search", params={**params, "limit": 100}).json()["features"]
        assert {f["collection"] for f in found} <= {"scenes"}
    r = client.post("/search", json={"collections": [COLLECTION]})
    assert r.status_code == 200 and r.json()["features"] == []


def test_queryables_and_sortables_are_the_layers_types(client: TestClient, hybrid: str) -> None:
    doc = client.get(f"/collections/{COLLECTION}/queryables").json()
    assert doc["$id"] == f"http://testserver/collections/{COLLECTION}/queryables"
    props = doc["properties"]
    assert list(props) == ["id", "geometry", "crop", "farmer", "area ha", "plots", "organic",
                           "sown", "harvest", "extra"]  # fmt: skip
    assert props["geometry"]["format"] == "geometry-polygon"
    assert props["plots"]["type"] == "integer" and props["area ha"]["type"] == "number"
    assert props["sown"] == {"title": "sown", "type": "string", "format": "date-time"}
    assert props["harvest"]["format"] == "date" and props["organic"]["type"] == "boolean"
    assert doc["additionalProperties"] is False
    sortables = client.get(f"/collections/{COLLECTION}/sortables").json()
    assert list(sortables["properties"]) == ["id", "crop", "farmer", "area ha", "plots",
                                             "organic", "sown", "harvest"]  # fmt: skip
    raster = client.get("/collections/scenes/queryables").json()["properties"]
    assert "datetime" in raster and "crop" not in raster


def test_conformance_declares_features_parts(client: TestClient) -> None:
    classes = set(client.get("/conformance").json()["conformsTo"])
    for part in ("1/1.0/conf/core", "1/1.0/conf/geojson", "2/1.0/conf/crs",
                 "3/1.0/conf/filter", "3/1.0/conf/features-filter",
                 "4/1.0/conf/create-replace-delete", "4/1.0/conf/update"):  # fmt: skip
        assert OGC_CONF + part in classes


def test_private_vector_collection_is_hidden(
    client: TestClient, database_url: str, sync_engine: Engine
) -> None:
    layer = load(database_url, visibility="private")
    for path in ("", "/items", "/items/1", "/queryables", "/sortables"):
        r = client.get(f"/collections/{COLLECTION}{path}")
        assert r.status_code == 404, (path, r.text)
        r = client.get(f"/collections/{COLLECTION}{path}", headers=ADMIN)
        assert r.status_code == 200, (path, r.text)
    body = client.get(f"/collections/{COLLECTION}/items", headers=ADMIN).json()
    assert body["numberMatched"] == FIELDS == len(fids(sync_engine, layer, "true"))


def test_without_datetime_property_datetime_is_400(client: TestClient, database_url: str) -> None:
    vector_collection(database_url, "roads", [("name", PropertyType.STRING)],
                      [(parcel(0).exterior, "A1"), (parcel(1).exterior, None)],
                      geometry_type="LineString")  # fmt: skip
    r = client.get("/collections/roads/items", params={"datetime": "2024-01-01T00:00:00Z"})
    assert r.status_code == 400 and r.json()["code"] == "features.NoDatetimeProperty"
    body = client.get("/collections/roads/items").json()
    assert [f["geometry"]["type"] for f in body["features"]] == ["LineString"] * 2
    assert body["features"][1]["properties"] == {"name": None}
    doc = client.get("/collections/roads").json()
    assert doc["extent"]["temporal"]["interval"] == [["2020-01-01T00:00:00Z", None]]
    fmt = client.get("/collections/roads/queryables").json()["properties"]["geometry"]["format"]
    assert fmt == "geometry-linestring"


def test_html_pages_are_rendered_by_pygeoapi(client: TestClient, database_url: str) -> None:
    load(database_url)
    body = client.get(f"/collections/{COLLECTION}/items", params={"limit": 4}).json()
    [html_link] = _link(body, "alternate")
    assert html_link["type"] == "text/html" and "f=html" in html_link["href"]
    r = client.get(html_link["href"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "Rendered by pygeoapi" in page and f"Items in this collection: {FIELDS}" in page
    for fid in range(1, 5):
        assert f'href="http://testserver/collections/{COLLECTION}/items/{fid}"' in page
    assert "Blé" in page and "<th>area ha</th>" in page
    hosts = set(re.findall(r'(?:src|href)="(https?://[^/"]+)', page))
    assert hosts == {"http://testserver"}, hosts  # nothing from a CDN
    assert re.search(r'role="button" href="[^"]*token=[^"]*">Next<', page)
    one = client.get(f"/collections/{COLLECTION}/items/6", params={"f": "html"})
    assert one.status_code == 200 and "<td>farmer</td>" in one.text and "Bruno" in one.text
    assert set(re.findall(r'(?:src|href)="(https?://[^/"]+)', one.text)) == {"http://testserver"}
