"""Upload sets, their files, tus uploads, jobs and export archives are their account's
(server/policy.py OWNED): another account gets 404 as for a missing one, admins see all;
uploading into a collection needs the write right on it."""

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from catalog.jobs.queue import JobRepository
from catalog.storage.local import LocalStorage
from tests.owners import Person, grant, owned_collection, person, stored, tus_create
from tiler.export import archive_key

TUS = {"Tus-Resumable": "1.0.0"}
STREAM = {**TUS, "Content-Type": "application/offset+octet-stream"}


@dataclass(frozen=True)
class Cast:
    """Ann owns the private collection ``ann-c``; Bob has no right on it."""

    ann: Person
    bob: Person
    admin: dict[str, str]


@pytest.fixture
def cast(client: TestClient, admin: dict[str, str]) -> Cast:
    ann, bob = person(client, "ann"), person(client, "bob")
    owned_collection(client, admin, "ann-c", ann)
    return Cast(ann, bob, admin)


def _new_set(client: TestClient, who: dict[str, str], collection_id: str = "ann-c") -> Any:
    r = client.post("/upload_sets", json={"collection": collection_id}, headers=who)
    assert r.status_code == 201, r.text
    return r.json()


def _multipart(client: TestClient, who: dict[str, str], set_id: str, data: bytes) -> Any:
    return client.post(f"/upload_sets/{set_id}/files", files={"file": ("a.tif", data)},
                       headers=who)  # fmt: skip


def _not_found(r: Any, code: str) -> None:
    assert r.status_code == 404, r.text
    assert r.json()["code"] == code, r.json()


def _owner_of_job(sync_engine: Engine, job_id: str) -> Any:
    with sync_engine.connect() as conn:
        return conn.scalar(text("SELECT owner_id FROM jobs WHERE id = :id"), {"id": job_id})


def test_an_upload_set_and_its_files_are_their_owners(client: TestClient, cast: Cast) -> None:
    upload_set = _new_set(client, cast.ann.headers)
    set_url = f"/upload_sets/{upload_set['id']}"
    r = _multipart(client, cast.ann.headers, upload_set["id"], b"II*\x00 not really a tiff")
    assert r.status_code == 201, r.text
    file_url = f"{set_url}/files/{r.json()['id']}"

    for method, url in [("GET", set_url), ("GET", file_url), ("POST", f"{set_url}/complete"),
                        ("DELETE", set_url)]:  # fmt: skip
        _not_found(client.request(method, url, headers=cast.bob.headers), "catalog.NotFound")
    r = _multipart(client, cast.bob.headers, upload_set["id"], b"bob's bytes")
    _not_found(r, "catalog.NotFound")
    # Bob's 404 says what the one of a set that does not exist says.
    other = "00000000-0000-4000-8000-000000000000"
    missing = client.get(f"/upload_sets/{other}", headers=cast.bob.headers).json()
    assert missing["description"] == r.json()["description"].replace(upload_set["id"], other)

    assert client.get(set_url, headers=cast.ann.headers).json()["counts"]["received"] == 1
    assert client.get(file_url, headers=cast.ann.headers).status_code == 200
    assert client.get(set_url, headers=cast.admin).status_code == 200  # admins see all
    assert client.get(set_url).status_code == 401  # OWNED needs a signed-in caller
    assert client.delete(set_url, headers=cast.ann.headers).status_code == 204


