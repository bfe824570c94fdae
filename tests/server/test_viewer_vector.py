"""A vector collection in the viewer (headless Chromium, live server): listed as vector, drawn
with its own style, a feature opened by a click, and searched with a CQL2 filter."""

from collections.abc import Iterator

import numpy as np
import pytest
import shapely
from playwright.sync_api import Browser, expect

from catalog.vector.schema import PropertyType
from ogc.styles import collection_colour
from tests.vector_data import vector_collection

from .conftest import StoringServer
from .test_viewer_browser import Viewer, _map_pixels, _open_viewer, _screen

FIELDS = "viewer-fields"
BACKGROUND = np.array([0xEE, 0xF2, 0xF5])
SQUARES = {  # crop: (west, south); one degree squares
    "wheat": (10.0, 45.0),
    "rye": (12.0, 45.0),
    "maize": (14.0, 45.0),
}


@pytest.fixture(scope="module")
def fields(clients_server: StoringServer) -> str:
    rows = [(shapely.box(w, s, w + 1, s + 1), crop, n) for n, (crop, (w, s)) in
            enumerate(SQUARES.items(), start=1)]  # fmt: skip
    properties = [("crop", PropertyType.STRING), ("plots", PropertyType.INTEGER)]
    vector_collection(clients_server.database_url, FIELDS, properties, rows)
    return f"{clients_server.url}/viewer/"


@pytest.fixture
def viewer(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Viewer]:
    yield from _open_viewer(browser, request, 1280, 800)


def _colour(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])


def test_a_vector_collection_is_drawn_opened_and_searched(fields: str, viewer: Viewer) -> None:
    viewer.open(fields)
    card = viewer.page.locator(f'[data-collection="{FIELDS}"]')
    expect(card).to_contain_text("vector")
    expect(card).to_contain_text("features")
    # the shared server's other collections may draw here too: only this one is shown
    viewer.page.evaluate(
        "(id) => { const v = window.terracatViewer.view;"
        " for (const other of v.footprints.keys()) if (other !== id)"
        " v.setFootprintsVisible(other, false); }", FIELDS,
    )  # fmt: skip
    viewer.page.evaluate("() => window.terracatViewer.view.fit([9.5, 44.5, 15.5, 46.5])")
    viewer.idle()
    pixels = _map_pixels(viewer)
    # fill at half opacity in the collection's own colour, over the plain background
    expected = (_colour(collection_colour(FIELDS)) + BACKGROUND) / 2
    for w, s in SQUARES.values():
        row, col = _screen(viewer, w + 0.5, s + 0.5)
        assert np.abs(pixels[row, col] - expected).max() <= 14, (pixels[row, col], expected)
    row, col = _screen(viewer, 11.5, 45.5)  # between two squares: background
    assert np.abs(pixels[row, col] - BACKGROUND).max() <= 6
    # a click on the rye square opens that feature
    x, y = viewer.page.evaluate(
        "() => { const p = window.terracatViewer.view.map.project([12.5, 45.5]);"
        " return [p.x, p.y]; }"
    )
    box = viewer.page.locator("#map canvas").bounding_box()
    assert box is not None
    viewer.page.mouse.click(box["x"] + x, box["y"] + y)
    expect(viewer.page.locator("#item-title")).to_contain_text("rye")
    expect(viewer.page.locator("#item-properties")).to_contain_text("plots")
    expect(viewer.page.locator("#item-imagery")).to_be_hidden()
    # search its features with a CQL2 filter
    viewer.tab("collections")
    card.get_by_role("button", name="Search").click()
    expect(viewer.page.locator("#queryable-names")).to_contain_text("crop")
    viewer.page.locator("#search-filter").fill("crop IN ('wheat', 'maize')")
    viewer.page.locator("#search-run").click()
    expect(viewer.page.locator("#search-status")).to_contain_text("2 of 2 features")
    listed = viewer.page.locator("button.result").all_inner_texts()
    assert sorted(t.split(" ")[0] for t in listed) == ["maize", "wheat"]
