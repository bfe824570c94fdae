"""Assets and export archives in S3-compatible object storage (the session's moto server).

One test walks the whole path with ``TERRACAT_STORAGE_KIND=s3``: an upload ingested by a real
worker (job child process) lands in the bucket, tiles render from ``/vsis3/`` as from a local
copy of the same files, an MBTiles export is published to the bucket and downloads, and
deleting the item removes its objects.
"""

from pathlib import Path
from typing import Any

import morecantile
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.jobs.queue import JobRepository, Process
from catalog.settings import JobSettings
from catalog.stac.repository import CatalogRepository
from catalog.storage import build_storage
from catalog.storage.base import Storage, item_prefix
from catalog.storage.local import LocalStorage
from catalog.storage.s3 import S3Storage
from catalog.uploads.repository import UploadRepository
from server.processes import build_processes
from server.settings import Settings
from tests import rasters
from tests.apps import AppPool
from tests.conftest import S3Server
from tests.factories import collection
from tests.tiler.conftest import decode
from tests.workers import MakeWorker, wait_for
from tiler.dependencies import ReaderOptions
from tiler.export import sweep_exports
from tiler.readers.shared import ReaderResources
from tiler.render import RenderOptions, render_item_tile, tile_layer

FAST = JobSettings(heartbeat_s=0.2, stale_after_s=5, idle_wake_s=0.5, max_attempts=1)
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture
def s3_settings(settings: Settings, s3_server: S3Server) -> Settings:
    """The test's settings with assets and archives in a new bucket (under a prefix)."""
    settings.storage = s3_server.settings(s3_server.make_bucket(), "terracat")
    return settings


def _processes(settings: Settings) -> Any:
    """Every process, on the worker's engine and a storage of its own (as terracat worker)."""

    def make(engine: AsyncEngine) -> dict[str, Process]:
        uploads = UploadRepository(engine, JobRepository(engine))
        storage = build_storage(settings.storage, settings.ingest.data_dir)
        return build_processes(settings, CatalogRepository(engine), uploads, storage)

    return make


def _keys(storage: Storage, prefix: str) -> set[str]:
    return {found.key for found in storage.keys(prefix)}


def _local_copy(s3: Storage, keys: set[str], folder: Path) -> LocalStorage:
    """The same objects, in a local folder under the same keys."""
    local = LocalStorage(folder)
    for key in keys:
        staged = local.temp_path(".tmp")
        s3.fetch(key, staged)
        local.publish(staged, key)
    return local


def _tiles(item: dict[str, Any]) -> list[morecantile.Tile]:
    """A tile at the data's resolution in the middle of the item, one zoomed out, and one on
    its edge."""
    west, south, east, north = item["bbox"]
    lon, lat = (west + east) / 2, (south + north) / 2
    return [WEB_MERCATOR.tile(lon, lat, 14), WEB_MERCATOR.tile(lon, lat, 11),
            WEB_MERCATOR.tile(west, north, 15)]  # fmt: skip


