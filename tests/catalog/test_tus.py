"""The tus server (catalog/uploads/tus.py) against tuspy and raw HTTP, on a live uvicorn.

Records are rows of the test database; parts are objects of a local-folder storage.
"""

import asyncio
import base64
import hashlib
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI, Request
from sqlalchemy import Engine, text
from tusclient import client as tus_client

from catalog.accounts.errors import Unauthorized
from catalog.db.cluster import free_port
from catalog.db.engine import create_engine
from catalog.settings import DatabaseSettings
from catalog.storage.local import LocalStorage
from catalog.uploads.ingest import assemble
from catalog.uploads.tus import TusFactory, TusUpload
from catalog.uploads.tus_store import STRAY_GRACE_S, TusError, TusRepository
from server.errors import add_error_handlers

MiB = 1024 * 1024
EXPIRATION = 3600
TUS = {"Tus-Resumable": "1.0.0"}
STREAM = {**TUS, "Content-Type": "application/offset+octet-stream"}


@dataclass
class Live:
    """The running tus server, its storage, the database and what its hooks saw."""

    url: str
    port: int
    storage: LocalStorage
    done: Path
    database_url: str
    db: Engine
    repo: TusRepository | None = None
    factory: TusFactory | None = None
    completed: list[TusUpload] = field(default_factory=list)

    def finished(self, upload_id: str) -> list[TusUpload]:
        return [u for u in self.completed if u.id == upload_id]

    def parts(self, upload_id: str) -> list[str]:
        """The committed parts of an upload, in order."""
        with self.db.connect() as conn:
            found = conn.scalar(text("SELECT parts FROM tus_uploads WHERE id = :id"),
                                {"id": upload_id})  # fmt: skip
        return list(found or [])

    def stored(self, upload_id: str) -> bytes:
        """The bytes the upload holds so far."""
        return b"".join(self.storage.path(key).read_bytes() for key in self.parts(upload_id))

    def objects(self, upload_id: str) -> list[str]:
        """Every part object under the upload's prefix."""
        return [o.key for o in self.storage.keys(f"tus/{upload_id}")]

    def busy(self) -> list[Path]:
        """Bodies being received (their local temp files)."""
        return [p for p in self.storage.tmp.iterdir() if p.suffix == ".part"]

    def with_repo(self, work: Callable[[TusRepository], Awaitable[Any]]) -> Any:
        """Run ``work`` on a repository of its own (the server's engine is its loop's)."""

        async def run() -> Any:
            engine = create_engine(self.database_url, DatabaseSettings(url=self.database_url))
            try:
                return await work(TusRepository(engine, self.storage))
            finally:
                await engine.dispose()

        return asyncio.run(run())


