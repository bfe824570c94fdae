"""Database engine lifecycle and migrations."""

import re
import select
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from sqlalchemy import event, make_url, text
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from catalog.errors import Conflict, InvalidValue, Unavailable
from catalog.settings import DatabaseSettings

if TYPE_CHECKING:
    from alembic.config import Config

_ROOT = Path(__file__).resolve().parents[2]


def sync_url(url: str) -> str:
    """Return ``url`` with the psycopg 3 driver, whatever scheme it was given with."""
    parsed = make_url(url)
    if parsed.get_backend_name() not in ("postgresql", "postgres", "postgis"):
        raise ValueError(f"not a PostgreSQL URL: {parsed.render_as_string(hide_password=True)}")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def create_engine(url: str, settings: DatabaseSettings) -> AsyncEngine:
    """Create the async engine the API uses (psycopg 3, pooled)."""
    engine = create_async_engine(
        sync_url(url),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        connect_args={
            "options": server_options(settings),
            "application_name": "terracat",
            "connect_timeout": settings.connect_timeout_s,
        },
        json_serializer=_dumps,
        json_deserializer=orjson.loads,
    )
    event.listen(engine.sync_engine, "checkout", _check_alive)
    return engine


def server_options(settings: DatabaseSettings) -> str:
    """The server settings of the API's connections (libpq ``options``)."""
    # JIT compiles the expression of a count or a filter in tens of milliseconds: a loss for
    # queries that read a few thousand rows at most, which is all the API runs.
    return (
        f"-c statement_timeout={settings.statement_timeout_ms} -c jit=off "
        f"-c max_parallel_workers_per_gather={settings.parallel_workers}"
    )


def _check_alive(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Refuse a pooled connection whose server has gone (the pool then makes a new one).

    In place of ``pool_pre_ping``, which sent a query and waited for its answer at every
    checkout: a round trip per request, 2 ms of a 10 ms vector tile on a busy machine. An idle
    connection has nothing to read, so a readable socket means the server closed it or said it
    is terminating (a restart, an administrator, a dead backend): both are refused here
    without a round trip. A connection lost in the instant between this check and its query
    fails that one request with 503, as a ping's would have.
    """
    driver = record.driver_connection
    try:
        if driver is None or driver.closed or driver.broken:
            raise DisconnectionError("the pooled connection is closed")
        readable, _, _ = select.select([driver.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.OperationalError) as exc:
        raise DisconnectionError(f"the pooled connection is unusable: {exc}") from exc
    if readable:
        raise DisconnectionError("the server closed the pooled connection")


@asynccontextmanager
async def connect(engine: AsyncEngine, write: bool = False) -> AsyncIterator[AsyncConnection]:
    """A connection (a transaction when ``write``); driver errors become domain errors here.

    Integrity violations are Conflict (409); data errors (a NUL byte in text, a number out of
    range) are InvalidValue (400), as queries bind the client's values; a database that cannot
    answer (down, restarting, out of connections, a statement timeout, a lost connection) is
    Unavailable (503). Repositories catch the integrity errors they expect themselves.
    """
    try:
        if write:
            async with engine.begin() as conn:
                yield conn
        else:
            async with engine.connect() as conn:
                yield conn
    except IntegrityError as exc:
        raise Conflict(f"conflicts with stored data: {exc.orig}") from exc
    except DataError as exc:  # a NUL byte in text, a number out of range: the input's fault
        raise InvalidValue(f"a value the database cannot hold: {first_line(exc.orig)}") from exc
    except (DBAPIError, PoolTimeout) as exc:
        translated = _unavailable(exc)
        if translated is None:
            raise
        raise translated from exc


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection outside any transaction, for reads of one statement or a few independent
    ones: no BEGIN / ROLLBACK round trips around them. Driver errors as ``connect`` gives them.
    """
    async with connect(engine) as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")


# What pg_export_snapshot() returns; checked before it goes into SET TRANSACTION SNAPSHOT,
# which takes a literal, not a parameter.
_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+-[0-9]+")


@asynccontextmanager
async def one_snapshot(engine: AsyncEngine, count: int) -> AsyncIterator[list[AsyncConnection]]:
    """``count`` connections in REPEATABLE READ transactions that all see one snapshot.

    For the statements of one answer run side by side (each on its own connection, so on its
    own server process): what they count is the same rows, whatever commits meanwhile. The
    first exports its snapshot, the others adopt it before any query (as pg_dump's parallel
    workers do). Rolled back at the end; driver errors as ``connect`` gives them.
    """
    async with AsyncExitStack() as stack:
        conns = [await stack.enter_async_context(connect(engine)) for _ in range(count)]
        for conn in conns:
            await conn.execution_options(isolation_level="REPEATABLE READ")
        snapshot = (await conns[0].execute(text("SELECT pg_export_snapshot()"))).scalar_one()
        if not _SNAPSHOT_ID.fullmatch(snapshot):
            raise RuntimeError(f"unexpected snapshot id {snapshot!r}")
        for conn in conns[1:]:
            await conn.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
        yield conns


# SQLSTATE classes of a database that cannot answer now but may soon: connection exception,
# transaction rollback (serialization, deadlock), insufficient resources, operator
# intervention (shutdown, starting up, statement timeout).
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57"})
_TRANSIENT_STATES = frozenset({"55P03"})  # lock_not_available (lock_timeout)
_TIMEOUT_STATE = "57014"  # query_canceled: our statement_timeout


def _unavailable(exc: Exception) -> Unavailable | None:
    """The Unavailable that ``exc`` means, or None when it is not the database being away.

    A driver error without SQLSTATE comes from the client side: no connection at all
    (refused, reset, a name that does not resolve).
    """
    if isinstance(exc, PoolTimeout):
        return Unavailable("every database connection is busy")
    if not isinstance(exc, DBAPIError):
        return None
    found = unavailable_of(exc.orig, isinstance(exc, OperationalError | InterfaceError))
    if found is None and exc.connection_invalidated:
        return Unavailable("the database is unavailable")
    return found


def unavailable_of(error: BaseException | None, client_side: bool) -> Unavailable | None:
    """The Unavailable a driver error means, told by its SQLSTATE (``client_side``: an error
    without one that comes from the connection itself), or None (the engine's pool and
    ``catalog.db.reads`` decide the same way)."""
    state = getattr(error, "sqlstate", None)
    if state == _TIMEOUT_STATE:
        return Unavailable("the database did not answer in time")
    if state is None:
        return Unavailable("the database is unavailable") if client_side else None
    if state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES:
        return Unavailable("the database is unavailable")
    return None


def first_line(error: BaseException | None) -> str:
    """The first line of a driver error's message (at most 200 characters)."""
    return str(error).strip().splitlines()[0][:200] if str(error).strip() else "invalid value"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def alembic_config(url: str) -> "Config":
    """Alembic configuration of this project for the database at ``url``."""
    from alembic.config import Config

    config = Config(str(_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` with Alembic."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Downgrade the database at ``url`` to ``revision`` with Alembic."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)
