"""MapLibre GL JS in headless Chromium draws Terracat's tiles where the data is (issue 12).

A live uvicorn serves a collection of footprints spread over the whole world, from one
antimeridian to the other, and a small raster item. A page (tests/browser/page.html, with
MapLibre from npm, both served by a loopback static server of the test) draws them; the test
reads the map's pixels back from a screenshot and compares them with where MapLibre itself
projects the data. Nothing is loaded from outside the machine: every other request is
refused and recorded.
"""

import functools
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import imagecodecs
import numpy as np
import pytest
from playwright.sync_api import Browser, Page
from playwright.sync_api import Error as PlaywrightError
from rasterio.transform import from_origin

from tests import rasters
from tests.factories import collection, item
from tests.stored import ingest_local, store_item

from .conftest import StoringServer, loopback_only

BROWSER_DIR = Path(__file__).resolve().parents[1] / "browser"
MAPLIBRE = BROWSER_DIR / "node_modules" / "maplibre-gl" / "dist"

FOOTPRINTS, RASTERS = "maplibre-world", "maplibre-rasters"
SIZE = 3.0  # degrees: 13 px at z1.6
LONS = (-180.0, -151.0, -92.0, -45.0, -1.5, 33.0, 88.0, 136.0, 177.0)  # 177 + 3 = 180
LATS = (-62.0, -31.0, -1.5, 24.0, 57.0)
RED = "#ff0000"
SLACK = 2  # px of antialiasing around a drawn shape


def _footprints() -> list[dict[str, Any]]:
    return [
        item(f"f{i}-{j}", lon, lat, size=SIZE)
        for i, lon in enumerate(LONS)
        for j, lat in enumerate(LATS)
    ]


