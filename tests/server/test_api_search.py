"""Item search over HTTP: every parameter, paging in both directions and by offset, fields, sort."""

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import collection, item

PLATFORMS = ["sentinel-2a", "sentinel-2b", "landsat-8"]


@pytest.fixture
def catalogue(client: TestClient, admin: dict[str, str]) -> list[dict[str, Any]]:
    """Two collections, 40 items; every 5th has no cloud cover (missing values sort last).

    One bulk insert per collection: forty single POSTs were most of the module's time."""
    items = []
    batches: dict[str, dict[str, Any]] = {"s2": {}, "ls": {}}
    for cid in batches:
        assert client.post("/collections", json=collection(cid), headers=admin).status_code == 201
    for i in range(40):
        props: dict[str, Any] = {"platform": PLATFORMS[i % 3], "gsd": 10 + i % 3}
        if i % 5:
            props["eo:cloud_cover"] = (i * 7) % 100
        doc = item(
            f"it{i:02d}",
            lon=-170 + i * 8,
            lat=-40 + i * 2,
            when=f"2021-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00Z",
            **props,
        )
        cid = "s2" if i % 2 == 0 else "ls"
        batches[cid][doc["id"]] = doc
        items.append({**doc, "collection": cid})
    for cid, batch in batches.items():
        body = {"items": batch, "method": "insert"}
        r = client.post(f"/collections/{cid}/bulk_items", json=body, headers=admin)
        assert r.status_code == 200 and r.json()["success"] == len(batch), r.text
    return items


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [f["id"] for f in response.json()["features"]]


def follow(client: TestClient, first: Any, rel: str = "next") -> list[list[str]]:
    """All pages from ``first`` following ``rel`` links (GET or POST)."""
    pages = [ids(first)]
    body = first.json()
    while link := next((lk for lk in body["links"] if lk["rel"] == rel), None):
        if link.get("method") == "POST":
            response = client.post(link["href"], json=link["body"])
        else:
            response = client.get(link["href"])
        pages.append(ids(response))
        body = response.json()
        assert len(pages) < 50
    return pages


def test_default_order_and_counts(client: TestClient, catalogue: list[dict[str, Any]]) -> None:
    r = client.get("/search", params={"limit": 100})
    body = r.json()
    assert body["numberMatched"] == 40 and body["numberReturned"] == 40
    when = [f["properties"]["datetime"] for f in body["features"]]
    assert when == sorted(when, reverse=True)


