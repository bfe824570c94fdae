"""Where tus uploads live: the record in PostgreSQL, the bytes as part objects in the storage.

Every API process sees the same upload: its row (``tus_uploads``) holds the declared length,
the offset reached, the metadata, the owner, the expiry and the keys of its parts in order; each
PATCH body becomes one part object ``tus/{id}/{offset:020d}.{nonce}``. A PATCH publishes its
part first and then commits it by compare-and-set on the offset, so of two PATCHes at one
offset exactly one wins and the other deletes its part and answers 409. Nothing is kept on the
disk of the process that received it. Expiry and the clean-up of half-made uploads live here
too, so ``terracat worker`` can run them without routes.

Why the database and not a record object in the storage: an object store has no
compare-and-set that every S3-compatible server (and a local folder) offers alike, while one
conditional UPDATE gives it here; and the quota's pending bytes are one indexed sum
(catalog/accounts/quotas.py) instead of listing and reading every record of the bucket.
"""

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import connect
from catalog.db.models import TusUpload as TusRow
from catalog.storage.base import Storage

STRAY_GRACE_S = 3600.0  # parts without a record are only deleted when this old
ID = re.compile(r"[0-9a-f]{32}")
AREA = "tus"


class TusError(Exception):
    """A refusal answered with our error body; hooks raise it to refuse an upload."""

    def __init__(
        self,
        code: str,
        status: int,
        description: str,
        headers: dict[str, str] | None = None,
        **detail: Any,
    ) -> None:
        super().__init__(description)
        self.code, self.status, self.description = code, status, description
        self.headers = dict(headers or {})
        self.detail = detail  # more members of the error body (a quota's used_bytes...)


@dataclass
class Info:
    """An upload's record: its declared length, offset, metadata, parts and lifetime."""

    id: str
    length: int
    offset: int
    metadata: dict[str, str]
    created: datetime
    expires: datetime
    finished: bool = False
    headers: dict[str, str] = field(default_factory=dict)  # what on_complete answered
    # The account that made it (its id as text; None: nobody's, or made by the bootstrap
    # admin): only its owner (or an admin) may see, resume or end it.
    owner: str | None = None
    parts: list[str] = field(default_factory=list)

    def expired(self, now: datetime | None = None) -> bool:
        """Whether its expiry has passed."""
        return self.expires <= (now or datetime.now(UTC))


def not_found(upload_id: str) -> TusError:
    """The 404 of an unknown upload."""
    return TusError("upload.NotFound", 404, f"no upload {upload_id!r}")


def upload_key(upload_id: str) -> str:
    """The prefix of an upload's parts (and the staged key of a finished upload)."""
    if not ID.fullmatch(upload_id):
        raise ValueError(f"invalid tus upload id: {upload_id!r}")
    return f"{AREA}/{upload_id}"


def part_key(upload_id: str, offset: int) -> str:
    """A fresh key for the part starting at ``offset`` (unique: a losing PATCH never
    overwrites the winner's part)."""
    return f"{upload_key(upload_id)}/{offset:020d}.{secrets.token_hex(8)}"


def upload_id_of(key: str) -> str | None:
    """The upload id of a ``tus/{id}`` staged key; None for any other key."""
    area, _, rest = key.partition("/")
    return rest if area == AREA and ID.fullmatch(rest) else None


_COLUMNS = (
    TusRow.id,
    TusRow.length,
    TusRow.upload_offset,
    TusRow.metadata_.label("meta"),
    TusRow.created,
    TusRow.expires,
    TusRow.finished,
    TusRow.headers,
    TusRow.owner,
    TusRow.parts,
)


def _info(row: Any) -> Info:
    return Info(
        id=row.id, length=row.length, offset=row.upload_offset, metadata=dict(row.meta),
        created=row.created, expires=row.expires, finished=row.finished,
        headers=dict(row.headers), owner=row.owner, parts=list(row.parts),
    )  # fmt: skip


