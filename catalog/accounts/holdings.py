"""What a caller holds: the collections it owns and the grants it has (``GET /users/me``)."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import connect
from catalog.db.models import Collection, CollectionGrant

from .principal import Principal
from .rights import grantee_clause


async def holdings(engine: AsyncEngine, principal: Principal) -> dict[str, Any]:
    """``owned`` collection ids and ``grants`` (to the account or one of its groups)."""
    grantees = grantee_clause(principal)
    owned: list[str] = []
    grants: list[dict[str, Any]] = []
    async with connect(engine) as conn:
        if principal.account_id is not None:
            rows = await conn.execute(
                select(Collection.id)
                .where(Collection.owner_id == principal.account_id)
                .order_by(Collection.id)
            )
            owned = [row.id for row in rows]
        if grantees is not None:
            rows = await conn.execute(
                select(
                    CollectionGrant.collection_id,
                    CollectionGrant.grantee_kind,
                    CollectionGrant.grantee,
                    CollectionGrant.right,
                )  # fmt: skip
                .where(grantees)
                .order_by(CollectionGrant.collection_id, CollectionGrant.grantee_kind)
            )
            for row in rows:
                grant = {"collection": row.collection_id, "right": row.right}
                if row.grantee_kind == "group":
                    grant["group"] = row.grantee
                grants.append(grant)
    return {"owned": owned, "grants": grants}
