"""stac-browser (npm ``@radiantearth/stac-browser``, built by scripts/stac-browser.sh) on Terracat.

``make acceptance`` runs this; ``make test`` skips it (the build takes minutes, once). A real
``terracat serve`` with its job worker ingests a GeoTIFF; stac-browser is served from another
origin (``localhost`` and another port: every API call is a real CORS request) and driven by
Debian's headless Chromium: the collections, an item with its thumbnail and assets, collection
and item searches (free text, a CQL2 filter, sorted on the "Created" stac-browser offers).
Requests to other hosts (its OpenStreetMap basemap) are refused, as on a machine without
internet. Every console message is kept and told apart by whose it is; none may be ours or
unexplained.
"""

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.server.conftest import _stop

from .stack import ROOT, Served, ingest_one, start_serve, static_site

VERSION = "4.0.1"  # scripts/stac-browser.sh
DIST = ROOT / "var" / "stac-browser" / VERSION / "dist"
CHROMIUM = Path("/usr/bin/chromium")
PRIVATE = "closed-survey"
BASEMAP = "tile.openstreetmap.org"  # stac-browser's basemaps.config.js (build-time only)
SHOTS = ROOT / "var" / "acceptance"
pytestmark = pytest.mark.skipif(
    os.environ.get("TERRACAT_ACCEPTANCE") != "1",
    reason="acceptance test: `make acceptance` runs it (it builds stac-browser first)",
)


