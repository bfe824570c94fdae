"""Bad input gets a 4xx with a STAC error body and a stable code; nothing answers 500."""

import pytest
from fastapi.testclient import TestClient

from tests.factories import collection, item

BAD_GET = [
    ("/search?bbox=1,2,3", "search.InvalidBBox"),
    ("/search?bbox=a,b,c,d", "search.InvalidBBox"),
    ("/search?bbox=10,10,0,0,1", "search.InvalidBBox"),
    ("/search?bbox=0,50,10,10", "search.InvalidBBox"),
    ("/search?bbox=0,0,200,10", "search.InvalidBBox"),
    ("/search?bbox=nan,0,1,1", "search.InvalidBBox"),
    ("/search?datetime=yesterday", "search.InvalidDatetime"),
    ("/search?datetime=2021-13-01T00:00:00Z", "search.InvalidDatetime"),
    ("/search?datetime=2022-01-01T00:00:00Z/2021-01-01T00:00:00Z", "search.InvalidDatetime"),
    ("/search?datetime=../..", "search.InvalidDatetime"),
    ("/search?datetime=2021-01-01T00:00:00Z/2021-02-01T00:00:00Z/x", "search.InvalidDatetime"),
    ("/search?intersects={bad", "search.InvalidGeometry"),
    ('/search?intersects={"type":"Polygon","coordinates":[[1,2]]}', "search.InvalidGeometry"),
    ('/search?intersects={"type":"Feature"}', "search.InvalidGeometry"),
    ("/search?limit=0", "search.InvalidLimit"),
    ("/search?limit=-5", "search.InvalidLimit"),
    ("/search?limit=ten", "search.InvalidLimit"),
    ("/search?sortby=nothing", "search.UnknownQueryable"),
    ("/search?sortby=geometry", "search.InvalidSortBy"),
    ("/search?token=garbage!!", "search.InvalidToken"),
    ("/search?token=eyJkIjoibmV4dCJ9", "search.InvalidToken"),
    ("/search?filter=eo:cloud_cover <", "search.InvalidFilter"),
    ("/search?filter=nothing = 1", "search.UnknownQueryable"),
    ("/search?filter=eo:cloud_cover = 'x' AND", "search.InvalidFilter"),
    ("/search?filter=id = 'a'&filter-crs=urn:foo", "search.InvalidFilter"),
    ("/search?query={not json", "request.InvalidParameter"),
    (
        '/search?bbox=0,0,1,1&intersects={"type":"Point","coordinates":[0,0]}',
        "request.InvalidParameter",
    ),
    ('/search?query={"eo:cloud_cover":{"almost":3}}', "request.InvalidParameter"),
    ("/collections?bbox=1,2", "search.InvalidBBox"),
    ("/collections?datetime=never", "search.InvalidDatetime"),
    ("/collections?limit=0", "search.InvalidLimit"),
    ("/collections?sortby=nothing", "search.InvalidSortBy"),
    ("/collections?filter=nothing = 1", "search.UnknownQueryable"),
    ("/collections/c1/items?bbox=1,2", "search.InvalidBBox"),
]