class TusRepository:
    """The records of tus uploads (SQL) and their parts (the storage)."""

    def __init__(self, engine: AsyncEngine, storage: Storage) -> None:
        self.engine = engine
        self.storage = storage

    async def create(
        self, length: int, metadata: dict[str, str], owner: str | None, expiration_s: float
    ) -> Info:
        """A new, empty upload."""
        upload_id = secrets.token_hex(16)
        async with connect(self.engine, write=True) as conn:
            row = (
                await conn.execute(
                    insert(TusRow)
                    .values(
                        id=upload_id,
                        owner=owner,
                        length=length,
                        upload_offset=0,
                        metadata_=metadata,
                        parts=[],
                        headers={},
                        expires=func.now() + timedelta(seconds=expiration_s),
                    )  # fmt: skip
                    .returning(*_COLUMNS)
                )
            ).one()
        return _info(row)

    async def get(self, upload_id: str, settled: bool = False) -> Info | None:
        """The upload's record, or None. ``settled``: once a ``completing`` block holding it
        has ended (a share lock waits for its transaction), as the ingest job needs it."""
        query = select(*_COLUMNS).where(TusRow.id == upload_id)
        if settled:
            query = query.with_for_update(read=True)
        async with connect(self.engine, write=settled) as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _info(row)

    async def append(
        self, upload_id: str, at: int, key: str, size: int, expiration_s: float
    ) -> int | None:
        """Commit the part ``key`` of ``size`` bytes at offset ``at``, if the upload is still
        there, unfinished, at that offset; the new offset, or None when another won."""
        async with connect(self.engine, write=True) as conn:
            offset: int | None = await conn.scalar(
                update(TusRow)
                .where(TusRow.id == upload_id, TusRow.upload_offset == at, ~TusRow.finished)
                .values(
                    upload_offset=TusRow.upload_offset + size,
                    parts=TusRow.parts.op("||")(func.jsonb_build_array(key)),
                    expires=func.now() + timedelta(seconds=expiration_s),
                )
                .returning(TusRow.upload_offset)
            )
        return offset

    async def touch(self, upload_id: str, expiration_s: float) -> None:
        """Push the expiry of an unfinished upload (a PATCH that brought nothing new)."""
        async with connect(self.engine, write=True) as conn:
            await conn.execute(
                update(TusRow)
                .where(TusRow.id == upload_id, ~TusRow.finished)
                .values(expires=func.now() + timedelta(seconds=expiration_s))
            )

    @asynccontextmanager
    async def completing(self, upload_id: str) -> AsyncIterator[Info]:
        """Hold the unfinished, complete upload while ``on_complete`` runs (one process at a
        time: another is answered 423); the caller sets ``headers`` and it is finished when
        the block ends without an error."""
        async with connect(self.engine, write=True) as conn:
            row = (
                await conn.execute(
                    select(*_COLUMNS)
                    .where(TusRow.id == upload_id)
                    .with_for_update(skip_locked=True)
                )
            ).first()
            if row is None:
                if await self.get(upload_id) is None:
                    raise not_found(upload_id)
                raise TusError("upload.Locked", 423, "the upload is being finished, try again")
            info = _info(row)
            yield info
            if not info.finished:
                await conn.execute(
                    update(TusRow)
                    .where(TusRow.id == upload_id)
                    .values(
                        finished=True,
                        headers=info.headers,
                        expires=info.expires,
                    )
                )

    async def delete(self, upload_id: str) -> Info | None:
        """Remove the record (the caller removes the parts); what it was."""
        async with connect(self.engine, write=True) as conn:
            row = (
                await conn.execute(
                    delete(TusRow).where(TusRow.id == upload_id).returning(*_COLUMNS)
                )
            ).first()
        return None if row is None else _info(row)

    async def remove_parts(self, upload_id: str, keep: Iterable[str] = ()) -> None:
        """Delete the part objects of an upload (but those in ``keep``)."""
        kept = set(keep)
        prefix = upload_key(upload_id)
        if not kept:
            await asyncio.to_thread(self.storage.delete_prefix, prefix)
            return

        def prune() -> None:
            for found in list(self.storage.keys(prefix)):
                if found.key not in kept:
                    self.storage.delete(found.key)

        await asyncio.to_thread(prune)

    async def expire(
        self, referenced: set[str], now: datetime | None = None, strays: bool = True
    ) -> int:
        """Delete expired uploads (record and parts) and stray parts; how many uploads.

        A finished upload whose parts an upload file still references (``referenced``: staged
        keys) keeps its parts: its ingest job removes them. Parts without a record (a PATCH of
        a terminated upload, a process that died between publishing and committing) go once
        they are ``STRAY_GRACE_S`` old; ``strays=False`` skips that listing of the storage.
        """
        now = now or datetime.now(UTC)
        async with connect(self.engine, write=True) as conn:
            rows = (
                await conn.execute(select(TusRow.id, TusRow.finished).where(TusRow.expires <= now))
            ).all()
            # A finished upload's record keeps the order of its parts for the ingest job.
            expired = [r.id for r in rows if not (r.finished and upload_key(r.id) in referenced)]
            if expired:
                await conn.execute(delete(TusRow).where(TusRow.id.in_(expired)))
            live = set((await conn.execute(select(TusRow.id))).scalars())
        for upload_id in expired:
            await self.remove_parts(upload_id)
        if not strays:
            return len(expired)
        cutoff = now - timedelta(seconds=STRAY_GRACE_S)

        def sweep_strays() -> None:
            for found in list(self.storage.keys(AREA)):
                _, upload_id, *_ = found.key.split("/") + [""]
                if upload_id in live or upload_key_or_none(upload_id) in referenced:
                    continue
                if found.modified < cutoff:
                    self.storage.delete(found.key)

        await asyncio.to_thread(sweep_strays)
        return len(expired)


def upload_key_or_none(upload_id: str) -> str | None:
    """``upload_key`` of a well-formed id, else None."""
    return upload_key(upload_id) if ID.fullmatch(upload_id) else None
