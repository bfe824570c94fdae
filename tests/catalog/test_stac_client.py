"""The STAC client's item searches answer a ready Response, not a document to re-serialize."""

import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from catalog.accounts.repository import AccountRepository
from catalog.db.engine import create_engine
from catalog.settings import DatabaseSettings
from catalog.stac.client import CoreClient
from catalog.stac.repository import CatalogRepository
from catalog.stac.requests import SearchPostRequest
from catalog.stac.serializers import collection_row, item_row
from tests.factories import collection, item


@pytest.fixture
async def repo(database_url: str) -> AsyncIterator[CatalogRepository]:
    engine = create_engine(database_url, DatabaseSettings())
    repository = CatalogRepository(engine)
    await repository.create_collection(collection_row(collection("c1")))
    rows = [item_row(item(f"i{n}", lon=n), "c1") for n in range(3)]
    await repository.write_items("c1", rows, upsert=False)
    yield repository
    await engine.dispose()


def _request(
    repo: CatalogRepository, method: str, path: str, query: str = "", body: Any = None
) -> Request:
    # Anonymous (no rights dependency ran): the public collections of the catalogue.
    accounts = AccountRepository(repo.engine)
    app = SimpleNamespace(
        state=SimpleNamespace(repository=repo, accounts=accounts, router_prefix="")
    )
    scope = {
        "type": "http",
        "method": method,
        "scheme": "http",
        "server": ("testserver", 80),
        "path": path,
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "app": app,
    }
    content = json.dumps(body).encode() if body is not None else b""

    async def receive() -> Message:
        return {"type": "http.request", "body": content, "more_body": False}

    return Request(scope, receive)


def _page(response: Any) -> dict[str, Any]:
    assert isinstance(response, Response)
    assert response.media_type == "application/geo+json"
    page: dict[str, Any] = orjson.loads(response.body)
    assert page["type"] == "FeatureCollection"
    return page


async def test_get_search_answers_a_geojson_response(repo: CatalogRepository) -> None:
    request = _request(repo, "GET", "/search", "limit=2")
    page = _page(await CoreClient().get_search(request=request, limit=2))
    assert page["numberReturned"] == 2 and page["numberMatched"] == 3
    assert [link["rel"] for link in page["links"]] == ["root", "self", "next"]


async def test_item_collection_answers_a_geojson_response(repo: CatalogRepository) -> None:
    request = _request(repo, "GET", "/collections/c1/items")
    page = _page(await CoreClient().item_collection("c1", request=request))
    assert sorted(f["id"] for f in page["features"]) == ["i0", "i1", "i2"]
    assert "collection" in {link["rel"] for link in page["links"]}


async def test_post_search_answers_a_geojson_response(repo: CatalogRepository) -> None:
    body = {"ids": ["i1"], "limit": 5}
    request = _request(repo, "POST", "/search", body=body)
    search = SearchPostRequest.model_validate(body)
    page = _page(await CoreClient().post_search(search, request=request))
    assert [f["id"] for f in page["features"]] == ["i1"]
