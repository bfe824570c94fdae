"""A tus 1.0.0 server for resumable uploads, kept in a folder (tus.io/protocols/resumable-upload).

Extensions: creation, creation-with-upload, termination, checksum, expiration. State lives on
disk only, like tusd's file store: ``<id>`` holds the bytes received so far (the offset is its
size) and ``<id>.info`` the length, metadata and expiry, replaced atomically. Several server
processes may serve one upload: a PATCH holds ``flock`` on the data file while it writes, and a
second writer is answered 423. The body goes to disk in pieces as it arrives, never whole.
"""

import base64
import binascii
import email.utils
import hashlib
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from catalog.errors import CatalogError, error_body
from catalog.uploads.tus_store import (
    ID,
    Handle,
    Info,
    TusError,
    delete,
    not_found,
    open_upload,
    read_info,
    truncate,
    write_at,
    write_info,
)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,checksum,expiration"
CHECKSUMS: dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "md5": hashlib.md5,
}
OFFSET_STREAM = "application/offset+octet-stream"
FLUSH_BYTES = 1024 * 1024  # write (and hash) in pieces this big, off the event loop
_KEY = re.compile(r"[!-+\--~]+")  # printable ASCII without space and comma
_NUMBER = re.compile(r"[0-9]{1,19}")
_CLOSE = {"Connection": "close"}


@dataclass(frozen=True)
class TusUpload:
    """A finished upload, handed to ``on_complete``."""

    id: str
    path: Path
    length: int
    metadata: dict[str, str]


def _http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


def _number(request: Request, name: str, code: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    if not _NUMBER.fullmatch(value.strip()):
        raise TusError(code, 400, f"{name} must be a non-negative integer")
    return int(value)


def parse_metadata(header: str | None) -> dict[str, str]:
    """Decode ``Upload-Metadata``: comma-separated ``key base64(value)`` pairs, value optional."""
    metadata: dict[str, str] = {}
    if not header or not header.strip():
        return metadata
    for pair in header.split(","):
        key, *rest = pair.strip().split(" ")
        if not _KEY.fullmatch(key) or key in metadata or len(rest) > 1:
            raise TusError("upload.InvalidMetadata", 400, f"invalid Upload-Metadata pair {pair!r}")
        try:
            metadata[key] = base64.b64decode(rest[0], validate=True).decode() if rest else ""
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise TusError(
                "upload.InvalidMetadata", 400, f"the value of {key!r} is not base64 of UTF-8 text"
            ) from exc
    return metadata


def _encode_metadata(metadata: dict[str, str]) -> str:
    return ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}" if v else k for k, v in metadata.items()
    )


def _checksum(request: Request) -> tuple[str, bytes] | None:
    header = request.headers.get("upload-checksum")
    if header is None:
        return None
    algorithm, _, value = header.strip().partition(" ")
    if algorithm.lower() not in CHECKSUMS:
        raise TusError(
            "upload.UnsupportedChecksum", 400, f"checksum algorithms: {', '.join(CHECKSUMS)}"
        )
    try:
        return algorithm.lower(), base64.b64decode(value.strip(), validate=True)
    except binascii.Error as exc:
        raise TusError("upload.InvalidChecksum", 400, "Upload-Checksum is not base64") from exc


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _nobody(request: Request) -> str | None:
    return None


def _anyone(request: Request, owner: str | None) -> bool:
    return True


