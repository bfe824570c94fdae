"""Upload sets: ``/upload_sets`` (multipart and by-URL files) and the tus hooks at ``/uploads/``.

Every received file is published to the storage under ``staging/...`` (a finished tus upload
stays where its parts are, ``tus/{id}``) and handed to an ``ingest`` job in the same
transaction that records its key, so a file is never received without a job to process it, and
no API process keeps a file another process (or a worker elsewhere) needs.

Sets, their files, tus uploads and ingest jobs belong to the account that made the set (the
tus upload: the account that created it); another account gets 404 for them, as for ones that
do not exist, and admins see all. Making a set, or sending it a file, needs the ``write`` right
on its collection, and room in the owner's storage quota (catalog/accounts/quotas.py), checked
before any byte is stored.
"""

import asyncio
import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from catalog.accounts.quotas import DEFAULT_QUOTA_BYTES
from catalog.accounts.repository import AccountRepository
from catalog.accounts.web import owner_id_of, principal_of
from catalog.cubes.urls import check_cube_url
from catalog.errors import InvalidParameter, NotFound
from catalog.ingest.errors import TooLarge
from catalog.ingest.fetch import check_url, safe_filename
from catalog.jobs.queue import JobRepository
from catalog.pictures.repository import PictureRepository
from catalog.settings import IngestSettings, JobSettings
from catalog.stac.serializers import check_id
from catalog.storage.base import Storage, item_prefix
from catalog.uploads.ingest import check_room, remove_staged, staged_is_picture, staging_key
from catalog.uploads.multipart import receive_multipart_file
from catalog.uploads.repository import (
    FINAL_FILE_STATES,
    NewFile,
    PictureOptions,
    UploadRepository,
    UploadSetClosed,
    VectorOptions,
    parse_uuid,
)
from catalog.uploads.tus import TusUpload
from catalog.uploads.tus_store import TusError
from catalog.vector.repository import VectorRepository
from catalog.web import base_url, json_response


class UploadSetCreate(BaseModel):
    """Body of ``POST /upload_sets``."""

    model_config = ConfigDict(extra="forbid")

    collection: str = Field(description="Id of the collection the items go into.")
    title: str | None = Field(default=None, max_length=1000)
    expected_files: int | None = Field(
        default=None, ge=1, le=100_000, description="The set is ready once this many finished."
    )
    datetime: dt.datetime | None = Field(
        default=None, description="Item datetime for every file (else TIFF tag, else now)."
    )
    layer: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Vector files: the one layer to load (else every layer: docs/ingest.md).",
    )
    datetime_property: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Vector files: the date or datetime property temporal queries use (else "
        "the first date or datetime property of the file).",
    )
    annotates: str | None = Field(
        default=None,
        description="Vector files: the raster collection whose imagery the features describe.",
    )
    cube_url: Literal["copy", "register"] | None = Field(
        default=None,
        description="Datacube URLs (a Zarr store or NetCDF file, https:// or s3://): `copy` "
        "stores a copy (rechunked when needed), `register` serves the cube from the URL. "
        "Unset: URL files are downloaded as files.",
    )
    split_distance: float | None = Field(
        default=None,
        ge=0,
        le=1e7,
        description="Pictures: a new sequence starts where two neighbours are farther apart "
        "than this many metres (default 100).",
    )
    split_time: float | None = Field(
        default=None,
        ge=0,
        le=1e9,
        description="Pictures: a new sequence starts where two neighbours were taken more "
        "than this many seconds apart (default 60).",
    )
    duplicate_distance: float | None = Field(
        default=None,
        ge=0,
        le=1e4,
        description="Pictures: a picture within this many metres of a kept one of its "
        "sequence (and facing within duplicate_rotation of it) is a capture duplicate "
        "(default 1).",
    )
    duplicate_rotation: float | None = Field(
        default=None,
        ge=0,
        le=180,
        description="Pictures: see duplicate_distance, in degrees (default 60).",
    )
    sort_method: Literal["time-asc", "time-desc", "filename-asc", "filename-desc"] | None = Field(
        default=None, description="Pictures: the order of a sequence (default time-asc)."
    )
    visibility: Literal["public", "accounts", "private"] | None = Field(
        default=None,
        description="Pictures: who may see them; refused when the collection is more open "
        "(items are visible as their collection is: docs/ingest.md).",
    )


