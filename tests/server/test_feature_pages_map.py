"""The HTML feature pages (``f=html``) draw their features on a map (headless Chromium, live
server): the page's own GeoJSON, with MapLibre served by this server; nothing from another
host."""

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import imagecodecs
import numpy as np
import pytest
import shapely
from playwright.sync_api import Browser, Page, expect

from catalog.vector.schema import PropertyType
from ogc.feature_pages import FeaturePages
from server.viewer.routes import page_map_files
from server.viewer.settings import ViewerSettings
from tests.vector_data import vector_collection

from .conftest import LOOPBACK, StoringServer, loopback_only

PLOTS = "page-plots"
BACKGROUND = np.array([0xF4, 0xF6, 0xF8])
SQUARES = {"wheat": (2.0, 44.0), "rye": (4.0, 45.0), "oat": (6.0, 44.5)}  # west, south; 1 deg


@pytest.fixture(scope="module")
def plots(clients_server: StoringServer) -> str:
    rows = [(shapely.box(w, s, w + 1, s + 1), crop, n) for n, (crop, (w, s)) in
            enumerate(SQUARES.items(), start=1)]  # fmt: skip
    properties = [("crop", PropertyType.STRING), ("n", PropertyType.INTEGER)]
    vector_collection(clients_server.database_url, PLOTS, properties, rows)
    return f"{clients_server.url}/collections/{PLOTS}"


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, list[str], list[str]]]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    refused = loopback_only(context)
    page = context.new_page()
    requested: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield page, requested, errors
    context.close()
    assert not refused, f"the page tried to leave the machine: {refused}"
    assert not errors, f"the page logged errors: {errors}"
    assert {urlparse(url).hostname for url in requested} <= LOOPBACK


def _drawn(page: Page) -> np.ndarray:
    expect(page.locator("#items-map")).to_have_attribute("data-ready", "true")
    return imagecodecs.png_decode(page.locator("#items-map canvas").screenshot())[..., :3]


def _at(page: Page, lon: float, lat: float) -> tuple[int, int]:
    x, y = page.evaluate(
        "([lon, lat]) => { const p = window.terracatFeatureMap.project([lon, lat]);"
        " return [p.x, p.y]; }", [lon, lat],
    )  # fmt: skip
    return int(round(y)), int(round(x))


def _coloured(pixels: np.ndarray, row: int, col: int) -> bool:
    """Whether the pixels around (row, col) are not the map's background."""
    patch = pixels[row - 2 : row + 3, col - 2 : col + 3].reshape(-1, 3).astype(int)
    return bool((np.abs(patch - BACKGROUND).sum(axis=1) > 30).all())


def test_the_items_page_draws_its_features(
    plots: str, page: tuple[Page, list[str], list[str]]
) -> None:
    tab, requested, _ = page
    tab.goto(f"{plots}/items?f=html")
    pixels = _drawn(tab)
    for west, south in SQUARES.values():
        assert _coloured(pixels, *_at(tab, west + 0.5, south + 0.5)), (west, south)
    # between the squares and off them: the background
    for lon, lat in ((3.5, 44.2), (5.5, 45.8), (4.5, 44.2)):
        row, col = _at(tab, lon, lat)
        assert 0 <= row < pixels.shape[0] and 0 <= col < pixels.shape[1]
        assert not _coloured(pixels, row, col), (lon, lat)
    # MapLibre came from this server's viewer build, with its worker
    assert any("/viewer/assets/features-page-" in url for url in requested)
    assert any("/viewer/assets/maplibre-gl-worker-" in url for url in requested)
    assert not any(url.startswith(f"{plots}/items?") and "f=html" not in url for url in requested)
    # a click on a feature opens its page
    row, col = _at(tab, SQUARES["oat"][0] + 0.5, SQUARES["oat"][1] + 0.5)
    tab.locator("#items-map canvas").click(position={"x": col, "y": row})
    tab.wait_for_url(f"{plots}/items/3?f=html")
    expect(tab.locator("main")).to_contain_text("oat")


def test_a_feature_page_draws_its_feature(
    plots: str, page: tuple[Page, list[str], list[str]]
) -> None:
    tab, _, _ = page
    tab.goto(f"{plots}/items/2?f=html")
    pixels = _drawn(tab)
    west, south = SQUARES["rye"]
    assert _coloured(pixels, *_at(tab, west + 0.5, south + 0.5))
    assert _coloured(pixels, *_at(tab, west + 0.1, south + 0.9))
    # the map fits the one feature: the others are off it or not drawn
    height, width = pixels.shape[:2]
    for other in ("wheat", "oat"):
        row, col = _at(tab, SQUARES[other][0] + 0.5, SQUARES[other][1] + 0.5)
        assert not (0 <= row < height and 0 <= col < width) or not _coloured(pixels, row, col)


def test_pages_without_lonlat_geometries_have_no_map(
    plots: str, page: tuple[Page, list[str], list[str]]
) -> None:
    tab, requested, _ = page
    for query in ("crs=EPSG:3857", "skipGeometry=true"):
        tab.goto(f"{plots}/items?f=html&{query}")
        expect(tab.locator("table")).to_be_visible()
        expect(tab.locator("#items-map")).to_be_hidden()
    assert not any("/viewer/assets/" in url for url in requested)


def test_the_map_files_come_from_the_viewer_build_or_none(tmp_path: Path) -> None:
    files = page_map_files(ViewerSettings(bundle_dir=tmp_path))
    pages = FeaturePages("Terracat", "test", 10, 100, map_files=files)
    square = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    body = {
        "type": "FeatureCollection",
        "links": [],
        "numberMatched": 1,
        "features": [
            {"type": "Feature", "id": 1, "geometry": square, "properties": {"a": "</script>"}}
        ],
    }
    html = pages.items("http://h/", "c", "C", body, False)
    assert "<table" in html and "features-geojson" not in html  # not built: no map
    manifest = tmp_path / "features-page.json"
    manifest.write_text(json.dumps({"script": "assets/f-1.js", "style": "assets/f-1.css"}))
    html = pages.items("http://h/", "c", "C", body, False)
    assert '<script type="module" src="http://h/viewer/assets/f-1.js">' in html
    assert '<link rel="stylesheet" href="http://h/viewer/assets/f-1.css">' in html
    embedded = html.split('id="features-geojson">')[1].split("</script>")[0]
    assert json.loads(embedded)["features"][0]["geometry"] == square
    manifest.write_text(json.dumps({"script": "../../etc/passwd", "style": "assets/f-1.css"}))
    assert files() is None
