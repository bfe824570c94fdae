"""``/viewer/`` as HTTP: the page, its built files and its configuration (the page in a real
browser: test_viewer_browser.py)."""

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from server.settings import Settings
from server.viewer.settings import ViewerSettings
from tests.apps import AppPool

REVALIDATE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"


def test_the_page_and_its_files_come_from_this_server(client: TestClient) -> None:
    r = client.get("/viewer/")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == REVALIDATE
    assert not re.findall(r"(?:src|href)=\"(?:https?:)?//", r.text), r.text  # no other host
    files = re.findall(r'(?:src|href)="(assets/[^"]+)"', r.text)
    assert {Path(f).suffix for f in files} == {".js", ".css"}, files
    for name in files:
        asset = client.get(f"/viewer/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["cache-control"] == IMMUTABLE
        assert asset.headers["content-type"].startswith(("text/javascript", "text/css"))
    script = client.get(f"/viewer/{next(f for f in files if f.endswith('.js'))}").text
    worker = re.search(r"maplibre-gl-worker-[0-9a-f]+\.mjs", script)
    assert worker, "the bundle names MapLibre's worker"
    assert client.get(f"/viewer/assets/{worker[0]}").status_code == 200
    assert client.get("/viewer", follow_redirects=False).status_code in (307, 308)


def test_the_configuration_names_the_base_map_and_the_presets(
    settings: Settings, apps: AppPool
) -> None:
    settings.viewer.title = "Field maps"
    settings.viewer.base_map = "https://tiles.example.org/{z}/{x}/{y}.png"
    with apps.client(settings) as client:
        r = client.get("/viewer/config.json")
    assert r.status_code == 200 and r.headers["cache-control"] == REVALIDATE
    config = r.json()
    assert config["title"] == "Field maps"
    assert config["base_map"] == {"kind": "xyz", "url": settings.viewer.base_map,
                                  "attribution": ""}  # fmt: skip
    ndvi = next(p for p in config["presets"] if p["name"] == "ndvi")
    assert ndvi["bands"] == [["nir", "nir08"], ["red"]]


def test_the_default_base_map_is_none(client: TestClient) -> None:
    assert client.get("/viewer/config.json").json()["base_map"]["kind"] == "none"


def test_unknown_files_are_404_and_names_cannot_leave_the_folder(client: TestClient) -> None:
    for name in ("nothing.js", "..%2Findex.html", ".hidden", "a%00b.js"):
        r = client.get(f"/viewer/assets/{name}")
        assert r.status_code == 404, (name, r.text)
        assert r.json()["code"] in ("catalog.NotFound", "http.NotFound")


def test_a_server_without_the_built_page_says_so(
    settings: Settings, apps: AppPool, tmp_path: Path
) -> None:
    settings.viewer.bundle_dir = tmp_path / "not-built"
    with apps.client(settings) as client:
        for path in ("/viewer/", "/viewer/assets/main.js"):
            r = client.get(path)
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "viewer.NotBuilt"
            assert "make bootstrap" in r.json()["description"]
        assert client.get("/viewer/config.json").status_code == 200


def test_the_base_map_and_logo_are_urls_or_paths_of_this_server() -> None:
    assert ViewerSettings(base_map="https://example.org/tiles.json").base_map_kind() == "tilejson"
    assert ViewerSettings(base_map="/basemap/{z}/{x}/{y}.png").base_map_kind() == "xyz"
    assert ViewerSettings(logo_url=" /static/logo.png ").logo_url == "/static/logo.png"
    for bad in ({"base_map": "javascript:alert(1)"}, {"logo_url": "file:///etc/passwd"}):
        with pytest.raises(ValidationError, match="http"):
            ViewerSettings(**bad)
