"""A picture sent again by its name while the first copy is still received or being read
replaces it: one file record, one item with the second copy's bytes, the first copy's job
dismissed without publishing anything; a raster of the same name stays a file of its own."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from catalog.settings import StorageSettings
from catalog.storage import build_storage
from catalog.uploads.ingest import staged_is_picture
from catalog.uploads.tus_store import part_key, upload_key
from server.settings import Settings
from tests import rasters
from tests.catalog.vector_uploads import start_worker
from tests.workers import MakeWorker, wait_for

from .gated import Gate, start_gated_worker
from .photos import heic, photo
from .uploads import by_name, items_of, new_set, ready, send


def _one_picture(
    client: TestClient, admin: dict[str, str], set_id: str, second: dict[str, Any]
) -> dict[str, Any]:
    """The set, once ready, holds ``second`` as its only ``p.jpg``, published as item ``p``."""
    doc = ready(client, admin, set_id)
    assert [f["id"] for f in doc["files"] if f["filename"] == "p.jpg"] == [second["id"]]
    assert by_name(doc)["p.jpg"]["status"] == "ready", doc["files"]
    (item,) = [i for i in items_of(client, admin, doc["collection"]) if i["id"].startswith("p")]
    assert item["id"] == "p" and item["properties"]["view:azimuth"] == 200
    assert item["properties"]["title"] == "p.jpg"
    assert item["assets"]["original"]["file:checksum"] == "1220" + second["sha256"]
    return doc


def _copies(settings: Settings, collection_id: str) -> list[str]:
    """The copy folders published under item ``p``."""
    folder = Path(settings.ingest.data_dir) / "assets" / collection_id / "p"
    return sorted(p.name for p in folder.iterdir())


def test_sent_again_before_any_worker_runs(
    client: TestClient,
    admin: dict[str, str],
    settings: Settings,
    make_worker: MakeWorker,
    tmp_path: Path,
    sync_engine: Engine,
) -> None:
    set_id = new_set(client, admin, "early")
    first = send(client, admin, set_id, "p.jpg", photo(heading=10, seed=1))
    second = send(client, admin, set_id, "p.jpg", heic(heading=200, seed=2))  # HEIC this time
    assert second["status"] == "received" and second["id"] != first["id"]
    # The first copy's queued job is dismissed with it; its staged bytes are gone.
    assert client.get(f"/jobs/{first['job']['id']}", headers=admin).json()["status"] == (
        "dismissed"
    )
    # A raster sent twice by one name, and a picture named as a received raster: no pictures
    # among the earlier copies (their bytes say so), so each stays a file of its own.
    send(client, admin, set_id, "scene.tif", rasters.float_tif(tmp_path, size=64).read_bytes())
    send(client, admin, set_id, "scene.tif", rasters.float_tif(tmp_path, size=72).read_bytes())
    send(client, admin, set_id, "r.jpg", rasters.float_tif(tmp_path, size=80).read_bytes())
    send(client, admin, set_id, "r.jpg", photo(heading=30, seed=3))
    with sync_engine.connect() as conn:
        staged = conn.execute(text("SELECT count(*) FROM upload_files WHERE upload_set_id = :s"),
                              {"s": set_id}).scalar()  # fmt: skip
    assert staged == 5
    start_worker(settings, make_worker)
    doc = _one_picture(client, admin, set_id, second)
    assert doc["counts"] == {"received": 0, "processing": 0, "ready": 5, "rejected": 0,
                             "duplicate": 0}, doc["files"]  # fmt: skip
    assert len(doc["files"]) == 5
    assert [f["filename"] for f in doc["files"]].count("scene.tif") == 2
    found = {i["id"] for i in items_of(client, admin, "early")}
    assert {"p", "r", "scene"} < found and len(found) == 5
    assert _copies(settings, "early") == [second["id"].replace("-", "")[:12]]


def test_sent_again_while_its_job_reads_it(
    client: TestClient, admin: dict[str, str], settings: Settings, make_worker: MakeWorker,
    tmp_path: Path,
) -> None:  # fmt: skip
    gate = Gate(child=tmp_path)
    start_gated_worker(settings, make_worker, gate)
    set_id = new_set(client, admin, "reading")
    first = send(client, admin, set_id, "p.jpg", photo(heading=10, seed=1))
    gate.child_entered()  # the first copy's job runs, in its child process
    assert client.get(f"/jobs/{first['job']['id']}", headers=admin).json()["status"] == "running"
    second = send(client, admin, set_id, "p.jpg", photo(heading=200, seed=2))
    job = wait_for(client, admin, first["job"]["id"], "dismissed", "failed", "successful")
    assert job["status"] == "dismissed", job
    gate.open()
    doc = _one_picture(client, admin, set_id, second)
    assert doc["counts"]["ready"] == 1 and len(doc["files"]) == 1
    assert _copies(settings, "reading") == [second["id"].replace("-", "")[:12]]


def test_sent_again_while_its_job_commits(
    client: TestClient, admin: dict[str, str], settings: Settings, make_worker: MakeWorker
) -> None:
    """The first copy's job has read the picture and published its web copies; its commit
    then finds its record gone: it removes them and ends dismissed, the item is the second's."""
    gate = Gate(commit=True)
    start_gated_worker(settings, make_worker, gate)
    set_id = new_set(client, admin, "committing")
    first = send(client, admin, set_id, "p.jpg", photo(heading=10, seed=1))
    assert gate.entered.wait(60)
    first_copy = first["id"].replace("-", "")[:12]
    assert _copies(settings, "committing") == [first_copy]  # published, not yet committed
    second = send(client, admin, set_id, "p.jpg", photo(heading=200, seed=2))
    gate.open()
    job = wait_for(client, admin, first["job"]["id"], "dismissed", "failed", "successful")
    assert job["status"] == "dismissed", job
    doc = _one_picture(client, admin, set_id, second)
    assert doc["counts"]["ready"] == 1 and len(doc["files"]) == 1
    assert _copies(settings, "committing") == [second["id"].replace("-", "")[:12]]


