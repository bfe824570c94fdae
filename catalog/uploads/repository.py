"""Upload sets and their files: all SQL of the upload bookkeeping.

A file is ``received`` when its bytes are staged (or, for a URL, when it is queued), then
``processing`` while its ingest job runs, and ends ``ready`` (an item exists), ``rejected``
(with the code and message of why) or ``duplicate``. Duplicates are found by SHA-256 per
collection through a partial unique index, so two workers can never both take the same bytes.
"""

import re
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, exists, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.db.engine import connect
from catalog.db.models import Collection, Item, Job, Picture, UploadFile, UploadSet
from catalog.errors import CatalogError, Conflict, NotFound
from catalog.ingest.errors import Duplicate
from catalog.jobs.queue import JobRepository

FINAL_FILE_STATES = ("ready", "rejected", "duplicate")
# Whether the staged bytes at a key are a picture's (None: no bytes there); see add_file.
PictureProbe = Callable[[str], Awaitable[bool | None]]
_COLUMNS = [
    UploadFile.id,
    UploadFile.upload_set_id,
    UploadFile.collection_id,
    UploadFile.filename,
    UploadFile.source,
    UploadFile.href,
    UploadFile.size,
    UploadFile.sha256,
    UploadFile.status,
    UploadFile.error_code,
    UploadFile.error_message,
    UploadFile.item_id,
    UploadFile.job_id,
    UploadFile.staged_key,
    UploadFile.created,
    UploadFile.updated,
]
# The file's job as clients follow it: its state and how far it is (the job table's).
_JOB_COLUMNS = [
    Job.status.label("job_status"),
    Job.progress.label("job_progress"),
    Job.message.label("job_message"),
    Job.outputs.label("job_outputs"),
]


def _files() -> Select[Any]:
    """File records with their job's status, progress and message (None without a job)."""
    return select(*_COLUMNS, *_JOB_COLUMNS).outerjoin(Job, Job.id == UploadFile.job_id)


class UploadSetClosed(CatalogError):
    """Files cannot be added to a completed or full upload set."""

    code = "upload.SetClosed"
    status = 409


@dataclass(frozen=True)
class VectorOptions:
    """How the vector files of an upload set load (docs/ingest.md)."""

    layer: str | None = None
    datetime_property: str | None = None
    annotates: str | None = None

    def values(self) -> dict[str, str | None]:
        """The ``upload_sets`` columns."""
        return {"layer": self.layer, "datetime_property": self.datetime_property,
                "annotates": self.annotates}  # fmt: skip

    @classmethod
    def of(cls, upload_set: dict[str, Any]) -> "VectorOptions":
        """The options of an upload set row."""
        return cls(upload_set.get("layer"), upload_set.get("datetime_property"),
                   upload_set.get("annotates"))  # fmt: skip


