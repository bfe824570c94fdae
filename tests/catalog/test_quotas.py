"""Storage quotas (catalog/accounts/quotas.py): what an account holds, computed in SQL, and the
413 ``quota.Exceeded`` of an upload that would not fit, answered before any byte is stored."""

import json
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from catalog.accounts.quotas import Usage, usage
from catalog.jobs.queue import JobRepository
from catalog.settings import JobSettings
from catalog.stac.repository import CatalogRepository
from catalog.storage import build_storage
from catalog.uploads.repository import UploadRepository
from server.processes import build_processes
from server.settings import Settings
from tests.apps import AppPool
from tests.factories import item
from tests.owners import Person, owned_collection, person, stored, tus_create
from tests.stored import store_item
from tests.workers import MakeWorker, wait_for, wait_for_final

QUOTA = 2500
FAST = JobSettings(heartbeat_s=0.2, stale_after_s=2, idle_wake_s=0.5, max_attempts=2)


def _usage(client: TestClient, who: Person, default: int = 10**6, outside: int = 0) -> Usage:
    engine = client.app.state.uploads.engine
    found: Usage = client.portal.call(
        partial(usage, engine, who.id, default_quota_bytes=default, held_outside=outside)
    )
    return found


def _sql(client: TestClient, statement: str, **params: Any) -> None:
    engine = client.app.state.uploads.engine

    async def run() -> None:
        async with engine.begin() as conn:
            await conn.execute(text(statement), params)

    client.portal.call(run)


def _upload(client: TestClient, who: dict[str, str], set_id: str, size: int) -> Any:
    return client.post(f"/upload_sets/{set_id}/files", headers=who,
                       files={"file": (f"f{size}.tif", b"\x01" * size)})  # fmt: skip


def _new_set(client: TestClient, who: dict[str, str], collection_id: str) -> str:
    r = client.post("/upload_sets", json={"collection": collection_id}, headers=who)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _stored_item(item_id: str, data_bytes: int) -> dict[str, Any]:
    doc = item(item_id)
    doc["assets"] = {
        "data": {"href": f"storage:assets/c/{item_id}/{item_id}.tif", "file:size": data_bytes},
        "thumbnail": {"href": f"storage:assets/c/{item_id}/thumbnail.png"},  # no size
        "remote": {"href": "https://example.com/big.tif", "file:size": 10**12},  # not ours
    }
    return doc


def _store(client: TestClient, collection_id: str, doc: dict[str, Any]) -> None:
    """Store an item with stored assets as the ingest job does (clients may not send them)."""
    store_item(client.app.state.settings.db.url, {**doc, "collection": collection_id})


def _finished_export(client: TestClient, owner: Person, size: int, status: str) -> str:
    jobs = client.app.state.jobs
    job = client.portal.call(partial(jobs.submit, "mbtiles", {}, 60, 1, owner_id=owner.id))
    outputs = json.dumps({"archive": {"href": f"exports/{job.id}.mbtiles", "bytes": size}})
    _sql(client, "UPDATE jobs SET status = :status, outputs = CAST(:out AS jsonb) WHERE id = :id",
         id=job.id, status=status, out=outputs)  # fmt: skip
    return str(job.id)


def test_usage_counts_staged_files_stored_assets_and_archives(
    client: TestClient, admin: dict[str, str]
) -> None:
    ann, bob = person(client, "ann", quota_bytes=50_000), person(client, "bob")
    assert _usage(client, ann) == Usage(0, 50_000, 0.0)
    assert _usage(client, bob, default=8000) == Usage(0, 8000, 0.0)  # no quota of its own

    owned_collection(client, admin, "ann-c", ann)
    set_id = _new_set(client, ann.headers, "ann-c")
    assert _upload(client, ann.headers, set_id, 1000).status_code == 201
    _store(client, "ann-c", _stored_item("one", 4000))
    archive_job = _finished_export(client, ann, 500, "successful")
    _finished_export(client, ann, 7000, "failed")  # no archive is kept for it

    # Bob's things are his: a set, and the collection's items he makes are the owner's.
    owned_collection(client, admin, "bob-c", bob)
    bobs_set = _new_set(client, bob.headers, "bob-c")
    assert _upload(client, bob.headers, bobs_set, 300).status_code == 201
    _store(client, "bob-c", _stored_item("two", 900))

    assert _usage(client, ann) == Usage(5500, 50_000, 11.0)
    assert _usage(client, ann, outside=250).used_bytes == 5750  # e.g. unfinished tus uploads
    assert _usage(client, bob).used_bytes == 1200

    # Deleting gives the bytes back: an item, a set with its staged file, an archive.
    assert client.delete("/collections/ann-c/items/one", headers=admin).status_code == 204
    assert _usage(client, ann).used_bytes == 1500
    assert client.delete(f"/upload_sets/{set_id}", headers=ann.headers).status_code == 204
    assert _usage(client, ann).used_bytes == 500
    assert client.delete(f"/jobs/{archive_job}", headers=ann.headers).status_code == 200
    assert _usage(client, ann) == Usage(0, 50_000, 0.0)


