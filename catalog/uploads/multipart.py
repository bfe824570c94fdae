"""A multipart/form-data upload written straight to disk while it arrives.

Starlette's ``request.form()`` spools the file to a temporary file of its own, which we would
then copy. Here python-multipart's streaming parser feeds the ``file`` part into a private file
in the destination folder and hashes it on the way; small text fields are kept in memory.
"""

import base64
import binascii
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from catalog.errors import CatalogError
from catalog.ingest.errors import ChecksumMismatch, TooLarge
from catalog.ingest.fetch import safe_filename

FLUSH_BYTES = 1024 * 1024  # write (and hash) in pieces this big, off the event loop
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32
# Room for the text fields and part headers around the file in the whole body.
BODY_OVERHEAD = MAX_FIELDS * (MAX_FIELD_BYTES + 1024) + 64 * 1024
DEFAULT_FILENAME = "upload.tif"


class UploadError(CatalogError):
    """A multipart upload we refuse; rendered by the catalogue error handler."""

    def __init__(self, code: str, status: int, description: str) -> None:
        super().__init__(description)
        # The codes are per instance here; CatalogError declares them per class.
        self.code = code  # type: ignore[misc]
        self.status = status  # type: ignore[misc]


@dataclass(frozen=True)
class ReceivedFile:
    """The uploaded file, now a private file in ``dest_dir`` that belongs to the caller."""

    path: Path
    filename: str
    size: int
    sha256: str
    fields: dict[str, str]


def _invalid(description: str) -> UploadError:
    return UploadError("upload.InvalidMultipart", 400, description)


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    name: str = ""
    is_file: bool = False
    value: bytearray = field(default_factory=bytearray)


