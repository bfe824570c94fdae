"""Stored assets over real HTTP: every href an item shows works from anywhere the API is reached.

One uvicorn server for the module, with its own database and data folder and a known signing
secret (so tests can make expired and foreign signatures). Collection ``open`` is public,
``closed`` private; each holds one small ingested COG item; ``open`` also holds a sparse 2 GiB
file, downloaded once to check that the server's memory stays flat.
"""

import http.client
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import imagecodecs
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from catalog.accounts.signing import LinkSigner, asset_path
from tests import rasters
from tests.factories import collection, item
from tests.server.conftest import LiveServer, _start, _stop
from tests.stored import ingest_local, store_items

SECRET = "assets-test-signing-secret-0123456789"
BIG = 2 * 1024**3
TAIL = b"the last bytes of a big asset"
GEOTIFF = "image/tiff; application=geotiff; profile=cloud-optimized"


@dataclass
class Served:
    """The server, its process id and data folder, and the items as the admin reads them."""

    server: LiveServer
    pid: int
    data: Path
    items: dict[str, dict[str, Any]]

    def file(self, collection_id: str, item_id: str, name: str) -> Path:
        """The file of a stored asset on the server's disk."""
        return self.data / "assets" / collection_id / item_id / name


def _ingested(folder: Path, data: Path, collection_id: str) -> dict[str, Any]:
    source = rasters.utm_rgb_tif(folder, size=256, border=16, name=f"{collection_id}.tif")
    return ingest_local(source, collection_id, "scene", data)


def _big_item(data: Path) -> dict[str, Any]:
    """An item whose asset is a sparse 2 GiB file ending with ``TAIL``."""
    path = data / "assets" / "open" / "big" / "big.bin"
    path.parent.mkdir(parents=True)
    with path.open("wb") as file:
        file.truncate(BIG - len(TAIL))
        file.seek(BIG - len(TAIL))
        file.write(TAIL)
    doc = item("big") | {"collection": "open"}
    doc["assets"] = {"blob": {"href": "storage:assets/open/big/big.bin",
                              "type": "application/octet-stream", "roles": ["data"]}}  # fmt: skip
    return doc


