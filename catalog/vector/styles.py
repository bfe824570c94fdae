"""Stored map styles (table ``styles``) and the property statistics generated styles colour by.

A stored style replaces the generated one of its collection; the body is kept as given (the
API validated it). ``categories`` and ``value_range`` read the whole layer (a style colours
every feature, whatever a request later filters).
"""

from typing import Any

import orjson
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import connect

from .schema import Layer, Property


class StyleRepository:
    """Styles of collections, by collection and style id."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get(self, collection_id: str, style_id: str) -> dict[str, Any] | None:
        """The stored style, or None when the collection has none of that id."""
        async with connect(self.engine) as conn:
            row = (
                await conn.execute(
                    text("SELECT body FROM styles WHERE collection_id = :c AND style_id = :s"),
                    {"c": collection_id, "s": style_id},
                )
            ).first()
        return None if row is None else dict(row.body)

    async def ids(self, collection_id: str) -> list[str]:
        """The ids of the collection's stored styles."""
        async with connect(self.engine) as conn:
            rows = await conn.execute(
                text("SELECT style_id FROM styles WHERE collection_id = :c ORDER BY style_id"),
                {"c": collection_id},
            )
            return [row.style_id for row in rows]

    async def put(self, collection_id: str, style_id: str, body: dict[str, Any]) -> bool:
        """Store ``body``; True when it replaced a stored style."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    text(
                        "INSERT INTO styles (collection_id, style_id, body) "
                        "VALUES (:c, :s, CAST(:b AS jsonb)) "
                        "ON CONFLICT (collection_id, style_id) "
                        "DO UPDATE SET body = EXCLUDED.body, updated = now() "
                        "RETURNING (xmax <> 0) AS replaced"
                    ),
                    {"c": collection_id, "s": style_id, "b": orjson.dumps(body).decode()},
                )
            ).one()
        return bool(row.replaced)

    async def delete(self, collection_id: str, style_id: str) -> bool:
        """Drop a stored style; False when there was none."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                text("DELETE FROM styles WHERE collection_id = :c AND style_id = :s"),
                {"c": collection_id, "s": style_id},
            )
        return bool(result.rowcount)

    async def categories(self, layer: Layer, prop: Property, limit: int) -> list[Any]:
        """The ``limit`` most frequent non-null values of ``prop``, most frequent first."""
        column = layer.table.c[prop.column]
        query = (
            select(column)
            .where(column.is_not(None))
            .group_by(column)
            .order_by(func.count().desc(), column)
            .limit(limit)
        )
        async with connect(self.engine) as conn:
            return [row[0] for row in await conn.execute(query)]

    async def value_range(self, layer: Layer, prop: Property) -> tuple[float, float] | None:
        """Smallest and largest value of a numeric ``prop`` (None when it has none)."""
        column = layer.table.c[prop.column]
        async with connect(self.engine) as conn:
            low, high = (await conn.execute(select(func.min(column), func.max(column)))).one()
        return None if low is None else (float(low), float(high))


__all__ = ["StyleRepository"]