def _app(live: Live) -> FastAPI:
    async def on_create(request: Request, metadata: dict[str, str], length: int) -> None:
        if metadata.get("filetype") == "text/plain":
            raise TusError("upload.UnsupportedFileType", 415, "send a raster")

    async def on_complete(upload: TusUpload) -> dict[str, str]:
        live.completed.append(upload)
        if "refuse" in upload.metadata:
            raise TusError("ingest.NotARaster", 415, "not a raster")
        if upload.parts:
            assemble(live.storage, upload.parts, live.done / upload.id)
        else:
            (live.done / upload.id).write_bytes(b"")
        return {"Location": f"/files/{upload.id}"}

    def store() -> TusRepository:
        if live.repo is None:  # made in the server's loop, on its first request
            engine = create_engine(live.database_url, DatabaseSettings(url=live.database_url))
            live.repo = TusRepository(engine, live.storage)
        return live.repo

    factory = TusFactory(store, 64 * MiB, EXPIRATION, on_create, on_complete)
    live.factory = live.factory or factory
    app = FastAPI()
    add_error_handlers(app)
    app.include_router(factory.router)
    return app


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, sync_engine: Engine
) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("tus")
    (root / "done").mkdir()
    port = free_port()
    storage = LocalStorage(root / "data")
    live = Live(f"http://127.0.0.1:{port}", port, storage, root / "done", database_url,
                sync_engine)  # fmt: skip
    config = uvicorn.Config(
        _app(live), host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield live
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def http(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=10) as client:
        yield client


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "scene.tif"
    path.write_bytes(os.urandom(5 * MiB + 123))
    return path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _create(http: httpx.Client, length: int, **headers: str) -> str:
    response = http.post("/uploads/", headers={**TUS, "Upload-Length": str(length), **headers})
    assert response.status_code == 201, response.text
    return response.headers["location"]


def _offset(http: httpx.Client, url: str) -> int:
    response = http.head(url, headers=TUS)
    assert response.status_code == 200
    return int(response.headers["upload-offset"])


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code and response.json()["description"]
    assert response.headers["tus-resumable"] == "1.0.0"


def _raw_patch(
    live: Live, url: str, offset: int, length: int, part: bytes, extra: str = ""
) -> socket.socket:
    """Start a PATCH announcing ``length`` bytes and send only ``part``: the socket stays open."""
    sock = socket.create_connection(("127.0.0.1", live.port))
    head = (
        f"PATCH {httpx.URL(url).path} HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n"
        f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Upload-Offset: {offset}\r\nContent-Length: {length}\r\n{extra}\r\n"
    )
    sock.sendall(head.encode() + part)
    return sock


def _wait_for_bytes(live: Live) -> None:
    """Wait until a PATCH's body reached its local temp file."""
    deadline = time.monotonic() + 10
    while not any(p.stat().st_size for p in live.busy()) and time.monotonic() < deadline:
        time.sleep(0.02)


def _settle(http: httpx.Client, live: Live, url: str, written: bool = True) -> int:
    """Wait until no request receives a body (after the upload got bytes); return its offset."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not live.busy() and (not written or _offset(http, url) > 0):
            return _offset(http, url)
        time.sleep(0.02)
    raise AssertionError("the interrupted PATCH never ended")


def test_options(http: httpx.Client) -> None:
    for path in ("/uploads/", "/uploads"):
        response = http.options(path)
        assert response.status_code == 204
        assert response.headers["tus-version"] == "1.0.0"
        assert response.headers["tus-resumable"] == "1.0.0"
        assert response.headers["tus-extension"] == (
            "creation,creation-with-upload,termination,checksum,expiration"
        )
        assert set(response.headers["tus-checksum-algorithm"].split(",")) == {
            "sha1",
            "sha256",
            "md5",
        }
        assert response.headers["tus-max-size"] == str(64 * MiB)


def test_tuspy_upload_interrupted_and_resumed(live: Live, http: httpx.Client, source: Path) -> None:
    client = tus_client.TusClient(f"{live.url}/uploads/")
    metadata = {"filename": "scène.tif", "collection": "demo"}
    first = client.uploader(str(source), chunk_size=MiB, metadata=metadata)
    first.upload_chunk()
    first.upload_chunk()
    url = first.url
    del first  # the client goes away after two chunks
    head = http.head(url, headers=TUS)
    assert head.status_code == 200 and head.headers["cache-control"] == "no-store"
    assert head.headers["upload-offset"] == str(2 * MiB)
    assert head.headers["upload-length"] == str(source.stat().st_size)
    assert "GMT" in head.headers["upload-expires"]
    second = client.uploader(str(source), url=url, chunk_size=2 * MiB, upload_checksum=True)
    assert second.offset == 2 * MiB
    second.upload()
    upload_id = url.rsplit("/", 1)[-1]
    (done,) = live.finished(upload_id)
    assert done.key == f"tus/{upload_id}" and done.metadata == metadata
    assert done.length == source.stat().st_size and done.parts == live.parts(upload_id)
    assert sorted(live.objects(upload_id)) == sorted(done.parts) and len(done.parts) == 4
    assert _sha((live.done / upload_id).read_bytes()) == _sha(source.read_bytes())
    # Finished: HEAD keeps answering, PATCH is a no-op at the end and refused elsewhere.
    head = http.head(url, headers=TUS)
    assert head.headers["upload-offset"] == str(source.stat().st_size)
    assert head.headers["location"] == f"/files/{upload_id}"
    end = {**STREAM, "Upload-Offset": str(source.stat().st_size)}
    assert http.patch(url, headers=end).status_code == 204
    _error(http.patch(url, headers={**STREAM, "Upload-Offset": "0"}, content=b"x"), 409,
           "upload.OffsetMismatch")  # fmt: skip
    assert len(live.finished(upload_id)) == 1


def test_connection_killed_mid_patch_resumes_byte_exact(
    live: Live, http: httpx.Client, source: Path
) -> None:
    data = source.read_bytes()
    url = _create(http, len(data), **{"Upload-Metadata": "filename c2NlbmUudGlm,flag"})
    sock = _raw_patch(live, url, 0, len(data), data[: 5 * MiB // 2])
    sock.close()  # killed half-way through the body
    offset = _settle(http, live, url)
    upload_id = url.rsplit("/", 1)[-1]
    assert 0 < offset <= 5 * MiB // 2
    assert live.stored(upload_id) == data[:offset]
    client = tus_client.TusClient(f"{live.url}/uploads/")
    resumed = client.uploader(str(source), url=url, chunk_size=MiB, upload_checksum=True)
    assert resumed.offset == offset
    resumed.upload()
    (done,) = live.finished(upload_id)
    assert done.metadata == {"filename": "scene.tif", "flag": ""}
    assert _sha((live.done / upload_id).read_bytes()) == _sha(data)


def test_checksums(live: Live, http: httpx.Client) -> None:
    url = _create(http, 100)
    first = {**STREAM, "Upload-Offset": "0"}
    good = base64.b64encode(hashlib.md5(b"a" * 10).digest()).decode()
    response = http.patch(
        url, headers={**first, "Upload-Checksum": f"md5 {good}"}, content=b"a" * 10
    )
    assert response.status_code == 204 and response.headers["upload-offset"] == "10"
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    at10 = {**STREAM, "Upload-Offset": "10"}
    response = http.patch(
        url, headers={**at10, "Upload-Checksum": f"sha256 {wrong}"}, content=b"b" * 20
    )
    _error(response, 460, "upload.ChecksumMismatch")
    assert _offset(http, url) == 10
    assert live.stored(url.rsplit("/", 1)[-1]) == b"a" * 10
    response = http.patch(url, headers={**at10, "Upload-Checksum": "crc32 AAAA"}, content=b"b")
    _error(response, 400, "upload.UnsupportedChecksum")
    response = http.patch(url, headers={**at10, "Upload-Checksum": "sha1 %%%"}, content=b"b")
    _error(response, 400, "upload.InvalidChecksum")
    assert _offset(http, url) == 10


def test_protocol_errors(live: Live, http: httpx.Client) -> None:
    url = _create(http, 100)
    at0 = {**STREAM, "Upload-Offset": "0"}
    _error(http.patch(url, headers={**at0, "Upload-Offset": "5"}, content=b"x"), 409,
           "upload.OffsetMismatch")  # fmt: skip
    octets = {**at0, "Content-Type": "application/octet-stream"}
    _error(http.patch(url, headers=octets, content=b"x"), 415, "upload.UnsupportedMediaType")
    _error(http.patch(url, headers=at0, content=b"x" * 101), 413, "upload.TooLarge")
    _error(http.patch(url, headers={**at0, "Upload-Offset": "-1"}), 400, "upload.InvalidOffset")
    no_version = {k: v for k, v in at0.items() if k != "Tus-Resumable"}
    for headers in (no_version, {**at0, "Tus-Resumable": "0.2.2"}):
        response = http.patch(url, headers=headers, content=b"x")
        _error(response, 412, "upload.UnsupportedVersion")
        assert response.headers["tus-version"] == "1.0.0"
    assert http.head(url).status_code == 412
    assert _offset(http, url) == 0
    _error(http.post("/uploads/", headers={**TUS, "Upload-Length": str(64 * MiB + 1)}), 413,
           "upload.TooLarge")  # fmt: skip
    _error(http.post("/uploads/", headers={**TUS, "Upload-Defer-Length": "1"}), 400,
           "upload.InvalidLength")  # fmt: skip
    for bad in ("key not=base64", "a YQ==,a YQ==", "sp ace YQ==", "k /w==", ",k"):
        response = http.post(
            "/uploads/", headers={**TUS, "Upload-Length": "1", "Upload-Metadata": bad}
        )
        _error(response, 400, "upload.InvalidMetadata")


def test_creation_with_upload(live: Live, http: httpx.Client) -> None:
    data = os.urandom(3000)
    headers = {**STREAM, "Upload-Length": str(len(data)), "Upload-Metadata": "name YS50aWY="}
    response = http.post("/uploads", headers=headers, content=data[:1000])
    assert response.status_code == 201 and response.headers["upload-offset"] == "1000"
    url = response.headers["location"]
    assert url.startswith(f"{live.url}/uploads/")
    rest = http.patch(url, headers={**STREAM, "Upload-Offset": "1000"}, content=data[1000:])
    assert rest.status_code == 204 and rest.headers["upload-offset"] == "3000"
    assert rest.headers["location"].startswith("/files/")
    assert (live.done / url.rsplit("/", 1)[-1]).read_bytes() == data
    whole = http.post("/uploads/", headers=headers, content=data)
    assert whole.status_code == 201 and whole.headers["upload-offset"] == "3000"
    assert whole.headers["location"].startswith(f"{live.url}/uploads/")  # tus' Location wins
    empty = http.post("/uploads/", headers={**TUS, "Upload-Length": "0"})
    assert empty.status_code == 201 and empty.headers["upload-offset"] == "0"
    assert len(live.finished(empty.headers["location"].rsplit("/", 1)[-1])) == 1


async def test_location_respects_root_path(live: Live) -> None:
    transport = httpx.ASGITransport(app=_app(live), root_path="/catalog")
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy.test") as client:
        response = await client.post("/uploads/", headers={**TUS, "Upload-Length": "5"})
    assert response.status_code == 201
    assert response.headers["location"].startswith("http://proxy.test/catalog/uploads/")


def test_termination(live: Live, http: httpx.Client) -> None:
    url = _create(http, 100)
    http.patch(url, headers={**STREAM, "Upload-Offset": "0"}, content=b"x" * 10)
    upload_id = url.rsplit("/", 1)[-1]
    assert len(live.objects(upload_id)) == 1
    assert http.delete(url, headers=TUS).status_code == 204
    assert live.objects(upload_id) == [] and live.parts(upload_id) == []
    assert http.head(url, headers=TUS).status_code == 404
    _error(http.patch(url, headers={**STREAM, "Upload-Offset": "10"}, content=b"x"), 404,
           "upload.NotFound")  # fmt: skip
    _error(http.delete(url, headers=TUS), 404, "upload.NotFound")


def test_expiration(live: Live, http: httpx.Client) -> None:
    url = _create(http, 100)
    http.patch(url, headers={**STREAM, "Upload-Offset": "0"}, content=b"x" * 10)
    upload_id = url.rsplit("/", 1)[-1]
    old = time.time() - STRAY_GRACE_S - 60
    stray = live.storage.path(f"tus/{'f' * 32}/00000000000000000000.abcd")
    stray.parent.mkdir(parents=True)
    stray.write_text("a part whose upload is gone")
    os.utime(stray, (old, old))
    fresh = live.storage.path(f"tus/{upload_id}/00000000000000000000.lost")
    fresh.write_text("a part that lost, just now")
    assert live.with_repo(lambda repo: repo.expire(set())) == 0
    assert not stray.exists() and fresh.exists() and live.parts(upload_id)
    # Past its expiry but not yet swept: refused as gone.
    with live.db.begin() as conn:
        conn.execute(text("UPDATE tus_uploads SET expires = now() - interval '1 s'"))
    assert http.head(url, headers=TUS).status_code == 410
    _error(http.patch(url, headers={**STREAM, "Upload-Offset": "10"}, content=b"x"), 410,
           "upload.Gone")  # fmt: skip
    assert live.with_repo(lambda repo: repo.expire(set())) == 1
    assert live.objects(upload_id) == [] and live.parts(upload_id) == []
    assert http.head(url, headers=TUS).status_code == 404


def test_a_finished_upload_keeps_its_parts_while_its_file_needs_them(
    live: Live, http: httpx.Client
) -> None:
    url = _create(http, 4)
    http.patch(url, headers={**STREAM, "Upload-Offset": "0"}, content=b"abcd")
    upload_id = url.rsplit("/", 1)[-1]
    later = datetime.now(UTC) + timedelta(seconds=EXPIRATION + 10)
    assert live.with_repo(lambda repo: repo.expire({f"tus/{upload_id}"}, later)) == 0
    assert live.stored(upload_id) == b"abcd"
    assert live.with_repo(lambda repo: repo.expire(set(), later)) == 1
    assert live.objects(upload_id) == []


def _uploads(live: Live) -> int:
    with live.db.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM tus_uploads")) or 0)


def test_on_create_refusal(live: Live, http: httpx.Client) -> None:
    before = _uploads(live)
    mime = base64.b64encode(b"text/plain").decode()
    response = http.post(
        "/uploads/", headers={**TUS, "Upload-Length": "10", "Upload-Metadata": f"filetype {mime}"}
    )
    assert response.json() == {"code": "upload.UnsupportedFileType", "description": "send a raster"}
    assert response.status_code == 415 and _uploads(live) == before


def test_on_complete_refusal_keeps_the_upload(live: Live, http: httpx.Client) -> None:
    url = _create(http, 4, **{"Upload-Metadata": "refuse"})
    response = http.patch(url, headers={**STREAM, "Upload-Offset": "0"}, content=b"abcd")
    _error(response, 415, "ingest.NotARaster")
    assert response.headers["upload-offset"] == "4"
    upload_id = url.rsplit("/", 1)[-1]
    assert _offset(http, url) == 4 and live.stored(upload_id) == b"abcd"
    assert len(live.finished(upload_id)) == 1


@pytest.mark.parametrize(
    "path",
    ["..%2Fsecret", "%2E%2E%2Fsecret", "..%2F..%2Fsecret", "..", "%2e%2e", "secret",
     "..%5Csecret", "notes.txt", "0123456789abcdef0123456789abcdef.info", "A" * 32],
)  # fmt: skip
def test_ids_cannot_escape_the_store(live: Live, http: httpx.Client, path: str) -> None:
    root = live.storage.root
    secret = root.parent / "secret"
    secret.write_bytes(b"keep")
    (root / "tus").mkdir(exist_ok=True)
    (root / "tus" / "notes.txt").write_bytes(b"keep")
    url = f"{live.url}/uploads/{path}"
    at0 = {**STREAM, "Upload-Offset": "0"}
    assert http.head(url, headers=TUS).status_code == 404
    assert http.patch(url, headers=at0, content=b"x").status_code == 404
    assert http.delete(url, headers=TUS).status_code == 404
    assert secret.read_bytes() == b"keep" and (root / "tus" / "notes.txt").read_bytes() == b"keep"
    (root / "tus" / "notes.txt").unlink()


def test_two_patches_at_one_offset_one_wins(live: Live, http: httpx.Client) -> None:
    """Any API process may take a PATCH: of two at the same offset, the one that commits
    first wins; the other is answered 409 and leaves no part behind."""
    data = os.urandom(4 * MiB)
    url = _create(http, len(data))
    upload_id = url.rsplit("/", 1)[-1]
    sock = _raw_patch(live, url, 0, 2 * MiB, data[:MiB])
    try:
        _wait_for_bytes(live)  # the first PATCH is receiving its body
        quick = http.patch(url, headers={**STREAM, "Upload-Offset": "0"}, content=data[:10])
        assert quick.status_code == 204 and quick.headers["upload-offset"] == "10"
        sock.sendall(data[MiB : 2 * MiB])  # the first ends its body and finds it lost
        sock.settimeout(10)
        answer = sock.recv(65536)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 409") and b'"upload.OffsetMismatch"' in answer
    assert b"upload-offset: 10" in answer.lower()
    assert _settle(http, live, url) == 10
    assert live.objects(upload_id) == live.parts(upload_id)  # the loser's part is gone
    rest = http.patch(url, headers={**STREAM, "Upload-Offset": "10"}, content=data[10:])
    assert rest.status_code == 204
    assert _sha((live.done / upload_id).read_bytes()) == _sha(data)


def test_killed_checksummed_patch_is_rolled_back(live: Live, http: httpx.Client) -> None:
    data = os.urandom(3 * MiB)
    url = _create(http, len(data))
    digest = base64.b64encode(hashlib.sha1(data).digest()).decode()
    sock = _raw_patch(
        live, url, 0, len(data), data[: 2 * MiB], f"Upload-Checksum: sha1 {digest}\r\n"
    )
    _wait_for_bytes(live)
    sock.close()
    time.sleep(0.1)
    assert _settle(http, live, url, written=False) == 0
    assert live.objects(url.rsplit("/", 1)[-1]) == []


def test_silent_client_lets_go_of_the_lock(live: Live, http: httpx.Client) -> None:
    assert live.factory is not None
    data = os.urandom(2 * MiB)
    url = _create(http, len(data))
    live.factory.idle_timeout_s = 0.3
    try:
        sock = _raw_patch(live, url, 0, len(data), data[: 3 * MiB // 2])
        sock.settimeout(10)
        answer = b""
        while chunk := sock.recv(4096):  # the server gives up on the stalled body and hangs up
            answer += chunk
        sock.close()
    finally:
        live.factory.idle_timeout_s = 60.0
    assert answer.startswith(b"HTTP/1.1 408") and b'"upload.Timeout"' in answer
    assert _settle(http, live, url) == 3 * MiB // 2  # every byte that came is kept


async def test_route_dependencies_guard_every_route(tmp_path: Path) -> None:
    async def deny() -> None:
        raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")

    async def never(*args: object) -> dict[str, str]:
        raise AssertionError("a hook ran without authorization")

    def no_store() -> TusRepository:
        raise AssertionError("the store was used without authorization")

    factory = TusFactory(no_store, 100, 60, never, never, dependencies=[Depends(deny)])
    app = FastAPI()
    add_error_handlers(app)
    app.include_router(factory.router)
    url = f"/uploads/{'0' * 32}"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for method, path in [("OPTIONS", "/uploads/"), ("POST", "/uploads/"), ("HEAD", url),
                             ("PATCH", url), ("DELETE", url)]:  # fmt: skip
            response = await c.request(method, path, headers={**STREAM, "Upload-Length": "1"})
            assert response.status_code == 401, (method, response.text)


async def test_uploads_of_another_owner_answer_as_unknown(
    tmp_path: Path, database_url: str
) -> None:
    async def on_create(request: Request, metadata: dict[str, str], length: int) -> None:
        pass

    async def on_complete(upload: TusUpload) -> dict[str, str]:
        return {}

    engine = create_engine(database_url, DatabaseSettings(url=database_url))
    repo = TusRepository(engine, LocalStorage(tmp_path))
    factory = TusFactory(
        lambda: repo, 100, 60, on_create, on_complete,
        owner_of=lambda request: request.headers.get("x-who"),
        may_use=lambda request, owner: request.headers.get("x-who") in (owner, "admin"),
    )  # fmt: skip
    app = FastAPI()
    app.include_router(factory.router)
    ann, bob = {**STREAM, "X-Who": "ann"}, {**STREAM, "X-Who": "bob"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            created = await c.post("/uploads/", headers={**ann, "Upload-Length": "4"})
            url = created.headers["location"]
            upload_id = url.rsplit("/", 1)[-1]
            info = await repo.get(upload_id)
            assert info is not None and info.owner == "ann"
            assert (await c.head(url, headers=bob)).status_code == 404
            for method in ("PATCH", "DELETE"):
                answer = await c.request(method, url, headers={**bob, "Upload-Offset": "0"},
                                         content=b"ab")  # fmt: skip
                assert answer.status_code == 404, answer.text
                assert answer.json()["code"] == "upload.NotFound"
            info = await repo.get(upload_id)
            assert info is not None and info.offset == 0  # bob's bytes were not written
            patched = await c.patch(url, headers={**ann, "Upload-Offset": "0"}, content=b"ab")
            assert patched.status_code == 204 and patched.headers["upload-offset"] == "2"
            admin = await c.head(url, headers={**TUS, "X-Who": "admin"})
            assert admin.status_code == 200 and admin.headers["upload-offset"] == "2"
            assert (await c.delete(url, headers=ann)).status_code == 204
            assert await repo.get(upload_id) is None
    finally:
        await engine.dispose()


def test_an_ingest_read_waits_until_the_completing_upload_is_finished(
    live: Live, http: httpx.Client
) -> None:
    """The upload's file and ingest job are committed inside its ``completing`` block, which
    marks it finished only when it ends: a worker quick to claim the job read it unfinished
    and refused the file as upload.SourceGone (a full suite under load saw it once)."""
    url = _create(http, 4)
    http.patch(url, headers={**STREAM, "Upload-Offset": "0"}, content=b"ab")
    upload_id = url.rsplit("/", 1)[-1]

    async def work(repo: TusRepository) -> Any:
        async with repo.completing(upload_id):
            settled = asyncio.create_task(repo.get(upload_id, settled=True))
            await asyncio.sleep(0.5)
            assert not settled.done()
            plain = await repo.get(upload_id)
            assert plain is not None and not plain.finished
        return await asyncio.wait_for(settled, 10)

    found = live.with_repo(work)
    assert found is not None and found.finished