def test_ingested_files_count_as_items_not_as_staged_bytes(
    client: TestClient, admin: dict[str, str]
) -> None:
    ann = person(client, "ann")
    owned_collection(client, admin, "ann-c", ann)
    set_id = _new_set(client, ann.headers, "ann-c")
    record = _upload(client, ann.headers, set_id, 1000).json()
    assert _usage(client, ann).used_bytes == 1000
    # What a finished ingest leaves: the item with its COG's size, the staged bytes gone.
    _store(client, "ann-c", _stored_item("f1000", 1200))
    _sql(client, "UPDATE upload_files SET status = 'ready', staged_key = NULL WHERE id = :id",
         id=record["id"])  # fmt: skip
    assert _usage(client, ann).used_bytes == 1200
    # The item outlives its upload set, and stays counted.
    assert client.delete(f"/upload_sets/{set_id}", headers=ann.headers).status_code == 204
    assert _usage(client, ann).used_bytes == 1200


def test_odd_asset_sizes_are_ignored(client: TestClient, admin: dict[str, str]) -> None:
    ann = person(client, "ann")
    owned_collection(client, admin, "ann-c", ann)
    doc = _stored_item("odd", 10)
    doc["assets"]["text"] = {"href": "storage:assets/c/odd/a.tif", "file:size": "12"}
    doc["assets"]["negative"] = {"href": "storage:assets/c/odd/b.tif", "file:size": -5}
    _store(client, "ann-c", doc)
    assert _usage(client, ann).used_bytes == 10


# -- refusals over HTTP -------------------------------------------------------------------------
@pytest.fixture
def small(settings: Settings, apps: AppPool) -> Iterator[TestClient]:
    """An app whose accounts have QUOTA bytes unless they have a quota of their own."""
    settings.auth.default_quota_bytes = QUOTA
    with apps.client(settings) as client:
        yield client


def _exceeded(r: Any, used: int) -> None:
    assert r.status_code == 413, r.text
    body = r.json()
    assert body["code"] == "quota.Exceeded" and body["description"], body
    assert (body["used_bytes"], body["limit_bytes"]) == (used, QUOTA), body


def test_uploads_over_the_quota_are_refused_before_any_byte_is_stored(
    small: TestClient, admin: dict[str, str], data_dir: Path
) -> None:
    ann = person(small, "ann")
    owned_collection(small, admin, "ann-c", ann)
    set_id = _new_set(small, ann.headers, "ann-c")

    r = tus_create(small, ann.headers, set_id, QUOTA + 1)
    _exceeded(r, 0)
    assert r.headers["tus-resumable"] == "1.0.0"
    assert stored(data_dir / "tus") == []
    assert _upload(small, ann.headers, set_id, 2000).status_code == 201
    _exceeded(_upload(small, ann.headers, set_id, 2000), 2000)
    _exceeded(tus_create(small, ann.headers, set_id, 501), 2000)
    assert len(stored(data_dir / "staging")) == 1 and stored(data_dir / "tus") == []

    # An unfinished tus upload holds its whole Upload-Length from its creation on.
    tus = [tus_create(small, ann.headers, set_id, n).headers["location"] for n in (400, 100)]
    _exceeded(tus_create(small, ann.headers, set_id, 1), QUOTA)
    _exceeded(_upload(small, ann.headers, set_id, 1), QUOTA)
    # A URL's size is known in its job only: refused when nothing fits any more.
    r = small.post(f"/upload_sets/{set_id}/files", json={"href": "https://example.com/a.tif"},
                   headers=ann.headers)  # fmt: skip
    _exceeded(r, QUOTA)
    assert len(stored(data_dir / "staging")) == 1

    # Ending the tus uploads and deleting the set give their bytes back: the upload refused
    # above now fits.
    for url in tus:
        assert small.delete(url, headers={**ann.headers, "Tus-Resumable": "1.0.0"}).is_success
    assert small.delete(f"/upload_sets/{set_id}", headers=ann.headers).status_code == 204
    assert stored(data_dir / "staging") == stored(data_dir / "tus") == []
    again = _new_set(small, ann.headers, "ann-c")
    assert _upload(small, ann.headers, again, 2000).status_code == 201, "the space came back"


