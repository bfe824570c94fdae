"""What the acceptance tests run against: ``terracat serve`` with its job worker and an ingested
GeoTIFF, and a static web server on another origin for a built web client."""

import functools
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests import rasters
from tests.factories import collection
from tests.server.conftest import LiveServer, _start

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = "drone-orthos"


@dataclass
class Served:
    """The running server and the items the worker made of a GeoTIFF: in a public collection,
    and in a private one."""

    server: LiveServer
    item: dict[str, Any]
    private_item: dict[str, Any]


def start_serve(database_url: str, data_dir: Path) -> tuple[subprocess.Popen[bytes], LiveServer]:
    """``terracat serve`` with one job worker, as ``make run`` starts it."""
    return _start(database_url, serve=True, job_workers=1, timeout_s=90,
                  TERRACAT_INGEST_DATA_DIR=str(data_dir))  # fmt: skip


def ingest_one(
    server: LiveServer,
    folder: Path,
    collection_id: str = COLLECTION,
    title: str = "Drone orthophotos",
    private: bool = False,
) -> dict[str, Any]:
    """Upload a small RGB GeoTIFF into a new collection (``private``: only its owner, admins
    and grantees read it); the item the worker made of it."""
    tif = rasters.utm_rgb_tif(folder, size=256, border=16, name="ortho.tif")
    with httpx.Client(base_url=server.url, headers=server.auth, timeout=60) as http:
        doc = collection(collection_id, title=title,
                         description="One **small** RGB orthophoto, ingested by the worker.",
                         keywords=["drone", "rgb"])  # fmt: skip
        r = http.post("/collections", json=doc)
        assert r.status_code == 201, r.text
        if private:
            r = http.put(f"/collections/{collection_id}/rights", json={"visibility": "private"})
            assert r.status_code == 200, r.text
        r = http.post("/upload_sets", json={"collection": collection_id, "title": "acceptance"})
        assert r.status_code == 201, r.text
        set_id = r.json()["id"]
        with tif.open("rb") as f:
            r = http.post(f"/upload_sets/{set_id}/files", files={"file": (tif.name, f)})
        assert r.status_code == 201, r.text
        http.post(f"/upload_sets/{set_id}/complete").raise_for_status()
        deadline = time.monotonic() + 120
        while True:
            upload_set = http.get(f"/upload_sets/{set_id}").json()
            if upload_set["ready"]:
                break
            assert time.monotonic() < deadline, upload_set
            time.sleep(0.3)
        (record,) = upload_set["files"]
        assert record["status"] == "ready", record
        href = next(link["href"] for link in record["links"] if link["rel"] == "item")
        item = http.get(href).json()
    assert {"thumbnail", "data"} <= set(item["assets"]), item["assets"]
    return dict(item)


class _Site(SimpleHTTPRequestHandler):
    """Files of a built web client; ``/config.js`` is its runtime configuration."""

    config_js = b""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        """Serve config.js from memory, the rest from the folder."""
        if self.path.split("?")[0] == "/config.js":
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript")
            self.send_header("Content-Length", str(len(self.config_js)))
            self.end_headers()
            self.wfile.write(self.config_js)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet."""


@contextmanager
def static_site(folder: Path, config_js: str) -> Iterator[str]:
    """``folder`` served on ``http://localhost:PORT/`` (another origin than the API's
    ``127.0.0.1``), in a thread; yields its URL."""
    handler = type("Site", (_Site,), {"config_js": config_js.encode()})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=folder))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