class UrlFile(BaseModel):
    """Body of ``POST /upload_sets/{id}/files`` for a file fetched by URL."""

    model_config = ConfigDict(extra="forbid")

    href: str = Field(max_length=4096)
    filename: str | None = Field(default=None, max_length=255)


def _uploads(request: Request) -> UploadRepository:
    repo: UploadRepository = request.app.state.uploads
    return repo


_Repo = Annotated[UploadRepository, Depends(_uploads)]


def file_document(base: str, record: dict[str, Any]) -> dict[str, Any]:
    """A file of an upload set as JSON."""
    set_url = f"{base}upload_sets/{record['upload_set_id']}"
    doc: dict[str, Any] = {
        "id": str(record["id"]),
        "filename": record["filename"],
        "source": record["source"],
        "status": record["status"],
        "size": record["size"],
        "sha256": record["sha256"],
        "item_id": record["item_id"] if record["status"] == "ready" else None,
        "created": record["created"].isoformat(),
        "updated": record["updated"].isoformat(),
        "links": [{"rel": "self", "href": f"{set_url}/files/{record['id']}",
                   "type": "application/json"}],
    }  # fmt: skip
    if record["href"]:
        doc["href"] = record["href"]
    if record.get("job_status") is not None:
        doc["job"] = {
            "id": str(record["job_id"]),
            "status": record["job_status"],
            "progress": record["job_progress"],
            "message": record["job_message"],
        }
    if record["error_code"]:
        doc["error"] = {"code": record["error_code"], "description": record["error_message"]}
    if record["status"] == "ready" and record["item_id"]:
        doc["links"].append(
            {
                "rel": "item",
                "href": f"{base}collections/{record['collection_id']}/items/{record['item_id']}",
                "type": "application/geo+json",
            }
        )
    loaded = (record.get("job_outputs") or {}).get("collections")
    if record["status"] == "ready" and loaded:  # a vector file: the collections it went into
        doc["collections"] = [c["id"] for c in loaded]
        doc["links"] += [{"rel": "collection", "href": f"{base}collections/{c['id']}",
                          "type": "application/json"} for c in loaded]  # fmt: skip
    if record["job_id"]:
        doc["links"].append(
            {"rel": "monitor", "href": f"{base}jobs/{record['job_id']}", "type": "application/json"}
        )
    return doc


def set_document(
    base: str, upload_set: dict[str, Any], files: list[dict[str, Any]]
) -> dict[str, Any]:
    """An upload set with its files, counts and ``ready`` flag."""
    counts = dict.fromkeys(("received", "processing", *FINAL_FILE_STATES), 0)
    for record in files:
        counts[record["status"]] += 1
    finished = sum(counts[s] for s in FINAL_FILE_STATES)
    expected = upload_set["expected_files"]
    closed = upload_set["completed"] or (expected is not None and len(files) >= expected)
    url = f"{base}upload_sets/{upload_set['id']}"
    doc: dict[str, Any] = {
        "id": str(upload_set["id"]),
        "collection": upload_set["collection_id"],
        "title": upload_set["title"],
        "expected_files": expected,
        "datetime": when.isoformat() if (when := upload_set["item_datetime"]) else None,
        **{k: v for k, v in VectorOptions.of(upload_set).values().items() if v is not None},
        **({"cube_url": upload_set["cube_url"]} if upload_set.get("cube_url") else {}),
        **{k: v for k, v in PictureOptions.of(upload_set).values().items() if v is not None},
        "completed": upload_set["completed"],
        "ready": closed and finished == len(files),
        "created": upload_set["created"].isoformat(),
        "counts": counts,
        "files": [file_document(base, f) for f in files],
        "links": [
            {"rel": "self", "href": url, "type": "application/json"},
            {"rel": "collection", "href": f"{base}collections/{upload_set['collection_id']}",
             "type": "application/json"},
            {"rel": "files", "href": f"{url}/files", "method": "POST"},
            {"rel": "complete", "href": f"{url}/complete", "method": "POST"},
            {"rel": "tus", "href": f"{base}uploads/", "method": "POST"},
        ],
    }  # fmt: skip
    if upload_set.get("dispatch_job_id"):  # pictures: the job cutting them into sequences
        done = upload_set["dispatched_at"]
        doc["dispatched"] = done.isoformat() if done else None
        href = f"{base}jobs/{upload_set['dispatch_job_id']}"
        doc["links"].append({"rel": "monitor", "href": href, "type": "application/json",
                             "title": "Dispatch of the pictures"})  # fmt: skip
    return doc


