"""Vector collections made from Python rows with the foundation, for tests.

``load_vector`` (async, on an engine) and ``vector_collection`` (sync, on a database URL)
create the collection row, its layer, COPY the rows and refresh the extent in one transaction,
as an ingest does. Rows are ``(shapely geometry, value, value, ...)`` in ``properties`` order,
geometries in EPSG:``srid``.
"""

import asyncio
from collections.abc import Sequence
from typing import Any

import shapely
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import create_engine
from catalog.settings import DatabaseSettings
from catalog.stac.repository import CatalogRepository
from catalog.stac.serializers import collection_row
from catalog.vector.repository import copy_features, create_layer, refresh_extent
from catalog.vector.schema import Layer, PropertyType
from tests.factories import collection

Row = Sequence[Any]  # (shapely geometry, *property values)


async def load_vector(
    engine: AsyncEngine,
    collection_id: str,
    properties: Sequence[tuple[str, PropertyType]],
    rows: Sequence[Row],
    *,
    geometry_type: str = "Polygon",
    datetime_property: str | None = None,
    annotates: str | None = None,
    srid: int = 4326,
    visibility: str = "public",
    create: bool = True,
) -> Layer:
    """Make ``collection_id`` (unless ``create`` is False) a vector collection of ``rows``."""
    if create:
        doc = collection(collection_id)
        await CatalogRepository(engine).create_collection(
            collection_row(doc), visibility=visibility
        )
    names = [name for name, _ in properties]
    wkb_rows = [(shapely.to_wkb(row[0]), *row[1:]) for row in rows]
    async with engine.begin() as conn:
        layer = await create_layer(
            conn,
            collection_id,
            properties,
            geometry_type,
            source_crs=f"EPSG:{srid}",
            datetime_property=datetime_property,
            annotates=annotates,
        )
        await copy_features(conn, layer, names, wkb_rows, srid=srid)
        return await refresh_extent(conn, layer)


def vector_collection(
    database_url: str,
    collection_id: str,
    properties: Sequence[tuple[str, PropertyType]],
    rows: Sequence[Row],
    **options: Any,
) -> Layer:
    """``load_vector`` from synchronous code (TestClient tests, live-server fixtures)."""

    async def run() -> Layer:
        engine = create_engine(database_url, DatabaseSettings())
        try:
            return await load_vector(engine, collection_id, properties, rows, **options)
        finally:
            await engine.dispose()

    return asyncio.run(run())


__all__ = ["Row", "load_vector", "vector_collection"]
