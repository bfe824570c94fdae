"""The ``ingest`` process: one upload file -> a COG-backed STAC item, run by the workers."""

import asyncio
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.accounts.principal import Principal
from catalog.accounts.quotas import DEFAULT_QUOTA_BYTES, check_quota
from catalog.accounts.repository import AccountRepository
from catalog.cubes.files import remove_failed_cube, remove_replaced_cubes
from catalog.errors import InvalidParameter, NotFound
from catalog.ingest.errors import IngestError, TooLarge
from catalog.ingest.fetch import DownloadCancelled, download
from catalog.jobs.queue import (
    InputDescription,
    JobCancelled,
    JobContext,
    JobRecord,
    OutputDescription,
    Process,
    ProcessDescription,
)
from catalog.pictures.formats import format_of, is_picture
from catalog.pictures.repository import PictureRepository
from catalog.settings import IngestSettings
from catalog.stac.repository import CatalogRepository
from catalog.stac.serializers import item_row
from catalog.storage import storage_from_plan, storage_plan
from catalog.storage.base import Storage, check_key, check_part, item_prefix, stored_key
from catalog.uploads.repository import UploadRepository, VectorOptions, parse_uuid
from catalog.uploads.tus_store import TusRepository, upload_id_of
from catalog.vector.formats import detect
from catalog.vector.layer_data import LayerData
from catalog.vector.load import LoadTarget, load_layer
from catalog.vector.repository import VectorRepository

# Failures after which the raw upload is kept, so that a restart can try again.
_KEEP_SOURCE = {"job.Timeout", "job.WorkerLost", "job.InternalError", "job.Crashed",
                "job.Dismissed", "url.Unreachable", "catalog.Unavailable"}  # fmt: skip


# Timeout (s) and attempts of a dispatch job queued by an ingest job (it reads no pixels).
DISPATCH_LIMITS = (3600, 3)


class AlreadyIngested(IngestError):
    """The file is an item already: re-running its job would only make a second copy."""

    code = "ingest.AlreadyIngested"
    status = 409


class SourceGone(IngestError):
    """The staged upload is no longer stored (it was rejected earlier, or deleted)."""

    code = "upload.SourceGone"
    status = 410


STAGING = "staging"


def staging_key(name: str) -> str:
    """The key under which a received file waits for its ingest job."""
    return f"{STAGING}/{check_part(name, 'staged file name')}"


async def remove_staged(storage: Storage, key: str) -> None:
    """Delete a staged upload: one ``staging/`` object, or the parts of a finished tus upload.
    Keys of any other area are left alone, whatever a record says."""
    if upload_id_of(key) is not None:
        await asyncio.to_thread(storage.delete_prefix, key)
    elif key.startswith(STAGING + "/"):
        await asyncio.to_thread(storage.delete, check_key(key))


def _staged_head(storage: Storage, key: str, size: int = 12) -> bytes | None:
    """The first ``size`` bytes of a staged upload (fewer if it is shorter); None when its
    bytes are no longer stored."""
    if upload_id_of(key) is not None:  # a tus upload: its parts, named by offset
        parts = sorted(o.key for o in storage.keys(key))
    else:
        parts = [check_key(key)]
    if not parts:
        return None
    head = b""
    for part in parts:
        found = storage.stat(part)
        if found is None:
            return None
        want = min(size - len(head), found.size)
        if want > 0:
            head += b"".join(storage.open_range(part, 0, want - 1))
        if len(head) >= size:
            break
    return head


async def staged_is_picture(storage: Storage, key: str) -> bool | None:
    """Whether a staged upload is a picture, told by its first bytes; None when its bytes
    are gone."""
    head = await asyncio.to_thread(_staged_head, storage, key)
    return None if head is None else format_of(head) is not None


def assemble(storage: Storage, parts: list[str], target: Path) -> None:
    """Copy the objects ``parts``, in order, into one local file ``target``."""
    if len(parts) == 1:
        storage.fetch(parts[0], target)
        return
    with target.open("wb") as out:
        for key in parts:
            for chunk in storage.open_range(key):
                out.write(chunk)


