"""Vector collections for the tile, style and map tests, made with the catalogue's own
functions (collection row, layer, COPY, extent) in one transaction."""

import asyncio
from collections.abc import Sequence
from typing import Any

import shapely
from sqlalchemy import text

from catalog.db.engine import create_engine
from catalog.settings import DatabaseSettings
from catalog.stac.repository import CatalogRepository
from catalog.stac.serializers import collection_row
from catalog.vector.repository import copy_features, create_layer, refresh_extent
from catalog.vector.schema import PropertyType
from tests.factories import collection

Row = tuple[shapely.Geometry, Any]


def load(
    database_url: str,
    collection_id: str,
    properties: Sequence[tuple[str, PropertyType]],
    geometry_type: str,
    rows: Sequence[Sequence[Any]],
    *,
    datetime_property: str | None = None,
    annotates: str | None = None,
    create: bool = True,
) -> None:
    """Collection ``collection_id`` with a layer of ``rows`` (geometry, then each property)."""

    async def run() -> None:
        engine = create_engine(database_url, DatabaseSettings())
        try:
            if create:
                await CatalogRepository(engine).create_collection(
                    collection_row(collection(collection_id))
                )
            async with engine.begin() as conn:
                layer = await create_layer(
                    conn, collection_id, list(properties), geometry_type,
                    datetime_property=datetime_property, annotates=annotates,
                )  # fmt: skip
                names = [name for name, _ in properties]
                wkb = [(shapely.to_wkb(row[0]), *row[1:]) for row in rows]
                await copy_features(conn, layer, names, wkb)
                await refresh_extent(conn, layer)
        finally:
            await engine.dispose()

    asyncio.run(run())


def query(database_url: str, sql: str, **params: Any) -> list[Any]:
    """Rows of ``sql`` on the test database (brute-force answers)."""

    async def run() -> list[Any]:
        engine = create_engine(database_url, DatabaseSettings())
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(text(sql), params)).all())
        finally:
            await engine.dispose()

    return asyncio.run(run())
