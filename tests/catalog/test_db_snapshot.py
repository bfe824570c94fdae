"""catalog.db.engine.one_snapshot: connections that count the same rows, whatever commits."""

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import create_engine, one_snapshot
from catalog.settings import DatabaseSettings


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, DatabaseSettings())
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE snapshot_rows (n int)"))
        await conn.execute(text("INSERT INTO snapshot_rows SELECT generate_series(1, 10)"))
    yield engine
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE snapshot_rows"))
    await engine.dispose()


COUNT = text("SELECT count(*) FROM snapshot_rows")


async def test_every_connection_sees_the_first_ones_snapshot(engine: AsyncEngine) -> None:
    async with one_snapshot(engine, 3) as conns:
        # committed after the snapshot was taken, before the others ran any query of theirs
        async with engine.begin() as writer:
            await writer.execute(text("INSERT INTO snapshot_rows SELECT generate_series(1, 5)"))
        assert [(await conn.execute(COUNT)).scalar() for conn in conns] == [10, 10, 10]
        pids = {(await conn.execute(text("SELECT pg_backend_pid()"))).scalar() for conn in conns}
        assert len(pids) == 3  # three server processes: statements run side by side
    async with engine.connect() as conn:
        assert (await conn.execute(COUNT)).scalar() == 15


async def test_connections_go_back_to_the_pool_as_they_were(engine: AsyncEngine) -> None:
    async with one_snapshot(engine, 2):
        pass
    async with engine.connect() as conn:
        level = (await conn.execute(text("SHOW transaction_isolation"))).scalar()
        assert level == "read committed"
