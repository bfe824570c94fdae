"""Results of the export processes link to their archive absolutely, as every API link does.

A real export job runs on the worker ``terracat worker`` composes (server/worker.py), from the
same ``Settings`` as the app; its results are read directly, behind a proxy and below a root
path, and each href downloads the archive.
"""

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from catalog.db.engine import create_engine
from catalog.jobs.queue import JobRepository
from catalog.settings import JobSettings
from catalog.storage.local import LocalStorage
from ogc.processes import resolve_outputs
from server.app import create_app
from server.settings import ApiSettings, Settings
from server.worker import run_worker
from tests.tiler.conftest import COLLECTION
from tests.workers import LoopThread
from tiler.export import sweep_exports
from tiler.settings import ExportSettings

SQLITE_MAGIC = b"SQLite format 3\x00"
PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "maps.example.org",
         "X-Forwarded-Prefix": "/stac"}  # fmt: skip


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Quick job timing; two zooms by default, to show the worker got ``settings.export``."""
    settings.jobs = JobSettings(heartbeat_s=0.2, stale_after_s=2, idle_wake_s=0.5)
    settings.export = ExportSettings(zoom_levels=2)
    return settings


@pytest.fixture
def worker(settings: Settings) -> Iterator[LoopThread]:
    """``terracat worker`` as composed for the command line (server/worker.py), in a thread."""
    running = LoopThread()
    running.run(lambda stop: run_worker(settings, str(settings.db.url), stop))
    yield running
    running.stop()


def run_export(client: TestClient, admin: dict[str, str], **inputs: Any) -> str:
    """Submit an mbtiles export and wait for it to succeed; its job id."""
    r = client.post("/processes/mbtiles/execution", json={"inputs": inputs}, headers=admin)
    assert r.status_code == 201, r.text
    job_id = str(r.json()["jobID"])
    deadline = time.monotonic() + 120
    while True:
        doc = client.get(f"/jobs/{job_id}", headers=admin).json()
        if doc["status"] not in ("accepted", "running"):
            break
        assert time.monotonic() < deadline, f"job still {doc['status']}"
        time.sleep(0.1)
    assert doc["status"] == "successful", doc
    return job_id


def test_export_results_link_absolutely_to_a_downloadable_archive(
    client: TestClient, proxied: TestClient, admin: dict[str, str], settings: Settings,
    worker: LoopThread, rgb_item: dict[str, Any], tmp_path: Path,
) -> None:  # fmt: skip
    job_id = run_export(client, admin, item={"collection": COLLECTION, "id": "rgb"}, maxzoom=14)
    results = f"/jobs/{job_id}/results"

    r = client.get(results, headers=admin)
    assert r.status_code == 200, r.text
    archive = r.json()["archive"]["value"]
    assert archive["href"] == f"http://testserver/exports/{job_id}.mbtiles"
    assert archive["type"] == "application/vnd.sqlite3"
    got = client.get(archive["href"], headers=admin)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == archive["type"]
    assert len(got.content) == archive["bytes"] and got.content.startswith(SQLITE_MAGIC)
    part = client.get(archive["href"], headers={**admin, "Range": "bytes=0-15"})
    assert part.status_code == 206 and part.content == SQLITE_MAGIC

    path = tmp_path / "export.mbtiles"
    path.write_bytes(got.content)
    with sqlite3.connect(path) as db:
        metadata = dict(db.execute("SELECT name, value FROM metadata"))
        count = db.execute("SELECT count(*) FROM tiles").fetchone()[0]
    assert (metadata["minzoom"], metadata["maxzoom"]) == ("13", "14")  # zoom_levels=2
    assert count == archive["tiles"] > 0

    behind = proxied.get(results, headers={**admin, **PROXY}).json()["archive"]["value"]
    assert behind["href"] == f"https://maps.example.org/stac/exports/{job_id}.mbtiles"

    api = ApiSettings(root_path="/catalogue", admin_token=settings.api.admin_token)
    sub = settings.model_copy(update={"api": api})
    with TestClient(create_app(sub), root_path="/catalogue") as below:
        value = below.get(f"/catalogue{results}", headers=admin).json()["archive"]["value"]
        assert value["href"] == f"http://testserver/catalogue/exports/{job_id}.mbtiles"
        again = below.get(value["href"], headers=admin)
        assert again.status_code == 200 and again.content == got.content


def test_only_links_relative_to_the_api_root_are_resolved() -> None:
    outputs = {"archive": {"href": "exports/j.pmtiles", "bytes": 3}, "count": 1, "text": "a/b",
               "absolute": {"href": "https://example.com/x"}, "rooted": {"href": "/x"},
               "list": [{"href": "exports/k"}]}  # fmt: skip
    resolved = resolve_outputs(outputs, "https://maps.example.org/stac")
    assert resolved["archive"] == {"href": "https://maps.example.org/stac/exports/j.pmtiles",
                                   "bytes": 3}  # fmt: skip
    assert {k: v for k, v in resolved.items() if k != "archive"} == {
        k: v for k, v in outputs.items() if k != "archive"
    }
    assert outputs["archive"]["href"] == "exports/j.pmtiles"  # the stored outputs stay as they are


def test_the_archive_of_a_dismissed_export_is_swept_and_a_served_one_kept(
    client: TestClient, admin: dict[str, str], settings: Settings, worker: LoopThread,
    rgb_item: dict[str, Any],
) -> None:  # fmt: skip
    item = {"collection": COLLECTION, "id": "rgb"}
    kept, dismissed = (run_export(client, admin, item=item, maxzoom=14) for _ in range(2))
    folder = settings.ingest.data_dir / "exports"
    stray = folder / f"{uuid.uuid4()}.mbtiles"  # its job row is gone
    stray.write_bytes(b"x")
    foreign = folder / "notes.txt"  # not an archive: not ours to judge
    foreign.write_bytes(b"x")
    r = client.delete(f"/jobs/{dismissed}", headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "dismissed"
    assert client.get(f"/exports/{dismissed}.mbtiles", headers=admin).status_code == 404

    async def sweep(min_age_s: float) -> int:
        engine = create_engine(str(settings.db.url), settings.db)
        try:
            storage = LocalStorage(settings.ingest.data_dir)
            return await sweep_exports(JobRepository(engine), storage, min_age_s)
        finally:
            await engine.dispose()

    assert asyncio.run(sweep(3600)) == 0  # younger than the minimum age: left for now
    assert asyncio.run(sweep(0)) == 2
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{kept}.mbtiles", "notes.txt"])
    assert client.get(f"/exports/{kept}.mbtiles", headers=admin).status_code == 200
