"""POST /searches and GET /searches/{searchId}: saved searches and their error codes."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADMIN, Databases
from tests.factories import collection, item
from tests.tiler.conftest import SharedCatalogue, add_collection, shared_catalogue

FILTER_JSON = {"op": "<", "args": [{"property": "gsd"}, 20]}


@pytest.fixture(scope="module")
def searches_catalogue(
    databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedCatalogue]:
    """Collection ``s`` with one item that has a ``gsd`` (so ``gsd`` is queryable), made once."""
    with shared_catalogue(databases, "searches", tmp_path_factory) as shared:
        add_collection(shared.client, collection("s"))
        r = shared.client.post("/collections/s/items", json=item("one", gsd=10), headers=ADMIN)
        assert r.status_code == 201, r.text
        yield shared


@pytest.fixture
def catalogue(searches_catalogue: SharedCatalogue) -> Iterator[TestClient]:
    """A client on the shared collection ``s``; the searches a test saves are deleted after it."""
    yield searches_catalogue.client
    searches_catalogue.forget_searches()


def register(client: TestClient, admin: dict[str, str], body: Any) -> Any:
    return client.post("/searches", json=body, headers=admin)


def test_register_returns_the_canonical_search_and_its_map_links(
    catalogue: TestClient, admin: dict[str, str]
) -> None:
    r = register(catalogue, admin, {"collections": ["s"], "filter": "gsd < 20", "limit": 3})
    assert r.status_code == 201, r.text
    doc = r.json()
    sid = doc["id"]
    assert len(sid) == 32
    assert doc["search"] == {
        "collections": ["s"],
        "filter": FILTER_JSON,
        "filter-lang": "cql2-json",
    }
    base = f"http://testserver/searches/{sid}"
    assert r.headers["location"] == base
    links = {(link["rel"], link["href"]) for link in doc["links"]}
    assert ("self", base) in links
    for tms in ("WebMercatorQuad", "WorldCRS84Quad"):
        assert ("tilejson", f"{base}/tiles/{tms}/tilejson.json") in links
        assert ("item", f"{base}/tiles/{tms}/{{tileMatrix}}/{{tileCol}}/{{tileRow}}") in links
    templated = [link for link in doc["links"] if link["rel"] == "item"]
    assert all(link["templated"] is True for link in templated)


def test_the_same_search_twice_gets_the_same_id(
    catalogue: TestClient, admin: dict[str, str]
) -> None:
    first = register(catalogue, admin, {"collections": ["s"], "filter": "gsd < 20"})
    assert first.status_code == 201
    again = register(
        catalogue,
        admin,
        {"collections": ["s", "s"], "filter": FILTER_JSON, "filter-lang": "cql2-json"},
    )
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    other = register(catalogue, admin, {"collections": ["s"], "filter": "gsd < 30"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]


def test_get_a_saved_search(catalogue: TestClient, admin: dict[str, str]) -> None:
    saved = register(
        catalogue, admin, {"collections": ["s"], "datetime": "2021-01-01T00:00:00Z/.."}
    )
    # a saved search is its saver's: the bootstrap admin's here (tests/tiler/test_rights_maps.py
    # has accounts' searches)
    r = catalogue.get(f"/searches/{saved.json()['id']}", headers=admin)
    assert r.status_code == 200
    assert r.json() == saved.json()
    assert catalogue.get(f"/searches/{saved.json()['id']}").status_code == 401


def test_unknown_search_is_404(catalogue: TestClient, admin: dict[str, str]) -> None:
    for path, headers in (
        ("/searches/0123456789abcdef0123456789abcdef", admin),
        ("/searches/nope/tiles/WebMercatorQuad/tilejson.json", {}),
        ("/searches/nope/tiles/WebMercatorQuad/3/4/2.png", {}),
    ):
        r = catalogue.get(path, headers=headers)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["code"] == "search.NotFound"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"filter": "gsd <<< 3"}, "search.InvalidFilter"),
        ({"filter": {"op": "frobnicate", "args": []}}, "search.InvalidFilter"),
        ({"collections": ["s"], "filter": "cloudiness < 3"}, "search.UnknownQueryable"),
        ({"filter": "gsd < 3", "filter-lang": "cql3"}, "search.InvalidFilter"),
        ({"bbox": [1, 2, 3]}, "search.InvalidBBox"),
        ({"bbox": [10, 50, 0, 40]}, "search.InvalidBBox"),
        ({"intersects": {"type": "Polygon", "coordinates": "x"}}, "search.InvalidGeometry"),
        ({"datetime": "yesterday"}, "search.InvalidDatetime"),
        ({"sortby": [{"field": "geometry", "direction": "asc"}]}, "search.InvalidSortBy"),
        ({"sortby": [{"field": "datetime", "direction": "sideways"}]}, "search.InvalidSortBy"),
        ({"query": {"gsd": {"lt": "ten"}}}, "search.InvalidFilter"),
        ({"query": {"gsd": "ten"}}, "request.InvalidParameter"),
        ({"collections": "s"}, "request.InvalidParameter"),
        ({"filter-crs": "EPSG:3857", "filter": "gsd < 3"}, "search.InvalidFilter"),
        ([{"collections": ["s"]}], "request.InvalidParameter"),
        ("not json at all", "request.InvalidParameter"),
    ],
)
def test_bad_search_bodies_are_400_with_our_codes(
    catalogue: TestClient, admin: dict[str, str], body: Any, code: str
) -> None:
    if isinstance(body, str):
        r = catalogue.post(
            "/searches", content=body, headers={**admin, "Content-Type": "application/json"}
        )
    else:
        r = register(catalogue, admin, body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == code, r.text
    assert r.json()["description"]


def test_registering_needs_the_admin_token(catalogue: TestClient) -> None:
    r = catalogue.post("/searches", json={"collections": ["s"]})
    assert r.status_code == 401
    assert r.json()["code"] == "auth.Unauthorized"
    r = catalogue.post(
        "/searches", json={"collections": ["s"]}, headers={"Authorization": "Bearer wrong"}
    )
    assert r.status_code == 401


def test_searches_are_in_the_openapi_document(catalogue: TestClient) -> None:
    paths = catalogue.get("/api").json()["paths"]
    assert paths["/searches"]["post"]["operationId"] == "registerSearch"
    assert paths["/searches/{searchId}"]["get"]["operationId"] == "getSearch"
    tile = "/searches/{searchId}/tiles/{tileMatrixSetId}/{z}/{x}/{y}"
    assert paths[tile]["get"]["operationId"] == "getSearchMosaicTile"
    tilejson = "/collections/{collectionId}/tiles/{tileMatrixSetId}/tilejson.json"
    assert paths[tilejson]["get"]["operationId"] == "getCollectionMosaicTileJSON"
    # the tileset metadata stays ogc/tiles.py's
    metadata = paths["/collections/{collectionId}/tiles/{tileMatrixSetId}"]["get"]
    assert metadata["operationId"] == "getCollectionMapTileSet"