def sha256_objects(storage: Storage, parts: list[str], cancelled: Callable[[], bool]) -> str:
    """SHA-256 of the objects ``parts`` read in order as one stream; JobCancelled when
    ``cancelled()``."""
    digest = hashlib.sha256()
    for key in parts:
        for chunk in storage.open_range(key):
            digest.update(chunk)
            if cancelled():
                raise JobCancelled()
    return digest.hexdigest()


async def check_room(
    uploads: UploadRepository,
    owner: uuid.UUID | None,
    incoming: int,
    default_quota_bytes: int,
) -> int | None:
    """``quota.Exceeded`` unless ``incoming`` more bytes fit in ``owner``'s quota (its
    unfinished tus uploads included); the bytes that still fit (None: no quota)."""
    found = await check_quota(uploads.engine, owner, incoming,
                              default_quota_bytes=default_quota_bytes)  # fmt: skip
    return None if found is None else found.room()


def sha256_file(path: Path, cancelled: Callable[[], bool], chunk: int = 4 << 20) -> str:
    """SHA-256 of a file, read in chunks; stops (JobCancelled) when ``cancelled()``."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
            if cancelled():
                raise JobCancelled()
    return digest.hexdigest()


def _read_vector(
    source: Path,
    fmt: Any,
    work: Path,
    plan: dict[str, Any],
    settings: IngestSettings,
    storage: Storage,
    ctx: JobContext,
) -> dict[str, Any]:
    """Child process: read the layers into a folder the commit reads (and then removes)."""
    from catalog.vector.ingest import read_upload

    ctx.log(f"{plan['filename']} is vector data ({fmt.value})")
    out = storage.temp_path("")
    out.mkdir(mode=0o700)
    try:
        layers = read_upload(source, fmt, work, out, plan["vector"], settings,
                             ctx.progress, ctx.log)  # fmt: skip
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    ctx.log("layers read; committing")
    return {"folder": str(out), "format": fmt.value, "layers": layers}


class IngestProcess(Process):
    """Validate, convert to COG, describe as STAC and register one uploaded file."""

    description = ProcessDescription(
        id="ingest",
        title="Ingest a raster",
        description="Validates an uploaded GeoTIFF, converts it to a Cloud-Optimized GeoTIFF "
        "with overviews and registers it as a STAC item (proj, raster, eo, file extensions) "
        "with a thumbnail and a preview. A vector file (GeoPackage, zipped Shapefile, GeoJSON, "
        "GeoJSONSeq, FlatGeobuf, GeoParquet, KML, CSV; told by its content) becomes the "
        "features of vector collections instead, and a datacube (a zipped Zarr store, a "
        "NetCDF4 file, or a URL of an upload set with cube_url) the collection's datacube, "
        "one item per time step. Files arrive through /upload_sets; this "
        "process is queued for each one and may be executed again for a file by its id.",
        keywords=["ingest", "COG", "STAC", "vector", "datacube", "Zarr", "NetCDF"],
        inputs={
            "upload_file": InputDescription(
                title="Upload file",
                description="Id of a file of an upload set (see GET /upload_sets/{id}).",
                schema={"type": "string", "format": "uuid"},
            )
        },
        outputs={
            "item": OutputDescription(
                title="Item",
                description="The collection and id of the STAC item made.",
                schema={
                    "type": "object",
                    "properties": {"collection": {"type": "string"}, "id": {"type": "string"}},
                    "required": ["collection", "id"],
                },
            ),
            "collections": OutputDescription(
                title="Vector collections",
                description="A vector file: the collections its layers went into, with the "
                "number of features loaded.",
                schema={
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "layer": {"type": "string"},
                            "features": {"type": "integer"},
                        },
                    },
                },
            ),
            "cube": OutputDescription(
                title="Datacube",
                description="A datacube: its collection, the number of items (time steps), "
                "its layers and the factors of its overviews.",
                schema={
                    "type": "object",
                    "properties": {
                        "collection": {"type": "string"},
                        "items": {"type": "integer"},
                        "layers": {"type": "array", "items": {"type": "string"}},
                        "overviews": {"type": "array", "items": {"type": "integer"}},
                    },
                },
            ),
        },
    )

    def __init__(
        self,
        uploads: UploadRepository,
        catalog: CatalogRepository,
        settings: IngestSettings,
        storage: Storage,
        validate_extensions: bool = True,
        default_quota_bytes: int = DEFAULT_QUOTA_BYTES,
    ) -> None:
        self.storage = storage  # the process's (build_storage); its children rebuild it
        self.uploads = uploads
        self.catalog = catalog
        self.settings = settings
        self.storage = storage
        self.tus = TusRepository(uploads.engine, storage)
        self.pictures = PictureRepository(uploads.engine, uploads.jobs)
        self.validate_extensions = validate_extensions
        self.default_quota_bytes = default_quota_bytes

    def check_inputs(self, inputs: Any) -> dict[str, Any]:
        """One input: the id of an upload file."""
        checked = super().check_inputs(inputs)
        value = checked["upload_file"]
        if not isinstance(value, str):
            raise InvalidParameter("input 'upload_file' must be a string (an upload file id)")
        parse_uuid(value, "upload file")
        return checked

    async def admit(
        self, inputs: dict[str, Any], caller: Principal, accounts: AccountRepository
    ) -> dict[str, Any]:
        """The file must be in an upload set of the caller (else it does not exist for them),
        and the caller must still have ``write`` on its collection."""
        file_id = str(inputs["upload_file"])
        try:
            record = await self.uploads.get_file(parse_uuid(file_id, "upload file"))
            owner, collection_id = await self.uploads.set_access(record["upload_set_id"])
        except NotFound:
            owner, collection_id = None, None
        if collection_id is None or not caller.owns(owner):
            raise InvalidParameter(
                f"input 'upload_file': upload file {file_id} does not exist",
                type="InvalidParameterValue",
            )
        await accounts.require(caller, collection_id, "write")
        return inputs

    async def prepare(self, job: JobRecord, cancelled: Callable[[], bool]) -> dict[str, Any]:
        """Fetch a URL if needed, hash, claim the checksum (duplicates stop here)."""
        file_id = uuid.UUID(job.inputs["upload_file"])
        try:
            return await self._prepare(file_id, cancelled)
        except NotFound:
            # The record went: replaced by a copy sent again by its name, or its set deleted;
            # this job has nothing left to do and ends dismissed, quietly.
            raise JobCancelled() from None

    async def _prepare(self, file_id: uuid.UUID, cancelled: Callable[[], bool]) -> dict[str, Any]:
        record = await self.uploads.get_file(file_id)
        if record["status"] == "ready":
            raise AlreadyIngested(
                f"{record['filename']!r} is item {record['item_id']!r} of "
                f"{record['collection_id']!r} already"
            )
        upload_set, _ = await self.uploads.get_set(record["upload_set_id"])
        if record["source"] == "url" and upload_set.get("cube_url"):
            return await self._prepare_cube_url(file_id, record, upload_set)
        key = record["staged_key"]
        sha256 = record["sha256"]
        parts = await self._parts(key) if key else None
        if record["source"] == "url" and parts is None:
            key, sha256 = await self._fetch(file_id, record["href"], cancelled)
            parts = await self._parts(key)
            # Its size is known now, and counted (the file records it): over the set owner's
            # quota, the job fails with quota.Exceeded and the download is deleted.
            await check_room(self.uploads, upload_set["owner_id"], 0, self.default_quota_bytes)
        if parts is None:
            raise SourceGone(
                f"the uploaded bytes of {record['filename']!r} are no longer stored; "
                "upload the file again"
            )
        keys, size = [k for k, _ in parts], sum(n for _, n in parts)
        if size > self.settings.max_file_bytes:
            raise TooLarge(f"{size} bytes is more than the limit of {self.settings.max_file_bytes}")
        if sha256 is None:
            sha256 = await asyncio.to_thread(sha256_objects, self.storage, keys, cancelled)
        item_id = await self.uploads.claim(file_id, sha256, size)
        when = upload_set["item_datetime"]
        options = VectorOptions.of(upload_set)
        appending = await VectorRepository(self.uploads.engine).layer(record["collection_id"])
        return {
            "parts": keys,
            "collection_id": record["collection_id"],
            "item_id": item_id,
            "sha256": sha256,
            "size": size,
            "filename": record["filename"],
            "upload_file": str(file_id),
            "datetime": when.isoformat() if when else None,
            "upload_time": record["created"].isoformat(),
            "settings": self.settings.model_dump(mode="json"),
            "storage": storage_plan(self.storage),
            # Read by the child if the file is vector data (catalog/vector/ingest.py).
            "vector": {"collection_id": record["collection_id"], "layer": options.layer,
                       "appending": appending is not None},
        }  # fmt: skip

    async def _prepare_cube_url(
        self, file_id: uuid.UUID, record: dict[str, Any], upload_set: dict[str, Any]
    ) -> dict[str, Any]:
        """A datacube read at its URL by the child: nothing to download here. The URL's
        SHA-256 stands for the file's (the same URL twice in a collection is a duplicate)."""
        sha256 = hashlib.sha256(record["href"].encode()).hexdigest()
        item_id = await self.uploads.claim(file_id, sha256, 0)
        when = upload_set["item_datetime"]
        return {
            "parts": [], "collection_id": record["collection_id"], "item_id": item_id,
            "sha256": sha256, "size": 0, "filename": record["filename"],
            "datetime": when.isoformat() if when else None,
            "upload_time": record["created"].isoformat(),
            "settings": self.settings.model_dump(mode="json"),
            "storage": storage_plan(self.storage),
            "cube_url": record["href"], "cube_mode": upload_set["cube_url"],
        }  # fmt: skip

    async def _parts(self, key: str) -> list[tuple[str, int]] | None:
        """The objects that make the staged upload ``key``, in order, with their sizes; None
        when any is missing."""
        upload_id = upload_id_of(key)
        if upload_id is None:
            found = await asyncio.to_thread(self.storage.stat, check_key(key))
            return None if found is None else [(key, found.size)]
        # The upload's file (and this job) is committed inside its ``completing`` block, which
        # marks it finished when it ends: wait for that, or a quick worker finds it unfinished.
        info = await self.tus.get(upload_id, settled=True)
        if info is None or not info.finished:
            return None
        stored = {o.key: o.size for o in await asyncio.to_thread(list, self.storage.keys(key))}
        if any(part not in stored for part in info.parts):
            return None
        return [(part, stored[part]) for part in info.parts]

    async def _fetch(
        self, file_id: uuid.UUID, href: str, cancelled: Callable[[], bool]
    ) -> tuple[str, str]:
        """Download the URL into a local temp folder and publish it under ``staging/``."""
        work = self.storage.temp_path("")
        work.mkdir(mode=0o700)
        try:
            try:
                got = await asyncio.to_thread(
                    download, href, work, self.settings, cancelled=cancelled
                )
            except DownloadCancelled:
                raise JobCancelled() from None
            key = staging_key(f"url-{file_id.hex}")
            await asyncio.to_thread(self.storage.publish, got.path, key)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
        # The name the client gave (or the URL's) stays: the item id comes from it.
        await self.uploads.update_file(file_id, staged_key=key, size=got.size)
        return key, got.sha256

    child_modules = ("catalog.ingest.pipeline", "catalog.storage.local", "catalog.storage.s3",
                     "catalog.vector.ingest", "catalog.cubes.ingest",
                     "catalog.pictures.ingest", "pillow_heif")  # fmt: skip

    @staticmethod
    def execute(plan: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        """Child process: fetch the input into a local temp folder (removed afterwards), then
        validate, convert, render previews, publish the assets."""
        from catalog.cubes.ingest import detect_cube, ingest_cube_file, ingest_cube_url
        from catalog.ingest.pipeline import IngestRequest, ingest_file

        settings = IngestSettings(**plan["settings"])
        storage = storage_from_plan(plan["storage"])
        if plan.get("cube_url"):
            return {"cube": ingest_cube_url(plan, settings, storage, ctx.job_id, ctx.progress,
                                            ctx.log)}  # fmt: skip
        parts: list[str] = plan["parts"]
        ctx.log(f"ingesting {plan['filename']} ({plan['size']} bytes) as {plan['item_id']}")
        # Read by GDAL when its block cache is first used, in this fresh process (an operator's
        # own GDAL_CACHEMAX wins). Measured: a rasterio.Env option instead ran 1.5x slower.
        os.environ.setdefault("GDAL_CACHEMAX", str(settings.gdal_cache_mb))
        work = storage.temp_path("")
        work.mkdir(mode=0o700)
        try:
            if storage.kind == "local" and len(parts) == 1:
                source = Path(storage.gdal_path(parts[0]))  # read in place, never changed
            else:
                source = work / "source"
                assemble(storage, parts, source)
            if is_picture(source):  # a JPEG or HEIC: a geotagged picture, never a raster
                from catalog.pictures.ingest import ingest_picture

                ctx.log(f"{plan['filename']} is a picture")
                return {"picture": ingest_picture(source, plan, storage, settings, ctx)}
            kind = detect_cube(source)  # by content: a datacube, a vector format, a raster
            if kind is not None:
                return {"cube": ingest_cube_file(source, kind, work, plan, settings, storage,
                                                 ctx.job_id, ctx.progress, ctx.log)}  # fmt: skip
            fmt = detect(source)  # by content: a vector format, else the raster path
            if fmt is not None:
                return {"vector": _read_vector(source, fmt, work, plan, settings, storage, ctx)}
            request = IngestRequest(
                source=source,
                collection_id=plan["collection_id"],
                item_id=plan["item_id"],
                sha256=plan["sha256"],
                size=plan["size"],
                filename=plan["filename"],
                datetime_value=datetime.fromisoformat(plan["datetime"])
                if plan["datetime"]
                else None,
                upload_time=datetime.fromisoformat(plan["upload_time"]),
            )
            item = ingest_file(request, storage, settings, ctx.progress)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        ctx.log("item built; committing")
        return {"item": item}

    async def commit(
        self, conn: AsyncConnection, job: JobRecord, result: dict[str, Any]
    ) -> dict[str, Any]:
        """Insert the item (or load the features) and mark the file ready, in the job's
        success transaction."""
        if "vector" in result:
            return await self._commit_vector(conn, job, result["vector"])
        if "cube" in result:
            from catalog.cubes.commit import commit_cube

            outputs = await commit_cube(conn, self.catalog, result["cube"],
                                        self.validate_extensions)  # fmt: skip
            await self.uploads.mark_loaded(conn, uuid.UUID(job.inputs["upload_file"]))
            return outputs
        if "picture" in result:
            return await self._commit_picture(conn, job, result["picture"])
        item = result["item"]
        collection_id = item["collection"]
        row = item_row(item, collection_id, self.validate_extensions)
        await self.catalog.insert_item(conn, collection_id, row)
        await self.uploads.mark_ready(conn, uuid.UUID(job.inputs["upload_file"]))
        return {"item": {"collection": collection_id, "id": row["id"]}}

    async def _commit_picture(
        self, conn: AsyncConnection, job: JobRecord, picture: dict[str, Any]
    ) -> dict[str, Any]:
        """The picture waits, ``processing``, for its set's dispatch, which this job queues
        if it was the set's last file. A picture whose record went while it was read (sent
        again by its name, or its set deleted) is not kept: its files go, the job is
        dismissed."""
        file_id = uuid.UUID(job.inputs["upload_file"])
        item = picture["item"]
        # Locked to the end of this transaction: a copy sent again now waits, then replaces
        # this one as a picture waiting for its dispatch.
        record = await self.uploads.lock_file(conn, file_id)
        if record is None:
            keys = [stored_key(a["href"]) for a in item["assets"].values()]
            for key in keys:
                if key is not None:
                    await asyncio.to_thread(self.storage.delete, key)
            raise JobCancelled()
        await self.pictures.save_pending(conn, {
            "upload_file_id": file_id, "upload_set_id": record["upload_set_id"],
            "collection_id": record["collection_id"], "item_id": item["id"],
            "filename": record["filename"], "meta": picture["meta"], "item": item,
        })  # fmt: skip
        await self.pictures.maybe_dispatch(conn, record["upload_set_id"], *DISPATCH_LIMITS)
        return {"picture": {"collection": record["collection_id"], "id": item["id"]}}

    async def _commit_vector(
        self, conn: AsyncConnection, job: JobRecord, vector: dict[str, Any]
    ) -> dict[str, Any]:
        """Load every layer the child read, then forget its files (a retry reads again)."""
        file_id = uuid.UUID(job.inputs["upload_file"])
        try:
            record = await self.uploads.get_file(file_id)
            upload_set, _ = await self.uploads.get_set(record["upload_set_id"])
            options = VectorOptions.of(upload_set)
            target = LoadTarget(
                parent=record["collection_id"],
                owner_id=upload_set["owner_id"],
                datetime_property=options.datetime_property,
                annotates=options.annotates,
                source_name=record["filename"],
            )
            loaded = []
            for described in vector["layers"]:
                data = LayerData.from_json(described)
                layer = await load_layer(conn, described["collection_id"], data, target)
                loaded.append({"id": layer.collection_id, "layer": data.name,
                               "features": data.count, "skipped": data.skipped})  # fmt: skip
            await self.uploads.mark_loaded(conn, file_id)
        finally:
            await asyncio.to_thread(shutil.rmtree, vector["folder"], True)
        return {"collections": loaded}

    async def after_commit(self, job: JobRecord, outputs: dict[str, Any]) -> None:
        """The item exists: the raw upload can go. Ingest batches keep the statistics that
        numberMatched estimates from fresh."""
        if "item" in outputs:
            await self.catalog.refresh_statistics(1)
        if "cube" in outputs:
            await self.catalog.refresh_statistics(int(outputs["cube"]["items"]))
            await remove_replaced_cubes(self.storage, outputs["cube"])
        file_id = uuid.UUID(job.inputs["upload_file"])
        try:
            record = await self.uploads.get_file(file_id)
        except NotFound:  # replaced just after its commit: the new copy's send freed it all
            return
        # Forgotten first: a crash in between leaves litter for the sweep, never a dangling key.
        await self.uploads.update_file(file_id, staged_key=None)
        await self._remove_staged(record)
        if "picture" not in outputs:  # a raster or vector file last of a set with pictures
            await self.pictures.dispatch_if_ready(record["upload_set_id"], *DISPATCH_LIMITS)

    async def failed(self, job: JobRecord, code: str, message: str, final: bool) -> None:
        """Record the rejection on the file; remove published assets and, if final, the raw."""
        try:
            file_id = uuid.UUID(job.inputs["upload_file"])
            record = await self.uploads.get_file(file_id)
        except Exception:  # the upload set was deleted meanwhile: nothing to record
            return
        if record["status"] == "ready":  # a re-run of a file that is an item: leave both be
            return
        await remove_failed_cube(self.storage, self.uploads.engine, record["collection_id"],
                                 str(job.id))  # fmt: skip
        if record["item_id"] and not await self.catalog.item_exists(
            record["collection_id"], record["item_id"]
        ):
            prefix = item_prefix(record["collection_id"], record["item_id"])
            await asyncio.to_thread(self.storage.delete_prefix, prefix)
        if not final:
            await self.uploads.update_file(file_id, status="received", error_code=code,
                                           error_message=f"retrying: {message}")  # fmt: skip
            return
        if code not in _KEEP_SOURCE:
            # The record no longer holds bytes: they leave its owner's quota too (and all is
            # done once the file shows as rejected).
            await self.uploads.update_file(file_id, staged_key=None)
            await self._remove_staged(record)
        await self.uploads.mark_rejected(file_id, code, message)
        # The set's last file refused: its other pictures may be dispatched now.
        await self.pictures.dispatch_if_ready(record["upload_set_id"], *DISPATCH_LIMITS)

    async def _remove_staged(self, record: dict[str, Any]) -> None:
        if record.get("staged_key"):
            await remove_staged(self.storage, record["staged_key"])
