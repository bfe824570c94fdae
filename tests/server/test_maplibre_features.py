"""MapLibre GL JS in headless Chromium draws a vector collection with its generated style
(issue 18): the style, its TileJSON and the feature tiles come from a live server; the test
reads the pixels back where MapLibre projects each feature and checks its category's colour."""

from typing import Any

import httpx
import imagecodecs
import numpy as np
import pytest
import shapely
from playwright.sync_api import Browser
from playwright.sync_api import Error as PlaywrightError

from catalog.vector.schema import PropertyType as T

from .conftest import StoringServer, loopback_only
from .test_maplibre import page_url  # noqa: F401 - the page and MapLibre, a module fixture
from .tiles_data import load

COLLECTION = "maplibre-fields"
CROPS = ["wheat", "maize", "wheat", "rye", "maize", "wheat"]
SQUARES = [shapely.box(2 + 3 * i, 44, 4 + 3 * i, 46) for i in range(len(CROPS))]


@pytest.fixture(scope="module")
def server(clients_server: StoringServer) -> StoringServer:
    rows = [(square, crop) for square, crop in zip(SQUARES, CROPS, strict=True)]
    load(clients_server.database_url, COLLECTION, [("crop", T.STRING)], "Polygon", rows)
    clients_server.wait_readable(COLLECTION)
    return clients_server


def screenshot(
    browser: Browser, url: str, style: dict[str, Any], center: list[float], zoom: float,
    points: list[tuple[float, float]],
) -> tuple[np.ndarray, list[tuple[float, float]]]:  # fmt: skip
    """The map's pixels (rows x columns x RGB) and where MapLibre puts ``points``."""
    context = browser.new_context(viewport={"width": 800, "height": 400})
    refused = loopback_only(context)
    problems: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(url)
        page.wait_for_function("typeof window.drawMap === 'function'")
        done = page.evaluate("(args) => window.drawMap(args)", {
            "style": style, "width": 800, "height": 400, "center": center, "zoom": zoom,
            "points": points})  # fmt: skip
        shot = page.locator("#map").screenshot()
    except PlaywrightError as error:
        raise AssertionError(f"{error}\nthe page's errors: {problems}") from error
    finally:
        context.close()
    assert not done["errors"], done["errors"]
    assert not refused, refused
    return imagecodecs.png_decode(shot)[..., :3], [(x, y) for x, y in done["projected"]]


def test_a_vector_collection_is_drawn_with_its_categorized_style(
    server: StoringServer, browser: Browser, page_url: str,  # noqa: F811
) -> None:  # fmt: skip
    style = httpx.get(f"{server.url}/collections/{COLLECTION}/styles/default",
                      params={"color_by": "crop"}, timeout=30).json()  # fmt: skip
    fill = style["layers"][0]["paint"]["fill-color"]
    colours = dict(zip(fill[2:-1:2], fill[3:-1:2], strict=True))
    assert set(colours) == set(CROPS)
    centres = [(s.centroid.x, s.centroid.y) for s in SQUARES]
    pixels, projected = screenshot(browser, page_url, style, style["center"], 4, centres)
    for (x, y), crop in zip(projected, CROPS, strict=True):
        want = np.array([int(colours[crop][i : i + 2], 16) for i in (1, 3, 5)])
        blended = want * 0.5 + 255 * 0.5  # fill-opacity 0.5 over the white page
        got = pixels[int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4].reshape(-1, 3)
        assert np.abs(got.astype(int) - blended).max() <= 3, (crop, got[0], blended)
    # between the squares (a degree of gap) the page stays white
    gap_x = (projected[0][0] + projected[1][0]) / 2
    assert (pixels[int(projected[0][1]), int(gap_x)] > 250).all()