@dataclass(frozen=True)
class PictureOptions:
    """How the pictures of an upload set are sorted, cut and de-duplicated (docs/ingest.md)."""

    split_distance: float | None = None
    split_time: float | None = None
    duplicate_distance: float | None = None
    duplicate_rotation: float | None = None
    sort_method: str | None = None
    visibility: str | None = None

    def values(self) -> dict[str, Any]:
        """The ``upload_sets`` columns."""
        return dict(self.__dict__)

    @classmethod
    def of(cls, upload_set: dict[str, Any]) -> "PictureOptions":
        """The options of an upload set row."""
        return cls(**{k: upload_set.get(k) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class NewFile:
    """A file to register in an upload set."""

    filename: str
    source: str
    staged_key: str | None = None
    size: int | None = None
    sha256: str | None = None
    href: str | None = None


def parse_uuid(value: str, what: str) -> uuid.UUID:
    """An id from a URL; NotFound for anything that is not a UUID."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{what} {value!r} does not exist") from None


def item_id_from_filename(filename: str) -> str:
    """A readable STAC id from a file name: its stem, ASCII letters, digits, ``-_.``."""
    stem = filename.rsplit("/", 1)[-1]
    stem = stem.rsplit(".", 1)[0] if "." in stem.lstrip(".") else stem
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", ascii_stem).strip("-.")[:120]
    return cleaned or "item"


class UploadRepository:
    """Reads and writes upload sets and files; queues their ingest jobs."""

    def __init__(self, engine: AsyncEngine, jobs: JobRepository) -> None:
        self.engine = engine
        self.jobs = jobs

    def _connect(self, write: bool = True) -> AbstractAsyncContextManager[AsyncConnection]:
        return connect(self.engine, write)

    # -- sets --------------------------------------------------------------------------------
    async def create_set(
        self,
        collection_id: str,
        title: str | None,
        expected_files: int | None,
        item_datetime: datetime | None,
        owner_id: uuid.UUID | None = None,
        vector: VectorOptions | None = None,
        cube_url: str | None = None,
        pictures: PictureOptions | None = None,
    ) -> uuid.UUID:
        """A new, open upload set of ``owner_id`` in an existing collection (``vector``: how
        its vector files load; ``cube_url``: how its URLs of datacubes are taken)."""
        set_id = uuid.uuid4()
        async with self._connect() as conn:
            exists = await conn.scalar(select(Collection.id).where(Collection.id == collection_id))
            if exists is None:
                raise NotFound(f"collection {collection_id!r} does not exist")
            await conn.execute(
                insert(UploadSet).values(
                    id=set_id,
                    collection_id=collection_id,
                    title=title,
                    expected_files=expected_files,
                    item_datetime=item_datetime,
                    owner_id=owner_id,
                    **(vector or VectorOptions()).values(),
                    cube_url=cube_url,
                    **(pictures or PictureOptions()).values(),
                )
            )
        return set_id

    async def collection_visibility(self, collection_id: str) -> str | None:
        """Who reads the collection (``public``, ``accounts``, ``private``); None if missing."""
        async with self._connect(write=False) as conn:
            found: str | None = await conn.scalar(
                select(Collection.visibility).where(Collection.id == collection_id)
            )
        return found

    async def set_access(self, set_id: uuid.UUID) -> tuple[uuid.UUID | None, str]:
        """The owner and the collection of an upload set, or NotFound."""
        async with self._connect(write=False) as conn:
            row = (
                await conn.execute(
                    select(UploadSet.owner_id, UploadSet.collection_id).where(
                        UploadSet.id == set_id
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f"upload set {set_id} does not exist")
        return row.owner_id, row.collection_id

    async def get_set(self, set_id: uuid.UUID) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """An upload set and its files (oldest first), read in one snapshot: a dispatch that
        commits between the two reads would otherwise show every picture ``ready`` while the
        set is not yet ``dispatched``."""
        async with self._connect(write=False) as conn:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            row = (
                await conn.execute(
                    select(*UploadSet.__table__.columns).where(UploadSet.id == set_id)
                )
            ).first()
            if row is None:
                raise NotFound(f"upload set {set_id} does not exist")
            files = (
                await conn.execute(
                    _files()
                    .where(UploadFile.upload_set_id == set_id)
                    .order_by(UploadFile.created, UploadFile.id)
                )
            ).all()
        return dict(row._mapping), [dict(f._mapping) for f in files]

    async def complete_set(self, set_id: uuid.UUID) -> None:
        """Close the set: no more files; it is ready when every file has finished."""
        async with self._connect() as conn:
            done = await conn.scalar(
                update(UploadSet)
                .where(UploadSet.id == set_id)
                .values(
                    completed=True,
                    completed_at=func.coalesce(UploadSet.completed_at, func.now()),
                    updated=func.now(),
                )
                .returning(UploadSet.id)
            )
        if done is None:
            raise NotFound(f"upload set {set_id} does not exist")

    async def delete_set(self, set_id: uuid.UUID) -> list[dict[str, Any]]:
        """Delete a set and its file records; returns the files (to dismiss jobs, free disk).

        Items already made from it stay in the catalogue.
        """
        async with self._connect() as conn:
            files = (
                await conn.execute(select(*_COLUMNS).where(UploadFile.upload_set_id == set_id))
            ).all()
            gone = await conn.scalar(
                delete(UploadSet).where(UploadSet.id == set_id).returning(UploadSet.id)
            )
        if gone is None:
            raise NotFound(f"upload set {set_id} does not exist")
        return [dict(f._mapping) for f in files]

    # -- files -------------------------------------------------------------------------------
    async def add_file(
        self,
        set_id: uuid.UUID,
        new: NewFile,
        timeout_s: int,
        max_attempts: int,
        probe: PictureProbe | None = None,
    ) -> dict[str, Any]:
        """Register a received file and queue its ingest job, in one transaction.

        A file whose SHA-256 is already known in the collection is recorded as ``duplicate``
        and gets no job. The job is the set owner's. A picture sent again by its name replaces
        the earlier copy (``_replace_pictures``; ``probe`` tells a copy's kind by its staged
        bytes): the answer's ``replaced`` lists the records that went, whose staged bytes the
        caller removes.
        """
        file_id = uuid.uuid4()
        async with self._connect() as conn:
            # The set's row before its files' rows: the order of every transaction that locks
            # both (a picture's commit, the dispatch), so that none can deadlock this one. It
            # also orders two sends of one name: the second sees the first's record.
            collection_id, owner_id = await self._lock_open_set(conn, set_id)
            replaced = await self._replace_pictures(conn, set_id, new, probe)
            values = {
                "id": file_id,
                "upload_set_id": set_id,
                "collection_id": collection_id,
                "filename": new.filename,
                "source": new.source,
                "href": new.href,
                "size": new.size,
                "staged_key": new.staged_key,
                "sha256": new.sha256,
            }
            duplicate = None
            if new.sha256 is not None:
                duplicate = await self._holder(conn, collection_id, new.sha256)
            if duplicate is not None:
                # No job will read the bytes: the caller deletes them (staged_key is not kept).
                values |= {"staged_key": None, "status": "duplicate",
                           "error_code": Duplicate.code, "error_message": duplicate}  # fmt: skip
            else:
                job = await self.jobs.submit(
                    "ingest",
                    {"upload_file": str(file_id)},
                    timeout_s,
                    max_attempts,
                    conn=conn,
                    owner_id=owner_id,
                )
                values["job_id"] = job.id
            await conn.execute(insert(UploadFile).values(**values))
            row = (await conn.execute(_files().where(UploadFile.id == file_id))).one()
        return dict(row._mapping) | {"replaced": replaced}

    async def _replace_pictures(
        self, conn: AsyncConnection, set_id: uuid.UUID, new: NewFile, probe: PictureProbe | None
    ) -> list[dict[str, Any]]:
        """A picture sent again by the same name into the same open set replaces the copy
        before it (Panoramax's idempotent re-upload), whatever that copy's state: received,
        being read, waiting for the dispatch, or refused with a ``picture.`` code.

        The earlier record goes in this transaction (its waiting item with it) and its queued
        or running job is dismissed; a job that still runs finds its record gone and ends
        ``dismissed`` without publishing (catalog/uploads/ingest.py). Only pictures: a copy
        is one when its record says so (a waiting item, a ``picture.`` code), else when its
        staged bytes are a picture's (``probe``), else, while it has no bytes yet (a URL its
        job has not fetched), when the new file's are. A raster or vector file of the same
        name stays a file of its own; a published or duplicate record is never replaced.
        """
        waiting = exists().where(Picture.upload_file_id == UploadFile.id)
        rows = (
            await conn.execute(
                select(*_COLUMNS, waiting.label("waiting"), Job.status.label("job_status"))
                .outerjoin(Job, Job.id == UploadFile.job_id)
                .where(
                    UploadFile.upload_set_id == set_id,
                    UploadFile.filename == new.filename,
                    UploadFile.status.not_in(("ready", "duplicate")),
                )
                .with_for_update(of=UploadFile)
            )
        ).all()
        replaced = []
        for row in rows:
            if not await self._is_picture(row, new, probe):
                continue
            if row.job_id is not None and row.job_status in ("accepted", "running"):
                await self.jobs.dismiss(row.job_id, conn=conn)
            await conn.execute(delete(UploadFile).where(UploadFile.id == row.id))
            replaced.append({c.key: row._mapping[c.key] for c in _COLUMNS})
        return replaced

    @staticmethod
    async def _is_picture(row: Any, new: NewFile, probe: PictureProbe | None) -> bool:
        if row.waiting or (row.error_code or "").startswith("picture."):
            return True
        if probe is None:
            return False
        if row.staged_key is not None:
            return bool(await probe(row.staged_key))
        unfetched = row.source == "url" and row.status in ("received", "processing")
        return unfetched and new.staged_key is not None and bool(await probe(new.staged_key))

    async def lock_file(self, conn: AsyncConnection, file_id: uuid.UUID) -> dict[str, Any] | None:
        """In a job's success transaction: lock a file's set, then the file (the order of
        ``add_file``); the file record, or None when it is gone (replaced, or its set
        deleted)."""
        set_id = await conn.scalar(
            select(UploadFile.upload_set_id).where(UploadFile.id == file_id)
        )  # fmt: skip
        if set_id is None:
            return None
        await conn.execute(select(UploadSet.id).where(UploadSet.id == set_id).with_for_update())
        row = (
            await conn.execute(select(*_COLUMNS).where(UploadFile.id == file_id).with_for_update())
        ).first()
        return dict(row._mapping) if row is not None else None

    async def set_outcome(
        self,
        conn: AsyncConnection,
        file_id: uuid.UUID,
        status: str,
        code: str | None,
        message: str | None,
    ) -> None:
        """In a job's success transaction: the file's final state (a picture's dispatch)."""
        await conn.execute(
            update(UploadFile)
            .where(UploadFile.id == file_id)
            .values(status=status, error_code=code, error_message=message, updated=func.now())
        )

    async def _lock_open_set(
        self, conn: AsyncConnection, set_id: uuid.UUID
    ) -> tuple[str, uuid.UUID | None]:
        """Lock an upload set that still takes files; its collection id and owner.

        The lock orders concurrent additions, so that a set never gets more than it expects.
        """
        upload_set = (
            await conn.execute(
                select(
                    UploadSet.collection_id,
                    UploadSet.completed,
                    UploadSet.expected_files,
                    UploadSet.owner_id,
                )
                .where(UploadSet.id == set_id)
                .with_for_update()
            )
        ).first()
        if upload_set is None:
            raise NotFound(f"upload set {set_id} does not exist")
        if upload_set.completed:
            raise UploadSetClosed(f"upload set {set_id} is completed: it takes no more files")
        if upload_set.expected_files is not None:
            count = await conn.scalar(
                select(func.count()).where(UploadFile.upload_set_id == set_id)
            )
            if (count or 0) >= upload_set.expected_files:
                raise UploadSetClosed(
                    f"upload set {set_id} expected {upload_set.expected_files} file(s) "
                    "and has them all"
                )
        collection_id: str = upload_set.collection_id
        return collection_id, upload_set.owner_id

    async def get_file(self, file_id: uuid.UUID) -> dict[str, Any]:
        """One file record, or NotFound."""
        async with self._connect(write=False) as conn:
            row = (await conn.execute(_files().where(UploadFile.id == file_id))).first()
        if row is None:
            raise NotFound(f"upload file {file_id} does not exist")
        return dict(row._mapping)

    async def _holder(
        self,
        conn: AsyncConnection,
        collection_id: str,
        sha256: str,
        exclude: uuid.UUID | None = None,
    ) -> str | None:
        """Why ``sha256`` is a duplicate in the collection, or None when it is not.

        A file whose item was deleted since no longer holds its checksum.
        """
        holder = (
            await conn.execute(
                select(UploadFile.id, UploadFile.status, UploadFile.item_id, UploadFile.filename)
                .where(
                    UploadFile.collection_id == collection_id,
                    UploadFile.sha256 == sha256,
                    UploadFile.status.in_(("received", "processing", "ready")),
                    UploadFile.id != (exclude or uuid.UUID(int=0)),
                )
                .with_for_update()
            )
        ).first()
        if holder is None:
            return None
        if holder.status == "ready" and holder.item_id is None:  # loaded as vector features
            layer = await conn.scalar(
                text("SELECT 1 FROM vector_layers WHERE collection_id = :c"), {"c": collection_id}
            )
            if layer is None:
                await conn.execute(
                    update(UploadFile).where(UploadFile.id == holder.id).values(sha256=None)
                )
                return None
            return f"the same file (SHA-256 {sha256}) was loaded into {collection_id!r} already"
        if holder.status == "ready":
            item = await conn.scalar(
                select(Item.id).where(
                    Item.collection_id == collection_id, Item.id == holder.item_id
                )
            )
            if item is None:
                await conn.execute(
                    update(UploadFile).where(UploadFile.id == holder.id).values(sha256=None)
                )
                return None
            return (
                f"the same file (SHA-256 {sha256}) is item {holder.item_id!r} of {collection_id!r}"
            )
        return f"the same file (SHA-256 {sha256}) is being ingested as {holder.filename!r}"

    async def claim(self, file_id: uuid.UUID, sha256: str, size: int) -> str:
        """Take the checksum for this file and fix its item id; Duplicate if taken.

        Returns the item id (kept across retries, so a re-run writes the same item).
        """
        try:
            async with self._connect() as conn:
                row = (
                    await conn.execute(
                        select(UploadFile.collection_id, UploadFile.filename, UploadFile.item_id)
                        .where(UploadFile.id == file_id)
                        .with_for_update()
                    )
                ).first()
                if row is None:  # replaced by a copy sent again, or its set deleted
                    raise NotFound(f"upload file {file_id} does not exist")
                reason = await self._holder(conn, row.collection_id, sha256, exclude=file_id)
                if reason is not None:
                    raise Duplicate(reason)
                item_id = row.item_id or await self._free_item_id(
                    conn, row.collection_id, item_id_from_filename(row.filename), sha256
                )
                await conn.execute(
                    update(UploadFile)
                    .where(UploadFile.id == file_id)
                    .values(
                        sha256=sha256,
                        size=size,
                        item_id=item_id,
                        status="processing",
                        error_code=None,
                        error_message=None,
                        updated=func.now(),
                    )
                )
        except Conflict as exc:  # another worker took the checksum between our reads
            raise Duplicate(f"the same file (SHA-256 {sha256}) is already being ingested") from exc
        return item_id

    async def _free_item_id(
        self, conn: AsyncConnection, collection_id: str, wanted: str, sha256: str
    ) -> str:
        for candidate in (wanted, f"{wanted}-{sha256[:8]}", f"{wanted}-{sha256[:16]}"):
            taken = await conn.scalar(
                select(Item.id).where(Item.collection_id == collection_id, Item.id == candidate)
            )
            pending = await conn.scalar(
                select(UploadFile.id).where(
                    UploadFile.collection_id == collection_id,
                    UploadFile.item_id == candidate,
                    UploadFile.status.in_(("received", "processing")),
                )
            )
            if taken is None and pending is None:
                return candidate
        return f"{wanted}-{uuid.uuid4().hex[:12]}"

    async def staged_keys(self) -> set[str]:
        """Every staged key a file record still points at (the rest of staging/ is litter)."""
        async with self._connect(write=False) as conn:
            rows = await conn.scalars(
                select(UploadFile.staged_key).where(UploadFile.staged_key.is_not(None))
            )
            return {str(p) for p in rows}

    async def update_file(self, file_id: uuid.UUID, **values: Any) -> None:
        """Set columns of a file record (staged path, size, filename...)."""
        async with self._connect() as conn:
            await conn.execute(
                update(UploadFile)
                .where(UploadFile.id == file_id)
                .values(**values, updated=func.now())
            )

    async def mark_ready(self, conn: AsyncConnection, file_id: uuid.UUID) -> None:
        """In the job's success transaction: the item exists."""
        await conn.execute(
            update(UploadFile)
            .where(UploadFile.id == file_id)
            .values(status="ready", error_code=None, error_message=None, updated=func.now())
        )

    async def mark_loaded(self, conn: AsyncConnection, file_id: uuid.UUID) -> None:
        """In the job's success transaction: the file's features are in (it made no item)."""
        await conn.execute(
            update(UploadFile)
            .where(UploadFile.id == file_id)
            .values(status="ready", item_id=None, error_code=None, error_message=None,
                    updated=func.now())
        )  # fmt: skip

    async def mark_rejected(self, file_id: uuid.UUID, code: str, message: str) -> None:
        """The file's job ended without an item."""
        status = "duplicate" if code == Duplicate.code else "rejected"
        await self.update_file(file_id, status=status, error_code=code, error_message=message)
