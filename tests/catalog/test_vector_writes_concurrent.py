"""Feature writes that extend a layer's schema at the same time: one schema change at a time per
collection (the collection row's lock, as the ingest takes it), so two writers adding the same
property both succeed and two giving it two types end with one column and one TypeConflict."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import shapely
import shapely.geometry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import create_engine
from catalog.settings import DatabaseSettings
from catalog.stac.repository import CatalogRepository
from catalog.stac.serializers import collection_row
from catalog.vector.errors import FeatureTypeConflict
from catalog.vector.repository import create_layer, get_layer
from catalog.vector.schema import PropertyType
from catalog.vector.transactions import FeatureWriter
from tests.factories import collection


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, DatabaseSettings())
    await CatalogRepository(engine).create_collection(collection_row(collection("fields")))
    async with engine.begin() as conn:
        await create_layer(conn, "fields", [("crop", PropertyType.STRING)], "Point")
    yield engine
    await engine.dispose()


def _feature(**props: Any) -> dict[str, Any]:
    point = shapely.geometry.mapping(shapely.Point(1, 2))
    return {"type": "Feature", "geometry": point, "properties": props}


async def _columns(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        layer = await get_layer(conn, "fields")
        assert layer is not None
        rows = await conn.execute(
            text("SELECT column_name, data_type FROM information_schema.columns "
                 "WHERE table_schema = 'features' AND table_name = :t"),
            {"t": layer.table_name},
        )  # fmt: skip
        stored = {str(r[0]): str(r[1]) for r in rows}
        assert {p.column for p in layer.properties} | {"fid", "geom"} == set(stored)
        return stored


async def test_writers_adding_one_property_at_once(engine: AsyncEngine) -> None:
    writer = FeatureWriter(engine)
    made = await asyncio.gather(
        *(writer.create("fields", _feature(colour=f"c{n}", crop="rye")) for n in range(6))
    )
    assert sorted(fid for fids in made for fid in fids) == list(range(1, 7))
    assert (await _columns(engine))["colour"] == "text"
    async with engine.connect() as conn:
        layer = await get_layer(conn, "fields")
        assert layer is not None
        query = f"SELECT count(DISTINCT colour) FROM {layer.qualified_name}"
        assert (await conn.execute(text(query))).scalar_one() == 6


async def test_writers_giving_a_new_property_two_types(engine: AsyncEngine) -> None:
    writer = FeatureWriter(engine)
    results = await asyncio.gather(
        writer.create("fields", _feature(size=3)),
        writer.create("fields", _feature(size="large")),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1 and isinstance(refused[0], FeatureTypeConflict), results
    assert (await _columns(engine))["size"] in ("bigint", "text")


async def _until_a_lock_is_awaited(engine: AsyncEngine) -> None:
    """Return once a session of this database waits for a lock (10 s at most)."""
    for _ in range(200):
        async with engine.connect() as conn:
            waiting = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )  # fmt: skip
            )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no session waited for a lock")


async def test_a_write_and_an_append_take_their_locks_in_one_order(engine: AsyncEngine) -> None:
    """An append (catalog/vector/load.py ``load_layer``) locks the collection's row, then the
    layer's row. A feature write without a new property took the layer's row first and then
    waited for the collection's: each waited for the other (deadlock detected)."""
    async with engine.connect() as append:
        async with append.begin():
            await append.execute(text("SELECT id FROM collections WHERE id = 'fields' FOR UPDATE"))
            write = asyncio.create_task(FeatureWriter(engine).create("fields", _feature()))
            await _until_a_lock_is_awaited(engine)  # the write waits for the append
            await append.execute(text("SET LOCAL lock_timeout = '5s'"))
            await append.execute(
                text("SELECT 1 FROM vector_layers WHERE collection_id = 'fields' FOR UPDATE")
            )
    assert await asyncio.wait_for(write, 10) == [1]
