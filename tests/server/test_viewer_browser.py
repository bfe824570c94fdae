"""The viewer in a real headless Chromium (Debian's, driven by playwright), on a live server.

One server (the session's ``clients_server``), one ``terracat worker`` and one browser for the
module; each test opens a fresh browser context (its own sessionStorage and localStorage).
Nothing may leave the machine (other hosts are refused and recorded), the page may log no
console error, and a failing test leaves a screenshot in var/test-screenshots/.
"""

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import imagecodecs
import numpy as np
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect
from rasterio.transform import from_origin

from tests import rasters
from tests.factories import collection, item
from tests.stored import ingest_local, store_item

from .conftest import StoringServer, loopback_only
from .ingest_stack import wait_for

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "var" / "test-screenshots"
PUBLIC, PRIVATE, MANY = "viewer-scenes", "viewer-private", "viewer-many"
MANY_ITEMS = 25  # a page and a bit of the viewer's 20
GREEN = (30, 200, 60)
HALF, PIXEL = 20_000, 100  # a 40 km square of 400 px
ORIGIN = (500_000.0 - HALF, 5_600_000.0 + HALF)  # EPSG:32633, about 50.5 N 15 E
READER, PASSWORD = "viewer-reader", "a-long-password-for-tests"


def _geotiff(path: Path, origin: tuple[float, float], colour: tuple[int, int, int]) -> Path:
    side = 2 * HALF // PIXEL
    return rasters.write_geotiff(
        path, width=side, height=side, count=3, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(*origin, PIXEL, PIXEL), photometric="RGB",
        fill=lambda c, h, w: np.broadcast_to(np.array(colour, "uint8")[:, None, None], (c, h, w)),
    )  # fmt: skip


def _ingested(server: StoringServer, source: Path, item_id: str) -> dict[str, Any]:
    """A GeoTIFF ingested into the server's storage and stored as the job does."""
    doc = ingest_local(source, PUBLIC, item_id, server.data_dir)
    store_item(server.database_url, doc)
    return doc


@dataclass
class Site:
    """The live server with the module's data."""

    server: StoringServer
    scene: dict[str, Any]
    folder: Path
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"{self.server.url}/viewer/"


@pytest.fixture(scope="module")
def site(clients_server: StoringServer, tmp_path_factory: pytest.TempPathFactory) -> Site:
    """A public collection with a green scene, a private one, and an account that reads it."""
    folder = tmp_path_factory.mktemp("viewer")
    with httpx.Client(base_url=clients_server.url, headers=clients_server.auth, timeout=60) as http:
        for cid, title in ((PUBLIC, "Viewer scenes"), (PRIVATE, "Viewer private")):
            r = http.post("/collections", json={**collection(cid), "title": title})
            assert r.status_code == 201, r.text
        r = http.post("/collections", json=collection(MANY))
        assert r.status_code == 201, r.text
        docs = {f"m{n:02d}": item(f"m{n:02d}", -60 + n, -20, when=f"2022-01-{n + 1:02d}T10:00:00Z")
                for n in range(MANY_ITEMS)}  # fmt: skip
        r = http.post(f"/collections/{MANY}/bulk_items", json={"items": docs, "method": "insert"})
        assert r.status_code == 200, r.text
        r = http.put(f"/collections/{PRIVATE}/rights", json={"visibility": "private"})
        assert r.status_code in (200, 204), r.text
        r = http.post("/accounts", json={"name": READER, "password": PASSWORD})
        assert r.status_code == 201, r.text
        reader = r.json()["id"]
        r = http.put(
            f"/collections/{PRIVATE}/rights/grants/account/{reader}", json={"right": "read"}
        )
        assert r.status_code in (200, 201, 204), r.text
    scene = _ingested(clients_server, _geotiff(folder / "green.tif", ORIGIN, GREEN), "green")
    return Site(clients_server, scene, folder)


