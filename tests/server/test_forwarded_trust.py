"""Forwarding headers count only from the proxies ``TERRACAT_API_FORWARDED_ALLOW_IPS`` names.

Otherwise any client could send ``X-Forwarded-Host`` and have a CDN cache pages whose links
point at a host of its choosing. Loopback is trusted by default (a proxy on the same machine).
"""

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.middleware import BodyLimits, middlewares
from server.settings import ApiSettings, Settings
from tests.apps import AppPool
from tests.factories import collection, item
from tests.server.conftest import _start, _stop

X_FORWARDED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Port": "8443",
    "X-Forwarded-Prefix": "/evil",
}
FORWARDED = {"Forwarded": "proto=https;host=evil.example:8443", "X-Forwarded-Prefix": "/evil"}
SPOOFED = "https://evil.example:8443/evil/"
PATHS = ("/", "/collections/c1", "/collections/c1/items/i0", "/search?limit=1", "/tileMatrixSets",
         "/collections/c1/tiles", "/processes")  # fmt: skip


def _hrefs(doc: Any) -> list[str]:
    """Every ``href`` anywhere in a JSON document."""
    if isinstance(doc, dict):
        own = [doc["href"]] if isinstance(doc.get("href"), str) else []
        return own + [h for value in doc.values() for h in _hrefs(value)]
    if isinstance(doc, list):
        return [h for value in doc for h in _hrefs(value)]
    return []


def _own_links(client: TestClient, path: str, headers: dict[str, str]) -> list[str]:
    r = client.get(path, headers=headers)
    assert r.status_code == 200, (path, r.text)
    # Our links: not the assets' s3:// nor the test items' example.com licence.
    hrefs = [h for h in _hrefs(r.json()) if h.startswith("http") and "example.com" not in h]
    assert hrefs, path
    return hrefs


@pytest.mark.parametrize(
    ("peer", "spoof"),
    [(("testclient", 50000), X_FORWARDED), (("203.0.113.7", 4321), FORWARDED),
     (("2001:db8::7", 1), X_FORWARDED)],
    ids=["testclient", "ipv4", "ipv6"],
)  # fmt: skip
def test_a_client_that_is_no_trusted_proxy_cannot_rewrite_links(
    client: TestClient,
    proxied: TestClient,
    admin: dict[str, str],
    peer: tuple[str, int],
    spoof: dict[str, str],
) -> None:
    client.post("/collections", json=collection("c1"), headers=admin)
    client.post("/collections/c1/items", json=item("i0"), headers=admin)
    direct = TestClient(client.app, client=peer)
    for path in PATHS:
        hrefs = _own_links(direct, path, spoof)
        assert all(h.startswith("http://testserver/") for h in hrefs), (path, hrefs)
        # The same request through the local proxy gets the links it asks for.
        behind = _own_links(proxied, path, spoof)
        assert all(h.startswith(SPOOFED) for h in behind), (path, behind)
    r = direct.post("/collections", json=collection("c2"), headers={**admin, **spoof})
    assert r.status_code == 201 and "evil" not in r.text


def test_the_trusted_proxies_are_configured_by_address_and_network(
    settings: Settings, apps: AppPool
) -> None:
    settings.api = ApiSettings(
        admin_token=settings.api.admin_token,
        forwarded_allow_ips=" 10.0.0.0/8 ,2001:db8::/32, 192.0.2.1",
    )
    assert settings.api.forwarded_allow_ips == "10.0.0.0/8,2001:db8::/32,192.0.2.1"
    with apps.client(settings) as started:
        for host, trusted in [("10.1.2.3", True), ("2001:db8::5", True), ("192.0.2.1", True),
                              ("192.0.2.2", False), ("127.0.0.1", False), ("::1", False),
                              ("testclient", False)]:  # fmt: skip
            peer = TestClient(started.app, client=(host, 1000))
            hrefs = _own_links(peer, "/", X_FORWARDED)
            expected = SPOOFED if trusted else "http://testserver/"
            assert all(h.startswith(expected) for h in hrefs), (host, hrefs)


def _echo_app(api: ApiSettings) -> Starlette:
    """What the middleware stack leaves a route: its base URL and client address."""

    async def echo(request: Request) -> JSONResponse:
        client = request.client.host if request.client else None
        return JSONResponse({"base": str(request.base_url), "client": client})

    stack = middlewares(api, BodyLimits(1024))[::-1]
    return Starlette(routes=[Route("/", echo)], middleware=stack)


@pytest.mark.parametrize(
    ("allow", "peer", "trusted"),
    [("*", "testclient", True), ("*", "198.51.100.1", True), ("", "127.0.0.1", False),
     ("127.0.0.1", "::ffff:127.0.0.1", True), ("::ffff:127.0.0.1", "127.0.0.1", True),
     ("::ffff:10.0.0.0/104", "::ffff:10.9.8.7", True), ("127.0.0.0/8", "127.0.0.2", True)],
)  # fmt: skip
def test_trust_everyone_no_one_and_mapped_addresses(allow: str, peer: str, trusted: bool) -> None:
    client = TestClient(_echo_app(ApiSettings(forwarded_allow_ips=allow)), client=(peer, 1))
    doc = client.get("/", headers={**X_FORWARDED, "X-Forwarded-For": "203.0.113.9"}).json()
    if trusted:  # the client address from X-Forwarded-For, as uvicorn's middleware takes it
        assert doc == {"base": SPOOFED, "client": "203.0.113.9"}
    else:
        assert doc == {"base": "http://testserver/", "client": peer}


@pytest.mark.parametrize("allow", ["10.0.0.0/8,proxy.local", "10.0.0.1/8", "127.0.0.1;::1"])
def test_a_malformed_trust_list_is_refused(allow: str) -> None:
    with pytest.raises(ValidationError, match="forwarded_allow_ips"):
        ApiSettings(forwarded_allow_ips=allow)


def test_terracat_serve_honours_only_the_configured_proxy(databases: Any) -> None:
    """The real command on loopback, trusting 127.0.0.2 only: the same request with the same
    headers from 127.0.0.1 (which uvicorn alone would trust) gets links to the real server."""
    url = databases.create(f"terracat_forwarded_{databases.suffix}")
    proc, server = _start(url, serve=True, TERRACAT_API_FORWARDED_ALLOW_IPS="127.0.0.2")
    try:
        port = server.url.rsplit(":", 1)[1]
        headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "maps.example.org",
                   "X-Forwarded-For": "203.0.113.9"}  # fmt: skip
        links = {}
        for source in ("127.0.0.1", "127.0.0.2"):
            transport = httpx.HTTPTransport(local_address=source)
            with httpx.Client(transport=transport, timeout=30) as http:
                r = http.get(f"{server.url}/", headers=headers)
                assert r.status_code == 200, r.text
                links[source] = [link["href"] for link in r.json()["links"]]
        assert all(h.startswith(f"http://127.0.0.1:{port}/") for h in links["127.0.0.1"])
        assert all(h.startswith("https://maps.example.org/") for h in links["127.0.0.2"])
        access = [line for line in server.log().splitlines() if '"GET / HTTP/1.1" 200' in line]
        assert len(access) == 2, server.log()
        assert "127.0.0.1:" in access[0] and "203.0.113.9" in access[1], access
    finally:
        _stop(proc, server)
