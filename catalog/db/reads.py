"""Single read statements of the hot paths (vector tiles), straight through psycopg.

A tile is one statement returning one row. Through SQLAlchemy's async engine that statement
cost ~270 µs of Python per request on top of the query (a pool checkout, the isolation level
set and reset, greenlet hops, the result machinery), against ~45 µs for the same statement on
a psycopg pool of autocommit connections: at high zooms, where PostGIS needs a few hundred
microseconds, that difference was a third of a worker's time per tile.

``ReadPool`` keeps those connections (a second, small pool next to the engine's, with the same
server options: statement timeout, no JIT, the same parallel workers), opened and closed with
the app. Driver errors become the domain errors ``catalog.db.engine.connect`` gives.
"""

from collections.abc import Mapping
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.errors import InvalidValue, Unavailable
from catalog.settings import DatabaseSettings

from .engine import TIMEOUT_STATE, TRANSIENT_CLASSES, TRANSIENT_STATES, server_options

# As long as a request waits for a connection of the engine's pool (SQLAlchemy's default).
POOL_TIMEOUT_S = 30.0


class ReadPool:
    """Autocommit psycopg connections to the engine's database, for single read statements."""

    def __init__(self, engine: AsyncEngine, settings: DatabaseSettings, size: int) -> None:
        conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[NamedTuple]] = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=max(size, 1),
            kwargs={
                "autocommit": True,
                "row_factory": namedtuple_row,
                "options": server_options(settings),
                "application_name": "terracat",
                "connect_timeout": settings.connect_timeout_s,
            },
            timeout=POOL_TIMEOUT_S,
            open=False,
            name="terracat-reads",
        )

    async def open(self) -> None:
        """Open the pool (its first connection is made in the background)."""
        await self._pool.open(wait=False)

    async def close(self) -> None:
        """Close every connection."""
        await self._pool.close()

    async def one(self, sql: str, params: Mapping[str, Any]) -> NamedTuple:
        """The one row of ``sql`` (psycopg placeholders, prepared after a few uses).

        Binary results: a tile comes as its bytes, not as hex text twice its size that the
        server encodes and psycopg decodes (~0.2 ms of Python for a 120 kB z2 tile).
        """
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(sql, params, prepare=True, binary=True)
                row = await cursor.fetchone()
        except PoolTimeout as exc:
            raise Unavailable("every database connection is busy") from exc
        except psycopg.DataError as exc:
            raise InvalidValue(f"a value the database cannot hold: {_first_line(exc)}") from exc
        except psycopg.Error as exc:
            if _transient(exc):
                state = exc.sqlstate
                raise Unavailable(
                    "the database did not answer in time"
                    if state == TIMEOUT_STATE
                    else "the database is unavailable"
                ) from exc
            raise
        if row is None:
            raise RuntimeError("the statement returned no row")
        return row


def _transient(exc: psycopg.Error) -> bool:
    """Whether ``exc`` is the database being away (as ``catalog.db.engine`` decides)."""
    state = exc.sqlstate
    if state is None:
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return state == TIMEOUT_STATE or state[:2] in TRANSIENT_CLASSES or state in TRANSIENT_STATES


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else "invalid value"


__all__ = ["ReadPool"]