@pytest.fixture(scope="module")
def worker(clients_server: StoringServer) -> Iterator[None]:
    """A ``terracat worker`` on the server's database and data folder."""
    env = {**os.environ, "DATABASE_URL": clients_server.database_url,
           "TERRACAT_INGEST_DATA_DIR": str(clients_server.data_dir)}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "worker"], cwd=ROOT, env=env)
    yield
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Viewer:
    """A page of the viewer, with what it logged."""

    page: Page
    context: BrowserContext
    errors: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)  # errors a test causes on purpose

    def open(self, url: str) -> None:
        self.page.goto(url)
        expect(self.page.locator("body")).to_have_attribute("data-ready", "true")

    def tab(self, name: str) -> None:
        self.page.locator(f"#tab-{name}").click()

    def collections(self) -> list[str]:
        return self.page.locator("[data-collection]").evaluate_all(
            "cards => cards.map((c) => c.dataset.collection)"
        )

    def idle(self) -> None:
        self.page.wait_for_function(
            "() => { const m = window.terracatViewer.view.map;"
            " return m.loaded() && m.areTilesLoaded() && !m.isMoving(); }"
        )


def _open_viewer(
    browser: Browser, request: pytest.FixtureRequest, width: int, height: int
) -> Iterator[Viewer]:
    context = browser.new_context(
        viewport={"width": width, "height": height}, accept_downloads=True
    )
    viewer = Viewer(context.new_page(), context)
    loopback_only(context, viewer.refused)
    viewer.page.on("pageerror", lambda error: viewer.errors.append(str(error)))
    viewer.page.on("console", lambda m: viewer.errors.append(m.text) if m.type == "error" else None)
    viewer.page.on(
        "response",
        lambda r: viewer.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    failed = request.session.testsfailed
    yield viewer
    errors = [e for e in viewer.errors if not any(a in e for a in viewer.allowed)]
    if request.session.testsfailed > failed or errors or viewer.refused:
        SHOTS.mkdir(parents=True, exist_ok=True)
        shot = SHOTS / f"{request.node.name}.png"
        viewer.page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failing page: {shot}", file=sys.stderr)
    context.close()
    assert not viewer.refused, f"the page tried to leave the machine: {viewer.refused}"
    assert not errors, f"the page logged errors: {errors}"


@pytest.fixture
def viewer(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Viewer]:
    """The viewer at 1280 x 800."""
    yield from _open_viewer(browser, request, 1280, 800)


@pytest.fixture
def phone(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Viewer]:
    """The viewer at 390 x 844."""
    yield from _open_viewer(browser, request, 390, 844)


def _map_pixels(viewer: Viewer) -> np.ndarray:
    return imagecodecs.png_decode(viewer.page.locator("#map canvas").screenshot())[..., :3]


def _screen(viewer: Viewer, lon: float, lat: float) -> tuple[int, int]:
    x, y = viewer.page.evaluate(
        "([lon, lat]) => { const p = window.terracatViewer.view.map.project([lon, lat]);"
        " return [p.x, p.y]; }", [lon, lat],
    )  # fmt: skip
    return int(round(y)), int(round(x))


def test_browse_search_and_see_an_items_imagery(site: Site, viewer: Viewer) -> None:
    viewer.open(site.url)
    assert PUBLIC in viewer.collections() and PRIVATE not in viewer.collections()
    card = viewer.page.locator(f'[data-collection="{PUBLIC}"]')
    expect(card).to_contain_text("Viewer scenes")
    expect(card).to_contain_text("raster")
    thumbnail = card.locator("img.thumb")  # its newest item's
    expect(thumbnail).to_have_attribute("src", re.compile(r"/items/green/assets/thumbnail$"))
    thumbnail.evaluate("(img) => img.decode()")  # loads: rejects for a broken image
    card.get_by_role("button", name="Search").click()
    expect(viewer.page.locator("#search-filter")).to_be_visible()
    expect(viewer.page.locator("#queryable-names")).to_contain_text("datetime")
    viewer.page.locator("#search-filter").fill("datetime > TIMESTAMP('2024-01-01T00:00:00Z')")
    viewer.page.locator("#search-run").click()
    result = viewer.page.locator('button.result[data-item="green"]')
    expect(result).to_be_visible()
    # a click on the scene's footprint opens it
    west, south, east, north = site.scene["bbox"]
    viewer.page.evaluate("(bbox) => window.terracatViewer.view.fit(bbox)", site.scene["bbox"])
    viewer.idle()
    row, col = _screen(viewer, (west + east) / 2, (south + north) / 2)
    viewer.page.locator("#map canvas").click(position={"x": col, "y": row})
    expect(viewer.page.locator("body")).to_have_attribute("data-item", f"{PUBLIC}/green")
    viewer.tab("search")
    result.click()
    expect(viewer.page.locator("#item-view")).to_be_visible()
    expect(viewer.page.locator("#item-preset option[value=rgb]")).to_have_count(1)  # its bands
    expect(viewer.page.locator("#item-preset option[value=ndvi]")).to_have_count(0)  # no nir
    data = viewer.page.locator('#item-assets a[href$="/assets/data"]')
    assert (
        data.get_attribute("href")
        == f"{site.server.url}/collections/{PUBLIC}/items/green/assets/data"
    )
    viewer.page.wait_for_function("() => window.terracatViewer.view.map.getLayer('imagery')")
    viewer.idle()
    pixels = _map_pixels(viewer)
    row, col = _screen(viewer, (west + east) / 2, (south + north) / 2)
    patch = pixels[row - 3 : row + 4, col - 3 : col + 4].reshape(-1, 3).astype("int16")
    assert np.abs(patch - GREEN).max() <= 8, patch  # the scene's own colour, opaque
    row, col = _screen(viewer, west, (south + north) / 2)
    assert col >= 20, col  # fitted with a margin
    beside = pixels[row, col - 15].astype("int16")  # 15 px west of the scene: no green
    assert np.abs(beside - GREEN).max() > 60, beside
    viewer.page.locator("#item-preset").select_option("rgb")
    viewer.page.wait_for_function(
        "() => (window.terracatViewer.view.map.getSource('imagery')?.url || '')"
        ".includes('preset=rgb')"
    )
    viewer.idle()
    row, col = _screen(viewer, (west + east) / 2, (south + north) / 2)
    rgb = _map_pixels(viewer)[row, col].astype("int16")
    assert np.abs(rgb - GREEN).max() <= 8, rgb  # true colour of an RGB scene: the same
    if os.environ.get("TERRACAT_VIEWER_SCREENSHOT"):  # docs/viewer.png (docs/viewer.md)
        viewer.page.evaluate("() => window.terracatViewer.view.map.zoomOut({duration: 0})")
        viewer.idle()
        viewer.page.screenshot(path=os.environ["TERRACAT_VIEWER_SCREENSHOT"])
        viewer.page.evaluate("() => window.terracatViewer.view.map.zoomIn({duration: 0})")
        viewer.idle()
    viewer.page.locator("#item-opacity").fill("0.3")
    opacity = viewer.page.evaluate(
        "() => window.terracatViewer.view.map.getPaintProperty('imagery', 'raster-opacity')"
    )
    assert opacity == pytest.approx(0.3)


def _drag_box(viewer: Viewer, west: float, south: float, east: float, north: float) -> None:
    viewer.page.locator("#draw-box").click()
    canvas = viewer.page.locator("#map canvas").bounding_box()
    assert canvas
    top, left = _screen(viewer, west, north)
    bottom, right = _screen(viewer, east, south)
    mouse = viewer.page.mouse
    mouse.move(canvas["x"] + left, canvas["y"] + top)
    mouse.down()
    mouse.move(canvas["x"] + right, canvas["y"] + bottom, steps=4)
    mouse.up()
    expect(viewer.page.locator("#box-text")).to_contain_text(",")


def test_a_box_drawn_on_the_map_limits_the_search(site: Site, viewer: Viewer) -> None:
    viewer.open(site.url)
    viewer.tab("search")
    viewer.page.locator("#search-collection").select_option(PUBLIC)
    west, south, east, north = site.scene["bbox"]
    width, height = east - west, north - south
    around = [west - 2 * width, south - 2 * height, east + 2 * width, north + 2 * height]
    viewer.page.evaluate("(bbox) => window.terracatViewer.view.fit(bbox)", around)
    viewer.idle()
    margin = 0.1 * width
    _drag_box(viewer, west - margin, south - margin, east + margin, north + margin)
    viewer.page.locator("#search-run").click()
    expect(viewer.page.locator("button.result")).to_have_count(1)
    expect(viewer.page.locator('button.result[data-item="green"]')).to_be_visible()
    _drag_box(viewer, west - 1.5 * width, south, west - 0.5 * width, north)  # beside it
    viewer.page.locator("#search-run").click()
    expect(viewer.page.locator("#search-status")).to_have_text("No item matches.")


def test_results_are_paged_by_their_next_links(site: Site, viewer: Viewer) -> None:
    viewer.open(site.url)
    viewer.page.locator(f'[data-collection="{MANY}"]').get_by_role("button", name="Search").click()
    viewer.page.locator("#search-sort").select_option("datetime")
    viewer.page.locator("#search-order").select_option("asc")
    viewer.page.locator("#search-run").click()
    results = viewer.page.locator("button.result")
    expect(results).to_have_count(20)
    expect(viewer.page.locator("#search-status")).to_have_text(f"20 of {MANY_ITEMS} items")
    viewer.page.locator("#search-more").click()
    expect(results).to_have_count(MANY_ITEMS)
    expect(viewer.page.locator("#search-more")).to_be_hidden()
    shown = results.evaluate_all("(buttons) => buttons.map((b) => b.dataset.item)")
    assert shown == [f"m{n:02d}" for n in range(MANY_ITEMS)]  # oldest first, each once
    viewer.page.locator("#search-from").fill("2022-01-10")
    viewer.page.locator("#search-to").fill("2022-01-12")
    viewer.page.locator("#search-run").click()
    expect(results).to_have_count(3)
    shown = results.evaluate_all("(buttons) => buttons.map((b) => b.dataset.item)")
    assert shown == ["m09", "m10", "m11"]


def test_a_private_collection_follows_the_account(site: Site, viewer: Viewer) -> None:
    viewer.open(site.url)
    assert PRIVATE not in viewer.collections()
    viewer.tab("account")
    viewer.page.get_by_label("Account name").fill(READER)
    viewer.page.get_by_label("Password").fill(PASSWORD)
    viewer.page.locator("#login-run").click()
    expect(viewer.page.locator("#who")).to_have_text(f"signed in as {READER}")
    expect(viewer.page.locator(f'[data-collection="{PRIVATE}"]')).to_have_count(1)
    token = viewer.page.evaluate("() => sessionStorage.getItem('terracat.token')")
    assert token and token.startswith("tcat_")
    viewer.page.locator("#sign-out").click()
    expect(viewer.page.locator("#who")).to_have_text("not signed in")
    expect(viewer.page.locator(f'[data-collection="{PRIVATE}"]')).to_have_count(0)
    assert viewer.page.evaluate("() => sessionStorage.getItem('terracat.token')") is None
    # the sign-in's token is revoked once the page has forgotten it
    bearer = {"Authorization": f"Bearer {token}"}
    wait_for(lambda: httpx.get(f"{site.server.url}/users/me", headers=bearer).status_code == 401)


def test_an_uploaded_geotiff_becomes_an_item(site: Site, viewer: Viewer, worker: None) -> None:
    source = _geotiff(
        site.folder / "uploaded.tif", (ORIGIN[0] + 3 * HALF, ORIGIN[1]), (200, 40, 40)
    )
    viewer.open(site.url)
    viewer.tab("account")
    viewer.page.get_by_label("API token").fill(site.server.live.token)
    viewer.page.locator("#token-run").click()
    expect(viewer.page.locator("#who")).to_contain_text("signed in as")
    viewer.tab("upload")
    viewer.page.locator("#upload-collection").select_option(PUBLIC)
    viewer.page.locator("#upload-input").set_input_files(str(source))
    upload = viewer.page.locator('.upload[data-file="uploaded.tif"]')
    expect(upload).to_have_attribute("data-state", "ready", timeout=60_000)
    expect(upload).to_contain_text("item uploaded")
    upload.get_by_role("button", name="Open item").click()
    expect(viewer.page.locator("body")).to_have_attribute("data-item", f"{PUBLIC}/uploaded")
    viewer.tab("jobs")
    ingest = viewer.page.locator('.job[data-status="successful"]', has_text="ingest").first
    ingest.get_by_role("button", name="Log").click()
    expect(viewer.page.locator("#job-log")).not_to_be_empty()
    # an export of the view around the new item, downloaded once its job is done
    viewer.page.locator("#export-zooms").click()
    viewer.page.locator("#export-format").select_option("pmtiles")
    viewer.page.locator("#export-run").click()
    done = viewer.page.locator('.job[data-status="successful"]', has_text="pmtiles")
    expect(done).to_have_count(1, timeout=60_000)
    with viewer.page.expect_download() as downloading:
        done.get_by_role("button", name="Download").click()
    archive = downloading.value.path().read_bytes()
    assert archive[:7] == b"PMTiles" and len(archive) > 1000, archive[:16]


def test_the_phone_layout_is_usable_from_the_keyboard(site: Site, phone: Viewer) -> None:
    phone.open(site.url)
    page = phone.page
    map_box = page.locator("#map").bounding_box()
    side = page.locator(".side").bounding_box()
    assert (
        map_box
        and side
        and map_box["height"] > 200
        and side["y"] >= map_box["y"] + map_box["height"] - 1
    )
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways: {width} px"
    page.locator("#tab-collections").focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-search")).to_be_focused()
    expect(page.locator("#panel-search")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.locator("#search-collection")).to_be_focused()


def test_an_upload_cut_short_resumes_after_a_reload(
    site: Site, viewer: Viewer, worker: None
) -> None:
    """The first 8 MiB chunk arrives, the second is refused; after a reload the same file,
    dropped again, goes on from 8 MiB in its upload set and becomes an item."""
    side = 2000  # 2000 x 2000 x 3 bytes, uncompressed: two of the viewer's 8 MiB tus chunks
    stripes = np.broadcast_to(
        (np.arange(side, dtype="uint8") // 50 * 40)[None, None, :], (3, side, side)
    )
    source = rasters.write_geotiff(
        site.folder / "big.tif", width=side, height=side, count=3, dtype="uint8",
        crs="EPSG:32633", transform=from_origin(ORIGIN[0], ORIGIN[1] - 3 * HALF, 20, 20),
        photometric="RGB", fill=lambda c, h, w: stripes,
    )  # fmt: skip
    assert source.stat().st_size > 8 * 1024 * 1024
    offsets: list[str] = []

    def cut(route: Route) -> None:
        offset = route.request.headers.get("upload-offset", "")
        offsets.append(offset)
        if route.request.method == "PATCH" and offset != "0":
            route.fulfill(status=403, json={"code": "test.Cut", "description": "cut short"})
        else:
            route.fallback()

    viewer.page.route("**/uploads/**", cut)
    viewer.open(site.url)
    viewer.tab("account")
    viewer.page.get_by_label("API token").fill(site.server.live.token)
    viewer.page.locator("#token-run").click()
    viewer.tab("upload")
    viewer.page.locator("#upload-collection").select_option(PUBLIC)
    viewer.page.locator("#upload-input").set_input_files(str(source))
    upload = viewer.page.locator('.upload[data-file="big.tif"]')
    expect(upload).to_have_attribute("data-state", "error")
    assert "8388608" in offsets
    # the refused chunk, logged by the browser (the console line may come later)
    viewer.allowed += ["status of 403", "403 http"]
    viewer.page.unroute("**/uploads/**")
    patched: list[str] = []
    viewer.page.on(
        "request",
        lambda r: patched.append(r.headers.get("upload-offset", ""))
        if r.method == "PATCH" else None,
    )  # fmt: skip
    viewer.page.reload()
    expect(viewer.page.locator("body")).to_have_attribute("data-ready", "true")
    expect(viewer.page.locator("#who")).to_contain_text("signed in as")  # the tab kept it
    viewer.tab("upload")
    viewer.page.locator("#upload-collection").select_option(PUBLIC)
    viewer.page.locator("#upload-input").set_input_files(str(source))
    expect(upload).to_have_attribute("data-state", "ready", timeout=60_000)
    assert patched == ["8388608"], patched