def test_ingest_jobs_are_the_set_owners(
    client: TestClient, cast: Cast, sync_engine: Engine
) -> None:
    upload_set = _new_set(client, cast.ann.headers)
    record = _multipart(client, cast.ann.headers, upload_set["id"], b"some bytes").json()
    job_id = record["job"]["id"]
    assert _owner_of_job(sync_engine, job_id) == cast.ann.id
    job_url = f"/jobs/{job_id}"

    for method, url in [("GET", job_url), ("GET", f"{job_url}/results"), ("GET", f"{job_url}/log"),
                        ("POST", f"{job_url}/restart"), ("DELETE", job_url)]:  # fmt: skip
        _not_found(client.request(method, url, headers=cast.bob.headers), "job.NotFound")
    assert client.get(job_url, headers=cast.ann.headers).json()["status"] == "accepted"
    assert client.get(f"{job_url}/log", headers=cast.ann.headers).status_code == 200
    assert client.get(job_url, headers=cast.admin).status_code == 200

    def listed(who: dict[str, str]) -> list[str]:
        r = client.get("/jobs", headers=who)
        assert r.status_code == 200, r.text
        return [job["jobID"] for job in r.json()["jobs"]]

    mine = _new_set(client, cast.bob.headers, _bob_collection(client, cast))
    bobs_job = _multipart(client, cast.bob.headers, mine["id"], b"bob").json()["job"]["id"]
    assert listed(cast.ann.headers) == [job_id]
    assert listed(cast.bob.headers) == [bobs_job]
    assert set(listed(cast.admin)) == {job_id, bobs_job}
    r = client.get("/jobs", params={"processID": "ingest", "limit": 1}, headers=cast.bob.headers)
    assert [j["jobID"] for j in r.json()["jobs"]] == [bobs_job]
    assert client.delete(job_url, headers=cast.ann.headers).json()["status"] == "dismissed"


def _bob_collection(client: TestClient, cast: Cast) -> str:
    owned_collection(client, cast.admin, "bob-c", cast.bob)
    return "bob-c"


def test_executing_ingest_needs_the_callers_own_file(
    client: TestClient, cast: Cast, sync_engine: Engine
) -> None:
    upload_set = _new_set(client, cast.ann.headers)
    record = _multipart(client, cast.ann.headers, upload_set["id"], b"bytes").json()
    body = {"inputs": {"upload_file": record["id"]}}
    r = client.post("/processes/ingest/execution", json=body, headers=cast.bob.headers)
    assert r.status_code == 400 and r.json()["code"] == "request.InvalidParameter", r.text
    assert "does not exist" in r.json()["description"]
    r = client.post("/processes/ingest/execution", json=body, headers=cast.ann.headers)
    assert r.status_code == 201, r.text
    assert _owner_of_job(sync_engine, r.json()["jobID"]) == cast.ann.id
    # Ann loses her collection: her own file no longer lets her write there.
    client.portal.call(client.app.state.accounts.set_owner, "ann-c", None)  # type: ignore[attr-defined]
    r = client.post("/processes/ingest/execution", json=body, headers=cast.ann.headers)
    assert r.status_code == 404 and r.json()["code"] == "catalog.NotFound", r.text


def test_tus_uploads_are_their_owners(client: TestClient, cast: Cast, data_dir: Any) -> None:
    upload_set = _new_set(client, cast.ann.headers)
    r = tus_create(client, cast.ann.headers, upload_set["id"], 4)
    assert r.status_code == 201, r.text
    url = r.headers["location"]

    head = client.head(url, headers={**cast.bob.headers, **TUS})
    assert head.status_code == 404 and head.headers["tus-resumable"] == "1.0.0"
    r = client.patch(url, content=b"evil", headers={**cast.bob.headers, **STREAM,
                                                      "Upload-Offset": "0"})  # fmt: skip
    _not_found(r, "upload.NotFound")
    _not_found(client.delete(url, headers={**cast.bob.headers, **TUS}), "upload.NotFound")
    upload_id = url.rsplit("/", 1)[-1]
    assert not (data_dir / "tus" / upload_id).exists()  # no part of his was kept
    # Bob cannot start one in Ann's set either: it does not exist for him.
    r = tus_create(client, cast.bob.headers, upload_set["id"], 4)
    assert r.status_code == 404 and r.headers["tus-resumable"] == "1.0.0"

    assert client.head(url, headers={**cast.admin, **TUS}).status_code == 200
    r = client.patch(url, content=b"II*\x00", headers={**cast.ann.headers, **STREAM,
                                                         "Upload-Offset": "0"})  # fmt: skip
    assert r.status_code == 204, r.text
    doc = client.get(f"/upload_sets/{upload_set['id']}", headers=cast.ann.headers).json()
    assert [(f["source"], f["size"]) for f in doc["files"]] == [("tus", 4)]
    assert client.head(url, headers={**cast.ann.headers, **TUS}).status_code == 200