BAD_POST = [
    ({"bbox": [1, 2, 3]}, "search.InvalidBBox"),
    ({"bbox": [0, 0, 1, 1, 2, 3, 4]}, "search.InvalidBBox"),
    ({"datetime": "not a date"}, "search.InvalidDatetime"),
    ({"intersects": {"type": "Polygon", "coordinates": 5}}, "search.InvalidGeometry"),
    ({"limit": 0}, "search.InvalidLimit"),
    ({"limit": "lots"}, "search.InvalidLimit"),
    ({"sortby": [{"field": "nothing", "direction": "asc"}]}, "search.UnknownQueryable"),
    ({"sortby": [{"field": "id", "direction": "sideways"}]}, "search.InvalidSortBy"),
    ({"filter": {"op": "<", "args": [{"property": "eo:cloud_cover"}]}}, "search.InvalidFilter"),
    ({"filter": {"op": "frobnicate", "args": []}}, "search.InvalidFilter"),
    ({"filter": {"op": "=", "args": [{"property": "nope"}, 1]}}, "search.UnknownQueryable"),
    ({"filter": "eo:cloud_cover <", "filter-lang": "cql2-text"}, "search.InvalidFilter"),
    ({"filter": "eo:cloud_cover < 5", "filter-crs": "EPSG:3857"}, "search.InvalidFilter"),
    ({"token": 5}, "search.InvalidToken"),
    ({"collections": "not-a-list"}, "request.InvalidParameter"),
    ({"fields": None}, "request.InvalidParameter"),
    (
        {"bbox": [0, 0, 1, 1], "intersects": {"type": "Point", "coordinates": [0, 0]}},
        "request.InvalidParameter",
    ),
]


@pytest.fixture
def seeded(client: TestClient, admin: dict[str, str]) -> TestClient:
    for path, body in (("/collections", collection("c1")),
                       ("/collections/c1/items", item("a", **{"eo:cloud_cover": 3}))):  # fmt: skip
        r = client.post(path, json=body, headers=admin)
        assert r.status_code == 201, r.text
    return client


@pytest.mark.parametrize(("path", "code"), BAD_GET)
def test_bad_get_parameters(seeded: TestClient, path: str, code: str) -> None:
    r = seeded.get(path)
    assert r.status_code == 400, (path, r.status_code, r.text)
    assert r.json()["code"] == code, r.text
    assert r.json()["description"]


@pytest.mark.parametrize(("body", "code"), BAD_POST)
def test_bad_post_bodies(seeded: TestClient, body: dict[str, object], code: str) -> None:
    r = seeded.post("/search", json=body)
    assert r.status_code == 400, (body, r.status_code, r.text)
    assert r.json()["code"] == code, r.text


def test_limit_above_maximum_is_the_maximum(seeded: TestClient) -> None:
    """OGC API - Features /req/core/fc-limit-response-1 C: no error, the maximum is used."""
    for r in (
        seeded.get("/search?limit=10001"),
        seeded.get("/collections/c1/items?limit=100000"),
        seeded.post("/search", json={"limit": 10_001}),
    ):
        assert r.status_code == 200, r.text
        assert r.json()["numberReturned"] == 1


def test_not_found_and_method_errors(seeded: TestClient) -> None:
    for path in ("/collections/none", "/collections/none/items", "/collections/c1/items/none",
                 "/no/such/route"):  # fmt: skip
        r = seeded.get(path)
        assert r.status_code == 404, path
        assert r.json()["code"] in ("catalog.NotFound", "http.NotFound")
    assert seeded.delete("/search").status_code == 405
    assert seeded.delete("/search").json()["code"] == "http.MethodNotAllowed"


def test_malformed_bodies(seeded: TestClient, admin: dict[str, str]) -> None:
    r = seeded.post("/search", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    for payload in ([1, 2], "text", {"type": "Feature"}, {"id": 5}):
        r = seeded.post("/collections/c1/items", json=payload, headers=admin)
        assert r.status_code == 400, (payload, r.text)
    r = seeded.post("/collections", json={"id": "x", "extent": "everywhere"}, headers=admin)
    assert r.status_code == 400 and r.json()["code"] in ("stac.Invalid", "request.InvalidParameter")


def test_injection_looking_input_is_data(seeded: TestClient) -> None:
    evil = "x'; DROP TABLE items; --"
    for path in (f"/search?ids={evil}", f"/search?collections={evil}",
                 f"/collections/{evil}/items"):  # fmt: skip
        assert seeded.get(path).status_code in (200, 404)
    r = seeded.get("/search", params={"filter": f"id = '{evil.replace(chr(39), chr(39) * 2)}'"})
    assert r.status_code == 200 and r.json()["features"] == []
    assert seeded.get("/collections/c1/items/a").status_code == 200