def tus_owner(request: Request) -> str | None:
    """Who owns the tus upload a request creates (``TusFactory.owner_of``)."""
    owner = owner_id_of(request)
    return str(owner) if owner is not None else None


def tus_may_use(request: Request, owner: str | None) -> bool:
    """Whether the caller may see, resume or end a tus upload (``TusFactory.may_use``)."""
    return principal_of(request).owns(uuid.UUID(owner) if owner else None)


async def require_write(request: Request, collection_id: str) -> None:
    """404 when the caller may not read the collection (as for a missing one), 403 without
    the ``write`` right on it."""
    accounts: AccountRepository = request.app.state.accounts
    await accounts.require(principal_of(request), collection_id, "write")


async def check_annotates(request: Request, collection_id: str, annotates: str) -> None:
    """``annotates`` names another collection the caller may read (404 else), one of imagery
    (400 for a vector collection)."""
    check_id(annotates, "annotates")
    if annotates == collection_id:
        raise InvalidParameter("a collection cannot annotate itself ('annotates')")
    accounts: AccountRepository = request.app.state.accounts
    await accounts.require(principal_of(request), annotates, "read")
    if await VectorRepository(request.app.state.uploads.engine).layer(annotates) is not None:
        raise InvalidParameter(
            f"'annotates' must name a raster collection; {annotates!r} holds vector features"
        )


_OPENNESS = {"private": 0, "accounts": 1, "public": 2}


async def check_options(request: Request, repo: UploadRepository, body: UploadSetCreate) -> None:
    """The options of a new set that name or depend on other collections."""
    if body.annotates is not None:
        await check_annotates(request, body.collection, body.annotates)
    if body.visibility is not None:
        await check_visibility(repo, body.collection, body.visibility)


async def check_visibility(repo: UploadRepository, collection_id: str, asked: str) -> None:
    """Pictures are visible as their collection is (rights are per collection): a set that
    asks for fewer readers than its collection has is refused, never silently widened."""
    found = await repo.collection_visibility(collection_id)
    if found is not None and _OPENNESS[found] > _OPENNESS[asked]:
        raise InvalidParameter(
            f"visibility {asked!r}: the pictures would be {found} as their collection "
            f"{collection_id!r} is; send them to a collection that is {asked}"
        )


async def owned_set(
    request: Request, repo: UploadRepository, set_id: uuid.UUID
) -> tuple[uuid.UUID | None, str]:
    """The owner and collection of an upload set the caller owns; 404 for anyone else's."""
    owner, collection_id = await repo.set_access(set_id)
    if not principal_of(request).owns(owner):
        raise NotFound(f"upload set {set_id} does not exist")
    return owner, collection_id


