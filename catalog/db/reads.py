"""Single read statements of the hot paths (vector tiles, feature pages), straight through
psycopg.

A tile is one statement returning one row. Through SQLAlchemy's async engine that statement
cost ~270 µs of Python per request on top of the query (a pool checkout, the isolation level
set and reset, greenlet hops, the result machinery), against ~45 µs for the same statement on
a pool of psycopg autocommit connections: at high zooms, where PostGIS needs a few hundred
microseconds, that difference was a third of a worker's time per tile.

``ReadPool`` keeps those connections (a second, small pool next to the engine's, with the same
server options: statement timeout, no JIT, the same parallel workers), closed with the app.
Driver errors become the domain errors ``catalog.db.engine.connect`` gives.
"""

import asyncio
import select
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import RowFactory, dict_row, namedtuple_row
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.errors import InvalidValue, Unavailable
from catalog.settings import DatabaseSettings

from .engine import autocommit, first_line, server_options, unavailable_of

# As long as a request waits for a free connection (SQLAlchemy's pool timeout).
POOL_TIMEOUT_S = 30.0


class ReadPool:
    """Autocommit psycopg connections to the engine's database, for single read statements.

    At most ``size`` at once; idle ones are kept up to ``size``. A connection is made when a
    request finds none idle, so a database that is down fails the request within the connect
    timeout (503), as the engine's pool does, instead of waiting for a pool to reconnect. An
    idle connection whose server went away (a restart) is seen from its socket, without a round
    trip, and replaced before use (``catalog.db.engine`` checks its own pool the same way).
    """

    def __init__(self, engine: AsyncEngine, settings: DatabaseSettings, size: int) -> None:
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._options = server_options(settings)
        self._connect_timeout = settings.connect_timeout_s
        self._size = max(size, 1)
        self._slots = asyncio.Semaphore(self._size)
        self._idle: list[psycopg.AsyncConnection[Any]] = []

    async def close(self) -> None:
        """Close the idle connections (those in use are closed when given back)."""
        self._size = 0
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    async def one(self, sql: str, params: Mapping[str, Any]) -> Any:
        """The one row of ``sql`` (psycopg placeholders, prepared after a few uses), a named
        tuple.

        Binary results: a tile comes as its bytes, not as hex text twice its size that the
        server encodes and psycopg decodes (~0.2 ms of Python for a 120 kB z2 tile).
        """
        rows = await self._read(sql, params, binary=True, row_factory=namedtuple_row)
        if not rows:
            raise RuntimeError("the statement returned no row")
        return rows[0]

    async def all(
        self, sql: str, params: Mapping[str, Any], row_factory: RowFactory[Any] = dict_row
    ) -> list[Any]:
        """Every row of ``sql`` (text results; by default dicts, whose keys may be names that
        a named tuple refuses, such as ``_v``)."""
        return await self._read(sql, params, binary=False, row_factory=row_factory)

    async def _read(
        self, sql: str, params: Mapping[str, Any], binary: bool, row_factory: RowFactory[Any]
    ) -> list[Any]:
        if self._slots.locked():  # every connection busy: wait, but not forever
            try:
                async with asyncio.timeout(POOL_TIMEOUT_S):
                    await self._slots.acquire()
            except TimeoutError:
                raise Unavailable("every database connection is busy") from None
        else:
            await self._slots.acquire()
        try:
            return await self._run(sql, params, binary, row_factory)
        except psycopg.DataError as exc:
            raise InvalidValue(f"a value the database cannot hold: {first_line(exc)}") from exc
        except psycopg.Error as exc:
            client_side = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
            found = unavailable_of(exc, client_side)
            if found is None:
                raise
            raise found from exc
        finally:
            self._slots.release()

    async def _run(
        self, sql: str, params: Mapping[str, Any], binary: bool, row_factory: RowFactory[Any]
    ) -> list[Any]:
        conn = await self._checkout()
        try:
            cursor = conn.cursor(row_factory=row_factory, binary=binary)
            await cursor.execute(sql, params, prepare=True)
            rows = await cursor.fetchall()
        except psycopg.Error:
            await self._checkin(conn)  # a failed statement leaves an autocommit connection idle
            raise
        except BaseException:  # cancelled mid-statement: the connection's state is unknown
            await conn.close()
            raise
        await self._checkin(conn)
        return rows

    async def _checkout(self) -> psycopg.AsyncConnection[Any]:
        while self._idle:
            conn = self._idle.pop()
            if _alive(conn):
                return conn
            await conn.close()
        return await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            options=self._options,
            application_name="terracat",
            connect_timeout=self._connect_timeout,
        )

    async def _checkin(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if len(self._idle) < self._size and _alive(conn):
            self._idle.append(conn)
        else:
            await conn.close()


def _alive(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle connection can be used: open, outside a transaction, and its socket has
    nothing to read (an idle connection's server only writes when it closes it)."""
    if conn.closed or conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
        return False
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.OperationalError):
        return False
    return not readable


async def read_one(
    engine: AsyncEngine, reads: ReadPool | None, sql: str, params: Mapping[str, Any]
) -> Any:
    """The one row of ``sql`` (psycopg placeholders) on ``reads`` when there is one, else on an
    autocommit connection of ``engine`` (no BEGIN / ROLLBACK round trips around one read)."""
    if reads is not None:
        return await reads.one(sql, params)
    async with autocommit(engine) as conn:
        return (await conn.exec_driver_sql(sql, dict(params))).one()


__all__ = ["ReadPool", "read_one"]
