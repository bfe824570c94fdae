"""Downloads of the archives the export processes make: ``GET /exports/{jobID}.{mbtiles|pmtiles}``.

A file is served only to its job's owner (and admins; anyone else gets 404 as for a missing
archive), and only while its job is successful (a dismissed job's archive is gone from the
API even before its file is). Archives are read from the storage (``exports/{job}.{ext}``).
Responses carry a strong ``ETag`` (the stored object's) and answer ``If-None-Match`` with
304. From a local folder Starlette's FileResponse serves ``Range`` requests (206, multipart
for several ranges) and ``If-Range``; from object storage the bytes are streamed through
``storage.open_range`` (one range: 206; several: the whole archive). A Range it would refuse (plain
text) is refused here first, with Starlette's own parser, as our JSON errors:
``export.InvalidRange`` (400) and ``export.RangeNotSatisfiable`` (416, ``Content-Range``).
"""

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

import attr
from fastapi import APIRouter, FastAPI, Header, Request
from fastapi import Path as PathParam
from stac_fastapi.types.extension import ApiExtension
from starlette.concurrency import iterate_in_threadpool
from starlette.responses import (
    FileResponse,
    MalformedRangeHeader,
    RangeNotSatisfiable,
    Response,
    StreamingResponse,
)

from catalog.accounts.web import principal_of
from catalog.errors import CatalogError, InvalidParameter, NotFound
from catalog.jobs.queue import JobStatus
from catalog.storage.base import Storage, StoredObject
from tiler.archives import WRITERS
from tiler.export import archive_key

from .processes import Jobs, parse_job_id

Extension = Literal["mbtiles", "pmtiles"]


class ArchiveNotFound(NotFound):
    """No downloadable archive: no such job, not an export, not successful, or file gone."""

    code = "export.NotFound"


class InvalidRange(InvalidParameter):
    """A Range header that is not a valid ``bytes=`` range set."""

    code = "export.InvalidRange"


class RangeOutsideArchive(CatalogError):
    """A Range none of whose ranges starts within the archive."""

    code = "export.RangeNotSatisfiable"
    status = 416

    def __init__(self, size: int) -> None:
        super().__init__(f"the requested range starts past the archive's {size} bytes")
        self.headers = {"Content-Range": f"bytes */{size}"}


def _check_range(response: FileResponse, http_range: str | None, if_range: str | None,
                 size: int) -> None:  # fmt: skip
    """Refuse, as our errors, the Range FileResponse would answer in plain text.

    FileResponse honours a Range unless If-Range names another version, then parses it: its
    own ``_should_use_range`` and ``_parse_range_header`` decide here too, so both agree.
    """
    if http_range is None:
        return
    if if_range is not None and not response._should_use_range(if_range):
        return  # another version: the whole file, no range to check
    try:
        FileResponse._parse_range_header(http_range, size)
    except MalformedRangeHeader as exc:
        raise InvalidRange(f"invalid Range header {http_range[:80]!r}: {exc.content}") from None
    except RangeNotSatisfiable:
        raise RangeOutsideArchive(size) from None


DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The archive (`Accept-Ranges: bytes`, strong `ETag`)",
          "content": {w.media_type: {} for w in WRITERS.values()}},
    206: {"description": "The requested byte range; several ranges as multipart/byteranges"},
    304: {"description": "`If-None-Match` matches the archive's `ETag`"},
    400: {"description": "`export.InvalidRange`: the Range header is not a bytes range set"},
    404: {"description": "`export.NotFound`: no successful export job with this archive"},
    416: {"description": "`export.RangeNotSatisfiable`: the range starts past the end; "
                         "`Content-Range: bytes */<size>` gives the size"},
}  # fmt: skip


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in candidates or etag in candidates


