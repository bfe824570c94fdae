"""Downloads of the archives the export processes make: ``GET /exports/{jobID}.{mbtiles|pmtiles}``.

A file is served only to its job's owner (and admins; anyone else gets 404 as for a missing
archive), and only while its job is successful (a dismissed job's archive is gone from the
API even before its file is). The archive is the storage's ``exports/{job id}.{ext}``,
served like stored assets (catalog/storage/responses.py: one Range, ``ETag``, ``If-None-Match``,
``If-Range``, streamed), with codes of its own: ``export.InvalidRange`` (400) and
``export.RangeNotSatisfiable`` (416, ``Content-Range``).
"""

from collections.abc import Callable
from typing import Annotated, Any, Literal

import attr
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi import Path as PathParam
from stac_fastapi.types.extension import ApiExtension
from starlette.responses import Response

from catalog.accounts.web import principal_of
from catalog.errors import NotFound
from catalog.jobs.queue import JobStatus
from catalog.stac.assets import app_storage
from catalog.storage import responses
from catalog.storage.base import Storage
from tiler.archives import WRITERS
from tiler.export.files import archive_key

from .processes import Jobs, parse_job_id

Extension = Literal["mbtiles", "pmtiles"]


class ArchiveNotFound(NotFound):
    """No downloadable archive: no such job, not an export, not successful, or file gone."""

    code = "export.NotFound"


class InvalidRange(responses.InvalidRange):
    """A Range header that is not a valid ``bytes=`` range set."""

    code = "export.InvalidRange"


class RangeOutsideArchive(responses.RangeNotSatisfiable):
    """A Range that starts past the end of the archive."""

    code = "export.RangeNotSatisfiable"


_RANGE_ERRORS = responses.RangeErrors(InvalidRange, RangeOutsideArchive)


DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The archive (`Accept-Ranges: bytes`, strong `ETag`)",
          "content": {w.media_type: {} for w in WRITERS.values()}},
    206: {"description": "One requested byte range (several ranges: the whole archive, 200)"},
    304: {"description": "`If-None-Match` matches the archive's `ETag`"},
    400: {"description": "`export.InvalidRange`: the Range header is not a bytes range set"},
    404: {"description": "`export.NotFound`: no successful export job with this archive"},
    416: {"description": "`export.RangeNotSatisfiable`: the range starts past the end; "
                         "`Content-Range: bytes */<size>` gives the size"},
}  # fmt: skip


def _download_endpoint(storage: Callable[..., Storage]) -> Callable[..., Any]:
    async def download(
        request: Request,
        job_id: Annotated[str, PathParam(alias="jobID", description="The export job's id.")],
        extension: Annotated[Extension, PathParam(description="mbtiles or pmtiles")],
        jobs: Jobs,
        source: Annotated[Storage, Depends(storage)],
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
        name = f"{job.id}.{extension}"
        download = responses.Download(
            source, archive_key(str(job.id), extension), WRITERS[extension].media_type, name,
            "private, no-cache", attachment=True, errors=_RANGE_ERRORS,
        )  # fmt: skip
        missing = ArchiveNotFound(f"the archive of job {job_id} is no longer stored")
        return await responses.stored_response(request, download, missing)

    return download


@attr.s
class ExportsExtension(ApiExtension):
    """The archive download route; ``read_dependencies`` guard it (the /jobs ones)."""

    # The storage holding ``exports/{job id}.{ext}`` (default: the app's, ``app.state.storage``)
    storage: Callable[..., Storage] = attr.ib(default=app_storage, kw_only=True)
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
