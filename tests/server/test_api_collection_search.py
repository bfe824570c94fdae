"""Collection search on GET /collections: bbox, datetime, q, filter, sortby, fields, paging."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import collection, item


@pytest.fixture
def collections(client: TestClient, admin: dict[str, str]) -> TestClient:
    docs = [
        collection("sentinel-2-l2a", title="Sentinel-2 Level-2A",
                   description="Surface reflectance from the MSI instrument",
                   keywords=["optical", "esa"], bbox=[-180, -60, 180, 84],
                   interval=["2017-03-28T00:00:00Z", None]),
        collection("landsat-c2", title="Landsat Collection 2",
                   description="Landsat 8 and 9 imagery", keywords=["optical", "usgs"],
                   bbox=[-180, -80, 180, 80],
                   interval=["2013-04-01T00:00:00Z", "2023-12-31T23:59:59Z"]),
        collection("sar-alps", title="SAR over the Alps", description="Radar backscatter",
                   keywords=["radar"], bbox=[5.0, 44.0, 16.0, 48.5],
                   interval=["2020-01-01T00:00:00Z", "2020-12-31T23:59:59Z"]),
        collection("dem-fiji", title="Fiji elevation", description="Terrain model",
                   keywords=["elevation"], bbox=[177.0, -19.0, -178.0, -16.0],
                   interval=["2019-01-01T00:00:00Z", "2019-01-02T00:00:00Z"]),
    ]  # fmt: skip
    for doc in docs:
        assert client.post("/collections", json=doc, headers=admin).status_code == 201
    return client


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["collections"]]


def test_lists_all_with_counts(collections: TestClient) -> None:
    body = collections.get("/collections").json()
    assert body["numberMatched"] == 4 and body["numberReturned"] == 4
    assert {lk["rel"] for lk in body["links"]} >= {"self", "root"}


def test_bbox(collections: TestClient) -> None:
    assert set(ids(collections.get("/collections?bbox=10,45,11,46"))) == {
        "sentinel-2-l2a", "landsat-c2", "sar-alps"}  # fmt: skip
    assert set(ids(collections.get("/collections?bbox=179,-18,-179,-17"))) == {
        "sentinel-2-l2a", "landsat-c2", "dem-fiji"}  # fmt: skip


def test_datetime(collections: TestClient) -> None:
    got = set(ids(collections.get("/collections?datetime=2024-06-01T00:00:00Z")))
    assert got == {"sentinel-2-l2a"}
    got = set(ids(collections.get("/collections?datetime=2020-06-01T00:00:00Z/..")))
    assert got == {"sentinel-2-l2a", "landsat-c2", "sar-alps"}


def test_free_text(collections: TestClient) -> None:
    assert ids(collections.get("/collections?q=radar")) == ["sar-alps"]
    assert set(ids(collections.get("/collections?q=radar,elevation"))) == {"sar-alps", "dem-fiji"}
    assert ids(collections.get("/collections?q=sentinel")) == ["sentinel-2-l2a"]
    assert ids(collections.get("/collections?q=nothing-like-this")) == []


def test_filter(collections: TestClient) -> None:
    r = collections.get("/collections", params={"filter": "A_CONTAINS(keywords, ('optical'))"})
    assert set(ids(r)) == {"sentinel-2-l2a", "landsat-c2"}
    r = collections.get("/collections", params={"filter": "title LIKE 'SAR%' OR id = 'dem-fiji'"})
    assert set(ids(r)) == {"sar-alps", "dem-fiji"}
    r = collections.get(
        "/collections",
        params={"filter": "T_INTERSECTS(datetime, INTERVAL('2030-01-01T00:00:00Z', '..'))"},
    )
    assert ids(r) == ["sentinel-2-l2a"]


def test_sort_fields_and_paging(collections: TestClient) -> None:
    assert ids(collections.get("/collections?sortby=-title")) == [
        "sentinel-2-l2a", "sar-alps", "landsat-c2", "dem-fiji"]  # fmt: skip
    r = collections.get("/collections?fields=id,title&limit=1")
    assert set(r.json()["collections"][0]) <= {"id", "title", "type", "stac_version", "links"}
    seen: list[str] = []
    r = collections.get("/collections?limit=3&sortby=id")
    while True:
        seen += ids(r)
        nxt = next((lk for lk in r.json()["links"] if lk["rel"] == "next"), None)
        if nxt is None:
            break
        r = collections.get(nxt["href"])
    assert seen == sorted(seen) and len(seen) == 4
    assert any(lk["rel"] == "prev" for lk in r.json()["links"])


def test_items_of_deleted_collection_go_too(collections: TestClient, admin: dict[str, str]) -> None:
    collections.post("/collections/sar-alps/items", json=item("s1", lon=10, lat=45), headers=admin)
    assert collections.delete("/collections/sar-alps", headers=admin).status_code == 204
    assert collections.get("/search?ids=s1").json()["features"] == []
