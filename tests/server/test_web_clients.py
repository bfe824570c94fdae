"""What browser clients on another origin need from the API (found by stac-browser in
tests/acceptance): self-contained queryables, CORS for token-carrying requests, the sort
options stac-browser offers."""

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from tests import rasters
from tests.factories import collection, item
from tests.stored import ingest_local, store_item

ORIGIN = "http://localhost:8080"


def _refs(doc: Any) -> list[str]:
    """Every ``$ref`` in a JSON document."""
    if isinstance(doc, dict):
        own = [doc["$ref"]] if "$ref" in doc else []
        return own + [r for v in doc.values() for r in _refs(v)]
    if isinstance(doc, list):
        return [r for v in doc for r in _refs(v)]
    return []


def test_queryables_need_no_other_host(client: TestClient, admin: dict[str, str]) -> None:
    """stac-browser dereferences the queryables of its search form: a ``$ref`` to geojson.org
    was a console error on every search page without internet."""
    client.post("/collections", json=collection("c1"), headers=admin)
    client.post("/collections/c1/items", json=item("i1"), headers=admin)
    for path in ("/queryables", "/collections/c1/queryables"):
        doc = client.get(path, headers={"Origin": ORIGIN}).json()
        assert _refs(doc) == [], path
        Draft202012Validator.check_schema(doc)
        geometry = Draft202012Validator(doc["properties"]["geometry"])
        assert doc["properties"]["geometry"]["title"] == "Footprint"
        assert geometry.is_valid(item("i2")["geometry"])
        assert geometry.is_valid({"type": "Point", "coordinates": [1.5, 2.5]})
        assert not geometry.is_valid({"type": "Point"})
        assert not geometry.is_valid({"type": "Circle", "coordinates": [0, 0]})


def test_cors_for_a_client_that_sends_a_token(client: TestClient, admin: dict[str, str]) -> None:
    """stac-browser's ``authConfig`` sends an ``Authorization`` header: a preflight, which a
    bare ``*`` in Access-Control-Allow-Headers would not satisfy for that header."""
    pre = client.options("/search", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    })  # fmt: skip
    assert pre.status_code == 200, pre.text
    allowed = {h.strip().lower() for h in pre.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert pre.headers["access-control-allow-origin"] in ("*", ORIGIN)
    r = client.post("/search", json={"limit": 1}, headers={"Origin": ORIGIN, **admin})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"


def test_stac_browser_sort_options_on_ingested_items(
    client: TestClient, admin: dict[str, str], database_url: str, data_dir: Path, tmp_path: Path
) -> None:
    """stac-browser offers sorting by id, title, datetime, created and updated; ingested items
    carry ``created`` and ``updated``, so none of them is refused as an unknown field."""
    source = rasters.utm_rgb_tif(tmp_path, size=64, border=4)
    made = ingest_local(source, "scenes", "rgb", data_dir)
    client.post("/collections", json=collection("scenes"), headers=admin)
    store_item(database_url, made)
    sortables = client.get("/sortables").json()["properties"]
    assert {"created", "updated", "datetime", "id", "title"} <= set(sortables)
    for field in ("id", "properties.title", "properties.datetime", "properties.created",
                  "properties.updated"):  # fmt: skip
        for direction in ("asc", "desc"):
            body = {"sortby": [{"field": field, "direction": direction}]}
            r = client.post("/search", json=body, headers={"Origin": ORIGIN})
            assert r.status_code == 200, (field, r.text)
            assert [f["id"] for f in r.json()["features"]] == ["rgb"]


def test_stac_browser_collection_sort_options(client: TestClient, admin: dict[str, str]) -> None:
    """stac-browser sorts collection search by id, title, created and updated: the last two are
    when a collection was made and last replaced in this catalogue."""
    for cid in ("b-first", "a-second"):
        assert client.post("/collections", json=collection(cid), headers=admin).status_code == 201

    def ids(sortby: str) -> list[str]:
        r = client.get("/collections", params={"sortby": sortby}, headers={"Origin": ORIGIN})
        assert r.status_code == 200, r.text
        return [c["id"] for c in r.json()["collections"]]

    assert ids("id") == ids("title") == ["a-second", "b-first"]
    assert ids("created") == ids("updated") == ["b-first", "a-second"]
    assert ids("-created") == ["a-second", "b-first"]
    r = client.put("/collections/b-first", json=collection("b-first"), headers=admin)
    assert r.status_code in (200, 204), r.text
    assert ids("-updated") == ["b-first", "a-second"] and ids("created")[0] == "b-first"