@pytest.fixture(scope="module")
def served(databases: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data = tmp_path_factory.mktemp("assets-data")
    sources = tmp_path_factory.mktemp("assets-sources")
    url = databases.create(f"terracat_assets_{databases.suffix}")
    proc, server = _start(url, TERRACAT_INGEST_DATA_DIR=str(data),
                          TERRACAT_AUTH_SIGNING_SECRET=SECRET)  # fmt: skip
    try:
        with httpx.Client(base_url=server.url, headers=server.auth, timeout=30) as http:
            for name in ("open", "closed"):
                assert http.post("/collections", json=collection(name)).status_code == 201
            r = http.put("/collections/closed/rights", json={"visibility": "private"})
            assert r.status_code == 200, r.text
            store_items(url, [_ingested(sources, data, "open"), _ingested(sources, data, "closed"),
                              _big_item(data)])  # fmt: skip
            items = {
                f"{c}/{i}": http.get(f"/collections/{c}/items/{i}").json()
                for c, i in (("open", "scene"), ("closed", "scene"), ("open", "big"))
            }
        yield Served(server, proc.pid, data, items)
    finally:
        _stop(proc, server)


def _query(href: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(href).query)


# -- what items show, and that it works --------------------------------------------------------
def test_every_stored_asset_is_an_http_url_that_serves_its_file(served: Served) -> None:
    for key, doc in served.items.items():
        collection_id, item_id = key.split("/")
        for name, asset in doc["assets"].items():
            href = asset["href"]
            expected = (
                f"{served.server.url}/collections/{collection_id}/items/{item_id}/assets/{name}"
            )
            assert href.split("?")[0] == expected
            signed = _query(href)
            assert (set(signed) == {"tc_exp", "tc_sig"}) == (collection_id == "closed"), href
            if item_id == "big":
                continue
            r = httpx.get(href)  # no token: the URL itself is enough
            assert r.status_code == 200, (href, r.text)
            filename = r.headers["content-disposition"].split('filename="')[1].split('"')[0]
            stored = served.file(collection_id, item_id, filename)
            assert r.content == stored.read_bytes()
            assert r.headers["content-type"] == asset["type"]
            assert r.headers["content-length"] == str(stored.stat().st_size)
            assert r.headers["accept-ranges"] == "bytes"
            visibility = "public" if collection_id == "open" else "private"
            assert r.headers["cache-control"].startswith(visibility)
    thumbnail = httpx.get(served.items["closed/scene"]["assets"]["thumbnail"]["href"])
    assert imagecodecs.png_decode(thumbnail.content).shape[2] in (3, 4)
    # searches show the same URLs (signed for the admin, who reads the private collection)
    found = httpx.get(f"{served.server.url}/search", headers=served.server.auth).json()
    hrefs = {f"{f['collection']}/{f['id']}": f["assets"]["data"]["href"]
             for f in found["features"] if "data" in f["assets"]}  # fmt: skip
    assert hrefs["closed/scene"] == served.items["closed/scene"]["assets"]["data"]["href"]
    assert "?" not in hrefs["open/scene"]


def test_ranges_validators_head_and_cors(served: Served) -> None:
    href = served.items["open/scene"]["assets"]["data"]["href"]
    whole = served.file("open", "scene", "scene.tif").read_bytes()
    with httpx.Client(timeout=30) as http:
        full = http.get(href)
        etag, modified = full.headers["etag"], full.headers["last-modified"]
        part = http.get(href, headers={"Range": "bytes=100-1123"})
        assert part.status_code == 206 and part.content == whole[100:1124]
        assert part.headers["content-range"] == f"bytes 100-1123/{len(whole)}"
        assert part.headers["content-length"] == "1024"
        tail = http.get(href, headers={"Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == whole[-10:]
        past = http.get(href, headers={"Range": f"bytes={len(whole)}-"})
        assert past.status_code == 416 and past.json()["code"] == "asset.RangeNotSatisfiable"
        assert past.headers["content-range"] == f"bytes */{len(whole)}"
        bad = http.get(href, headers={"Range": "bytes=9-1"})
        assert bad.status_code == 400 and bad.json()["code"] == "asset.InvalidRange"
        several = http.get(href, headers={"Range": "bytes=0-9,20-29"})
        assert several.status_code == 200 and several.content == whole
        head = http.head(href)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(whole)) and head.headers["etag"] == etag
        assert http.get(href, headers={"If-None-Match": etag}).status_code == 304
        assert http.get(href, headers={"If-Modified-Since": modified}).status_code == 304
        assert http.get(href, headers={"If-None-Match": '"other"'}).status_code == 200
        same = http.get(href, headers={"Range": "bytes=0-9", "If-Range": etag})
        assert same.status_code == 206 and same.content == whole[:10]
        other = http.get(href, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
        assert other.status_code == 200 and other.content == whole
        cors = http.get(href, headers={"Origin": "https://viewer.example", "Range": "bytes=0-3",
                                        "Accept-Encoding": "gzip"})  # fmt: skip
        assert cors.headers["access-control-allow-origin"] == "*"
        exposed = {h.strip().lower() for h in
                   cors.headers["access-control-expose-headers"].split(",")}  # fmt: skip
        assert {"content-range", "content-length", "etag", "accept-ranges"} <= exposed
        assert "content-encoding" not in cors.headers and cors.content == whole[:4]
        preflight = http.options(href, headers={
            "Origin": "https://viewer.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range"})  # fmt: skip
        assert preflight.status_code == 200


def _gdalinfo(href: str) -> dict[str, Any]:
    env = {**os.environ, "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
    done = subprocess.run(["/usr/bin/gdalinfo", "-json", f"/vsicurl/{href}"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    info: dict[str, Any] = json.loads(done.stdout)
    return info


def test_gdal_and_rasterio_open_the_cog_by_its_href(served: Served) -> None:
    for key in ("open/scene", "closed/scene"):
        href = served.items[key]["assets"]["data"]["href"]
        info = _gdalinfo(href)
        assert info["size"] == [256, 256] and len(info["bands"]) == 3
        local = served.file(*key.split("/"), "scene.tif")
        with rasterio.open(href) as remote, rasterio.open(local) as mine:
            window = Window(100, 100, 32, 32)
            assert remote.crs == mine.crs
            assert np.array_equal(remote.read(window=window), mine.read(window=window))


# -- signatures ---------------------------------------------------------------------------------
def test_signatures_open_one_asset_until_they_expire(served: Served) -> None:
    base = served.server.url
    signed = served.items["closed/scene"]["assets"]["data"]["href"]
    plain = signed.split("?")[0]
    query = _query(signed)
    expires, signature = query["tc_exp"][0], query["tc_sig"][0]
    assert int(expires) > time.time() + 3000  # the default: an hour, rounded up
    signer = LinkSigner(SECRET.encode())
    with httpx.Client(timeout=30) as http:
        hidden = http.get(plain)
        missing = http.get(f"{base}/collections/nope/items/scene/assets/data")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["description"] == missing.json()["description"].replace(
            "nope", "closed")  # fmt: skip
        assert http.get(plain, headers=served.server.auth).status_code == 200  # a token works

        def refused(url: str) -> str:
            r = http.get(url)
            assert r.status_code == 403, (url, r.text)
            return str(r.json()["code"])

        tampered = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
        assert refused(f"{plain}?tc_exp={expires}&tc_sig={tampered}") == "asset.InvalidSignature"
        later = int(expires) + 3600  # the same signature for a later expiry
        assert refused(f"{plain}?tc_exp={later}&tc_sig={signature}") == "asset.InvalidSignature"
        assert refused(f"{plain}?tc_exp={expires}") == "asset.InvalidSignature"
        thumbnail = plain.rsplit("/", 1)[0] + "/thumbnail"
        assert refused(f"{thumbnail}?tc_exp={expires}&tc_sig={signature}") == (
            "asset.InvalidSignature")  # another asset's link  # fmt: skip
        other = f"{base}/collections/open/items/scene/assets/data"
        path = asset_path("open", "scene", "data")
        stolen = f"tc_exp={expires}&tc_sig={signer.signature(path, int(expires))}"
        assert refused(f"{plain}?{stolen}") == "asset.InvalidSignature"  # another collection's
        assert http.get(f"{other}?{stolen}").status_code == 200  # where it belongs
        past = int(time.time()) - 60
        old = signer.signature(asset_path("closed", "scene", "data"), past)
        assert refused(f"{plain}?tc_exp={past}&tc_sig={old}") == "asset.SignatureExpired"


@pytest.mark.parametrize(
    "path",
    [
        "/collections/closed/items/scene/assets/../../../../etc/passwd",
        "/collections/closed/items/../scene/assets/data",
        "/collections/closed/items/scene/assets/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/collections/closed/items/scene%2Fassets%2Fdata/assets/data",
        "/collections/open/items/scene/assets/..%2F..%2F..%2Fclosed%2Fscene%2Fscene.tif",
        "/collections/open/items/scene/assets/%2e%2e",
        "/collections/open/items/big/assets/blob%00",
    ],
)
def test_paths_never_reach_the_disk(served: Served, path: str) -> None:
    host, port = urlsplit(served.server.url).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", path)  # sent as written: no client folds the dots away
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status in (400, 403, 404), (path, response.status, body[:200])
    assert b"root:" not in body and b"II*\x00" not in body[:4]


# -- size ----------------------------------------------------------------------------------------
def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_2gib_asset_streams_with_flat_server_memory(served: Served) -> None:
    href = served.items["open/big"]["assets"]["blob"]["href"]
    before = _rss_kib(served.pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak.append(_rss_kib(served.pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    received, last = 0, b""
    try:
        with httpx.stream("GET", href, timeout=120) as r:
            assert r.status_code == 200 and r.headers["content-length"] == str(BIG)
            for chunk in r.iter_raw(4 * 1024**2):
                received += len(chunk)
                last = (last + chunk)[-len(TAIL) :]
    finally:
        done.set()
        sampler.join()
    assert received == BIG and last == TAIL
    assert max(peak) - before < 64 * 1024, (before, max(peak))  # KiB: under 64 MiB more
    end = httpx.get(href, headers={"Range": f"bytes={BIG - len(TAIL)}-"})
    assert end.status_code == 206 and end.content == TAIL


# -- a client elsewhere --------------------------------------------------------------------------
PYSTAC_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import rasterio
    from pystac_client import Client

    url, token = sys.argv[1], sys.argv[2]
    seen = {}
    for name, headers in (("open", {}), ("closed", {"Authorization": "Bearer " + token})):
        client = Client.open(url, headers=headers)
        item = client.get_collection(name).get_item("scene")
        href = item.assets["data"].href
        with rasterio.open(href) as dataset:  # no header: the href alone
            seen[name] = {"href": href, "shape": [dataset.count, *dataset.shape],
                          "mean": float(dataset.read(1).mean())}
    print(json.dumps(seen))
    """
)


def test_pystac_client_elsewhere_opens_the_data_asset(served: Served, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TERRACAT_", "GDAL_"))}
    done = subprocess.run(
        [sys.executable, "-c", PYSTAC_SCRIPT, served.server.url, served.server.token],
        cwd=elsewhere, env={**env, "HOME": str(elsewhere)}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    for name in ("open", "closed"):
        assert seen[name]["href"].startswith(served.server.url + "/collections/")
        assert str(served.data) not in seen[name]["href"]
        assert seen[name]["shape"] == [3, 256, 256]
        with rasterio.open(served.file(name, "scene", "scene.tif")) as mine:
            assert seen[name]["mean"] == pytest.approx(float(mine.read(1).mean()))
    assert "tc_sig=" in seen["closed"]["href"] and "?" not in seen["open"]["href"]
