"""All SQL of pictures: the pictures waiting for their set's dispatch, and the sequences.

A picture's ingest job leaves its file ``processing`` and its item in ``pictures``; the set's
dispatch job (catalog/pictures/dispatch.py) publishes the items and marks the files ``ready``
(or ``rejected`` as capture duplicates) in one transaction, so ``ready`` flips when every
picture of the set is published. The dispatch is queued, once, by whichever of the last
ingest job, the last rejection or the completion of the set comes last (``maybe_dispatch``,
under a lock of the set row).
"""

import uuid
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy import and_, delete, exists, func, not_, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.db.engine import connect
from catalog.db.models import Picture, PictureSequence, UploadFile, UploadSet
from catalog.jobs.queue import JobRepository

DISPATCH = "pictures_dispatch"


class PictureRepository:
    """Reads and writes pending pictures and sequences; queues dispatch jobs."""

    def __init__(self, engine: AsyncEngine, jobs: JobRepository) -> None:
        self.engine = engine
        self.jobs = jobs

    def _connect(self, write: bool = True) -> AbstractAsyncContextManager[AsyncConnection]:
        return connect(self.engine, write)

    async def save_pending(self, conn: AsyncConnection, values: dict[str, Any]) -> None:
        """Keep a picture's item until its set is dispatched (a re-run replaces it)."""
        statement = insert(Picture).values(**values)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[Picture.upload_file_id],
                set_={k: statement.excluded[k] for k in values if k != "upload_file_id"},
            )
        )

    async def has_pending(self, file_id: uuid.UUID) -> bool:
        """Whether a file is a picture waiting for its dispatch."""
        async with self._connect(write=False) as conn:
            found = await conn.scalar(
                select(Picture.upload_file_id).where(Picture.upload_file_id == file_id)
            )
        return found is not None

    async def maybe_dispatch(
        self, conn: AsyncConnection, set_id: uuid.UUID, timeout_s: int, max_attempts: int
    ) -> uuid.UUID | None:
        """Queue the set's dispatch if it is closed, every file is past its ingest job, at
        least one picture waits, and no dispatch was queued yet; the job id, or None."""
        upload_set = (
            await conn.execute(
                select(
                    UploadSet.completed,
                    UploadSet.expected_files,
                    UploadSet.owner_id,
                    UploadSet.dispatch_job_id,
                )  # fmt: skip
                .where(UploadSet.id == set_id)
                .with_for_update()
            )
        ).first()
        if upload_set is None or upload_set.dispatch_job_id is not None:
            return None
        files = await conn.scalar(
            select(func.count()).where(UploadFile.upload_set_id == set_id)
        )  # fmt: skip
        closed = upload_set.completed or (
            upload_set.expected_files is not None and (files or 0) >= upload_set.expected_files
        )
        if not closed:
            return None
        waiting = exists().where(Picture.upload_file_id == UploadFile.id)
        busy = await conn.scalar(
            select(func.count()).where(
                UploadFile.upload_set_id == set_id,
                or_(
                    UploadFile.status == "received",
                    and_(UploadFile.status == "processing", not_(waiting)),
                ),  # fmt: skip
            )
        )
        pending = await conn.scalar(
            select(func.count()).select_from(Picture).where(Picture.upload_set_id == set_id)
        )
        if busy or not pending:
            return None
        inputs = {"upload_set": str(set_id)}
        job = await self.jobs.submit(
            DISPATCH, inputs, timeout_s, max_attempts, conn=conn, owner_id=upload_set.owner_id
        )
        await conn.execute(
            update(UploadSet).where(UploadSet.id == set_id).values(dispatch_job_id=job.id)
        )
        return job.id

    async def dispatch_if_ready(
        self, set_id: uuid.UUID, timeout_s: int, max_attempts: int
    ) -> uuid.UUID | None:
        """``maybe_dispatch`` in a transaction of its own."""
        async with self._connect() as conn:
            return await self.maybe_dispatch(conn, set_id, timeout_s, max_attempts)

    async def pending(self, set_id: uuid.UUID) -> list[dict[str, Any]]:
        """The set's pictures waiting for their dispatch."""
        async with self._connect(write=False) as conn:
            rows = await conn.execute(
                select(Picture.upload_file_id, Picture.filename, Picture.meta)
                .where(Picture.upload_set_id == set_id)
                .order_by(Picture.filename, Picture.upload_file_id)
            )
            return [dict(r._mapping) for r in rows]

    async def items(self, conn: AsyncConnection, set_id: uuid.UUID) -> dict[str, dict[str, Any]]:
        """The waiting items of a set, by upload file id (in the dispatch's transaction)."""
        rows = await conn.execute(
            select(Picture.upload_file_id, Picture.collection_id, Picture.item, Picture.meta)
            .where(Picture.upload_set_id == set_id)
            .with_for_update()
        )
        return {str(r.upload_file_id): dict(r._mapping) for r in rows}

    async def add_sequence(self, conn: AsyncConnection, values: dict[str, Any]) -> None:
        """Record a sequence (``geom``: a WKT line, or a point for a one-picture sequence)."""
        geom = func.ST_GeomFromText(values.pop("wkt"), 4326)
        await conn.execute(insert(PictureSequence).values(**values, geom=geom))

    async def forget(self, conn: AsyncConnection, set_id: uuid.UUID) -> None:
        """The set is dispatched: drop its waiting rows, note when."""
        await conn.execute(delete(Picture).where(Picture.upload_set_id == set_id))
        await conn.execute(
            update(UploadSet).where(UploadSet.id == set_id).values(dispatched_at=func.now())
        )

    async def release(self, set_id: uuid.UUID) -> None:
        """A dispatch failed for good: let the next completion of the set queue another."""
        async with self._connect() as conn:
            await conn.execute(
                update(UploadSet).where(UploadSet.id == set_id).values(dispatch_job_id=None)
            )