@pytest.fixture(scope="module")
def served(databases: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``terracat serve`` with one job worker, and the item it made of an uploaded GeoTIFF."""
    url = databases.create(f"terracat_acceptance_{databases.suffix}")
    proc, server = start_serve(url, tmp_path_factory.mktemp("acceptance-data"))
    try:
        started = time.monotonic()
        item = ingest_one(server, tmp_path_factory.mktemp("acceptance-source"))
        print(f"\n[acceptance] GeoTIFF uploaded and ingested by the worker in "
              f"{time.monotonic() - started:.1f} s: item {item['id']}")  # fmt: skip
        private = ingest_one(server, tmp_path_factory.mktemp("acceptance-private"),
                             PRIVATE, "Closed survey", private=True)  # fmt: skip
        yield Served(server, item, private)
    finally:
        _stop(proc, server)


@dataclass
class Journal:
    """What the browser reported: console messages, page errors, failed requests, and the
    API's answers, each console message with its owner."""

    api: str
    site: str
    console: list[tuple[str, str, str]] = field(default_factory=list)  # owner, type, text
    page_errors: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # url, reason
    refused: list[str] = field(default_factory=list)  # other hosts
    api_calls: list[tuple[str, str, int, str]] = field(default_factory=list)

    def owner(self, text: str, url: str) -> str:
        """Whose message it is: ``terracat`` (names the API, or CORS), ``basemap``
        (stac-browser's built-in OpenStreetMap layer, refused here), ``static-site`` (this
        test's server has no favicon), ``browser`` (SwiftShader's WebGL notes) or
        ``unexplained``: anything else, such as a fetch of another host our documents made
        the client do."""
        if self.api in text or url.startswith(self.api) or "CORS" in text:
            return "terracat"
        if any(BASEMAP in u for u in (url, text)):
            return "basemap"
        if url.startswith(self.site) and ("favicon" in url or "favicon" in text):
            return "static-site"
        if text.startswith("[.WebGL"):
            return "browser"
        return "unexplained"

    def blamed(self) -> list[tuple[str, str, str]]:
        """Console errors and warnings that are, or may be, Terracat's."""
        suspects = ("terracat", "unexplained")
        return [m for m in self.console if m[0] in suspects and m[1] in ("error", "warning")]

    def api_errors(self) -> list[tuple[str, str, int, str]]:
        """API answers >= 400, but for tiles outside an item (a map asks for its whole view)."""
        return [c for c in self.api_calls
                if c[2] >= 400 and "tiler.TileOutsideBounds" not in c[3]]  # fmt: skip


def _watch(page: Any, journal: Journal) -> None:
    def console(message: Any) -> None:
        url = message.location.get("url", "")
        journal.console.append((journal.owner(message.text, url), message.type, message.text))

    def response(resp: Any) -> None:
        if resp.url.startswith(journal.api):
            body = ""
            if resp.status >= 400:
                try:
                    body = resp.text()
                except Exception as exc:  # noqa: BLE001 (a body the browser dropped)
                    body = f"<{exc}>"
            journal.api_calls.append((resp.request.method, resp.url, resp.status, body))

    def only_loopback(route: Any) -> None:
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            journal.refused.append(route.request.url)
            route.abort("internetdisconnected")

    page.on("console", console)
    page.on("pageerror", lambda error: journal.page_errors.append(str(error)))
    page.on("requestfailed", lambda r: journal.failed.append((r.url, r.failure or "")))
    page.on("response", response)
    page.route("**/*", only_loopback)


class Steps:
    """Named steps with their durations; a screenshot of the page when one fails."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.timings: list[tuple[str, float]] = []

    def run(self, name: str, step: Callable[[], None]) -> None:
        """Run one step."""
        started = time.monotonic()
        try:
            step()
        except BaseException:
            SHOTS.mkdir(parents=True, exist_ok=True)
            shot = SHOTS / f"stac-browser-{len(self.timings) + 1}.png"
            self.page.screenshot(path=str(shot), full_page=True)
            print(f"[acceptance] step '{name}' failed; screenshot {shot}")
            raise
        self.timings.append((name, time.monotonic() - started))


def _loaded_image(page: Any, src_part: str) -> dict[str, Any]:
    """The first <img> whose src contains ``src_part``, once it has pixels: src and width."""
    selector = f"img[src*='{src_part}']"
    page.wait_for_function(
        "s => [...document.querySelectorAll(s)].some(i => i.complete && i.naturalWidth > 0)",
        arg=selector, timeout=30_000,
    )  # fmt: skip
    size = "i => ({src: i.src, width: i.naturalWidth, height: i.naturalHeight})"
    return dict(page.eval_on_selector(selector, size))


def _pick_sort(page: Any, label: str) -> None:
    """Choose ``label`` in the visible sort selector (a vue-multiselect)."""
    page.locator("[aria-owns^=listbox-sort]:visible").first.click()
    page.locator(".multiselect--active .multiselect__option", has_text=label).first.click()


def _report(journal: Journal, steps: Steps) -> None:
    print("[acceptance] stac-browser", VERSION, "on", journal.api, "from", journal.site)
    for name, seconds in steps.timings:
        print(f"[acceptance]   {seconds:6.2f} s  {name}")
    calls = {(m, u.split("?")[0].replace(journal.api, ""), s) for m, u, s, _ in journal.api_calls}
    print(f"[acceptance] {len(journal.api_calls)} API calls, {len(calls)} distinct: "
          f"{sorted({s for _, _, s in calls})} statuses")  # fmt: skip
    for method, path, status in sorted(calls):
        if status != 200:
            print(f"[acceptance]   {status} {method} {path}")
    by_owner: dict[tuple[str, str], list[str]] = {}
    for owner, kind, text in journal.console:
        by_owner.setdefault((owner, kind), []).append(text.splitlines()[0][:160])
    for (owner, kind), texts in sorted(by_owner.items()):
        print(f"[acceptance] console {kind} x{len(texts)} ({owner}): {sorted(set(texts))[:4]}")
    hosts = sorted({urlsplit(u).netloc for u in journal.refused})
    print(f"[acceptance] {len(journal.refused)} requests to other hosts refused: {hosts}")
    failed: dict[tuple[str, str], int] = {}
    for url, reason in journal.failed:
        kind = "API tiles" if url.startswith(journal.api + "/") and "/tiles/" in url else url
        key = (kind if kind == "API tiles" else urlsplit(url).netloc, reason)
        failed[key] = failed.get(key, 0) + 1
    print(f"[acceptance] failed requests: {sorted(failed.items())}")
    print(f"[acceptance] page errors: {journal.page_errors or 'none'}")


built = pytest.mark.skipif(not (DIST / "index.html").exists(), reason="scripts/stac-browser.sh")
chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium")


def _session(
    served: Served, config: dict[str, Any], visit: Callable[[Any, Steps, str], None]
) -> Journal:
    """stac-browser configured with ``config`` on another origin, ``visit`` run in Chromium;
    what the browser reported (printed), once nothing of it is Terracat's."""
    from playwright import sync_api

    api = served.server.url
    config = {"catalogUrl": f"{api}/", "catalogTitle": "Terracat", "allowExternalAccess": False,
              **config}  # fmt: skip
    config_js = f"window.STAC_BROWSER_CONFIG = {json.dumps(config)};"
    with static_site(DIST, config_js) as site, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        journal = Journal(api=api, site=site.rstrip("/"))
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        _watch(page, journal)
        steps = Steps(page)
        try:
            visit(page, steps, site)
        finally:
            browser.close()
            _report(journal, steps)
    assert journal.blamed() == [], journal.blamed()
    assert journal.page_errors == [], journal.page_errors
    assert journal.api_errors() == [], journal.api_errors()
    # The map asks for its whole view; tiles outside the item are 404 tiler.TileOutsideBounds
    # (JSON), which Chromium's ORB blocks for an <img> request before any page sees them.
    assert not [(u, why) for u, why in journal.failed if u.startswith(api)
                and not ("/tiles/" in u and why == "net::ERR_BLOCKED_BY_ORB")]  # fmt: skip
    return journal


@built
@chromium
def test_stac_browser_browses_and_searches_terracat(served: Served) -> None:
    item = served.item
    _session(served, {}, lambda page, steps, site: _browse_and_search(page, steps, site, item))


@built
@chromium
def test_stac_browser_with_a_token_shows_a_private_collection(served: Served) -> None:
    """Every request carries ``Authorization`` (stac-browser's ``requestHeaders``): a CORS
    preflight before each; the private collection is listed, its thumbnail's signed link loads
    in an <img> (which carries no header), and its download (a fetch with the header)."""
    item = served.private_item
    headers = {"Authorization": f"Bearer {served.server.token}"}

    def visit(page: Any, steps: Steps, site: str) -> None:
        def catalogue() -> None:
            page.goto(site)
            page.get_by_text("Closed survey").first.wait_for()
            page.get_by_text("Drone orthophotos").first.wait_for()

        def private_item() -> None:
            page.get_by_text("Closed survey").first.click()
            page.get_by_text("ortho.tif").first.click()
            page.wait_for_url(f"**/collections/{PRIVATE}/items/ortho**")
            page.get_by_text("Cloud-Optimized GeoTIFF image").first.wait_for()
            thumb = _loaded_image(page, f"/collections/{PRIVATE}/items/ortho/assets/thumbnail")
            assert "tc_sig=" in thumb["src"], thumb
            assert thumb["src"].split("?")[0] == item["assets"]["thumbnail"]["href"].split("?")[0]
            # with requestHeaders, stac-browser downloads by a fetch of its own, with them
            with page.expect_response(lambda r: "/assets/data" in r.url) as answer:
                page.get_by_role("button", name="Download").first.click()
            assert answer.value.status == 200 and "tc_sig=" in answer.value.url
            assert answer.value.request.headers["origin"] == site.rstrip("/")

        steps.run("catalogue with a token: the private collection listed", catalogue)
        steps.run("private item: thumbnail and downloads by signed links", private_item)

    journal = _session(served, {"requestHeaders": headers}, visit)
    # Known gap: the item's map tiles are links without a signature, which an <img> loads
    # without the token: the private item's map shows its footprint but no imagery.
    tiles = [u for u, _ in journal.failed if f"/collections/{PRIVATE}/" in u and "/tiles/" in u]
    print(f"[acceptance] private item: {len(tiles)} map tiles refused (no token on <img>)")


def _browse_and_search(page: Any, steps: Steps, site: str, item: dict[str, Any]) -> None:
    collection = "Drone orthophotos"

    def catalogue() -> None:
        page.goto(site)
        page.get_by_role("heading", name="Terracat").first.wait_for()
        page.get_by_text(collection).first.wait_for()
        assert page.get_by_text("Closed survey").count() == 0  # private: not for anonymous

    def collection_page() -> None:
        page.get_by_text(collection).first.click()
        page.wait_for_url("**/collections/drone-orthos**")
        page.get_by_text("ortho.tif").first.wait_for()
        thumb = _loaded_image(page, "/assets/thumbnail")
        assert thumb["src"] == item["assets"]["thumbnail"]["href"], thumb

    def item_page() -> None:
        page.get_by_text("ortho.tif").first.click()
        page.wait_for_url("**/items/ortho**")
        page.get_by_text("Cloud-Optimized GeoTIFF image").first.wait_for()
        hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
        for key in ("data", "thumbnail", "overview"):
            assert item["assets"][key]["href"] in hrefs, (key, hrefs)
        _loaded_image(page, "/assets/thumbnail")

    def collection_search() -> None:
        page.get_by_role("link", name="Search").first.click()
        page.locator("[aria-owns^=listbox-q]:visible").first.click()  # search terms
        page.keyboard.type("drone")
        page.keyboard.press("Enter")
        _pick_sort(page, "Created")
        with page.expect_response(lambda r: "/collections?" in r.url and "q=" in r.url) as answer:
            page.get_by_role("button", name="Submit").click()
        assert answer.value.status == 200, answer.value.text()
        assert "sortby=created" in answer.value.url
        assert [c["id"] for c in answer.value.json()["collections"]] == ["drone-orthos"]

    def item_search() -> None:
        page.get_by_text("Search for Items").click()
        with page.expect_response(lambda r: r.url.endswith("/search")) as answer:
            page.get_by_role("button", name="Submit").click()
        assert answer.value.status == 200 and answer.value.request.method == "POST"
        assert [f["id"] for f in answer.value.json()["features"]] == [item["id"]]
        page.get_by_text("ortho.tif").first.wait_for()

    def filtered_search() -> None:
        page.get_by_role("button", name="Add filter").click()
        page.get_by_role("menuitem", name="Gsd").click()
        row = page.locator(".queryable-row:visible", has_text="Gsd")
        row.locator("input").fill("10")
        _pick_sort(page, "Created")
        with page.expect_response(lambda r: r.url.endswith("/search")) as answer:
            page.get_by_role("button", name="Submit").click()
        body = answer.value.request.post_data_json
        assert body["filter-lang"] == "cql2-json" and "gsd" in json.dumps(body["filter"])
        assert body["sortby"] == [{"field": "properties.created", "direction": "asc"}], body
        assert answer.value.status == 200, answer.value.text()
        assert [f["id"] for f in answer.value.json()["features"]] == [item["id"]]

    steps.run("catalogue page lists the collection", catalogue)
    steps.run("collection page: its item with the thumbnail", collection_page)
    steps.run("item page: assets with their download links, thumbnail", item_page)
    steps.run("collection search: free text, sorted by Created", collection_search)
    steps.run("item search: POST /search, the item in the results", item_search)
    steps.run("item search: CQL2 filter on gsd, sorted by Created", filtered_search)