# -- the protocol ----------------------------------------------------------------------------------
@dataclass
class TusFactory:
    """Routes of a tus server storing uploads in ``store_dir``.

    ``on_create(request, metadata, length)`` may refuse a creation (raise ``TusError`` or a
    ``CatalogError``) before anything is stored. ``owner_of`` names who owns what a request
    creates; ``HEAD``, ``PATCH`` and ``DELETE`` of an upload whose owner ``may_use`` refuses
    to the request answer 404, as for an unknown upload (by default nobody owns anything).
    """

    store_dir: Path
    max_size: int
    expiration_s: int
    on_create: Callable[[Request, dict[str, str], int], Awaitable[None]]
    on_complete: Callable[[TusUpload], Awaitable[dict[str, str]]]
    dependencies: Sequence[Any] = ()
    prefix: str = "/uploads"
    idle_timeout_s: float = 60.0  # a PATCH that sends nothing this long lets go of its lock
    owner_of: Callable[[Request], str | None] = _nobody
    may_use: Callable[[Request, str | None], bool] = _anyone

    @property
    def _route_name(self) -> str:
        return f"tus_upload:{self.prefix}"

    @property
    def router(self) -> APIRouter:
        """The tus routes: OPTIONS/POST on the prefix, HEAD/PATCH/DELETE on each upload."""
        router = APIRouter(prefix=self.prefix, dependencies=list(self.dependencies))

        async def options(request: Request) -> Response:
            return self._answer(Response(status_code=204, headers=self._capabilities()))

        async def upload_options(request: Request, upload_id: str) -> Response:
            return await options(request)

        async def create(request: Request) -> Response:
            return await self._run(request, self._create)

        async def head(request: Request, upload_id: str) -> Response:
            return await self._run(request, self._head, upload_id)

        async def patch(request: Request, upload_id: str) -> Response:
            return await self._run(request, self._patch, upload_id)

        async def terminate(request: Request, upload_id: str) -> Response:
            return await self._run(request, self._terminate, upload_id)

        upload = "/{upload_id}"
        table: list[tuple[str, str, Callable[..., Awaitable[Response]], int, str]] = [
            ("/", "OPTIONS", options, 204, "tusOptions"),
            ("/", "POST", create, 201, "tusCreate"),
            (upload, "OPTIONS", upload_options, 204, "tusUploadOptions"),
            (upload, "HEAD", head, 200, "tusHead"),
            (upload, "PATCH", patch, 204, "tusPatch"),
            (upload, "DELETE", terminate, 204, "tusTerminate"),
        ]
        for path, method, endpoint, status, operation in table:
            name = self._route_name if operation == "tusHead" else operation
            # The prefix is also served without its slash (a redirect would lose a POST body).
            for route_path in [path, ""] if path == "/" else [path]:
                bare = route_path != path
                router.add_api_route(
                    route_path,
                    endpoint,
                    methods=[method],
                    status_code=status,
                    name=name,
                    operation_id=operation + "Bare" * bare,
                    include_in_schema=not bare,
                )
        return router

    def _capabilities(self) -> dict[str, str]:
        return {
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Checksum-Algorithm": ",".join(CHECKSUMS),
            "Tus-Max-Size": str(self.max_size),
        }

    @staticmethod
    def _answer(response: Response) -> Response:
        response.headers["Tus-Resumable"] = TUS_VERSION
        return response

    async def _run(self, request: Request, handler: Any, *args: Any) -> Response:
        """Check the protocol version, run ``handler`` and turn a TusError into our error body."""
        try:
            if request.headers.get("tus-resumable") != TUS_VERSION:
                raise TusError(
                    "upload.UnsupportedVersion",
                    412,
                    f"send 'Tus-Resumable: {TUS_VERSION}'",
                    {"Tus-Version": TUS_VERSION},
                )
            if args and not ID.fullmatch(args[0]):
                raise not_found(args[0])
            if args:
                await self._check_owner(request, args[0])
            response: Response = await handler(request, *args)
        except CatalogError as exc:  # a hook's refusal: the same body, with Tus-Resumable
            error = TusError(exc.code, exc.status, exc.description, exc.headers, **exc.detail)
            response = self._refusal(request, error)
        except TusError as exc:
            response = self._refusal(request, exc)
        return self._answer(response)

    @staticmethod
    def _refusal(request: Request, exc: TusError) -> Response:
        if request.method == "HEAD":
            return Response(status_code=exc.status, headers=exc.headers)
        body = error_body(exc.code, exc.description, **exc.detail)
        return JSONResponse(body, exc.status, headers=exc.headers)

    async def _check_owner(self, request: Request, upload_id: str) -> None:
        """404 for an upload of another owner, exactly as for one that does not exist."""
        info = await run_in_threadpool(read_info, self.store_dir, upload_id)
        if info is not None and not self.may_use(request, info.owner):
            raise not_found(upload_id)

    async def _create(self, request: Request) -> Response:
        length = _number(request, "upload-length", "upload.InvalidLength")
        if length is None:
            raise TusError(
                "upload.InvalidLength", 400, "Upload-Length is required (no Upload-Defer-Length)"
            )
        if length > self.max_size:
            raise TusError("upload.TooLarge", 413, f"uploads are limited to {self.max_size} bytes")
        metadata = parse_metadata(request.headers.get("upload-metadata"))
        with_body = (_number(request, "content-length", "upload.InvalidLength") or 0) > 0 or (
            "chunked" in request.headers.get("transfer-encoding", "").lower()
        )
        if with_body and _media_type(request) != OFFSET_STREAM:
            raise TusError("upload.UnsupportedMediaType", 415, f"a body must be {OFFSET_STREAM}")
        checksum = _checksum(request)
        await self.on_create(request, metadata, length)
        owner = self.owner_of(request)
        upload_id, info = await run_in_threadpool(self._new_upload, length, metadata, owner)
        location = str(request.url_for(self._route_name, upload_id=upload_id))
        headers = {"Upload-Expires": _http_date(info.expires)}
        if with_body or length == 0:
            try:
                headers = await self._write(request, upload_id, 0, checksum)
            except TusError as exc:
                exc.headers["Location"] = location  # the client can still resume
                raise
        # A Location from on_complete (finished at once) is left to HEAD: tus needs this one.
        return Response(status_code=201, headers=headers | {"Location": location})

    def _new_upload(
        self, length: int, metadata: dict[str, str], owner: str | None
    ) -> tuple[str, Info]:
        self.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        while True:
            upload_id = secrets.token_hex(16)
            try:
                os.close(os.open(self.store_dir / upload_id, os.O_CREAT | os.O_EXCL, 0o600))
                break
            except FileExistsError:  # pragma: no cover - 128 random bits
                continue
        now = time.time()
        info = Info(length, metadata, created=now, expires=now + self.expiration_s, owner=owner)
        write_info(self.store_dir, upload_id, info)
        return upload_id, info

    async def _head(self, request: Request, upload_id: str) -> Response:
        info, offset = await run_in_threadpool(self._status, upload_id)
        headers = {
            "Upload-Offset": str(offset),
            "Upload-Length": str(info.length),
            "Cache-Control": "no-store",
        }
        if info.metadata:
            headers["Upload-Metadata"] = _encode_metadata(info.metadata)
        if info.finished:
            headers = info.headers | headers
        else:
            headers["Upload-Expires"] = _http_date(info.expires)
        return Response(status_code=200, headers=headers)

    def _status(self, upload_id: str) -> tuple[Info, int]:
        info = read_info(self.store_dir, upload_id)
        if info is None:
            raise not_found(upload_id)
        if info.finished:
            return info, info.length
        if info.expires <= time.time():
            raise TusError("upload.Gone", 410, "this upload expired")
        try:
            return info, (self.store_dir / upload_id).stat().st_size
        except FileNotFoundError:
            raise not_found(upload_id) from None

    async def _patch(self, request: Request, upload_id: str) -> Response:
        if _media_type(request) != OFFSET_STREAM:
            raise TusError("upload.UnsupportedMediaType", 415, f"send {OFFSET_STREAM}")
        offset = _number(request, "upload-offset", "upload.InvalidOffset")
        if offset is None:
            raise TusError("upload.InvalidOffset", 400, "Upload-Offset is required")
        checksum = _checksum(request)
        headers = await self._write(request, upload_id, offset, checksum)
        return Response(status_code=204, headers=headers)

    async def _terminate(self, request: Request, upload_id: str) -> Response:
        def terminate() -> None:
            handle = open_upload(self.store_dir, upload_id, time.time(), expired_ok=True)
            try:
                delete(self.store_dir, upload_id)
            finally:
                handle.close()

        await run_in_threadpool(terminate)
        return Response(status_code=204)

    async def _write(
        self, request: Request, upload_id: str, offset: int, checksum: tuple[str, bytes] | None
    ) -> dict[str, str]:
        """Lock the upload, append the body at ``offset``, finish it if complete."""
        handle = await run_in_threadpool(open_upload, self.store_dir, upload_id, time.time())
        try:
            length = handle.info.length
            if offset != handle.offset:
                raise TusError(
                    "upload.OffsetMismatch",
                    409,
                    f"the upload is at offset {handle.offset}, not {offset}",
                    {"Upload-Offset": str(handle.offset)},
                )
            declared = _number(request, "content-length", "upload.InvalidLength") or 0
            if handle.info.finished:
                if declared:
                    raise TusError("upload.TooLarge", 413, "the upload is already complete")
                return handle.info.headers | {"Upload-Offset": str(length)}
            if offset + declared > length:
                raise TusError("upload.TooLarge", 413, f"Upload-Length is {length}")
            stop = await self._append(request, handle, checksum)
            handle.info.expires = time.time() + self.expiration_s
            await run_in_threadpool(write_info, self.store_dir, upload_id, handle.info)
            headers = {"Upload-Offset": str(handle.offset)}
            if stop is not None:
                stop.headers |= headers
                raise stop
            if handle.offset < length:
                return headers | {"Upload-Expires": _http_date(handle.info.expires)}
            try:
                return await self._complete(handle) | headers
            except TusError as exc:
                exc.headers |= headers
                raise
        finally:
            handle.close()

    async def _append(
        self, request: Request, handle: Handle, checksum: tuple[str, bytes] | None
    ) -> TusError | None:
        """Stream the body to the data file; return why it stopped early, if it did."""
        fd = handle.writable_fd()
        start = handle.offset
        hasher = CHECKSUMS[checksum[0]]() if checksum else None
        try:
            stop = await self._receive(request, handle, hasher)
            if checksum and stop is None and hasher is not None:
                if hasher.digest() != checksum[1]:
                    stop = TusError("upload.ChecksumMismatch", 460, "the chunk fails its checksum")
            if stop is not None and (checksum or stop.status == 413):
                await run_in_threadpool(truncate, fd, start)  # discard the whole chunk
                handle.offset = start
            else:
                await run_in_threadpool(os.fsync, fd)
        except BaseException:
            if checksum:  # bytes nobody verified must not become part of the upload
                truncate(fd, start)
            raise
        return stop

    async def _receive(self, request: Request, handle: Handle, hasher: Any) -> TusError | None:
        """Write the body as it arrives, in pieces; return why it stopped early, if it did."""
        pending: list[bytes] = []
        size = handle.offset  # bytes written + pending
        stream = request.stream()
        try:
            while True:
                with anyio.move_on_after(self.idle_timeout_s) as idle:
                    chunk = await anext(stream, None)
                # Unread body left: the connection cannot serve another request, so close it.
                if idle.cancelled_caught:
                    return TusError("upload.Timeout", 408, "no data arrived for too long", _CLOSE)
                if chunk is None:
                    return None
                if size + len(chunk) > handle.info.length:
                    limit = f"Upload-Length is {handle.info.length}"
                    return TusError("upload.TooLarge", 413, limit, _CLOSE)
                pending.append(chunk)
                size += len(chunk)
                if size - handle.offset >= FLUSH_BYTES:
                    await self._flush(handle, pending, hasher)
        except ClientDisconnect:
            return TusError("upload.Disconnected", 400, "the client went away")
        finally:
            await stream.aclose()
            await self._flush(handle, pending, hasher)  # what arrived is kept (or rolled back)

    @staticmethod
    async def _flush(handle: Handle, pending: list[bytes], hasher: Any | None) -> None:
        if not pending:
            return
        fd = handle.writable_fd()
        data = b"".join(pending)
        pending.clear()
        await run_in_threadpool(write_at, fd, handle.offset, data, hasher)
        handle.offset += len(data)

    async def _complete(self, handle: Handle) -> dict[str, str]:
        """Hand the data file over; the upload is finished once ``on_complete`` returns."""
        upload = TusUpload(
            handle.id, self.store_dir / handle.id, handle.info.length, dict(handle.info.metadata)
        )
        extra = dict(await self.on_complete(upload))
        handle.info.finished, handle.info.headers = True, extra
        handle.info.expires = time.time() + self.expiration_s
        await run_in_threadpool(write_info, self.store_dir, handle.id, handle.info)
        return extra
