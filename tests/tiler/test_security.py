"""No route reads a file or URL the client names, and items cannot point the tiler elsewhere.

A loopback HTTP server in a child process stands in for an internal service: it records every
request and answers with passwd-like text, so a fetch shows up in its log and a leak in a body.
"""

import copy
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pystac
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from httpx import Response

from catalog.db.cluster import free_port
from catalog.storage.local import LocalStorage
from server.settings import Settings
from tests.stored import store_item
from tests.tiler.conftest import PREFIX, centre_tile
from tiler.errors import AssetNotReadable
from tiler.readers import ItemReader

SECRET = "root:x:0:0:root:/root:/bin/bash"
PROBE = """
import http.server, socketserver, sys
log = open(sys.argv[2], "a", buffering=1)
class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self, body):
        log.write(self.command + " " + self.path + "\\n")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return body
    def do_GET(self):
        self.wfile.write(self.answer(b"%s\\n"))
    def do_HEAD(self):
        self.answer(b"%s\\n")
    def log_message(self, *args):
        pass
socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
""" % (SECRET, SECRET)  # noqa: UP031 - the braces of the server code stay literal


class Probe:
    """The loopback server: its URL and what it was asked."""

    def __init__(self, port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def hits(self) -> list[str]:
        """Every request line received so far."""
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[Probe]:
    """A loopback HTTP server in a child process (a fetch from the app cannot deadlock it)."""
    port, log = free_port(), tmp_path / "probe.log"
    proc = subprocess.Popen([sys.executable, "-c", PROBE, str(port), str(log)])
    server = Probe(port, log)
    try:
        import httpx

        for _ in range(100):
            try:
                httpx.get(server.url + "/ready", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        log.write_text("")  # forget the readiness request
        yield server
    finally:
        proc.terminate()
        proc.wait(10)


def _hostile(probe: Probe) -> list[str]:
    return [
        "/etc/passwd",
        "file:///etc/passwd",
        f"/vsicurl/{probe.url}/vsicurl.tif",
        f"{probe.url}/direct.tif",
        "http://localhost:1/x",
        "../../../../../../etc/passwd",
        "vrt:///etc/passwd",
    ]


def _check(r: Response, what: str) -> None:
    assert SECRET not in r.text, what
    assert r.status_code < 500, (what, r.status_code, r.text[:300])


def _get_routes(client: TestClient) -> list[tuple[str, str]]:
    """(path template, path_format) of every GET route with path parameters, app-wide."""
    routes = []
    for route in iter_route_contexts(client.app.routes):  # type: ignore[attr-defined]
        path = route.path_format or route.path or ""
        if route.methods and "GET" in route.methods and "{" in path:
            routes.append(path)
    assert len(routes) > 20, routes
    return sorted(set(routes))


def _fill(path: str, values: dict[str, str], default: str) -> str:
    import re

    return re.sub(r"{([^}:]+)(:[^}]*)?}", lambda m: values.get(m.group(1), default), path)


def _valid_values(client: TestClient, item: dict[str, Any]) -> dict[str, str]:
    z, x, y = centre_tile(client, item["id"])
    west, south, east, north = item["bbox"]
    return {
        "collection_id": "maps", "collectionId": "maps", "item_id": item["id"],
        "tileMatrixSetId": "WebMercatorQuad", "z": str(z), "x": str(x), "y": str(y),
        "scale": "2", "format": "png", "lon": str((west + east) / 2),
        "lat": str((south + north) / 2), "minx": str(west), "miny": str(south),
        "maxx": str(east), "maxy": str(north), "width": "32", "height": "32",
    }  # fmt: skip


def test_openapi_has_no_path_or_url_parameters(maps: TestClient) -> None:
    spec = maps.get("/api").json()
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                assert param["name"].lower() not in {"url", "path", "file", "href", "src"}, path


# One test per hostile value: every GET route of the app, each value in its path and query.
HOSTILE_COUNT = 7


@pytest.mark.parametrize("which", range(HOSTILE_COUNT))
def test_every_get_route_refuses_a_hostile_path_and_query_value(
    maps: TestClient, admin: dict[str, str], maps_rgb: dict[str, Any], probe: Probe, which: int
) -> None:
    hostile = _hostile(probe)
    assert len(hostile) == HOSTILE_COUNT
    value = hostile[which]
    valid = _valid_values(maps, maps_rgb)
    for path in _get_routes(maps):
        url = _fill(path, {}, quote(value, safe=""))
        query = {"url": value, "assets": value, "expression": f"open('{value}')"}
        for headers in ({}, admin):
            _check(maps.get(url, params=query, headers=headers), f"{url} {query}")
        # real ids in the path, the hostile value in one query parameter at a time
        url = _fill(path, valid, "x")
        for name in ("expression", "dst_crs", "coord_crs", "crs", "colormap", "bands"):
            _check(maps.get(url, params={name: value}), f"{url} {name}={value}")
    assert probe.hits() == []


def test_every_get_route_refuses_lists_of_hostile_urls_and_assets(
    maps: TestClient, maps_rgb: dict[str, Any], probe: Probe
) -> None:
    hostile = _hostile(probe)
    valid = _valid_values(maps, maps_rgb)
    for path in _get_routes(maps):
        url = _fill(path, valid, "x")
        _check(maps.get(url, params={"url": hostile}), f"{url} url")
        _check(maps.get(url, params={"assets": hostile}), f"{url} assets")
    assert probe.hits() == []


@pytest.mark.parametrize("name", ["dst_crs", "coord_crs", "crs"])
def test_crs_parameters_take_codes_not_files_or_urls(
    maps: TestClient, probe: Probe, name: str
) -> None:
    path = {"dst_crs": "preview.png", "coord_crs": "bbox/0,0,1,1.png",
            "crs": "info.geojson"}[name]  # fmt: skip
    for value in (f"{probe.url}/crs", f"/vsicurl/{probe.url}/crs", "/etc/passwd",
                  "+proj=longlat +init=/etc/passwd", f"[{probe.url}/x]"):  # fmt: skip
        r = maps.get(f"{PREFIX}/rgb/{path}", params={name: value})
        assert (r.status_code, r.json()["code"]) == (400, "tiler.UnsafeCrs"), (value, r.text)
    assert probe.hits() == []


def test_crs_codes_and_uris_still_work(maps: TestClient, maps_rgb: dict[str, Any]) -> None:
    r = maps.get(f"{PREFIX}/rgb/preview.png", params={"dst_crs": "EPSG:3857", "max_size": 64})
    assert r.status_code == 200, r.text
    west, south, east, north = maps_rgb["bbox"]
    lon, lat = (west + east) / 2, (south + north) / 2
    for crs in ("http://www.opengis.net/def/crs/EPSG/0/4326", "urn:ogc:def:crs:OGC:1.3:CRS84",
                "OGC:CRS84"):  # fmt: skip
        r = maps.get(f"{PREFIX}/rgb/point/{lon},{lat}", params={"coord_crs": crs})
        assert r.status_code == 200, (crs, r.text)
    r = maps.get(f"{PREFIX}/rgb/point/505000,5595000", params={"coord_crs": "EPSG:32633"})
    assert r.status_code == 200, r.text


def _evil_hrefs(probe: Probe, data_dir: Path) -> list[str]:
    root = (data_dir / "assets").resolve()
    link = root / "maps" / "link.tif"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to("/etc/passwd")
    return [
        "file:///etc/passwd",
        "file://localhost/etc/passwd",
        "file://127.0.0.1/etc/passwd",
        f"/vsicurl/{probe.url}/evil.tif",
        f"{probe.url}/evil.tif",
        "/etc/passwd",
        "../../../../etc/passwd",
        "s3://bucket/evil.tif",
        f"file://{root}/maps/../../../../../../etc/passwd",
        f"file://{root}/maps/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"file://{root}/maps/rgb/rgb.tif?x=/etc/passwd",
        link.as_uri(),
        (data_dir / "tus").resolve().as_uri() + "/upload.tif",
        f"file://{root}/maps/nope/missing.tif",
        # stored hrefs (only the ingest job writes them): keys that are not item files
        "storage:assets/maps/link.tif",
        "storage:assets/maps/../../../../../../etc/passwd",
        "storage:assets/maps/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "storage:/etc/passwd",
        "storage:tus/upload.tif",
        "storage:assets/maps/nope/missing.tif",
    ]


def test_items_pointing_outside_storage_are_refused(
    client: TestClient, admin: dict[str, str], settings: Settings, rgb_item: dict[str, Any],
    probe: Probe,
) -> None:  # fmt: skip
    z, x, y = centre_tile(client, "rgb")
    west, south, east, north = rgb_item["bbox"]
    paths = [f"tiles/WebMercatorQuad/{z}/{x}/{y}.png", f"tiles/WebMercatorQuad/{z}/{x}/{y}@2x",
             "preview.png", "info", "statistics", "asset_statistics",
             f"point/{(west + east) / 2},{(south + north) / 2}",
             f"bbox/{west},{south},{east},{north}/32x32.png"]  # fmt: skip
    for number, href in enumerate(_evil_hrefs(probe, settings.ingest.data_dir)):
        evil = copy.deepcopy(rgb_item)
        evil["id"] = f"evil-{number}"
        evil["links"] = []
        evil["assets"] = {"data": {**rgb_item["assets"]["data"], "href": href}}
        r = client.post("/collections/maps/items", json=evil, headers=admin)
        if href.startswith(("file:", "storage:")):  # clients may not send them at all
            assert (r.status_code, r.json()["code"]) == (400, "stac.ReservedHref"), href
            assert settings.db.url is not None
            store_item(settings.db.url, evil)  # as if the ingest job had written it
        else:
            assert r.status_code == 201, (href, r.text)
        for path in paths:
            r = client.get(f"{PREFIX}/evil-{number}/{path}")
            assert SECRET not in r.text, (href, path)
            assert (r.status_code, r.json()["code"]) == (422, "tiler.AssetNotReadable"), (
                href, path, r.text)  # fmt: skip
            assert "/etc/passwd" not in r.json()["description"]
    assert probe.hits() == []


# -- the reader outside FastAPI ------------------------------------------------------------------
def test_reader_reads_our_files_from_a_dict_or_pystac_item(
    local_item: tuple[dict[str, Any], Path],
) -> None:
    item, data_dir = local_item
    for source in (item, pystac.Item.from_dict(copy.deepcopy(item))):
        with ItemReader(source, storage=LocalStorage(data_dir)) as reader:
            assert reader.assets == ["data"] and reader.default_assets == ["data"]
            tile = reader.tms.tile(15.04, 50.52, reader.maxzoom)
            image = reader.tile(tile.x, tile.y, tile.z, expression="(nir-red)/(nir+red)")
            assert image.count == 1 and image.width == 256
            assert reader.tile(tile.x, tile.y, tile.z, scale=2).width == 512


@pytest.mark.parametrize(
    "href", ["file:///etc/passwd", "/vsicurl/http://127.0.0.1:1/x.tif", "http://127.0.0.1:1/x",
             "data/assets/c/i/i.tif", "file:///tmp/../etc/passwd"],
)  # fmt: skip
def test_reader_refuses_other_hrefs(local_item: tuple[dict[str, Any], Path], href: str) -> None:
    item, data_dir = local_item
    evil = copy.deepcopy(item)
    evil["assets"]["data"]["href"] = href
    with (
        ItemReader(evil, storage=LocalStorage(data_dir)) as reader,
        pytest.raises(AssetNotReadable),
    ):
        reader.preview(max_size=64)
    # the same file is refused for a reader rooted elsewhere
    with ItemReader(item, storage=LocalStorage(data_dir.parent / "other")) as reader:
        with pytest.raises(AssetNotReadable):
            reader.preview(max_size=64)
