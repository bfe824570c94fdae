"""A live uvicorn server with a small realistic catalogue, and an offline network for clients.

stac-api-validator, stac-validator, stac-check, pystac and pystac-client talk HTTP (requests and
urllib). In tests they reach the live server on loopback; JSON schema URLs are answered from
catalog/schemas; any other host is refused and recorded, so a test can fail loudly.

The live servers use databases of their own (not ``database_url``): ``_clean_database`` in
tests/conftest.py truncates after every test that depends on ``database_url``, which would wipe
the session's catalogue between tests.
"""

import email.message
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import urllib.response
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import httpx
import pytest
import requests
import requests.adapters
import urllib3
from requests.structures import CaseInsensitiveDict
from stac_validator.utilities import fetch_and_parse_schema

from catalog.db.cluster import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "catalog" / "schemas"
LIVE_TOKEN = "live-admin-token-0123456789abcdef"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
EO = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
VIEW = "https://stac-extensions.github.io/view/v1.0.0/schema.json"


# -- live server --------------------------------------------------------------------------------
@dataclass
class LiveServer:
    """A running Terracat: its base URL, admin token and log file."""

    url: str
    token: str
    log_path: Path

    @property
    def auth(self) -> dict[str, str]:
        """Headers that authorize a write."""
        return {"Authorization": f"Bearer {self.token}"}

    def log(self) -> str:
        """What the server wrote to stdout/stderr so far."""
        return self.log_path.read_text(errors="replace")


def _start(
    database_url: str, serve: bool = False, job_workers: int = 0, timeout_s: float = 60, **env: str
) -> tuple[subprocess.Popen[bytes], LiveServer]:
    """uvicorn on ``create_app``, or with ``serve`` the ``terracat serve`` command with
    ``job_workers`` job workers; waits ``timeout_s`` for it to answer."""
    port = free_port()
    log_path = Path(tempfile.mkstemp(prefix="terracat-live-", suffix=".log")[1])
    full_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TERRACAT_API_ADMIN_TOKEN": LIVE_TOKEN,
        "TERRACAT_API_ROOT_PATH": "",
        **env,
    }
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "server.app:create_app",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
           "--no-proxy-headers"]  # fmt: skip
    if serve:
        cmd = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--job-workers", str(job_workers)]  # fmt: skip
    with log_path.open("wb") as log:  # a file, not a pipe: a full pipe would block the server
        proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = LiveServer(f"http://127.0.0.1:{port}", LIVE_TOKEN, log_path)
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2) as http:  # one client: each new one loads the CA bundle
        while True:
            try:
                if http.get(f"{server.url}/_mgmt/ping").status_code == 200:
                    return proc, server
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                text = server.log()  # before _stop removes the file
                _stop(proc, server)
                raise RuntimeError(f"live server did not start; its log:\n{text}")
            time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes], server: LiveServer, always_print: bool = False) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    text = server.log()
    if always_print or "Traceback" in text or "ERROR" in text:
        print(f"live server {server.url} log:\n{text}", file=sys.stderr)
    server.log_path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def live_server(databases: Any) -> Iterator[LiveServer]:
    """uvicorn serving ``server.app:create_app`` with default settings on a free port."""
    url = databases.create(f"terracat_live_{databases.suffix}")
    proc, server = _start(url)
    yield server
    _stop(proc, server)


@pytest.fixture(scope="session")
def lenient_live_server(databases: Any) -> Iterator[LiveServer]:
    """A live server that does not check items against their extension schemas.

    stac-api-validator's transaction check PUTs an item that declares eo v1.0.0 with
    ``"eo:cloud_cover": "3.14"`` (a string, which that schema forbids) and expects 204. Our
    default refuses the invalid item with 400 (tested in test_stac_api_validator.py); this
    server runs that check with the documented ``TERRACAT_CATALOG_VALIDATE_EXTENSIONS=false``.
    """
    url = databases.create(f"terracat_lenient_{databases.suffix}")
    proc, server = _start(url, TERRACAT_CATALOG_VALIDATE_EXTENSIONS="false")
    yield server
    _stop(proc, server)