def _streamed(
    request: Request,
    storage: Storage,
    found: StoredObject,
    headers: dict[str, str],
    http_range: str | None,
    if_range: str | None,
) -> Response:
    """The archive from object storage: whole, or the one range asked for (206)."""
    media_type = WRITERS[found.key.rsplit(".", 1)[-1]].media_type
    name = found.key.rsplit("/", 1)[-1]
    headers = {**headers, "Accept-Ranges": "bytes",
               "Content-Disposition": f'attachment; filename="{name}"',
               "Last-Modified": found.modified.strftime("%a, %d %b %Y %H:%M:%S GMT")}  # fmt: skip
    start, end, status = 0, found.size - 1, 200
    if http_range is not None and (if_range is None or if_range.strip() == headers["ETag"]):
        try:
            ranges = FileResponse._parse_range_header(http_range, found.size)
        except MalformedRangeHeader as exc:
            raise InvalidRange(f"invalid Range header {http_range[:80]!r}: {exc.content}") from None
        except RangeNotSatisfiable:
            raise RangeOutsideArchive(found.size) from None
        if len(ranges) == 1:
            start, end, status = ranges[0][0], ranges[0][1] - 1, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{found.size}"
    headers["Content-Length"] = str(end - start + 1)
    if request.method == "HEAD" or found.size == 0:
        return Response(status_code=status, headers=headers, media_type=media_type)

    async def body() -> AsyncIterator[bytes]:
        async for chunk in iterate_in_threadpool(storage.open_range(found.key, start, end)):
            yield chunk

    return StreamingResponse(body(), status_code=status, headers=headers, media_type=media_type)


def _download_endpoint(storage: Storage) -> Callable[..., Any]:
    async def download(
        request: Request,
        job_id: Annotated[str, PathParam(alias="jobID", description="The export job's id.")],
        extension: Annotated[Extension, PathParam(description="mbtiles or pmtiles")],
        jobs: Jobs,
        if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None,
        http_range: Annotated[str | None, Header(alias="Range", include_in_schema=False)] = None,
        if_range: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Response:
        """The archive of a successful export job (ranges, ETag, If-None-Match)."""
        try:
            job = await jobs.get(parse_job_id(job_id))
        except NotFound:
            raise ArchiveNotFound(f"there is no archive {job_id}.{extension}") from None
        if not principal_of(request).owns(job.owner_id):
            raise ArchiveNotFound(f"there is no archive {job_id}.{extension}")
        if job.status != JobStatus.successful or job.process_id != extension:
            raise ArchiveNotFound(f"job {job_id} has no {extension} archive (it is "
                                  f"{job.process_id}, {job.status})")  # fmt: skip
        key = archive_key(str(job.id), extension)
        found = await asyncio.to_thread(storage.stat, key)
        if found is None:
            raise ArchiveNotFound(f"the archive of job {job_id} is no longer stored")
        etag = f'"{found.etag}"'
        headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
        if _etag_matches(if_none_match, etag):
            return Response(status_code=304, headers=headers)
        if storage.kind != "local":
            return _streamed(request, storage, found, headers, http_range, if_range)
        path = storage.gdal_path(key)  # a local file
        try:
            stat = os.stat(path)
        except FileNotFoundError:  # swept since
            raise ArchiveNotFound(f"the archive of job {job_id} is no longer stored") from None
        response = FileResponse(
            path,
            media_type=WRITERS[extension].media_type,
            filename=key.rsplit("/", 1)[-1],
            headers=headers,
            stat_result=stat,
        )
        _check_range(response, http_range, if_range, found.size)
        return response

    return download


@attr.s
class ExportsExtension(ApiExtension):
    """The archive download route; ``read_dependencies`` guard it (the /jobs ones)."""

    storage: Storage = attr.ib(kw_only=True)
    read_dependencies: list[Any] = attr.ib(factory=list)
    conformance_classes: list[str] = attr.ib(factory=list)
    router: APIRouter = attr.ib(factory=lambda: APIRouter(tags=["Exports"]))

    def register(self, app: FastAPI) -> None:
        """Add ``GET``/``HEAD /exports/{jobID}.{extension}``."""
        download = _download_endpoint(self.storage)
        for method, operation_id in (("GET", "getExportArchive"), ("HEAD", "headExportArchive")):
            self.router.add_api_route(
                "/exports/{jobID}.{extension}",
                download,
                methods=[method],
                operation_id=operation_id,
                summary="Download an export archive",
                dependencies=list(self.read_dependencies),
                response_class=Response,
                responses=DOWNLOAD_RESPONSES,
            )
        app.include_router(self.router)