def test_a_chunked_body_is_cut_off_at_the_quota(
    small: TestClient, admin: dict[str, str], data_dir: Path
) -> None:
    ann = person(small, "ann")
    owned_collection(small, admin, "ann-c", ann)
    set_id = _new_set(small, ann.headers, "ann-c")
    boundary = "xyzzy"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.tif\""
            f"\r\n\r\n").encode() + b"\x02" * 3000 + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is not known up front
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    r = small.post(f"/upload_sets/{set_id}/files", content=chunks(), headers={
        **ann.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
    _exceeded(r, 0)
    assert stored(data_dir / "staging") == []


def test_an_own_quota_wins_and_the_bootstrap_admin_has_none(
    small: TestClient, admin: dict[str, str], data_dir: Path
) -> None:
    big = person(small, "big", quota_bytes=10 * QUOTA)
    owned_collection(small, admin, "big-c", big)
    set_id = _new_set(small, big.headers, "big-c")
    assert _upload(small, big.headers, set_id, 2 * QUOTA).status_code == 201
    assert _usage(small, big, default=QUOTA) == Usage(2 * QUOTA, 10 * QUOTA, 20.0)

    owned_collection(small, admin, "admin-c", None)
    admin_set = _new_set(small, admin, "admin-c")
    assert tus_create(small, admin, admin_set, 100 * QUOTA).status_code == 201
    assert _upload(small, admin, admin_set, 3 * QUOTA).status_code == 201


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server of a folder (reachable with TERRACAT_INGEST_URL_ALLOW_PRIVATE)."""
    folder = tmp_path / "www"
    folder.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", folder
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def test_a_url_file_over_the_quota_fails_in_its_job_and_is_deleted(
    settings: Settings, apps: AppPool, admin: dict[str, str], data_dir: Path,
    make_worker: MakeWorker, file_server: tuple[str, Path],
) -> None:  # fmt: skip
    base, folder = file_server
    (folder / "big.tif").write_bytes(b"\x03" * (QUOTA + 1))
    settings.auth.default_quota_bytes = QUOTA
    settings.ingest.url_allow_private = True

    def processes(engine: Any) -> Any:
        uploads = UploadRepository(engine, JobRepository(engine))
        storage = build_storage(settings.storage, settings.ingest.data_dir)
        return build_processes(settings, CatalogRepository(engine), uploads, storage)

    with apps.client(settings) as client:
        ann = person(client, "ann")
        owned_collection(client, admin, "ann-c", ann)
        set_id = _new_set(client, ann.headers, "ann-c")
        r = client.post(f"/upload_sets/{set_id}/files", json={"href": base + "big.tif"},
                        headers=ann.headers)  # fmt: skip
        assert r.status_code == 201, r.text
        make_worker(processes, FAST).start()
        job = wait_for(client, ann.headers, r.json()["job"]["id"], "failed", "successful")
        assert job["error"]["code"] == "quota.Exceeded", job
        record = wait_for_final(client, ann.headers, r.headers["location"])
        assert record["status"] == "rejected" and record["error"]["code"] == "quota.Exceeded"
        assert stored(data_dir / "staging") == []
        assert _usage(client, ann).used_bytes == 0
