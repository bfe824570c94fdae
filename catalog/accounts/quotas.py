"""Storage quotas: how many bytes an account holds, computed whenever asked, never stored.

What counts as an account's (``usage``):

- the staged files of its upload sets: ``upload_files.size`` of every file whose bytes wait in
  the storage (received, being ingested, or kept after a failure for a restart); a file's
  bytes leave staging once its item exists;
- its unfinished, unexpired tus uploads (``tus_uploads``), at their declared
  ``Upload-Length``: the space is taken when the upload is created;
- the stored assets of the items of the collections it owns: the ``file:size`` of each asset
  whose href is a ``storage:`` key (ingest records the published COG's size there; thumbnails
  and previews carry none and are not counted; assets elsewhere, ``s3://`` or ``https://``,
  are not stored here). Items stay counted when the upload set they came from is deleted:
  they are still stored;
- the archives of its successful export jobs (``outputs.archive.bytes``, the published file's
  size); a dismissed job's archive is no longer served and no longer counted.

Nothing is a counter that could drift: deleting an upload set, an item or a collection, or
dismissing an export, gives its bytes back at once. A check and the write it allows are not
one transaction: two uploads that start together may each fit alone and pass together.
The bootstrap admin (no account) has no quota.
"""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import Numeric, ScalarSelect, case, cast, column, func, literal, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.db.engine import connect
from catalog.db.models import Account, Collection, Item, Job, TusUpload, UploadFile, UploadSet
from catalog.settings import AccountSettings

from .errors import AccountNotFound, QuotaExceeded

# catalog.storage.base.STORED_SCHEME (accounts come before storage in the catalogue's layers)
_STORED = "storage:"
# The settings' default; callers with settings pass ``settings.auth.default_quota_bytes``.
DEFAULT_QUOTA_BYTES: int = AccountSettings.model_fields["default_quota_bytes"].default


@dataclass(frozen=True)
class Usage:
    """Bytes an account holds, its limit, and how much of it is used (percent)."""

    used_bytes: int
    limit_bytes: int
    usage_percent: float

    def room(self) -> int:
        """Bytes that may still be stored (0 when at or over the limit)."""
        return max(0, self.limit_bytes - self.used_bytes)


def _staged(account_id: UUID) -> ScalarSelect[Any]:
    return (
        select(func.coalesce(func.sum(UploadFile.size), 0))
        .join(UploadSet, UploadSet.id == UploadFile.upload_set_id)
        .where(UploadSet.owner_id == account_id, UploadFile.staged_key.is_not(None))
        .scalar_subquery()
    )


def _pending(account_id: UUID) -> ScalarSelect[Any]:
    return (
        select(func.coalesce(func.sum(TusUpload.length), 0))
        .where(
            TusUpload.owner == str(account_id),
            ~TusUpload.finished,
            TusUpload.expires > func.now(),
        )
        .scalar_subquery()
    )


def _assets(account_id: UUID) -> ScalarSelect[Any]:
    # jsonb_each in FROM after items is implicitly LATERAL in PostgreSQL.
    # Only objects: jsonb_each fails on anything else, and a WHERE runs too late to stop it.
    assets = case(
        (func.jsonb_typeof(Item.content["assets"]) == "object", Item.content["assets"]),
        else_=cast(literal("{}"), JSONB),
    )
    asset = func.jsonb_each(assets).table_valued(column("value", JSONB), joins_implicitly=True)
    size = asset.c.value["file:size"]
    return (
        select(func.coalesce(func.sum(func.greatest(cast(size.astext, Numeric), 0)), 0))
        .select_from(Item)
        .join(Collection, Collection.id == Item.collection_id)
        .join(asset, true())
        .where(
            Collection.owner_id == account_id,
            func.jsonb_typeof(size) == "number",
            asset.c.value["href"].astext.startswith(_STORED),
        )
        .scalar_subquery()
    )


def _archives(account_id: UUID) -> ScalarSelect[Any]:
    size = Job.outputs[("archive", "bytes")]
    return (
        select(func.coalesce(func.sum(func.greatest(cast(size.astext, Numeric), 0)), 0))
        .where(
            Job.owner_id == account_id,
            Job.status == "successful",
            func.jsonb_typeof(size) == "number",
        )
        .scalar_subquery()
    )


async def _stored(conn: AsyncConnection, account_id: UUID) -> tuple[int | None, int]:
    row = (
        await conn.execute(
            select(
                Account.quota_bytes,
                (
                    _staged(account_id)
                    + _pending(account_id)
                    + _assets(account_id)
                    + _archives(account_id)
                ).label("used"),
            ).where(Account.id == account_id)
        )
    ).first()
    if row is None:
        raise AccountNotFound(f"no account {account_id}")
    return row.quota_bytes, int(row.used)


async def usage(
    source: AsyncEngine | AsyncConnection,
    account_id: UUID,
    *,
    default_quota_bytes: int = DEFAULT_QUOTA_BYTES,
    held_outside: int = 0,
) -> Usage:
    """What ``account_id`` holds (the module docstring says what counts; ``held_outside``:
    bytes it holds that no table records) and its limit: its own ``quota_bytes``, else
    ``default_quota_bytes``. ``account.NotFound`` if no such account."""
    if isinstance(source, AsyncConnection):
        quota, used = await _stored(source, account_id)
    else:
        async with connect(source, False) as conn:
            quota, used = await _stored(conn, account_id)
    used += held_outside
    limit = default_quota_bytes if quota is None else quota
    percent = round(100.0 * used / limit, 2) if limit else (0.0 if used == 0 else 100.0)
    return Usage(used, limit, percent)


async def check_quota(
    source: AsyncEngine | AsyncConnection,
    account_id: UUID | None,
    incoming: int,
    *,
    default_quota_bytes: int = DEFAULT_QUOTA_BYTES,
    held_outside: int = 0,
) -> Usage | None:
    """Raise ``quota.Exceeded`` (413, with ``used_bytes`` and ``limit_bytes``) when storing
    ``incoming`` more bytes would take the account over its quota; its usage otherwise
    (None for the bootstrap admin, who has no quota)."""
    if account_id is None:
        return None
    found = await usage(
        source, account_id, default_quota_bytes=default_quota_bytes, held_outside=held_outside
    )
    if found.used_bytes + incoming > found.limit_bytes:
        raise QuotaExceeded(
            f"storing {incoming} more bytes would exceed the account's quota: "
            f"{found.used_bytes} of {found.limit_bytes} bytes are used",
            used_bytes=found.used_bytes,
            limit_bytes=found.limit_bytes,
            requested_bytes=incoming,
        )
    return found


__all__ = ["DEFAULT_QUOTA_BYTES", "Usage", "check_quota", "usage"]
