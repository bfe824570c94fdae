"""Collection extents under concurrent writers: no writer's widening or shrinking is lost."""

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.db.engine import create_engine
from catalog.settings import DatabaseSettings
from catalog.stac.repository import CatalogRepository
from catalog.stac.serializers import collection_row, item_row
from tests.factories import collection, item


@pytest.fixture
async def repo(database_url: str) -> AsyncIterator[CatalogRepository]:
    engine = create_engine(database_url, DatabaseSettings(pool_size=12, max_overflow=4))
    repository = CatalogRepository(engine)
    await repository.create_collection(collection_row(collection("c1")))
    yield repository
    await engine.dispose()


def _row(item_id: str, lon: float, lat: float, year: int) -> dict[str, Any]:
    return item_row(item(item_id, lon, lat, f"{year}-01-01T00:00:00Z"), "c1")


async def _served_and_actual(repo: CatalogRepository) -> tuple[list[Any], list[Any]]:
    extent = (await repo.get_collection("c1"))["content"]["extent"]
    served = [*extent["spatial"]["bbox"][0], *extent["temporal"]["interval"][0]]
    rfc3339 = '\'YYYY-MM-DD"T"HH24:MI:SS"Z"\''
    query = (
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e), t0, t1 FROM ("
        f"SELECT ST_Extent(geometry) AS e, to_char(min(datetime) AT TIME ZONE 'UTC', {rfc3339})"
        f" AS t0, to_char(max(end_datetime) AT TIME ZONE 'UTC', {rfc3339}) AS t1"
        " FROM items WHERE collection_id = 'c1') x"
    )
    async with repo.engine.connect() as conn:
        row = (await conn.execute(text(query))).one()
    return served, list(row)


def _same(served: list[Any], actual: list[Any]) -> None:
    assert served[:4] == pytest.approx(actual[:4], abs=1e-9) and served[4:] == actual[4:]


async def _blocked(repo: CatalogRepository, task: Awaitable[Any]) -> asyncio.Task[Any]:
    """Start ``task`` and return once its connection waits for a lock."""
    running = asyncio.ensure_future(task)
    query = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
    async with repo.engine.connect() as conn:
        while not await conn.scalar(query):
            if running.done():
                raise AssertionError(f"the second writer did not wait: {running.result()}")
            await asyncio.sleep(0.01)
    return running


async def _insert(conn: AsyncConnection, repo: CatalogRepository, row: dict[str, Any]) -> None:
    await repo.insert_item(conn, "c1", row)
    await conn.commit()


async def test_concurrent_batches_each_widen_the_extent(repo: CatalogRepository) -> None:
    batches = [[_row(f"b{k}-{n}", -170 + 40 * k + n / 10, -80 + 20 * k, 2001 + k)
                for n in range(40)] for k in range(8)]  # fmt: skip
    assert await asyncio.gather(*(repo.write_items("c1", b, False) for b in batches)) == [40] * 8
    served, actual = await _served_and_actual(repo)
    _same(served, actual)
    assert served[:4] == pytest.approx([-170, -80, 114.4, 60.5])


async def test_a_waiting_writer_sees_what_the_first_committed(repo: CatalogRepository) -> None:
    await repo.write_items("c1", [_row("mid", 0, 0, 2010), _row("edge", 50, 50, 2030)], False)
    async with repo.engine.connect() as first, repo.engine.connect() as second:
        # An insert holds the collection until it commits; a second insert waits, then widens
        # what the first stored.
        await repo.insert_item(first, "c1", _row("west", -100, 0, 2010))
        waiting = await _blocked(repo, _insert(second, repo, _row("south", 0, -60, 2010)))
        await first.commit()
        await waiting
    served, actual = await _served_and_actual(repo)
    _same(served, actual)
    assert served[:4] == pytest.approx([-100, -60, 50.5, 50.5])


async def test_a_delete_waiting_for_an_insert_recomputes_with_it(
    repo: CatalogRepository,
) -> None:
    await repo.write_items("c1", [_row("mid", 0, 0, 2010), _row("edge", 50, 50, 2030)], False)
    async with repo.engine.connect() as first, repo.engine.connect() as second:
        await repo.insert_item(first, "c1", _row("far", 120, 70, 2050))

        async def delete_edge() -> None:
            await second.execute(text("DELETE FROM items WHERE id = 'edge'"))
            await second.commit()

        waiting = await _blocked(repo, delete_edge())
        await first.commit()
        await waiting
    served, actual = await _served_and_actual(repo)
    _same(served, actual)
    assert served[2:4] == pytest.approx([120.5, 70.5]) and served[5] == "2050-01-01T00:00:00Z"


async def test_writes_inside_the_extent_leave_the_collection_row_alone(
    repo: CatalogRepository,
) -> None:
    async def version() -> Any:
        async with repo.engine.connect() as conn:
            return await conn.scalar(text("SELECT xmin::text FROM collections WHERE id = 'c1'"))

    await repo.write_items("c1", [_row("sw", 0, 0, 2010), _row("ne", 50, 50, 2030)], False)
    before = await version()
    await repo.write_items("c1", [_row("inside", 20, 20, 2020)], False)
    await repo.delete_item("c1", "inside")
    assert await version() == before  # no new row version: nothing was rewritten
    await repo.delete_item("c1", "ne")
    assert await version() != before
    served, actual = await _served_and_actual(repo)
    _same(served, actual)