@pytest.mark.parametrize("right", [None, "read", "write"])
def test_uploading_into_a_collection_needs_write(
    client: TestClient, cast: Cast, right: str | None
) -> None:
    if right is not None:
        grant(client, "ann-c", cast.bob, right)
    r = client.post("/upload_sets", json={"collection": "ann-c"}, headers=cast.bob.headers)
    if right is None:  # he cannot even read it: as if it did not exist
        assert r.status_code == 404 and r.json()["code"] == "catalog.NotFound", r.text
        assert r.json() == client.post("/upload_sets", json={"collection": "nowhere"},
                                       headers=cast.bob.headers).json() | {
            "description": r.json()["description"]}  # fmt: skip
    elif right == "read":
        assert r.status_code == 403 and r.json()["code"] == "auth.Forbidden", r.text
    else:
        assert r.status_code == 201, r.text


def test_a_revoked_write_right_stops_files_of_an_existing_set(
    client: TestClient, cast: Cast, data_dir: Any
) -> None:
    grant(client, "ann-c", cast.bob, "write")
    upload_set = _new_set(client, cast.bob.headers)
    grant(client, "ann-c", cast.bob, "read")  # changed: read only from now on
    r = _multipart(client, cast.bob.headers, upload_set["id"], b"more")
    assert r.status_code == 403 and r.json()["code"] == "auth.Forbidden", r.text
    url_file = {"href": "https://example.com/a.tif"}
    r = client.post(f"/upload_sets/{upload_set['id']}/files", json=url_file,
                    headers=cast.bob.headers)  # fmt: skip
    assert r.status_code == 403, r.text
    r = tus_create(client, cast.bob.headers, upload_set["id"], 4)
    assert r.status_code == 403 and r.json()["code"] == "auth.Forbidden", r.text
    assert stored(data_dir / "staging") == stored(data_dir / "tus") == []
    # His set is still his to read and delete.
    assert client.get(f"/upload_sets/{upload_set['id']}", headers=cast.bob.headers).is_success


def test_export_archives_are_their_job_owners(
    client: TestClient, cast: Cast, data_dir: Any
) -> None:
    jobs: JobRepository = client.app.state.jobs  # type: ignore[attr-defined]
    job = client.portal.call(
        lambda: jobs.submit("mbtiles", {}, timeout_s=60, max_attempts=1, owner_id=cast.ann.id)
    )
    storage = LocalStorage(data_dir)
    staged = storage.temp_path(".mbtiles")
    staged.write_bytes(b"SQLite format 3\x00" + bytes(100))
    storage.publish(staged, archive_key(str(job.id), "mbtiles"))

    async def succeed() -> None:
        async with jobs.connect() as conn:
            await conn.execute(
                text(
                    "UPDATE jobs SET status = 'successful', outputs = CAST(:out AS jsonb) "
                    "WHERE id = :id"
                ),
                {"id": job.id, "out": '{"archive": {"href": "exports/x", "bytes": 116}}'},
            )

    client.portal.call(succeed)
    url = f"/exports/{job.id}.mbtiles"
    r = client.get(url, headers=cast.ann.headers)
    assert r.status_code == 200 and r.content.startswith(b"SQLite format 3"), r.text
    assert client.head(url, headers=cast.ann.headers).status_code == 200
    _not_found(client.get(url, headers=cast.bob.headers), "export.NotFound")
    assert client.head(url, headers=cast.bob.headers).status_code == 404
    assert client.get(url, headers=cast.admin).status_code == 200
    _not_found(client.get(f"/jobs/{job.id}/results", headers=cast.bob.headers), "job.NotFound")
    assert client.get(f"/jobs/{job.id}/results", headers=cast.ann.headers).status_code == 200
