"""What a principal may do with collections, decided in SQL.

One predicate says which collections a principal reads (``readable_clause``); searches,
collection lists, counts, mosaics and tiles filter by the ids it gives, in their own SQL. One
query says the strongest right on a single collection (``collection_right``). Everything else
(owners of upload sets, jobs, saved searches, exports) is ``Principal.owns``.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, literal, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.db.models import Collection, CollectionGrant

from .principal import RIGHTS, Principal


def grantee_clause(principal: Principal) -> ColumnElement[bool] | None:
    """collection_grants rows given to the principal's account or one of its groups (None:
    it has neither, so no grant can be its)."""
    grantees = []
    if principal.account_id is not None:
        grantees.append(
            and_(
                CollectionGrant.grantee_kind == "account",
                CollectionGrant.grantee == str(principal.account_id),
            )
        )
    if principal.groups:
        grantees.append(
            and_(
                CollectionGrant.grantee_kind == "group",
                CollectionGrant.grantee == literal(list(principal.groups)).any_(),
            )
        )
    return or_(*grantees) if grantees else None


def _granted(principal: Principal) -> ColumnElement[bool]:
    """A grant (any right) on the outer collection row to the principal."""
    grantees = grantee_clause(principal)
    if grantees is None:
        return false()
    return exists().where(
        CollectionGrant.collection_id == Collection.id,
        grantees,
    )


def readable_clause(principal: Principal) -> ColumnElement[bool]:
    """True for the collections rows ``principal`` may read."""
    if principal.is_admin:
        return true()
    if not principal.has_scope("read"):
        return false()
    visible = ["public", "accounts"] if principal.signed_in else ["public"]
    clauses: list[ColumnElement[bool]] = [Collection.visibility.in_(visible)]
    if principal.account_id is not None:
        clauses.append(Collection.owner_id == principal.account_id)
    clauses.append(_granted(principal))
    return or_(*clauses)


@dataclass(frozen=True)
class Readable:
    """The collections a principal reads: ``ids`` None means every collection."""

    ids: tuple[str, ...] | None

    def allows(self, collection_id: str) -> bool:
        """Whether this collection is readable."""
        return self.ids is None or collection_id in self.ids

    def column_filter(self, column: Any) -> ColumnElement[bool] | None:
        """A WHERE clause keeping rows of readable collections (None: no filter needed)."""
        if self.ids is None:
            return None
        return column == literal(list(self.ids)).any_()  # type: ignore[no-any-return]

    def narrow(self, requested: Sequence[str] | None) -> list[str] | None:
        """``requested`` (a search's ``collections``) cut down to the readable ones."""
        if self.ids is None:
            return list(requested) if requested is not None else None
        if requested is None:
            return list(self.ids)
        allowed = set(self.ids)
        return [c for c in requested if c in allowed]


EVERYTHING = Readable(None)


async def readable(conn: AsyncConnection, principal: Principal) -> Readable:
    """The collections ``principal`` reads, from one query (None when it reads all of them)."""
    if principal.is_admin:
        return EVERYTHING
    rows = (
        await conn.execute(
            select(Collection.id, readable_clause(principal).label("ok")).order_by(Collection.id)
        )
    ).all()
    ids = tuple(r.id for r in rows if r.ok)
    return EVERYTHING if len(ids) == len(rows) else Readable(ids)


async def collection_right(
    conn: AsyncConnection, principal: Principal, collection_id: str
) -> str | None:
    """The strongest right ``principal`` has on the collection (None: not even ``read``,
    or no such collection), capped by its token's scopes."""
    if principal.cap < 0:
        return None
    row = (
        await conn.execute(
            select(Collection.owner_id, Collection.visibility).where(Collection.id == collection_id)
        )
    ).first()
    if row is None:
        return None
    best = -1
    if principal.is_admin or (
        principal.account_id is not None and row.owner_id == principal.account_id
    ):
        best = RIGHTS.index("admin")
    else:
        if row.visibility == "public" or (row.visibility == "accounts" and principal.signed_in):
            best = 0
        grantees = grantee_clause(principal)
        if grantees is not None:  # the account's grant and its groups' in one query
            granted = await conn.scalars(
                select(CollectionGrant.right).where(
                    CollectionGrant.collection_id == collection_id, grantees
                )
            )
            best = max([best, *(RIGHTS.index(right) for right in granted)])
    best = min(best, principal.cap)
    return RIGHTS[best] if best >= 0 else None


class RightsCache:
    """Readable sets per principal, kept ``ttl_s`` seconds: a change of rights or visibility
    reaches every request within that time (one second by default)."""

    def __init__(self, ttl_s: float = 1.0, size: int = 4096) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._entries: dict[str, tuple[float, Readable]] = {}

    def get(self, principal: Principal) -> Readable | None:
        """The cached set, unless stale or absent."""
        if principal.is_admin:
            return EVERYTHING
        entry = self._entries.get(principal.key)
        if entry is None or time.monotonic() - entry[0] > self.ttl_s:
            return None
        return entry[1]

    def put(self, principal: Principal, value: Readable) -> None:
        """Keep ``value`` for ``principal`` (no caching when it has no key)."""
        if not principal.key:
            return
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[principal.key] = (time.monotonic(), value)

    def clear(self) -> None:
        """Forget everything (after a change of rights made by this process)."""
        self._entries.clear()
