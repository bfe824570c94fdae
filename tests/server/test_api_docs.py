"""``/api.html`` works without internet: every file the page loads comes from this server."""

import re
from html.parser import HTMLParser
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.server.conftest import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


class _Fetched(HTMLParser):
    """The URLs an HTML page makes a browser fetch (scripts, style sheets, icons, images)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        url = named.get("src") if tag in ("script", "img", "iframe") else None
        url = named.get("href") if tag == "link" else url
        if url:
            self.urls.append(url)


def _fetched(html: str) -> list[str]:
    parser = _Fetched()
    parser.feed(html)
    return parser.urls


def _page(client: TestClient, path: str, **headers: str) -> str:
    r = client.get(path, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), r.text
    assert not re.findall(r"https?://", r.text), r.text  # nothing absolute, so no other host
    return r.text


def test_the_docs_page_loads_only_files_of_this_server(client: TestClient) -> None:
    html = _page(client, "/api.html")
    assert "url: '/api'" in html  # the OpenAPI document, ours too
    urls = _fetched(html)
    assert {Path(u).suffix for u in urls} == {".js", ".css", ".png"}, urls
    for url in urls:
        assert url.startswith("/") and not urlsplit(url).netloc, url
        r = client.get(url)
        assert r.status_code == 200, url
        assert r.headers["content-type"].startswith(TYPES[Path(url).suffix]), r.headers
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        again = client.get(url, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and "max-age=31536000" in again.headers["cache-control"]
        if url.endswith(".js"):
            assert b"SwaggerUIBundle" in r.content and len(r.content) > 500_000
    landing = client.get("/").json()
    doc = next(link for link in landing["links"] if link["rel"] == "service-doc")
    assert doc["href"] == "http://testserver/api.html" and doc["type"] == "text/html"


def test_the_docs_page_below_a_proxy_prefix(proxied: TestClient) -> None:
    html = _page(proxied, "/api.html", **{"X-Forwarded-Prefix": "/stac"})
    assert "url: '/stac/api'" in html and "'/stac/docs/oauth2-redirect'" in html
    urls = _fetched(html)
    assert urls and all(u.startswith("/stac/api-assets/") for u in urls), urls
    for url in urls:  # the proxy takes its prefix off before passing the request on
        assert proxied.get(url.removeprefix("/stac")).status_code == 200, url


def test_the_oauth2_redirect_page_loads_nothing(client: TestClient) -> None:
    html = _page(client, "/docs/oauth2-redirect")
    assert _fetched(html) == [] and "opener" in html


@pytest.mark.skipif(
    find_spec("playwright") is None or not CHROMIUM.exists(),
    reason="needs PyPI playwright and Debian chromium",
)
def test_the_docs_page_renders_the_operations_with_no_other_host(live_server: LiveServer) -> None:
    """Headless Chromium, every request to another host refused: Swagger UI lists our routes."""
    from playwright import sync_api

    ours = urlsplit(live_server.url).netloc
    refused: list[str] = []

    def only_ours(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).netloc == ours:
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.route("**/*", only_ours)
            page.goto(f"{live_server.url}/api.html")  # returns once its scripts ran or failed
            assert refused == [], refused
            page.wait_for_selector(".opblock-summary-path", timeout=60_000)
            paths = set(page.locator(".opblock-summary-path").all_inner_texts())
            title = page.locator(".info .title").inner_text()
        finally:
            browser.close()
    assert refused == [], refused
    assert {"/search", "/collections/{collection_id}/items", "/processes"} <= paths, paths
    assert title.startswith("Terracat")
