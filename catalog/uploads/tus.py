"""A tus 1.0.0 server for resumable uploads (tus.io/protocols/resumable-upload).

Extensions: creation, creation-with-upload, termination, checksum, expiration. No state lives
in the process: an upload's record is a row of ``tus_uploads`` and its bytes are part objects
in the storage (catalog/uploads/tus_store.py), so any API process can serve any request of an
upload. A PATCH streams its body to a local temporary file in pieces (never whole in memory),
publishes it as one part, then commits it by compare-and-set on the offset: of two PATCHes at
one offset one wins and the other is answered 409 (its part deleted).
"""

import base64
import binascii
import email.utils
import hashlib
import os
import re
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
    TusError,
    TusRepository,
    not_found,
    part_key,
    upload_key,
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
    key: str  # ``tus/{id}``: the prefix of its parts, the staged key of its upload file
    parts: list[str]  # keys of its parts, in order
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
    """Routes of a tus server keeping its uploads in the repository ``store()`` gives.

    ``on_create(request, metadata, length)`` may refuse a creation (raise ``TusError`` or a
    ``CatalogError``) before anything is stored. ``owner_of`` names who owns what a request
    creates; ``HEAD``, ``PATCH`` and ``DELETE`` of an upload whose owner ``may_use`` refuses
    to the request answer 404, as for an unknown upload (by default nobody owns anything).
    """

    store: Callable[[], TusRepository]
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
        info = await self.store().get(upload_id)
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
        info = await self.store().create(length, metadata, owner, self.expiration_s)
        location = str(request.url_for(self._route_name, upload_id=info.id))
        headers = {"Upload-Expires": _http_date(info.expires.timestamp())}
        if with_body or length == 0:
            try:
                headers = await self._write(request, info.id, 0, checksum)
            except TusError as exc:
                exc.headers["Location"] = location  # the client can still resume
                raise
        # A Location from on_complete (finished at once) is left to HEAD: tus needs this one.
        return Response(status_code=201, headers=headers | {"Location": location})

    async def _head(self, request: Request, upload_id: str) -> Response:
        info = await self.store().get(upload_id)
        if info is None:
            raise not_found(upload_id)
        if not info.finished and info.expired():
            raise TusError("upload.Gone", 410, "this upload expired")
        headers = {
            "Upload-Offset": str(info.length if info.finished else info.offset),
            "Upload-Length": str(info.length),
            "Cache-Control": "no-store",
        }
        if info.metadata:
            headers["Upload-Metadata"] = _encode_metadata(info.metadata)
        if info.finished:
            headers = info.headers | headers
        else:
            headers["Upload-Expires"] = _http_date(info.expires.timestamp())
        return Response(status_code=200, headers=headers)

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
        store = self.store()
        info = await store.delete(upload_id)
        if info is None:
            raise not_found(upload_id)
        if not info.finished:  # a finished upload's parts are its upload file's now
            await store.remove_parts(upload_id)
        return Response(status_code=204)

    @staticmethod
    def _mismatch(offset: int, at: int) -> TusError:
        return TusError(
            "upload.OffsetMismatch",
            409,
            f"the upload is at offset {offset}, not {at}",
            {"Upload-Offset": str(offset)},
        )

    async def _write(
        self, request: Request, upload_id: str, offset: int, checksum: tuple[str, bytes] | None
    ) -> dict[str, str]:
        """Receive the body at ``offset`` as one part, commit it, finish the upload if complete."""
        store = self.store()
        info = await store.get(upload_id)
        if info is None:
            raise not_found(upload_id)
        length = info.length
        declared = _number(request, "content-length", "upload.InvalidLength") or 0
        if info.finished:
            if offset != length:
                raise self._mismatch(length, offset)
            if declared:
                raise TusError("upload.TooLarge", 413, "the upload is already complete")
            return info.headers | {"Upload-Offset": str(length)}
        if info.expired():
            raise TusError("upload.Gone", 410, "this upload expired")
        if offset != info.offset:
            raise self._mismatch(info.offset, offset)
        if offset + declared > length:
            raise TusError("upload.TooLarge", 413, f"Upload-Length is {length}")
        local = store.storage.temp_path(".part")
        try:
            stop, size = await self._receive(request, local, offset, length, checksum)
            reached = await self._commit(store, upload_id, offset, local, size)
        finally:
            local.unlink(missing_ok=True)
        headers = {"Upload-Offset": str(reached)}
        if stop is not None:
            stop.headers |= headers
            raise stop
        if reached < length:
            expires = time.time() + self.expiration_s
            return headers | {"Upload-Expires": _http_date(expires)}
        try:
            return await self._complete(store, upload_id) | headers
        except TusError as exc:
            exc.headers |= headers
            raise

    async def _commit(
        self, store: TusRepository, upload_id: str, offset: int, local: Path, size: int
    ) -> int:
        """Publish the received bytes as a part and commit it at ``offset``; the new offset."""
        if not size:
            await store.touch(upload_id, self.expiration_s)
            return offset
        key = part_key(upload_id, offset)
        await run_in_threadpool(store.storage.publish, local, key)
        reached = await store.append(upload_id, offset, key, size, self.expiration_s)
        if reached is not None:
            return reached
        # Another PATCH committed at this offset first (or the upload ended meanwhile).
        await run_in_threadpool(store.storage.delete, key)
        current = await store.get(upload_id)
        if current is None:
            raise not_found(upload_id)
        raise self._mismatch(current.length if current.finished else current.offset, offset)

    async def _receive(
        self,
        request: Request,
        local: Path,
        offset: int,
        length: int,
        checksum: tuple[str, bytes] | None,
    ) -> tuple[TusError | None, int]:
        """Stream the body into ``local`` in pieces; why it stopped early (if it did) and how
        many bytes are to be kept (none when a checksum fails or the body was too long)."""
        hasher = CHECKSUMS[checksum[0]]() if checksum else None
        pending: list[bytes] = []
        size = 0  # bytes written + pending
        written = 0
        stop: TusError | None = None
        fd = await run_in_threadpool(os.open, local, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        stream = request.stream()
        try:
            while True:
                with anyio.move_on_after(self.idle_timeout_s) as idle:
                    chunk = await anext(stream, None)
                # Unread body left: the connection cannot serve another request, so close it.
                if idle.cancelled_caught:
                    stop = TusError("upload.Timeout", 408, "no data arrived for too long", _CLOSE)
                    break
                if chunk is None:
                    break
                if offset + size + len(chunk) > length:
                    stop = TusError("upload.TooLarge", 413, f"Upload-Length is {length}", _CLOSE)
                    break
                pending.append(chunk)
                size += len(chunk)
                if size - written >= FLUSH_BYTES:
                    written += await self._flush(fd, pending, hasher)
        except ClientDisconnect:
            stop = TusError("upload.Disconnected", 400, "the client went away")
        finally:
            await stream.aclose()
            try:
                written += await self._flush(fd, pending, hasher)  # what arrived is kept
                await run_in_threadpool(os.fsync, fd)
            finally:
                os.close(fd)
        if checksum and stop is None and hasher is not None and hasher.digest() != checksum[1]:
            stop = TusError("upload.ChecksumMismatch", 460, "the chunk fails its checksum")
        if stop is not None and (checksum or stop.status == 413):
            return stop, 0  # bytes nobody verified must not become part of the upload
        return stop, written

    @staticmethod
    async def _flush(fd: int, pending: list[bytes], hasher: Any | None) -> int:
        if not pending:
            return 0
        data = b"".join(pending)
        pending.clear()
        await run_in_threadpool(_append_all, fd, data, hasher)
        return len(data)

    async def _complete(self, store: TusRepository, upload_id: str) -> dict[str, str]:
        """Hand the parts over; the upload is finished once ``on_complete`` returns (in one
        process only: the record is locked meanwhile)."""
        async with store.completing(upload_id) as info:
            if info.finished:  # another request finished it meanwhile
                return info.headers
            # Parts of PATCHes that lost (and died before deleting theirs) are not the upload's.
            await store.remove_parts(upload_id, keep=info.parts)
            upload = TusUpload(
                info.id, upload_key(info.id), list(info.parts), info.length, dict(info.metadata)
            )
            extra = dict(await self.on_complete(upload))
            info.headers = extra
        return extra


def _append_all(fd: int, data: bytes, hasher: Any | None) -> None:
    """Write ``data`` in full at the file's end, feeding the checksum's hasher first."""
    if hasher is not None:
        hasher.update(data)  # hashlib releases the GIL on big buffers
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
