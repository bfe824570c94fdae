"""Inputs that once answered 500: each gets a 4xx with a stable code now (issue 13)."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import collection, item


@pytest.fixture
def catalogue(client: TestClient, admin: dict[str, str]) -> TestClient:
    """One collection with one item."""
    assert client.post("/collections", json=collection("c1"), headers=admin).status_code == 201
    doc = item("i1", lon=10, lat=20, when="2021-01-01T00:00:00Z")
    assert client.post("/collections/c1/items", json=doc, headers=admin).status_code == 201
    return client


BIG = str(2**63)
REQUESTS: list[tuple[str, str, Any]] = [
    ("POST", "/search", []),
    ("POST", "/search", 5),
    ("POST", "/search", "x"),
    ("POST", "/search", None),
    ("GET", "/search?ids=%00", None),
    ("GET", "/search?collections=%00", None),
    ("GET", "/search?filter=id%3D%27%00%27", None),
    ("GET", "/collections?q=%00", None),
    ("GET", "/collections/%00", None),
    ("GET", "/collections/c1/items/%00", None),
    ("GET", "/jobs?processID=%00", None),
    ("GET", f"/collections?offset={BIG}", None),
    ("GET", f"/jobs?offset={BIG}", None),
    ("GET", f"/jobs?limit={BIG}", None),
    ("GET", "/jobs/00000000-0000-0000-0000-000000000000/log?line=19942094044045984", None),
    ("GET", f"/jobs/00000000-0000-0000-0000-000000000000/log?line={BIG}", None),
    ("GET", "/search?datetime=0001-01-01T00:00:00%2B01:00", None),
    ("GET", "/search?datetime=9999-12-31T23:59:59-01:00", None),
    ("GET", "/search?datetime=0001-01-01T00:00:00%2B01:00/..", None),
    ("GET", "/collections?datetime=0001-01-01T00:00:00%2B01:00", None),
    ("POST", "/search", {"intersects": {"type": "LineString", "coordinates": [[0, 0], [1, 1, 1]]}}),
    ("POST", "/search", b'{"intersects": {"type": "Point", "coordinates": [NaN, 0]}}'),
    ("POST", "/search", b'{"bbox": [0, 0, Infinity, 1]}'),
    ("POST", "/search", b'{"limit": 1e400}'),
    ("POST", "/collections/c1/items", b""),
    ("PUT", "/collections/c1/items/i1", b""),
    ("POST", "/collections", b""),
    ("PUT", "/collections/c1", b""),
    ("POST", "/collections/c1/items", {"type": "Feature", "id": "nul", "title": "\u0000"}),
    ("GET", '/search?intersects={"type":"Point","coordinates":[NaN,0]}', None),
    ("GET", '/search?intersects={"type":"Point","coordinates":[Infinity,0]}', None),
    ("GET", "/search?bbox=0,0,NaN,1", None),
    ("GET", "/search?bbox=0,0,inf,1", None),
    ("POST", "/collections/c1/bulk_items", None),  # no body at all (schemathesis)
]


@pytest.mark.parametrize(("method", "url", "body"), REQUESTS)
def test_no_500(
    catalogue: TestClient, admin: dict[str, str], method: str, url: str, body: Any
) -> None:
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    if isinstance(body, bytes):  # JSON that Python's encoder would refuse to write, or none
        kwargs = {"content": body, "headers": {"Content-Type": "application/json"}}
    # What a client sees: the 500 response, not the exception the test client re-raises.
    kwargs["headers"] = {**kwargs.get("headers", {}), **admin}
    answer = TestClient(catalogue.app, raise_server_exceptions=False).request(method, url, **kwargs)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert "code" in answer.json()