@dataclass
class StoringServer:
    """A live server, the folder it stores assets in (``TERRACAT_INGEST_DATA_DIR``) and its
    database (items of ingested files are stored there directly: tests/stored.py)."""

    live: LiveServer
    data_dir: Path
    database_url: str

    @property
    def url(self) -> str:
        """Its base URL."""
        return self.live.url

    @property
    def auth(self) -> dict[str, str]:
        """Headers that authorize a write."""
        return self.live.auth

    def wait_readable(self, collection_id: str, timeout: float = 10.0) -> None:
        """Wait until an anonymous caller sees ``collection_id``, written straight into the
        database: the server keeps a caller's readable collections for
        ``TERRACAT_AUTH_RIGHTS_CACHE_S`` (1 s), and a client run at once (GDAL, a browser)
        may otherwise get a collection list without it."""
        deadline = time.monotonic() + timeout
        # The list, not /collections/{id}: that route asks the database again before a 404.
        while collection_id not in {
            c["id"]
            for c in httpx.get(f"{self.url}/collections", params={"limit": 1000}).json()[
                "collections"
            ]
        }:
            if time.monotonic() > deadline:
                raise AssertionError(f"{collection_id!r} not listed after {timeout} s")
            time.sleep(0.1)


@pytest.fixture(scope="session")
def clients_server(databases: Any) -> Iterator[StoringServer]:
    """A live server for the real-client tests (MapLibre, ogr2ogr, OWSLib), which share it
    (a server start costs about 3 s of CPU); each module adds collections of its own."""
    data_dir = Path(tempfile.mkdtemp(prefix="terracat-clients-"))
    url = databases.create(f"terracat_clients_{databases.suffix}")
    proc, live = _start(url, TERRACAT_INGEST_DATA_DIR=str(data_dir))
    try:
        yield StoringServer(live, data_dir, url)
    finally:
        _stop(proc, live)
        shutil.rmtree(data_dir, ignore_errors=True)


# -- a realistic small catalogue ----------------------------------------------------------------
@dataclass
class Catalogue:
    """What was loaded: the collections and the items of each, as sent."""

    collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def all_items(self) -> list[dict[str, Any]]:
        """Every item, each with its ``collection``."""
        return [{**i, "collection": cid} for cid, items in self.items.items() for i in items]


S2 = "sentinel-2-l2a"
LANDSAT = "landsat-c2-l2"
S1 = "sentinel-1-grd"
LATITUDE_BANDS = "CDEFGHJKLMNPQRSTUVWX"  # MGRS bands of 8 degrees from 80 S


def _footprint(lon: float, lat: float, width: float, height: float, skew: float) -> dict[str, Any]:
    """A scene footprint: a parallelogram leaning by ``skew`` degrees, like a swath."""
    ring = [
        [lon, lat],
        [lon + width, lat + skew],
        [lon + width + skew, lat + height + skew],
        [lon + skew, lat + height],
        [lon, lat],
    ]
    ring = [[round(x, 6), round(y, 6)] for x, y in ring]
    return {"type": "Polygon", "coordinates": [ring]}


def _bbox(geometry: dict[str, Any]) -> list[float]:
    xs = [p[0] for p in geometry["coordinates"][0]]
    ys = [p[1] for p in geometry["coordinates"][0]]
    return [min(xs), min(ys), max(xs), max(ys)]


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _item(
    item_id: str, geometry: dict[str, Any], properties: dict[str, Any], extensions: list[str]
) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": extensions,
        "id": item_id,
        "geometry": geometry,
        "bbox": _bbox(geometry),
        "properties": properties,
        "links": [],
        "assets": {
            "visual": {"href": f"s3://terracat-test/{item_id}/visual.tif",
                       "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                       "title": "True colour", "roles": ["visual"]},
            "thumbnail": {"href": f"s3://terracat-test/{item_id}/thumb.png",
                          "type": "image/png", "roles": ["thumbnail"]},
        },
    }  # fmt: skip


