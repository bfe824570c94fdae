"""A datacube collection in the viewer (headless Chromium, live server): its card offers the
cube's layers and the indices its bands allow, and its dates; Show draws the chosen layer."""

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, expect
from pyproj import Transformer

from catalog.db.engine import create_engine
from catalog.settings import DatabaseSettings
from tests.factories import collection
from tests.tiler.cubes import PIXEL, X0, Y0, store_cube, times, write_cube

from .conftest import StoringServer
from .test_viewer_browser import Viewer, _map_pixels, _open_viewer, _screen

CUBE = "viewer-cube"
BACKGROUND = np.array([0xEE, 0xF2, 0xF5])


@pytest.fixture(scope="module")
def cube_site(clients_server: StoringServer) -> str:
    doc = {**collection(CUBE), "cube:dimensions": {"time": {"type": "temporal"}}}
    with httpx.Client(base_url=clients_server.url, headers=clients_server.auth) as http:
        r = http.post("/collections", json=doc)
        assert r.status_code == 201, r.text
    cube = write_cube(clients_server.data_dir, CUBE, count=6, overviews=(2,))

    async def store() -> None:
        engine = create_engine(clients_server.database_url, DatabaseSettings())
        try:
            await store_cube(engine, cube)
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API runs a loop in this thread
        thread.submit(asyncio.run, store()).result()
    return f"{clients_server.url}/viewer/"


@pytest.fixture
def viewer(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Viewer]:
    yield from _open_viewer(browser, request, 1280, 800)


def test_a_datacube_offers_its_layers_and_dates_and_draws_one(
    cube_site: str, viewer: Viewer
) -> None:
    viewer.open(cube_site)
    card = viewer.page.locator(f'[data-collection="{CUBE}"]')
    expect(card).to_contain_text("datacube")
    expect(card).to_contain_text("8 layers, 6 dates")
    layers = card.locator("select.cube-layer option").all_inner_texts()
    assert {"NDVI", "NDMI", "NDRE", "GNDVI", "EVI", "RGB", "AGRI", "SWIR"} <= {
        t.split(":")[0] for t in layers
    }
    assert "B04" in layers
    dates = card.locator("select.cube-date option").all_inner_texts()
    assert dates[0] == times(6)[-1].date().isoformat() and dates[-1] == "all dates (mean)"
    card.locator("select.cube-layer").select_option("ndvi")
    card.get_by_role("button", name="Show").click()
    to_lonlat = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)
    west, north = to_lonlat.transform(X0, Y0)
    east, south = to_lonlat.transform(X0 + 64 * PIXEL, Y0 - 64 * PIXEL)
    viewer.page.evaluate("(b) => window.terracatViewer.view.fit(b)", [west, south, east, north])
    viewer.page.wait_for_function("() => window.terracatViewer.view.map.getLayer('imagery')")
    viewer.idle()
    pixels = _map_pixels(viewer)
    row, col = _screen(viewer, (west + east) / 2, (south + north) / 2)
    # NDVI ~0.7 in rdylgn: green, nothing like the background
    red, green, blue = (int(v) for v in pixels[row, col])
    assert green > red + 40 and green > blue, (red, green, blue)
    assert np.abs(pixels[row, col] - BACKGROUND).max() > 40
    assert not viewer.errors, viewer.errors