class UploadsFactory:
    """The ``/upload_sets`` routes and the hooks of the tus server.

    ``default_quota_bytes`` is the quota of accounts without one of their own.
    """

    def __init__(
        self,
        ingest: IngestSettings,
        jobs: JobSettings,
        dependencies: list[Any],
        storage: Storage,
        default_quota_bytes: int = DEFAULT_QUOTA_BYTES,
    ) -> None:
        self.ingest = ingest
        self.jobs = jobs
        self.dependencies = dependencies
        self.storage = storage  # where received files wait for their job
        self.default_quota_bytes = default_quota_bytes

    async def check_quota(
        self, repo: UploadRepository, owner: uuid.UUID | None, incoming: int
    ) -> int | None:
        """``quota.Exceeded`` unless ``incoming`` more bytes fit in ``owner``'s quota; the
        bytes that still fit (None: no quota)."""
        return await check_room(repo, owner, incoming, self.default_quota_bytes)

    async def _add(self, repo: UploadRepository, set_id: uuid.UUID, new: NewFile) -> dict[str, Any]:
        async def probe(key: str) -> bool | None:
            return await staged_is_picture(self.storage, key)

        # Ingest's own description does not set a timeout: the worker default applies.
        record = await repo.add_file(set_id, new, self.jobs.default_timeout_s,
                                     self.jobs.max_attempts, probe)  # fmt: skip
        # Copies of a picture sent again by its name: their records went, their jobs were
        # dismissed; the new job removes their web copies (same item id).
        for old in record.get("replaced", ()):
            if old["staged_key"]:
                await remove_staged(self.storage, old["staged_key"])
        return record

    @property
    def router(self) -> APIRouter:
        """The upload-set routes, every one behind the write dependencies."""
        router = APIRouter(tags=["Uploads"], dependencies=self.dependencies)
        self._add_set_routes(router)
        self._add_file_routes(router)
        return router

    def _add_set_routes(self, router: APIRouter) -> None:
        """Create, read, complete and delete upload sets."""

        @router.post("/upload_sets", status_code=201, operation_id="createUploadSet")
        async def create_upload_set(body: UploadSetCreate, request: Request, repo: _Repo) -> Any:
            check_id(body.collection, "collection")
            await require_write(request, body.collection)
            await check_options(request, repo, body)
            set_id = await repo.create_set(
                body.collection,
                body.title,
                body.expected_files,
                body.datetime,
                owner_id=owner_id_of(request),
                vector=VectorOptions(body.layer, body.datetime_property, body.annotates),
                cube_url=body.cube_url,
                pictures=PictureOptions.of(body.model_dump()),
            )
            upload_set, files = await repo.get_set(set_id)
            doc = set_document(base_url(request), upload_set, files)
            return json_response(doc, 201, {"Location": doc["links"][0]["href"]})

        @router.get("/upload_sets/{upload_set_id}", operation_id="getUploadSet")
        async def get_upload_set(upload_set_id: str, request: Request, repo: _Repo) -> Any:
            set_id = parse_uuid(upload_set_id, "upload set")
            await owned_set(request, repo, set_id)
            upload_set, files = await repo.get_set(set_id)
            return set_document(base_url(request), upload_set, files)

        @router.post("/upload_sets/{upload_set_id}/complete", operation_id="completeUploadSet")
        async def complete_upload_set(upload_set_id: str, request: Request, repo: _Repo) -> Any:
            set_id = parse_uuid(upload_set_id, "upload set")
            await owned_set(request, repo, set_id)
            await repo.complete_set(set_id)
            # Its pictures may all be read already: their dispatch can start now.
            await PictureRepository(repo.engine, repo.jobs).dispatch_if_ready(
                set_id, self.jobs.default_timeout_s, self.jobs.max_attempts
            )
            upload_set, files = await repo.get_set(set_id)
            return set_document(base_url(request), upload_set, files)

        @router.delete(
            "/upload_sets/{upload_set_id}",
            status_code=204,
            response_class=Response,
            operation_id="deleteUploadSet",
        )
        async def delete_upload_set(upload_set_id: str, request: Request, repo: _Repo) -> Response:
            set_id = parse_uuid(upload_set_id, "upload set")
            await owned_set(request, repo, set_id)
            files = await repo.delete_set(set_id)
            await self._forget(request.app.state.jobs, files)
            await self._forget_waiting(request.app.state.repository, files)
            return Response(status_code=204)

    def _add_file_routes(self, router: APIRouter) -> None:
        """Add a file to a set (multipart or by URL) and read one back."""

        @router.post(
            "/upload_sets/{upload_set_id}/files", status_code=201, operation_id="addUploadFile"
        )
        async def add_upload_file(upload_set_id: str, request: Request, repo: _Repo) -> Any:
            record = await self._receive(request, repo, parse_uuid(upload_set_id, "upload set"))
            doc = file_document(base_url(request), record)
            return json_response(doc, 201, {"Location": doc["links"][0]["href"]})

        @router.get("/upload_sets/{upload_set_id}/files/{file_id}", operation_id="getUploadFile")
        async def get_upload_file(
            upload_set_id: str, file_id: str, request: Request, repo: _Repo
        ) -> Any:
            set_id = parse_uuid(upload_set_id, "upload set")
            await owned_set(request, repo, set_id)
            record = await repo.get_file(parse_uuid(file_id, "upload file"))
            if record["upload_set_id"] != set_id:
                raise NotFound(f"upload file {file_id} does not exist in set {upload_set_id}")
            return file_document(base_url(request), record)

    async def _receive(
        self, request: Request, repo: UploadRepository, set_id: uuid.UUID
    ) -> dict[str, Any]:
        """Stage the request's file (or take its URL) and register it in the set; its record.

        Every refusal (not the caller's set, no ``write`` right, a closed set, no room in the
        quota for the declared ``Content-Length``) comes before any byte is read.
        """
        owner, collection_id = await owned_set(request, repo, set_id)
        await require_write(request, collection_id)
        upload_set, files = await repo.get_set(set_id)
        if upload_set["completed"] or (
            upload_set["expected_files"] is not None and len(files) >= upload_set["expected_files"]
        ):
            raise UploadSetClosed(f"upload set {set_id} takes no more files")
        if request.headers.get("content-type", "").startswith("application/json"):
            # The size of a URL's file is known in its job only: no room at all refuses it.
            await self.check_quota(repo, owner, 1)
            new = await self._by_url(request, upload_set.get("cube_url"))
        else:
            declared = request.headers.get("content-length", "")
            # The body's length bounds the file's (the part headers around it are small).
            incoming = int(declared) if declared.isdecimal() else 0
            room = await self.check_quota(repo, owner, incoming)
            new = await self._multipart(request, repo, owner, room)
        try:
            record = await self._add(repo, set_id, new)
        except BaseException:
            if new.staged_key:
                await remove_staged(self.storage, new.staged_key)
            raise
        if new.staged_key and record["staged_key"] is None:  # a duplicate: no job
            await remove_staged(self.storage, new.staged_key)
        return record

    async def _multipart(
        self, request: Request, repo: UploadRepository, owner: uuid.UUID | None, room: int | None
    ) -> NewFile:
        limit = self.ingest.max_file_bytes
        if room is not None and room < limit:
            limit, quota_bound = room, True
        else:
            quota_bound = False
        local = self.storage.temp_path("")
        local.mkdir(mode=0o700)
        try:
            try:
                received = await receive_multipart_file(request, local, limit)
            except TooLarge:
                if quota_bound:  # a body without Content-Length that outgrew the quota
                    await self.check_quota(repo, owner, limit + 1)
                raise
            key = staging_key(f"upload-{uuid.uuid4().hex}")
            await asyncio.to_thread(self.storage.publish, received.path, key)
        finally:
            for path in local.iterdir():
                path.unlink(missing_ok=True)
            local.rmdir()
        return NewFile(
            filename=received.filename,
            source="multipart",
            staged_key=key,
            size=received.size,
            sha256=received.sha256,
        )

    async def _by_url(self, request: Request, cube_url: str | None) -> NewFile:
        try:
            body = UrlFile.model_validate_json(await request.body())
        except ValueError as exc:
            raise InvalidParameter(f'expected {{"href": "https://..."}}: {exc}') from exc
        # Refuse forbidden targets now (scheme, private addresses after DNS), not in the job.
        if cube_url is not None:  # a datacube, read where it is: s3:// too
            await asyncio.to_thread(check_cube_url, body.href, self.ingest.url_allow_private)
        else:
            await asyncio.to_thread(check_url, body.href, self.ingest.url_allow_private)
        name = body.filename or body.href.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        return NewFile(filename=safe_filename(name, "download.tif"), source="url", href=body.href)

    async def _forget(self, jobs: JobRepository, files: list[dict[str, Any]]) -> None:
        """After a set is deleted: stop its jobs, free its staged bytes."""
        for record in files:
            if record["job_id"] and record["status"] in ("received", "processing"):
                await jobs.dismiss(record["job_id"])
            if record["staged_key"]:
                await remove_staged(self.storage, record["staged_key"])

    async def _forget_waiting(self, catalog: Any, files: list[dict[str, Any]]) -> None:
        """After a set is deleted: the web copies of its pictures that waited for their
        dispatch (published by their job, never an item) go too."""
        for record in files:
            if record["status"] == "processing" and record["item_id"]:
                if not await catalog.item_exists(record["collection_id"], record["item_id"]):
                    prefix = item_prefix(record["collection_id"], record["item_id"])
                    await asyncio.to_thread(self.storage.delete_prefix, prefix)

    # -- tus hooks ------------------------------------------------------------------------------
    def tus_hooks(self, app_state: Any) -> tuple[Any, Any]:
        """``on_create`` and ``on_complete`` for the tus server, bound to ``app_state``."""

        async def on_create(request: Request, metadata: dict[str, str], length: int) -> None:
            if not metadata.get("filename"):
                raise TusError("upload.InvalidMetadata", 400,
                               "Upload-Metadata must name the file: filename <base64>")  # fmt: skip
            set_id = _tus_set_id(metadata)
            repo: UploadRepository = app_state.uploads
            _, collection_id = await owned_set(request, repo, set_id)
            await require_write(request, collection_id)
            upload_set, _ = await repo.get_set(set_id)
            if upload_set["completed"]:
                message = f"upload set {set_id} is completed: it takes no more files"
                raise TusError("upload.SetClosed", 409, message)
            # The caller's: the upload is theirs until it is complete (Upload-Length reserved).
            await self.check_quota(repo, owner_id_of(request), length)

        async def on_complete(upload: TusUpload) -> dict[str, str]:
            set_id = _tus_set_id(upload.metadata)
            # The parts stay where they are: the file's job assembles them in order.
            new = NewFile(
                filename=safe_filename(upload.metadata.get("filename"), "upload.tif"),
                source="tus",
                staged_key=upload.key,
                size=upload.length,
            )
            try:
                record = await self._add(app_state.uploads, set_id, new)
            except Exception as exc:  # the bytes stay with the tus upload
                code = getattr(exc, "code", "upload.Refused")
                status = getattr(exc, "status", 409)
                raise TusError(code, status, getattr(exc, "description", str(exc))) from exc
            # The file resource is /upload_sets/{set}/files/{id} below the API root.
            return {"Upload-File-Id": str(record["id"])}

        return on_create, on_complete


def _tus_set_id(metadata: dict[str, str]) -> uuid.UUID:
    value = metadata.get("upload_set") or ""
    try:
        return uuid.UUID(value)
    except ValueError:
        message = "Upload-Metadata must name the upload set: upload_set <base64 id>"
        raise TusError("upload.InvalidMetadata", 400, message) from None