# -- the page and its browser -------------------------------------------------------------------
@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    """The test page and MapLibre's files on a loopback static server."""
    if not (MAPLIBRE / "maplibre-gl.mjs").is_file():
        pytest.fail(
            f"{MAPLIBRE} is missing: `make bootstrap` installs it (npm ci in tests/browser)"
        )
    root = Path(tempfile.mkdtemp(prefix="terracat-page-"))
    shutil.copy(BROWSER_DIR / "page.html", root / "index.html")
    (root / "maplibre").symlink_to(MAPLIBRE)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    static = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=root))
    thread = threading.Thread(target=static.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{static.server_port}/index.html"
    finally:
        static.shutdown()
        static.server_close()
        shutil.rmtree(root)


@dataclass
class Drawn:
    """A map as drawn: its pixels (height x width x RGB), zoom and MapLibre's projected points."""

    pixels: np.ndarray
    zoom: float
    projected: list[tuple[float, float]]

    def painted(self) -> np.ndarray:
        """Where anything was drawn on the white page."""
        return np.asarray((self.pixels < 245).any(axis=-1))

    def box(self, first: int, grow: float) -> tuple[slice, slice]:
        """Rows and columns of the screen box of the four projected points from ``first``,
        grown by ``grow`` px (shrunk when negative), within the screen."""
        xs, ys = zip(*self.projected[first : first + 4], strict=True)
        height, width = self.pixels.shape[:2]
        x0, x1 = max(int(min(xs) - grow), 0), min(int(np.ceil(max(xs) + grow)), width)
        y0, y1 = max(int(min(ys) - grow), 0), min(int(np.ceil(max(ys) + grow)), height)
        return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def draw(
    browser: Browser, page_url: str, style: dict[str, Any], width: int, height: int,
    zoom: float, points: list[tuple[float, float]],
) -> Drawn:  # fmt: skip
    """Open the page, draw ``style`` at ``zoom`` centred on 0,0, read the map back."""
    context = browser.new_context(viewport={"width": width, "height": height})
    refused = loopback_only(context)
    problems: list[str] = []  # the page's own errors, to explain a page that never gets ready
    try:
        page: Page = context.new_page()
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(page_url)
        page.wait_for_function("typeof window.drawMap === 'function'")
        done = page.evaluate(
            "(args) => window.drawMap(args)",
            {"style": style, "width": width, "height": height, "center": [0, 0],
             "zoom": zoom, "points": points},
        )  # fmt: skip
        shot = page.locator("#map").screenshot()
    except PlaywrightError as error:
        raise AssertionError(f"{error}\nthe page's errors: {problems}") from error
    finally:
        context.close()
    assert not done["errors"], done["errors"]
    assert not refused, f"the page tried to leave the machine: {refused}"
    pixels = imagecodecs.png_decode(shot)[..., :3]
    assert pixels.shape[:2] == (height, width)
    return Drawn(pixels, done["zoom"], [(x, y) for x, y in done["projected"]])


# -- the server and its data --------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(clients_server: StoringServer) -> StoringServer:
    """The live server with the world's footprints and an empty raster collection."""
    with httpx.Client(base_url=clients_server.url, headers=clients_server.auth, timeout=60) as http:
        for cid in (FOOTPRINTS, RASTERS):
            r = http.post("/collections", json=collection(cid))
            assert r.status_code == 201, r.text
        body = {"items": {doc["id"]: doc for doc in _footprints()}, "method": "insert"}
        r = http.post(f"/collections/{FOOTPRINTS}/bulk_items", json=body)
        assert r.status_code == 200, r.text
    return clients_server


def test_footprints_at_z1_6_are_drawn_over_the_whole_world(
    server: StoringServer, browser: Browser, page_url: str
) -> None:
    tileset = f"{server.url}/collections/{FOOTPRINTS}/items/tiles/WebMercatorQuad"  # TileJSON
    style = {
        "version": 8,
        "sources": {"footprints": {"type": "vector", "url": tileset}},
        "layers": [{"id": "footprints", "type": "fill", "source": "footprints",
                    "source-layer": FOOTPRINTS, "paint": {"fill-color": RED}}],
    }  # fmt: skip
    docs = _footprints()
    # each footprint's corners, then the same in the world copies MapLibre draws beside it
    corners = [(x + shift, y) for shift in (0, -360, 360) for doc in docs
               for x, y in doc["geometry"]["coordinates"][0][:4]]  # fmt: skip
    # 1552 px around the world at z1.6: all of it, from 75 S to 75 N, and 24 px of copies
    drawn = draw(browser, page_url, style, 1600, 1000, 1.6, corners)
    assert drawn.zoom == 1.6
    red = (drawn.pixels[..., 0] > 200) & (drawn.pixels[..., 1] < 60) & (drawn.pixels[..., 2] < 60)
    missing = []
    for n, doc in enumerate(docs):
        inside = red[drawn.box(4 * n, -SLACK)]
        share = float(inside.mean()) if inside.size else 0.0
        if share < 0.95:
            missing.append((doc["id"], doc["bbox"], drawn.projected[4 * n], share))
    assert not missing, f"footprints not drawn (id, bbox, screen corner, red share): {missing}"
    allowed = np.zeros_like(red)
    for n in range(len(corners) // 4):
        allowed[drawn.box(4 * n, SLACK)] = True
    stray = np.argwhere(drawn.painted() & ~allowed)
    assert stray.size == 0, f"{len(stray)} px drawn where no item lies, e.g. (row, col) {stray[:5]}"


# -- a small raster item at z0 ------------------------------------------------------------------
# A scene of a Sentinel-2 tile's size, 110 km at 100 m (with an overview, as ingest makes it):
# about 2 px at z0, where a 512 px tile spans the world (50 km of ground a pixel at 50 N).
HALF, PIXEL = 55_000, 100
ORIGIN = (500_000.0 - HALF, 5_600_000.0 + HALF)  # EPSG:32633: centred at about 50.5 N 15 E
BLUE = (20, 40, 230)


def _raster_item(server: StoringServer, folder: Path) -> dict[str, Any]:
    """A square of one colour, ingested into the server's storage and stored as the job does."""
    side = 2 * HALF // PIXEL
    source = rasters.write_geotiff(
        folder / "small.tif", width=side, height=side, count=3, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(*ORIGIN, PIXEL, PIXEL), photometric="RGB",
        fill=lambda c, h, w: np.broadcast_to(np.array(BLUE, "uint8")[:, None, None], (c, h, w)),
    )  # fmt: skip
    doc = ingest_local(source, RASTERS, "small", server.data_dir)
    store_item(server.database_url, doc)
    return doc


def test_a_small_raster_item_is_a_dot_at_z0(
    server: StoringServer, browser: Browser, page_url: str, tmp_path: Path
) -> None:
    doc = _raster_item(server, tmp_path)
    tilejson = f"{server.url}/collections/{RASTERS}/items/small/WebMercatorQuad/tilejson.json"
    style = {
        "version": 8,
        "sources": {"item": {"type": "raster", "url": f"{tilejson}?minzoom=0&tile_format=png"}},
        "layers": [{"id": "item", "type": "raster", "source": "item",
                    "paint": {"raster-resampling": "nearest", "raster-fade-duration": 0}}],
    }  # fmt: skip
    west, south, east, north = doc["bbox"]
    corners = [(west, south), (east, south), (east, north), (west, north)]
    drawn = draw(browser, page_url, style, 512, 512, 0, corners)  # one 512 px tile: the world
    assert drawn.zoom == 0
    found = np.argwhere(drawn.painted())  # (row, col) of every pixel drawn
    rows, cols = drawn.box(0, SLACK)
    at_item = [
        (r, c) for r, c in found if rows.start <= r < rows.stop and cols.start <= c < cols.stop
    ]
    spread = f"from (row, col) {found.min(axis=0)} to {found.max(axis=0)}" if len(found) else ""
    where = f"rows {rows.start}-{rows.stop - 1}, columns {cols.start}-{cols.stop - 1}"
    assert at_item, f"the item ({where}) is not drawn; {len(found)} px drawn {spread}"
    assert len(at_item) == len(found), (
        f"{len(found)} px drawn {spread}; the item is at {where} ({SLACK} px slack)"
    )
    colours = np.array([drawn.pixels[r, c] for r, c in at_item], "int16")
    assert np.abs(colours - BLUE).max() <= 8, colours  # the item's own colour
