"""HTTP downloads of stored objects: one response for assets and export archives alike.

``stored_response`` answers ``GET`` and ``HEAD`` for one key of a storage:

- ``200`` with the whole object, or ``206`` with one ``Range`` (``bytes=a-b``, ``a-``, ``-n``);
  several ranges get the whole object (``200``: GDAL, browsers and geotiff.js ask for one);
- ``416`` with ``Content-Range: bytes */<size>`` for a range that starts past the end, ``400``
  for a Range that is not a bytes range;
- ``ETag`` (the storage's, strong), ``Last-Modified``, ``304`` for ``If-None-Match`` (or,
  without it, ``If-Modified-Since``); ``If-Range`` with another version: the whole object;
- ``Accept-Ranges: bytes``, the media type, ``Content-Length``, ``Content-Disposition`` with
  the file name and the given ``Cache-Control``.

Bytes are streamed from ``storage.open_range`` in chunks read in a worker thread: memory stays
flat whatever the size. ``redirect``: a storage with URLs of its own (S3) is answered with
``307`` to a presigned URL instead, when it gives one.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from catalog.errors import CatalogError, InvalidParameter

from .base import Storage, StoredObject

_TOKEN_SAFE = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class InvalidRange(InvalidParameter):
    """A Range header that is not a valid ``bytes=`` range set."""

    code = "asset.InvalidRange"


class RangeNotSatisfiable(CatalogError):
    """A Range that starts past the end of the object."""

    code = "asset.RangeNotSatisfiable"
    status = 416

    def __init__(self, size: int) -> None:
        super().__init__(f"the requested range starts past the end of the {size} bytes")
        self.headers = {"Content-Range": f"bytes */{size}"}


@dataclass(frozen=True)
class RangeErrors:
    """The errors a download raises for bad ranges (exports keep codes of their own)."""

    invalid: type[InvalidRange] = InvalidRange
    unsatisfiable: type[RangeNotSatisfiable] = RangeNotSatisfiable


RANGE_ERRORS = RangeErrors()


def parse_range(
    header: str, size: int, errors: RangeErrors = RANGE_ERRORS
) -> tuple[int, int] | None:
    """The inclusive (start, end) of a single-range header; None for several ranges (served
    whole). ``errors.invalid`` for syntax, ``errors.unsatisfiable`` when it starts past the end."""
    unit, _, ranges = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or not ranges.strip():
        raise errors.invalid(f"invalid Range header {header[:80]!r}: not a bytes range set")
    specs = [spec.strip() for spec in ranges.split(",")]
    parsed: list[tuple[str, str]] = []
    for spec in specs:
        first, dash, last = spec.partition("-")
        first, last = first.strip(), last.strip()
        if (
            not dash
            or not (first or last)
            or (first and not first.isdecimal())
            or (last and not last.isdecimal())
            or (first and last and int(first) > int(last))
        ):
            raise errors.invalid(f"invalid Range header {header[:80]!r}: bad range {spec!r}")
        parsed.append((first, last))
    if len(parsed) > 1:
        return None
    first, last = parsed[0]
    if not first:  # the last n bytes
        count = int(last)
        if count == 0 or size == 0:
            raise errors.unsatisfiable(size)
        return max(0, size - count), size - 1
    start = int(first)
    if start >= size:
        raise errors.unsatisfiable(size)
    return start, min(size - 1, int(last)) if last else size - 1


def etag_matches(header: str | None, etag: str, weak: bool = True) -> bool:
    """Whether an If-None-Match (weak comparison) or If-Range (strong) header names ``etag``
    (quoted)."""
    if not header:
        return False
    tags = [tag.strip() for tag in header.split(",")]
    if weak:
        return "*" in tags or etag in {tag.removeprefix("W/") for tag in tags}
    return etag in tags


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def content_disposition(filename: str, attachment: bool) -> str:
    """``inline``/``attachment`` with the name, plain when it is a safe token, else RFC 6266
    ``filename*`` (no header injection, any character)."""
    kind = "attachment" if attachment else "inline"
    if filename and all(c in _TOKEN_SAFE or c == " " for c in filename) and '"' not in filename:
        return f'{kind}; filename="{filename}"'
    ascii_name = "".join(c if c in _TOKEN_SAFE else "_" for c in filename) or "download"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _media_type(value: Any) -> str:
    if isinstance(value, str) and value and value.isprintable() and len(value) < 256:
        return value
    return "application/octet-stream"


@dataclass(frozen=True)
class Download:
    """What to serve: a key of a storage, as a file of this media type and name."""

    storage: Storage
    key: str
    media_type: str
    filename: str
    cache_control: str
    attachment: bool = False
    redirect: bool = False  # answer 307 to the storage's presigned URL when it has one
    redirect_expires_s: int = 300
    errors: RangeErrors = RANGE_ERRORS


async def stored_response(request: Request, download: Download, missing: CatalogError) -> Response:
    """The response to a GET or HEAD of ``download`` (module docstring); raises ``missing``
    when the storage does not have the key."""
    found: StoredObject | None = await run_in_threadpool(download.storage.stat, download.key)
    if found is None:
        raise missing
    if download.redirect:
        url = await run_in_threadpool(
            download.storage.presigned_url,
            download.key,
            download.redirect_expires_s,
            download.filename,
        )
        if url:
            return RedirectResponse(url, 307, {"Cache-Control": "private, no-store"})
    etag = f'"{found.etag}"'
    modified = found.modified.replace(microsecond=0)
    headers = {
        "ETag": etag,
        "Last-Modified": format_datetime(modified.astimezone(UTC), usegmt=True),
        "Cache-Control": download.cache_control,
        "Accept-Ranges": "bytes",
    }
    if _not_modified(request, etag, modified):
        return Response(status_code=304, headers=headers)
    headers["Content-Disposition"] = content_disposition(download.filename, download.attachment)
    media_type = _media_type(download.media_type)
    start, end, status = 0, found.size - 1, 200
    http_range = request.headers.get("range")
    if http_range is not None and _range_applies(request.headers.get("if-range"), etag, modified):
        chosen = parse_range(http_range, found.size, download.errors)
        if chosen is not None:
            start, end, status = chosen[0], chosen[1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{found.size}"
    headers["Content-Length"] = str(max(0, end - start + 1))
    if request.method == "HEAD" or found.size == 0:
        return Response(status_code=status, headers=headers, media_type=media_type)
    chunks: Iterator[bytes] = download.storage.open_range(download.key, start, end)
    return StreamingResponse(chunks, status, headers, media_type)


def _not_modified(request: Request, etag: str, modified: datetime) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        return etag_matches(if_none_match, etag)
    since = _http_date(request.headers.get("if-modified-since"))
    return since is not None and modified <= since


def _range_applies(if_range: str | None, etag: str, modified: datetime) -> bool:
    """Whether the Range is for this version (no If-Range, or one naming it)."""
    if if_range is None:
        return True
    if if_range.strip().startswith(('"', "W/")):
        return etag_matches(if_range, etag, weak=False)
    return _http_date(if_range) == modified