@pytest.mark.parametrize("direction", ["desc", "asc"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_paging_forward_and_back_is_complete(
    client: TestClient, catalogue: list[dict[str, Any]], method: str, direction: str
) -> None:
    sign = "-" if direction == "desc" else "+"
    if method == "GET":
        first = client.get("/search", params={"limit": 7, "sortby": f"{sign}eo:cloud_cover"})
    else:
        sortby = [{"field": "properties.eo:cloud_cover", "direction": direction}]
        first = client.post("/search", json={"limit": 7, "sortby": sortby})
    pages = follow(client, first)
    flat = [i for page in pages for i in page]
    assert len(flat) == 40 and len(set(flat)) == 40
    assert [len(p) for p in pages] == [7, 7, 7, 7, 7, 5]
    by_id = {d["id"]: d for d in catalogue}
    covers = [by_id[i]["properties"].get("eo:cloud_cover") for i in flat]
    present = [c for c in covers if c is not None]
    assert present == sorted(present, reverse=direction == "desc")
    assert covers[len(present) :] == [None] * (40 - len(present))  # missing values last

    # From the last page, prev links walk back through the same pages.
    last_page = first
    for _ in range(len(pages) - 1):
        link = next(lk for lk in last_page.json()["links"] if lk["rel"] == "next")
        last_page = client.get(link["href"]) if method == "GET" else client.post(
            link["href"], json=link["body"])  # fmt: skip
    back = follow(client, last_page, rel="prev")
    assert back == list(reversed(pages))
    assert not any(lk["rel"] == "prev" for lk in first.json()["links"])


def test_items_endpoint_pages_within_collection(
    client: TestClient, catalogue: list[dict[str, Any]]
) -> None:
    pages = follow(client, client.get("/collections/s2/items", params={"limit": 6}))
    flat = [i for page in pages for i in page]
    assert sorted(flat) == sorted(d["id"] for d in catalogue if d["collection"] == "s2")
    r = client.get("/collections/s2/items", params={"limit": 6})
    rels = {lk["rel"] for lk in r.json()["links"]}
    assert {"self", "root", "collection", "next"} <= rels


def test_bbox_datetime_ids_collections(client: TestClient, catalogue: list[dict[str, Any]]) -> None:
    inside = {d["id"] for d in catalogue if d["bbox"][0] <= 10 and d["bbox"][2] >= -10}
    got = set(ids(client.get("/search", params={"bbox": "-10,-90,10,90", "limit": 100})))
    assert got == inside and got
    got3d = set(ids(client.get("/search", params={"bbox": "-10,-90,0,10,90,1000", "limit": 100})))
    assert got3d == got
    r = client.post("/search", json={"bbox": [-10, -90, 0, 10, 90, 1000], "limit": 100})
    assert set(ids(r)) == got

    june = {d["id"] for d in catalogue if d["properties"]["datetime"].startswith("2021-06")}
    r = client.get("/search", params={"datetime": "2021-06-01T00:00:00Z/2021-06-30T23:59:59Z"})
    assert set(ids(r)) == june
    r = client.get("/search", params={"datetime": "../2021-01-31T23:59:59Z", "limit": 100})
    assert set(ids(r)) == {d["id"] for d in catalogue if d["properties"]["datetime"] < "2021-02"}
    one = catalogue[3]["properties"]["datetime"]
    assert catalogue[3]["id"] in ids(client.get("/search", params={"datetime": one}))

    assert set(ids(client.get("/search", params={"ids": "it03,it05,nope"}))) == {"it03", "it05"}
    r = client.get("/search", params={"collections": "ls", "limit": 100})
    assert {f["collection"] for f in r.json()["features"]} == {"ls"}
    assert r.json()["numberMatched"] == 20


def test_intersects_get_and_post(client: TestClient, catalogue: list[dict[str, Any]]) -> None:
    target = catalogue[10]
    point = {"type": "Point", "coordinates": [target["bbox"][0] + 0.1, target["bbox"][1] + 0.1]}
    assert ids(client.get("/search", params={"intersects": json.dumps(point)})) == [target["id"]]
    assert ids(client.post("/search", json={"intersects": point})) == [target["id"]]


def test_fields_include_exclude(client: TestClient, catalogue: list[dict[str, Any]]) -> None:
    r = client.get("/search", params={"fields": "properties.platform,-assets", "limit": 1})
    feature = r.json()["features"][0]
    # Fields extension v1.0.0, rule 2: an include list gives only those fields (plus identity).
    assert "assets" not in feature and "geometry" not in feature
    assert set(feature["properties"]) == {"platform"}
    assert feature["id"] and feature["type"] == "Feature"
    r = client.post("/search", json={"fields": {"exclude": ["properties"]}, "limit": 1})
    assert "properties" not in r.json()["features"][0]


def test_query_extension(client: TestClient, catalogue: list[dict[str, Any]]) -> None:
    expected = {
        d["id"]
        for d in catalogue
        if d["properties"].get("eo:cloud_cover", 1000) < 20
        and d["properties"]["platform"] != "landsat-8"
    }
    query = {"eo:cloud_cover": {"lt": 20}, "platform": {"neq": "landsat-8"}}
    assert set(ids(client.post("/search", json={"query": query, "limit": 100}))) == expected
    got = client.get("/search", params={"query": json.dumps(query), "limit": 100})
    assert set(ids(got)) == expected


def test_filter_text_and_json(client: TestClient, catalogue: list[dict[str, Any]]) -> None:
    expected = {
        d["id"]
        for d in catalogue
        if d["properties"].get("eo:cloud_cover", 1000) < 30
        and d["properties"]["platform"] == "sentinel-2a"
    }
    text = "eo:cloud_cover < 30 AND platform = 'sentinel-2a'"
    assert set(ids(client.get("/search", params={"filter": text, "limit": 100}))) == expected
    cql_json = {
        "op": "and",
        "args": [
            {"op": "<", "args": [{"property": "eo:cloud_cover"}, 30]},
            {"op": "=", "args": [{"property": "platform"}, "sentinel-2a"]},
        ],
    }
    r = client.post("/search", json={"filter": cql_json, "filter-lang": "cql2-json", "limit": 100})
    assert set(ids(r)) == expected
    r = client.post("/search", json={"filter": text, "filter-lang": "cql2-text", "limit": 100})
    assert set(ids(r)) == expected
    r = client.get("/collections/s2/items", params={"filter": text, "limit": 100})
    assert set(ids(r)) == {i for i in expected if int(i[2:]) % 2 == 0}


def test_sort_on_several_keys(client: TestClient, catalogue: list[dict[str, Any]]) -> None:
    r = client.get("/search", params={"sortby": "platform,-gsd,id", "limit": 100})
    got = [
        (f["properties"]["platform"], -f["properties"]["gsd"], f["id"])
        for f in r.json()["features"]
    ]
    assert got == sorted(got)


# -- offset paging, as OGC API - Features clients (OWSLib) page ---------------------------------
ORDERS = ["", "-eo:cloud_cover", "+eo:cloud_cover", "+datetime"]


def offset_pages(client: TestClient, path: str, limit: int, **params: Any) -> list[list[str]]:
    """Pages as OWSLib reads them: offset += limit until a short page."""
    pages, offset = [], 0
    while True:
        page = ids(client.get(path, params={**params, "limit": limit, "offset": offset}))
        pages.append(page)
        if len(page) < limit:
            return pages
        offset += limit
        assert len(pages) < 50


@pytest.mark.parametrize("sortby", ORDERS)
@pytest.mark.parametrize("path", ["/collections/s2/items", "/search"])
def test_offset_pages_hold_every_item_once_in_the_order_of_one_page(
    client: TestClient,
    catalogue: list[dict[str, Any]],
    path: str,
    sortby: str,
) -> None:
    params = {"sortby": sortby} if sortby else {}
    whole = ids(client.get(path, params={**params, "limit": 100}))
    expected = len([d for d in catalogue if path == "/search" or d["collection"] == "s2"])
    assert len(whole) == expected  # brute force: one page with everything
    pages = offset_pages(client, path, 6, **params)
    flat = [i for page in pages for i in page]
    assert flat == whole


def test_an_offset_page_links_on_by_token_and_back(
    client: TestClient,
    catalogue: list[dict[str, Any]],
) -> None:
    whole = ids(client.get("/collections/s2/items", params={"limit": 100}))
    r = client.get("/collections/s2/items", params={"limit": 5, "offset": 5})
    assert ids(r) == whole[5:10]
    links = {link["rel"]: link["href"] for link in r.json()["links"]}
    assert "offset=5" in links["self"]
    assert ids(client.get(links["next"])) == whole[10:15]
    assert ids(client.get(links["prev"])) == whole[0:5]
    assert r.json()["numberMatched"] == len(whole)


def test_offset_past_the_end_is_an_empty_page(
    client: TestClient,
    catalogue: list[dict[str, Any]],
) -> None:
    r = client.get("/collections/s2/items", params={"offset": 500})
    assert r.status_code == 200 and r.json()["features"] == []
    assert not any(link["rel"] in ("next", "prev") for link in r.json()["links"])


@pytest.mark.parametrize(
    "params",
    [{"offset": -1}, {"offset": "x"}, {"offset": 100_001}, {"offset": 5, "token": "abc"}],
)
def test_bad_offsets_are_refused(
    client: TestClient,
    catalogue: list[dict[str, Any]],
    params: dict[str, Any],
) -> None:
    for path in ("/collections/s2/items", "/search"):
        r = client.get(path, params=params)
        assert r.status_code == 400, (path, params, r.text)
        assert r.json()["code"] == "request.InvalidParameter", r.text