class _Receiver:
    """Turns parser callbacks into file writes and fields; the caller drives it chunk by chunk."""

    def __init__(self, dest_dir: Path, max_bytes: int, field_name: str) -> None:
        self.dest_dir, self.max_bytes, self.field_name = dest_dir, max_bytes, field_name
        self.events: list[tuple[str, bytes]] = []
        self.fields: dict[str, str] = {}
        self.fd: int | None = None
        self.path: Path | None = None
        self.filename = DEFAULT_FILENAME
        self.size = 0
        self.digest = hashlib.sha256()
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.ended = False
        self._part = _Part()
        self._header = [b"", b""]

    def callbacks(self) -> Any:
        """Parser callbacks that only record what happened (they cannot await)."""

        def data(kind: str) -> Any:
            return lambda buf, start, end: self.events.append((kind, bytes(buf[start:end])))

        def mark(kind: str) -> Any:
            return lambda: self.events.append((kind, b""))

        return {
            "on_part_begin": mark("part_begin"),
            "on_header_field": data("header_field"),
            "on_header_value": data("header_value"),
            "on_header_end": mark("header_end"),
            "on_headers_finished": mark("headers_finished"),
            "on_part_data": data("part_data"),
            "on_part_end": mark("part_end"),
            "on_end": mark("end"),
        }

    async def drain(self) -> None:
        """Act on the events of the last parsed chunk."""
        events, self.events = self.events, []
        for kind, payload in events:
            if kind == "part_begin":
                self._part, self._header = _Part(), [b"", b""]
            elif kind == "header_field":
                self._header[0] += payload
            elif kind == "header_value":
                self._header[1] += payload
            elif kind == "header_end":
                name, value = (h.decode("latin-1") for h in self._header)
                self._part.headers[name.strip().lower()] = value.strip()
                self._header = [b"", b""]
            elif kind == "headers_finished":
                self._start_part()
            elif kind == "part_data":
                await self._data(payload)
            elif kind == "part_end":
                await self._end_part()
            elif kind == "end":
                self.ended = True

    def _start_part(self) -> None:
        disposition, params = parse_options_header(self._part.headers.get("content-disposition"))
        if disposition != b"form-data" or b"name" not in params:
            raise _invalid("every part needs 'Content-Disposition: form-data; name=...'")
        self._part.name = params[b"name"].decode("utf-8", errors="replace")
        filename = params.get(b"filename")
        if self._part.name != self.field_name and filename is None:
            return
        if self.fd is not None or self._part.name != self.field_name:
            raise UploadError(
                "upload.TooManyFiles",
                400,
                f"send one file, in the part {self.field_name!r}",
            )
        self._part.is_file = True
        if filename is not None:
            self.filename = safe_filename(filename.decode("utf-8", "replace"), DEFAULT_FILENAME)
        fd, name = tempfile.mkstemp(dir=self.dest_dir, prefix="upload-")  # mode 0600
        self.fd, self.path = fd, Path(name)

    async def _data(self, payload: bytes) -> None:
        part = self._part
        if not part.is_file:
            part.value += payload
            if len(part.value) > MAX_FIELD_BYTES:
                raise UploadError(
                    "upload.FieldTooLarge",
                    400,
                    f"field {part.name!r} is too long",
                )
            return
        self.size += len(payload)
        if self.size > self.max_bytes:
            raise TooLarge(f"the file is larger than the limit of {self.max_bytes} bytes")
        self.pending.append(payload)
        self.pending_size += len(payload)
        if self.pending_size >= FLUSH_BYTES:
            await self.flush()

    async def _end_part(self) -> None:
        part = self._part
        if part.is_file:
            await self.flush()
            return
        if len(self.fields) >= MAX_FIELDS and part.name not in self.fields:
            raise UploadError("upload.TooManyFields", 400, f"more than {MAX_FIELDS} fields")
        try:
            self.fields[part.name] = part.value.decode()
        except UnicodeDecodeError as exc:
            raise _invalid(f"field {part.name!r} is not UTF-8 text") from exc

    async def flush(self) -> None:
        """Hash and write what is pending, in a worker thread."""
        if self.fd is None or not self.pending:
            return
        data, self.pending, self.pending_size = b"".join(self.pending), [], 0
        await run_in_threadpool(_write, self.fd, data, self.digest)

    def discard(self) -> None:
        """Close and delete the partial file."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _write(fd: int, data: bytes, digest: Any) -> None:
    digest.update(data)  # hashlib releases the GIL on big buffers
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _expected_digest(fields: dict[str, str], digest_header: str | None) -> list[bytes]:
    """The SHA-256 digests the client announced, from the ``sha256`` field or ``Digest``."""
    expected = []
    if "sha256" in fields:
        try:
            expected.append(bytes.fromhex(fields["sha256"].strip()))
        except ValueError as exc:
            raise ChecksumMismatch("the sha256 field is not a hexadecimal digest") from exc
    for item in (digest_header or "").split(","):
        algorithm, _, value = item.strip().partition("=")
        if algorithm.lower() == "sha-256":
            try:
                expected.append(base64.b64decode(value.strip(), validate=True))
            except binascii.Error as exc:
                raise ChecksumMismatch("the Digest sha-256 value is not base64") from exc
    return expected


def _boundary(request: Request) -> bytes:
    ctype, params = parse_options_header(request.headers.get("content-type"))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadError(
            "upload.UnsupportedMediaType", 415, "send the file as multipart/form-data"
        )
    return params[b"boundary"]


async def receive_multipart_file(
    request: Request, dest_dir: Path, max_bytes: int, field_name: str = "file"
) -> ReceivedFile:
    """Stream the ``field_name`` part of a multipart body into a new file in ``dest_dir``."""
    boundary = _boundary(request)
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > max_bytes + BODY_OVERHEAD:
        raise TooLarge(f"the body is larger than the limit of {max_bytes} bytes")
    receiver = _Receiver(dest_dir, max_bytes, field_name)
    parser = MultipartParser(boundary, receiver.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes + BODY_OVERHEAD:
                raise TooLarge(f"the body is larger than the limit of {max_bytes} bytes")
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise _invalid(f"malformed multipart body: {exc}") from exc
            await receiver.drain()
        parser.finalize()
        if not receiver.ended:
            raise _invalid("the multipart body ends before its closing boundary")
        if receiver.fd is None or receiver.path is None:
            raise UploadError("upload.MissingFile", 400, f"no file part named {field_name!r}")
        await receiver.flush()
        await run_in_threadpool(os.fsync, receiver.fd)
        sha256 = receiver.digest.digest()
        for expected in _expected_digest(receiver.fields, request.headers.get("digest")):
            if expected != sha256:
                raise ChecksumMismatch("the file received does not match the SHA-256 sent")
    except BaseException:
        receiver.discard()
        raise
    os.close(receiver.fd)
    return ReceivedFile(
        receiver.path, receiver.filename, receiver.size, sha256.hex(), receiver.fields
    )