def sentinel2_items() -> list[dict[str, Any]]:
    """24 optical scenes over Europe and Africa, one near (20.5, 20.5)."""
    start = datetime(2023, 1, 3, 10, 20, 31, tzinfo=UTC)
    items = []
    for i in range(24):
        lon, lat = (-9.0 + (i % 6) * 7.5, 30.0 + (i // 6) * 6.5) if i != 7 else (20.2, 20.2)
        when = start + timedelta(days=5 * i, hours=i % 3, minutes=7 * i)
        band = LATITUDE_BANDS[int((lat + 80) // 8)]
        props = {
            "datetime": _stamp(when),
            "platform": "sentinel-2a" if i % 2 == 0 else "sentinel-2b",
            "constellation": "sentinel-2",
            "mission": "sentinel-2",
            "instruments": ["msi"],
            "gsd": 10,
            "eo:cloud_cover": [26, 3.5, 71.25, 9, 48, 0, 88.5, 14][i % 8] + (i // 8) * 2,
            "view:sun_elevation": round(25 + i * 1.7, 2),
            "mgrs:latitude_band": band,
            "s2:processing_baseline": "05.09" if i < 12 else "05.10",
        }
        geometry = _footprint(lon, lat, 1.4, 0.9, 0.12 * ((i % 3) - 1))
        items.append(
            _item(f"s2{'ab'[i % 2]}_t{i:02d}{band.lower()}_l2a", geometry, props, [EO, VIEW])
        )
    return items


def landsat_items() -> list[dict[str, Any]]:
    """12 optical scenes over North America, three with an acquisition interval."""
    start = datetime(2022, 6, 1, 16, 5, 0, tzinfo=UTC)
    items = []
    for i in range(12):
        lon, lat = -124.0 + (i % 4) * 9.0, 32.0 + (i // 4) * 7.0
        when = start + timedelta(days=16 * i + (i % 2) * 8, minutes=3 * i)
        props: dict[str, Any] = {
            "datetime": _stamp(when),
            "platform": "landsat-8" if i % 2 else "landsat-9",
            "constellation": "landsat",
            "mission": "landsat-8" if i % 2 else "landsat-9",
            "instruments": ["oli", "tirs"],
            "gsd": 30,
            "eo:cloud_cover": round((i * 17.3) % 100, 2),
            "view:sun_elevation": round(40 + i * 2.1, 2),
        }
        if i % 4 == 3:
            props["start_datetime"] = _stamp(when - timedelta(seconds=12))
            props["end_datetime"] = _stamp(when + timedelta(seconds=12))
        geometry = _footprint(lon, lat, 2.6, 2.1, -0.35)
        items.append(_item(f"lc0{8 + i % 2}_l2sp_{i:03d}", geometry, props, [EO, VIEW]))
    return items


def sentinel1_items() -> list[dict[str, Any]]:
    """6 radar scenes (no cloud cover) in long thin swaths, one across the antimeridian's side."""
    start = datetime(2023, 3, 2, 5, 44, 12, tzinfo=UTC)
    items = []
    for i in range(6):
        lon, lat = 100.0 + i * 12.0, -45.0 + i * 9.0
        props = {
            "datetime": _stamp(start + timedelta(days=12 * i)),
            "platform": "sentinel-1a",
            "constellation": "sentinel-1",
            "mission": "sentinel-1",
            "instruments": ["c-sar"],
            "gsd": 20,
        }
        geometry = _footprint(lon, lat, 2.5, 1.0, 0.6)
        items.append(_item(f"s1a_iw_grdh_{i:02d}", geometry, props, []))
    return items


def _collection(collection_id: str, title: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    boxes = [i["bbox"] for i in items]
    times = sorted(i["properties"]["datetime"] for i in items)
    platforms = sorted({i["properties"]["platform"] for i in items})
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "stac_extensions": [],
        "id": collection_id,
        "title": title,
        "description": f"{title}: a small test copy of the public archive.",
        "license": "proprietary",
        "keywords": ["satellite", "imagery", collection_id.split("-")[0]],
        "providers": [{"name": "Terracat tests", "roles": ["host"]}],
        "extent": {
            "spatial": {"bbox": [[min(b[0] for b in boxes), min(b[1] for b in boxes),
                                  max(b[2] for b in boxes), max(b[3] for b in boxes)]]},
            "temporal": {"interval": [[times[0], times[-1]]]},
        },
        "summaries": {"platform": platforms, "gsd": [items[0]["properties"]["gsd"]]},
        "links": [],
    }  # fmt: skip


def catalogue_documents() -> Catalogue:
    """The collections and items the live server is loaded with (40 items)."""
    cat = Catalogue()
    for cid, title, items in (
        (S2, "Sentinel-2 Level-2A", sentinel2_items()),
        (LANDSAT, "Landsat Collection 2 Level-2", landsat_items()),
        (S1, "Sentinel-1 GRD", sentinel1_items()),
    ):
        cat.collections[cid] = _collection(cid, title, items)
        cat.items[cid] = items
    return cat


def _bulk(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"items": {d["id"]: d for d in items}, "method": "insert"}


def load_catalogue(server: LiveServer) -> Catalogue:
    """Load the catalogue through the HTTP API: one item, a FeatureCollection, bulk inserts."""
    cat = catalogue_documents()
    with httpx.Client(base_url=server.url, headers=server.auth, timeout=60) as http:
        for doc in cat.collections.values():
            r = http.post("/collections", json=doc)
            assert r.status_code == 201, r.text
        first, *rest = cat.items[S2]
        r = http.post(f"/collections/{S2}/items", json=first)
        assert r.status_code == 201, r.text
        r = http.post(f"/collections/{S2}/bulk_items", json=_bulk(rest))
        assert r.status_code == 200, r.text
        fc = {"type": "FeatureCollection", "features": cat.items[LANDSAT]}
        r = http.post(f"/collections/{LANDSAT}/items", json=fc)
        assert r.status_code == 201, r.text
        r = http.post(f"/collections/{S1}/bulk_items", json=_bulk(cat.items[S1]))
        assert r.status_code == 200, r.text
        count = http.get("/search", params={"limit": 1}).json().get("numberMatched")
        assert count == len(cat.all_items()), count
    return cat


@pytest.fixture(scope="session")
def live_catalogue(live_server: LiveServer) -> Catalogue:
    """The catalogue, loaded once per session into ``live_server`` (never truncated)."""
    return load_catalogue(live_server)


# -- offline network ----------------------------------------------------------------------------
class Offline:
    """Answers schema URLs from catalog/schemas and records every refused destination."""

    def __init__(self) -> None:
        self.urlmap: dict[str, str] = json.loads((SCHEMA_DIR / "urlmap.json").read_text())
        self.schema_hosts = {urlparse(u).hostname for u in self.urlmap}
        self.refused: list[str] = []
        self.served: list[str] = []

    def schema(self, url: str) -> bytes | None:
        """The local copy of a schema URL, or None."""
        path = self.urlmap.get(url.split("#", 1)[0])
        if path is None:
            return None
        self.served.append(url)
        return (SCHEMA_DIR / path).read_bytes()

    def refuse(self, what: str) -> None:
        """Record an attempt to leave the machine."""
        self.refused.append(what)


class SchemaAdapter(requests.adapters.BaseAdapter):
    """A requests transport answering schema hosts from disk."""

    def __init__(self, offline: Offline) -> None:
        super().__init__()
        self.offline = offline

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        """Serve the local copy, or refuse an unmapped URL loudly."""
        url = str(request.url)
        body = self.offline.schema(url)
        if body is None:
            self.offline.refuse(url)
            raise requests.ConnectionError(f"offline tests: no local copy of {url}")
        response = requests.Response()
        response.status_code, response.reason, response.url = 200, "OK", url
        response.request, response.encoding, response._content = request, "utf-8", body
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        return response

    def close(self) -> None:
        """Nothing to release."""


class RefuseAdapter(requests.adapters.BaseAdapter):
    """A requests transport for every other host: record and fail."""

    def __init__(self, offline: Offline) -> None:
        super().__init__()
        self.offline = offline

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        """Refuse."""
        self.offline.refuse(str(request.url))
        raise requests.ConnectionError(f"offline tests: network access refused: {request.url}")

    def close(self) -> None:
        """Nothing to release."""


def _urllib_handlers(offline: Offline) -> list[urllib.request.BaseHandler]:
    def open_(req: urllib.request.Request, real: Any) -> Any:
        url = req.full_url
        host = urlparse(url).hostname
        if host in LOOPBACK:
            return real(req)
        body = offline.schema(url) if host in offline.schema_hosts else None
        if body is None:
            offline.refuse(url)
            raise urllib.error.URLError(f"offline tests: network access refused: {url}")
        headers = email.message.Message()
        headers["Content-Type"] = "application/json"
        response = urllib.response.addinfourl(io.BytesIO(body), headers, url, 200)
        response.msg = "OK"
        return response

    class Http(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> Any:
            return open_(req, super().http_open)

    class Https(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> Any:
            return open_(req, super().https_open)

    return [Http(), Https()]


@pytest.fixture
def offline_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[Offline]:
    """No network for this test except loopback; schema URLs are served from disk.

    Layers: every ``requests.Session`` gets transport adapters (schema hosts -> files, loopback
    -> HTTP, anything else -> refused); urllib's default opener and urllib3's PoolManager (what
    pystac and stac-validator's link checks use) do the same; and name resolution refuses
    non-loopback hosts, which catches any other client (urlopen with its own SSL context, httpx).
    Libraries that swallow errors (stac-validator's link checks) still leave a trace in
    ``refused``, which must be empty at the end.
    """
    offline = Offline()
    # stac-validator keeps the schemas it fetched for the process: a second validator run in
    # the same test process fetched none, and ``served`` was empty (order-dependent)
    fetch_and_parse_schema.cache_clear()
    schema_adapter, refuse_adapter = SchemaAdapter(offline), RefuseAdapter(offline)
    original_init = requests.Session.__init__

    def session_init(self: requests.Session, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        for scheme in ("http://", "https://"):
            self.mount(scheme, refuse_adapter)
            for host in ("127.0.0.1", "localhost"):
                self.mount(f"{scheme}{host}:", requests.adapters.HTTPAdapter())
            for host in offline.schema_hosts:
                self.mount(f"{scheme}{host}/", schema_adapter)

    real_pool_urlopen = urllib3.PoolManager.urlopen

    def pool_urlopen(self: urllib3.PoolManager, method: str, url: str, *a: Any, **kw: Any) -> Any:
        host = urlparse(url).hostname
        if host in LOOPBACK:
            return real_pool_urlopen(self, method, url, *a, **kw)
        body = offline.schema(url) if host in offline.schema_hosts else None
        if body is None:
            offline.refuse(url)
            raise urllib3.exceptions.HTTPError(f"offline tests: network access refused: {url}")
        return urllib3.response.HTTPResponse(
            body=io.BytesIO(body), status=200, headers={"Content-Type": "application/json"},
            preload_content=kw.get("preload_content", True), request_url=url,
        )  # fmt: skip

    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in LOOPBACK and not name.startswith("/"):
            offline.refuse(f"dns:{name}")
            raise socket.gaierror(socket.EAI_NONAME, f"offline tests: refused to resolve {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "__init__", session_init)
    monkeypatch.setattr(urllib.request, "_opener", urllib.request.build_opener(
        *_urllib_handlers(offline)))  # fmt: skip
    monkeypatch.setattr(urllib3.PoolManager, "urlopen", pool_urlopen)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield offline
    assert not offline.refused, f"tried to reach the network: {sorted(set(offline.refused))}"


CHROMIUM = "/usr/bin/chromium"  # Debian's: playwright downloads no browser of its own
# WebGL without a GPU: SwiftShader (see shared notes on browsers in tests)
CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


@pytest.fixture(scope="module")
def browser() -> Iterator["Browser"]:
    """Headless Chromium for one test module (MapLibre pages, the viewer)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def loopback_only(context: "BrowserContext", refused: list[str] | None = None) -> list[str]:
    """Let a browser context reach this machine only: every other host is refused (aborted)
    and recorded in the list returned (``refused`` when given)."""
    from playwright.sync_api import Route

    seen = [] if refused is None else refused

    def offline(route: Route) -> None:
        if urlparse(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            seen.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    return seen
