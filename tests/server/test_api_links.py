"""Links stay right behind a reverse proxy and under a sub-path; CORS and gzip."""

from fastapi.testclient import TestClient

from server.app import create_app
from server.settings import ApiSettings, Settings
from tests.factories import collection, item


def _hrefs(body: dict) -> list[str]:
    return [link["href"] for link in body["links"]]


def _seed(client: TestClient, admin: dict[str, str]) -> None:
    client.post("/collections", json=collection("c1"), headers=admin)
    for i in range(3):
        client.post("/collections/c1/items", json=item(f"i{i}"), headers=admin)


def test_x_forwarded_headers(
    client: TestClient, proxied: TestClient, admin: dict[str, str]
) -> None:
    _seed(client, admin)
    headers = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "maps.example.org",
        "X-Forwarded-Prefix": "/stac",
    }
    for path in ("/", "/collections", "/collections/c1", "/collections/c1/items?limit=1",
                 "/search?limit=1", "/collections/c1/items/i0"):  # fmt: skip
        body = proxied.get(path, headers=headers).json()
        hrefs = _hrefs(body) + [h for f in body.get("features", []) for h in _hrefs(f)]
        hrefs += [h for c in body.get("collections", []) for h in _hrefs(c)]
        own = [h for h in hrefs if "example.com" not in h]
        assert own and all(h.startswith("https://maps.example.org/stac/") for h in own), (path, own)
    r = proxied.post("/search", json={"limit": 1}, headers=headers)
    nxt = next(lk for lk in r.json()["links"] if lk["rel"] == "next")
    assert nxt["href"] == "https://maps.example.org/stac/search"


def test_forwarded_header(client: TestClient, proxied: TestClient, admin: dict[str, str]) -> None:
    _seed(client, admin)
    body = proxied.get("/collections/c1", headers={"Forwarded": "proto=https;host=geo.test:8443"})
    assert all(h.startswith("https://geo.test:8443/") for h in _hrefs(body.json()))


def test_root_path_setting(settings: Settings, admin: dict[str, str]) -> None:
    settings.api = ApiSettings(root_path="/catalogue/", admin_token=settings.api.admin_token)
    with TestClient(create_app(settings), root_path="/catalogue") as client:
        _seed(client, admin)
        body = client.get("/catalogue/collections/c1/items?limit=1").json()
        assert body["features"], body
        assert all("/catalogue/" in h for h in _hrefs(body))
        landing = client.get("/catalogue/").json()
        assert all(h.startswith("http://testserver/catalogue") for h in _hrefs(landing))


def test_cors_and_gzip(client: TestClient, admin: dict[str, str]) -> None:
    _seed(client, admin)
    r = client.get(
        "/search?limit=3", headers={"Origin": "https://app.example", "Accept-Encoding": "gzip"}
    )
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers.get("content-encoding") == "gzip"
    pre = client.options(
        "/search",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code == 200 and "POST" in pre.headers["access-control-allow-methods"]


def test_openapi_and_conformance(client: TestClient) -> None:
    spec = client.get("/api").json()
    assert "/search" in spec["paths"] and "/collections/{collection_id}/bulk_items" in spec["paths"]
    conforms = set(client.get("/conformance").json()["conformsTo"])
    for uri in (
        "https://api.stacspec.org/v1.0.0/core",
        "https://api.stacspec.org/v1.0.0/item-search",
        "https://api.stacspec.org/v1.0.0/ogcapi-features/extensions/transaction",
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
        "http://www.opengis.net/spec/cql2/1.0/conf/array-functions",
        "http://www.opengis.net/spec/cql2/1.0/conf/temporal-functions",
        "https://api.stacspec.org/v1.0.0-rc.1/collection-search",
        "https://api.stacspec.org/v1.1.0/item-search#sort",
        "https://api.stacspec.org/v1.0.0/item-search#fields",
        "https://api.stacspec.org/v1.0.0/item-search#query",
    ):
        assert uri in conforms, uri