def test_a_refused_picture_sent_again(
    client: TestClient, admin: dict[str, str], settings: Settings, make_worker: MakeWorker
) -> None:
    start_worker(settings, make_worker)
    set_id = new_set(client, admin, "refused")
    first = send(client, admin, set_id, "p.jpg", photo(lon=None, lat=None, seed=1))
    wait_for(client, admin, first["job"]["id"], "failed")
    second = send(client, admin, set_id, "p.jpg", photo(heading=200, seed=2))
    doc = _one_picture(client, admin, set_id, second)
    assert doc["counts"] == {"received": 0, "processing": 0, "ready": 1, "rejected": 0,
                             "duplicate": 0}  # fmt: skip


def test_sends_of_one_name_at_once_leave_one_file(
    client: TestClient, admin: dict[str, str], settings: Settings, make_worker: MakeWorker
) -> None:
    """Six copies of one name sent at once while a worker runs: the set's lock orders them,
    each replaces the one before; one record and one item remain, the last committed."""
    start_worker(settings, make_worker)
    set_id = new_set(client, admin, "racing")
    copies = [photo(heading=200, seed=seed) for seed in range(6)]
    with ThreadPoolExecutor(6) as pool:
        sent = list(pool.map(lambda data: send(client, admin, set_id, "p.jpg", data), copies))
    assert len({r["id"] for r in sent}) == 6
    doc = ready(client, admin, set_id)
    (kept,) = doc["files"]
    assert kept["id"] in {r["id"] for r in sent} and kept["status"] == "ready"
    assert doc["counts"]["ready"] == 1
    for record in sent:
        if record["id"] != kept["id"]:
            # Dismissed, or read in full before its replacement came (then waiting, replaced).
            job = client.get(f"/jobs/{record['job']['id']}", headers=admin).json()
            assert job["status"] in ("dismissed", "successful"), job
    (item,) = items_of(client, admin, "racing")
    assert item["id"] == "p"
    assert item["assets"]["original"]["file:checksum"] == "1220" + kept["sha256"]
    assert _copies(settings, "racing") == [kept["id"].replace("-", "")[:12]]


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_staged_bytes_tell_a_picture(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """What the API reads of an earlier copy's staged bytes: a staging object, or a tus
    upload's parts in offset order (a first part shorter than the magic included)."""
    if kind == "s3":
        s3 = request.getfixturevalue("s3_server")
        storage = build_storage(s3.settings(s3.make_bucket(), "terracat"), tmp_path)
    else:
        storage = build_storage(StorageSettings(), tmp_path)

    def put(key: str, data: bytes) -> str:
        local = tmp_path / "part"
        local.write_bytes(data)
        storage.publish(local, key)
        return key

    data = heic()
    upload = "ab" * 16
    put(part_key(upload, 5), data[5:])
    put(part_key(upload, 0), data[:5])
    cases = {
        put("staging/upload-jpeg", photo()): True,
        put("staging/upload-tif", b"II*\x00" * 8): False,
        put("staging/upload-empty", b""): False,
        upload_key(upload): True,
        "staging/upload-gone": None,
        upload_key("cd" * 16): None,
    }  # fmt: skip
    for key, expected in cases.items():
        assert asyncio.run(staged_is_picture(storage, key)) is expected, key
