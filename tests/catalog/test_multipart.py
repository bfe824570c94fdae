"""Multipart uploads streamed to disk: catalog/uploads/multipart.py through a tiny ASGI app."""

import base64
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.requests import ClientDisconnect

from catalog.uploads.multipart import receive_multipart_file
from server.errors import add_error_handlers

DATA = os.urandom(3 * 1024 * 1024 + 17)
SHA = hashlib.sha256(DATA).hexdigest()
LIMIT = 4 * 1024 * 1024
BOUNDARY = "test-boundary-1234"


def _app(dest: Path) -> FastAPI:
    app = FastAPI()
    add_error_handlers(app)

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, Any]:
        got = await receive_multipart_file(request, dest, LIMIT)
        return {"path": str(got.path), "filename": got.filename, "size": got.size,
                "sha256": got.sha256, "fields": got.fields}  # fmt: skip

    return app


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    folder = tmp_path / "staging"
    folder.mkdir()
    return folder


@pytest.fixture
async def client(dest: Path) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(dest))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code and response.json()["description"]


def _body(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += value + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


async def test_file_and_fields_arrive(client: httpx.AsyncClient, dest: Path) -> None:
    response = await client.post(
        "/upload",
        files={"file": ("../../évil\x07/scene.tif", DATA, "image/tiff")},
        data={"title": "Scène", "sha256": SHA.upper()},
    )
    assert response.status_code == 200, response.text
    got = response.json()
    path = Path(got["path"])
    assert path.parent == dest and path.read_bytes() == DATA
    assert path.stat().st_mode & 0o777 == 0o600
    assert got["sha256"] == SHA and got["size"] == len(DATA)
    assert got["filename"] == "scene.tif"
    assert got["fields"] == {"title": "Scène", "sha256": SHA.upper()}
    assert list(dest.iterdir()) == [path]


async def test_digest_header(client: httpx.AsyncClient, dest: Path) -> None:
    digest = base64.b64encode(hashlib.sha256(DATA).digest()).decode()
    files = {"file": ("a.tif", DATA)}
    ok = await client.post("/upload", files=files, headers={"Digest": f"sha-256={digest}"})
    assert ok.status_code == 200, ok.text
    Path(ok.json()["path"]).unlink()
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    bad = await client.post("/upload", files=files, headers={"Digest": f"SHA-256={wrong}"})
    _error(bad, 400, "upload.ChecksumMismatch")
    assert list(dest.iterdir()) == []


async def test_sha256_field_mismatch(client: httpx.AsyncClient, dest: Path) -> None:
    for value in ("0" * 64, "not-hex"):
        response = await client.post(
            "/upload", files={"file": ("a.tif", DATA)}, data={"sha256": value}
        )
        _error(response, 400, "upload.ChecksumMismatch")
    assert list(dest.iterdir()) == []


async def test_too_large_declared(client: httpx.AsyncClient, dest: Path) -> None:
    big = os.urandom(LIMIT + 4 * 1024 * 1024)
    response = await client.post("/upload", files={"file": ("a.tif", big)})
    _error(response, 413, "ingest.TooLarge")
    assert list(dest.iterdir()) == []


async def test_too_large_streamed(client: httpx.AsyncClient, dest: Path) -> None:
    body = _body(("file", "a.tif", os.urandom(LIMIT + 1)))

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for start in range(0, len(body), 256 * 1024):
            yield body[start : start + 256 * 1024]

    response = await client.post(
        "/upload",
        content=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    _error(response, 413, "ingest.TooLarge")
    assert list(dest.iterdir()) == []


async def test_missing_file(client: httpx.AsyncClient, dest: Path) -> None:
    response = await client.post("/upload", data={"title": "x"}, files={"other": ("", b"")})
    _error(response, 400, "upload.MissingFile")
    response = await client.post("/upload", files={"title": (None, b"x")})
    _error(response, 400, "upload.MissingFile")
    assert list(dest.iterdir()) == []


async def test_more_than_one_file(client: httpx.AsyncClient, dest: Path) -> None:
    twice = [("file", ("a.tif", DATA)), ("file", ("b.tif", b"x"))]
    _error(await client.post("/upload", files=twice), 400, "upload.TooManyFiles")
    other = [("file", ("a.tif", DATA)), ("extra", ("b.tif", b"x"))]
    _error(await client.post("/upload", files=other), 400, "upload.TooManyFiles")
    assert list(dest.iterdir()) == []


async def test_not_multipart(client: httpx.AsyncClient, dest: Path) -> None:
    response = await client.post("/upload", content=DATA, headers={"Content-Type": "image/tiff"})
    _error(response, 415, "upload.UnsupportedMediaType")
    response = await client.post("/upload", json={"file": "x"})
    _error(response, 415, "upload.UnsupportedMediaType")


async def test_malformed_bodies(client: httpx.AsyncClient, dest: Path) -> None:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    truncated = _body(("file", "a.tif", DATA))[:-40]
    response = await client.post("/upload", content=truncated, headers=headers)
    _error(response, 400, "upload.InvalidMultipart")
    long_field = _body(("note", None, b"x" * (64 * 1024 + 1)), ("file", "a.tif", b"1"))
    response = await client.post("/upload", content=long_field, headers=headers)
    _error(response, 400, "upload.FieldTooLarge")
    many = _body(*[(f"f{i}", None, b"v") for i in range(33)], ("file", "a.tif", b"1"))
    response = await client.post("/upload", content=many, headers=headers)
    _error(response, 400, "upload.TooManyFields")
    assert list(dest.iterdir()) == []


# -- straight ASGI calls: what happens while the body is still arriving ----------------------------
def _scope(body_length: int | None) -> dict[str, Any]:
    headers = [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())]
    if body_length is not None:
        headers.append((b"content-length", str(body_length).encode()))
    return {"type": "http", "method": "POST", "path": "/upload", "headers": headers,
            "query_string": b"", "http_version": "1.1", "scheme": "http",
            "server": ("test", 80), "root_path": ""}  # fmt: skip


def _pieces(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _staged_bytes(dest: Path) -> int:
    return sum(p.stat().st_size for p in dest.iterdir())


async def test_chunks_are_written_as_they_arrive(dest: Path) -> None:
    body = _body(("file", "a.tif", DATA))
    pieces = list(_pieces(body))
    on_disk_midway: list[int] = []

    async def receive() -> dict[str, Any]:
        if len(pieces) == 10:  # 2.5 MB of 3 MB sent
            on_disk_midway.append(_staged_bytes(dest))
        piece = pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    got = await receive_multipart_file(Request(_scope(len(body)), receive), dest, LIMIT)
    assert got.sha256 == SHA and got.path.read_bytes() == DATA
    assert on_disk_midway and on_disk_midway[0] >= 1024 * 1024


async def test_client_disconnect_leaves_nothing(dest: Path) -> None:
    pieces = list(_pieces(_body(("file", "a.tif", DATA))))[:40]
    pieces.append(b"")  # the connection drops here

    async def receive() -> dict[str, Any]:
        piece = pieces.pop(0)
        if not piece:
            assert _staged_bytes(dest) > 0  # something was written before the drop
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": piece, "more_body": True}

    with pytest.raises(ClientDisconnect):
        await receive_multipart_file(Request(_scope(None), receive), dest, LIMIT)
    assert list(dest.iterdir()) == []