def test_ingest_tiles_export_and_delete_with_object_storage(
    s3_settings: Settings, apps: AppPool, admin: dict[str, str], data_dir: Path,
    make_worker: MakeWorker, tmp_path: Path,
) -> None:  # fmt: skip
    settings = s3_settings
    source = rasters.utm_rgb_tif(tmp_path, size=256, border=32)
    make_worker(_processes(settings), FAST).start()
    with apps.client(settings) as client:
        storage = client.app.state.storage  # type: ignore[attr-defined]
        assert isinstance(storage, S3Storage)
        item = _ingest(client, admin, source)

        # The COG and its previews are in the bucket, under the item's prefix; nothing local.
        prefix = item_prefix("s3c", item["id"])
        keys = _keys(storage, prefix)
        assert keys == {f"{prefix}/{item['id']}.tif", f"{prefix}/thumbnail.png",
                        f"{prefix}/overview.png"}  # fmt: skip
        # Clients see the download route; the database keeps the keys.
        files = {"data": f"{item['id']}.tif", "thumbnail": "thumbnail.png",
                 "overview": "overview.png"}  # fmt: skip
        base = f"http://testserver/collections/s3c/items/{item['id']}/assets"
        assert {n: a["href"] for n, a in item["assets"].items()} == {
            name: f"{base}/{name}" for name in files
        }
        for name, file in files.items():  # streamed from the bucket, whole and by range
            whole = client.get(item["assets"][name]["href"])
            assert whole.status_code == 200
            assert whole.content == b"".join(storage.open_range(f"{prefix}/{file}"))
            part = client.get(item["assets"][name]["href"], headers={"Range": "bytes=1-4"})
            assert part.status_code == 206 and part.content == whole.content[1:5]
        item = {**item, "assets": {name: {**a, "href": f"storage:{prefix}/{files[name]}"}
                                   for name, a in item["assets"].items()}}  # fmt: skip
        assert [p for p in (data_dir / "assets").rglob("*") if p.is_file()] == []
        assert list((data_dir / "tmp").iterdir()) == []  # staging cleaned
        name = storage.object_name(f"{prefix}/{item['id']}.tif")
        assert name.startswith("terracat/assets/")

        # Tiles from /vsis3/ are those of the same files read from a local folder.
        local = _local_copy(storage, keys, tmp_path / "local")
        reader = ReaderOptions.shared(ReaderResources(local), settings.tiler.max_image_size)
        layer = tile_layer(item, RenderOptions(), "png", 256, reader)
        for x, y, z in _tiles(item):
            r = client.get(f"/collections/s3c/items/{item['id']}/tiles/WebMercatorQuad/"
                           f"{z}/{x}/{y}.png")  # fmt: skip
            assert r.status_code == 200, r.text
            expected = render_item_tile(item, z, x, y, layer)
            assert expected is not None
            assert np.array_equal(decode(r.content), decode(expected)), (z, x, y)
        reader.datasets.close()  # type: ignore[union-attr]
        # The app's pool kept the one /vsis3/ handle open between the tiles.
        assert client.app.state.readers.datasets.opened == 1  # type: ignore[attr-defined]

        # An export is rendered from the bucket, published to it, and downloads.
        archive = _export(client, admin, item["id"])
        stored = storage.stat(f"exports/{archive['job']}.mbtiles")
        assert stored is not None and stored.size == archive["bytes"]
        assert not (data_dir / "exports").exists()
        url = f"/exports/{archive['job']}.mbtiles"
        whole = client.get(url, headers=admin)
        assert whole.status_code == 200 and whole.content[:16] == b"SQLite format 3\x00"
        assert whole.content == b"".join(storage.open_range(stored.key))
        etag = whole.headers["etag"]
        part = client.get(url, headers={**admin, "Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == whole.content[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{stored.size}"
        assert client.get(url, headers={**admin, "If-None-Match": etag}).status_code == 304
        past = client.get(url, headers={**admin, "Range": f"bytes={stored.size}-"})
        assert past.status_code == 416 and past.json()["code"] == "export.RangeNotSatisfiable"
        head = client.head(url, headers=admin)
        assert head.status_code == 200 and head.headers["content-length"] == str(stored.size)

        # A dismissed job's archive is swept from the bucket; deleting the item deletes its
        # objects.
        assert client.delete(f"/jobs/{archive['job']}", headers=admin).status_code == 200
        jobs = client.app.state.jobs  # type: ignore[attr-defined]
        assert client.portal.call(sweep_exports, jobs, storage, 0) == 1
        assert _keys(storage, "exports") == set()
        r = client.delete(f"/collections/s3c/items/{item['id']}", headers=admin)
        assert r.status_code == 204
        assert _keys(storage, prefix) == set()
        r = client.get("/_mgmt/health")
        assert r.json()["checks"]["storage"]["status"] == "UP", r.json()


def _ingest(client: TestClient, admin: dict[str, str], source: Path) -> dict[str, Any]:
    assert client.post("/collections", json=collection("s3c"), headers=admin).status_code == 201
    r = client.post("/upload_sets", json={"collection": "s3c"}, headers=admin)
    assert r.status_code == 201, r.text
    r = client.post(f"/upload_sets/{r.json()['id']}/files", headers=admin,
                    files={"file": ("scene.tif", source.read_bytes(), "image/tiff")})  # fmt: skip
    assert r.status_code == 201, r.text
    job = wait_for(client, admin, r.json()["job"]["id"], "successful", "failed", timeout=120)
    assert job["status"] == "successful", job
    made = client.get(f"/jobs/{job['jobID']}/results", headers=admin).json()["item"]["value"]
    r = client.get(f"/collections/s3c/items/{made['id']}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _export(client: TestClient, admin: dict[str, str], item_id: str) -> dict[str, Any]:
    inputs = {"item": {"collection": "s3c", "id": item_id}, "maxzoom": 13}
    r = client.post("/processes/mbtiles/execution", json={"inputs": inputs}, headers=admin)
    assert r.status_code == 201, r.text
    job_id = str(r.json()["jobID"])
    doc = wait_for(client, admin, job_id, "successful", "failed", timeout=120)
    assert doc["status"] == "successful", doc
    results = client.get(f"/jobs/{job_id}/results", headers=admin).json()
    return {"job": job_id, **results["archive"]["value"]}
