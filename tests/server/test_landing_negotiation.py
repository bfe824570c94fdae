"""The API root: a browser asking for HTML is sent to the viewer; every JSON client (pystac-client,
GDAL, stac-browser's axios, curl, QGIS) gets the landing page exactly as before."""

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pystac_client import Client

from server.negotiation import prefers_html
from server.settings import Settings
from tests.apps import AppPool
from tests.server.conftest import LiveServer, Offline

# What the browsers send when a person opens a URL (navigation requests).
CHROMIUM = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
            "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7")  # fmt: skip
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
SAFARI = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
BROWSERS = [CHROMIUM, FIREFOX, SAFARI, "text/html", "text/*", "text/html;q=0.9, */*;q=0.1"]
# What clients send: none (GDAL's curl, httpx without one), curl's and requests' */*,
# stac-browser's axios, JSON media types, and HTML offered below JSON.
CLIENTS = [
    None,
    "",
    "*/*",
    "application/json",
    "application/geo+json",
    "application/json, text/plain, */*",
    "application/json;q=0.9, text/html;q=0.8",
    "text/html;q=0.5, application/json",
    "text/html;q=0, */*",
    "text/html;q=0.8, application/*",
    "garbage, ;;, /",
    "text/html;q=oops, */*",
]


def _varies(response: httpx.Response) -> bool:
    """Whether the response says it varies with ``Accept``."""
    return "accept" in [v.strip().lower() for v in response.headers.get("vary", "").split(",")]


@pytest.mark.parametrize("accept", BROWSERS)
def test_html_first_is_a_browser(accept: str) -> None:
    assert prefers_html(accept)


@pytest.mark.parametrize("accept", CLIENTS)
def test_json_or_a_tie_is_a_client(accept: str | None) -> None:
    assert not prefers_html(accept)


def test_browsers_are_sent_to_the_viewer_and_clients_get_the_landing_page(
    client: TestClient,
) -> None:
    plain = client.get("/")
    assert plain.status_code == 200 and plain.headers["content-type"] == "application/json"
    assert _varies(plain)
    landing = plain.json()
    assert landing["type"] == "Catalog" and landing["links"]
    for accept in CLIENTS[1:]:
        r = client.get("/", headers={"Accept": accept})
        assert r.status_code == 200 and r.json() == landing, accept
        assert _varies(r)
    for accept in BROWSERS:
        for method in ("GET", "HEAD"):
            r = client.request(method, "/", headers={"Accept": accept}, follow_redirects=False)
            assert r.status_code == 303, (method, accept)
            assert r.headers["location"] == "http://testserver/viewer/"
            assert _varies(r) and r.content == b""
    # ?f=json shows the JSON in a browser; other paths are never redirected
    r = client.get("/?f=json", headers={"Accept": CHROMIUM})
    assert r.status_code == 200 and r.json() == landing
    r = client.get("/conformance", headers={"Accept": CHROMIUM})
    assert r.status_code == 200 and not _varies(r)
    assert client.get("/collections", headers={"Accept": FIREFOX}).status_code == 200


def test_the_viewer_link_follows_the_proxy_prefix(proxied: TestClient) -> None:
    headers = {"Accept": FIREFOX, "X-Forwarded-Proto": "https",
               "X-Forwarded-Host": "maps.example.org", "X-Forwarded-Prefix": "/stac"}  # fmt: skip
    r = proxied.get("/", headers=headers, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "https://maps.example.org/stac/viewer/"
    r = proxied.get("/", headers={"Forwarded": "proto=https;host=geo.test:8443",
                                  "Accept": CHROMIUM}, follow_redirects=False)  # fmt: skip
    assert r.headers["location"] == "https://geo.test:8443/viewer/"


def test_the_viewer_link_below_a_root_path(settings: Settings, apps: AppPool) -> None:
    """As ``terracat serve`` with ``TERRACAT_API_ROOT_PATH=/catalogue`` (uvicorn's root_path)."""
    with apps.client(settings, root_path="/catalogue") as below:
        r = below.get("/catalogue/", headers={"Accept": CHROMIUM}, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == "http://testserver/catalogue/viewer/"
        r = below.get("/catalogue/", headers={"Accept": "*/*"})
        assert r.status_code == 200 and r.json()["type"] == "Catalog"


def test_real_clients_on_a_live_server(live_server: LiveServer, offline_network: Offline) -> None:
    """uvicorn behind the middleware: browsers' headers redirect, pystac-client opens the API."""
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        landing = http.get("/").json()
        for accept in (CHROMIUM, FIREFOX):
            r = http.get("/", headers={"Accept": accept})
            assert r.status_code == 303, r.text
            assert r.headers["location"] == f"{live_server.url}/viewer/"
        for accept in ("*/*", "application/json, text/plain, */*"):
            r = http.get("/", headers={"Accept": accept, "Origin": "http://127.0.0.1:9"})
            assert r.status_code == 200 and r.json() == landing, accept
            assert r.headers["access-control-allow-origin"] == "*"
    stac = Client.open(live_server.url)
    assert stac.id == landing["id"] and stac.conforms_to("ITEM_SEARCH")


@pytest.mark.skipif(not Path("/usr/bin/gdalinfo").exists(), reason="Debian gdal-bin missing")
def test_gdal_reads_the_landing_page(live_server: LiveServer) -> None:
    """GDAL's OGCAPI driver opens the API root (its collections as subdatasets)."""
    httpx.post(f"{live_server.url}/collections", headers=live_server.auth, json={
        "type": "Collection", "stac_version": "1.1.0", "id": "gdal-landing", "description": "x",
        "license": "other", "links": [],
        "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]}, "temporal": {"interval": [[None, None]]}},
    })  # fmt: skip
    try:  # the live server is the session's: leave its catalogue as it was
        done = subprocess.run(["/usr/bin/gdalinfo", "-json", f"OGCAPI:{live_server.url}/"],
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    finally:
        httpx.delete(f"{live_server.url}/collections/gdal-landing", headers=live_server.auth)
    assert done.returncode == 0, done.stderr
    subdatasets = json.loads(done.stdout)["metadata"]["SUBDATASETS"]
    assert f"OGCAPI:{live_server.url}/collections/gdal-landing" in subdatasets.values()
