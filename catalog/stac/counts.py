"""numberMatched: exact counts where cheap, planner estimates only from fresh statistics.

The planner's row estimate scales the row density seen by the last ``ANALYZE`` to the table's
current size. After a bulk load, repeated upserts or deletes with no ``ANALYZE`` since
(autovacuum off, or not yet run) that density is wrong and so is the estimate (18,537 reported
for 2,004 items). So an estimate is published only when the ``items`` statistics are fresh:
analysed at least once, and neither the rows changed nor the pages grown or shrunk since by
more than ``STALE_SHARE`` of the table (plus a small slack). Otherwise the matches are counted,
up to a cap and within a time limit, or numberMatched is left out. Writers analyse the table
themselves once their writes make it stale (``analyze_if_stale``).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Select, func, literal_column, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement, ColumnElement
from sqlalchemy.sql.selectable import FromClause
from sqlalchemy.sql.visitors import InternalTraversal

from catalog.db.models import Item

STALE_SHARE = 0.1  # autovacuum's default analyze threshold, as a share of the table
STALE_ROWS = 50  # and its default slack, in rows
STALE_PAGES = 8

_STATISTICS = text(
    "SELECT c.reltuples, c.relpages,"
    " pg_relation_size(c.oid) / current_setting('block_size')::int AS pages,"
    " coalesce(s.n_mod_since_analyze, 0) AS changed,"
    " s.last_analyze IS NULL AND s.last_autoanalyze IS NULL AS never"
    " FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid"
    " WHERE c.oid = CAST(:table AS regclass)"
)


class Explain(Executable, ClauseElement):
    """``EXPLAIN (FORMAT JSON)`` of a statement, with its parameters bound as usual.

    Its cache key is the statement's: compiled once per query shape like any select (compiling
    a search's count query anew took about a millisecond, as long as running it).
    """

    inherit_cache = True
    _traverse_internals = [("statement", InternalTraversal.dp_clauseelement)]

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement

    @property
    def _all_selected_columns(self) -> Any:
        # A cached compilation's result columns are matched to a new statement's by position:
        # the compiled form holds the inner select's (one column, as EXPLAIN returns).
        return self.statement._all_selected_columns


@compiles(Explain, "postgresql")
def _compile_explain(element: Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXPLAIN (FORMAT JSON) " + compiler.process(element.statement, **kw)


@dataclass(frozen=True)
class CountPolicy:
    """How numberMatched is found (``CatalogSettings.count_*``)."""

    limit: int = 1_000
    max_cost: float = 5_000.0
    stale_limit: int = 100_000
    stale_timeout_ms: int = 1_000


async def statistics_fresh(
    conn: AsyncConnection, unreported: int = 0, table: str = "items"
) -> bool:
    """Whether the planner's statistics of ``table`` (``items``, or a vector collection's
    feature table) still describe it (see the module).

    ``unreported`` adds rows this process changed that the cumulative statistics may not show
    yet (a backend reports its counts up to a second or more after its commit).
    """
    row = (await conn.execute(_STATISTICS, {"table": table})).one()
    if row.never or row.reltuples < 0:
        return False
    if row.changed + unreported > STALE_ROWS + STALE_SHARE * row.reltuples:
        return False
    return bool(abs(row.pages - row.relpages) <= STALE_PAGES + STALE_SHARE * row.relpages)


@dataclass
class Freshness:
    """``statistics_fresh`` of a process: a *fresh* answer is kept for ``ttl_s``.

    Its query (pg_class, pg_stat_user_tables and the relation's size) took about a millisecond,
    as long as the page query of a search it served. Another process's writes can make the
    statistics stale for up to ``ttl_s`` before this process sees it, which only widens the
    window that exists anyway (a backend reports its counts up to a second after its commit);
    this process's own writes forget the answer at once (``forget``). A stale answer is not
    kept: matches are then counted, which costs far more than asking again.
    """

    ttl_s: float = 1.0
    table: str = "items"
    _until: float = 0.0

    async def __call__(self, conn: AsyncConnection) -> bool:
        """Whether the statistics are fresh, as last seen at most ``ttl_s`` ago."""
        now = time.monotonic()
        if now < self._until:
            return True
        fresh = await statistics_fresh(conn, table=self.table)
        self._until = now + self.ttl_s if fresh else 0.0
        return fresh

    def known(self) -> bool:
        """Whether the statistics were seen fresh less than ``ttl_s`` ago (no query)."""
        return time.monotonic() < self._until

    def forget(self) -> None:
        """Ask again next time (after a write of this process)."""
        self._until = 0.0


async def analyze_if_stale(conn: AsyncConnection, written: int) -> bool:
    """``ANALYZE items`` if its statistics are stale after ``written`` more changed rows;
    whether it ran. ``SKIP_LOCKED``: a concurrent ANALYZE (or autovacuum's) does the job."""
    if await statistics_fresh(conn, written):
        return False
    await conn.execute(text("ANALYZE (SKIP_LOCKED) items"))
    return True


ANALYZE_QUIET_S = 1.0  # a bulk load's ANALYZE waits for this long without writes...
ANALYZE_MAX_WAIT_S = 30.0  # ...but no longer than this after the first of them

_log = logging.getLogger(__name__)


@dataclass
class DeferredAnalyze:
    """``analyze_if_stale`` for bulk loads, run once the writes pause.

    Analysed after every batch that left the statistics stale, a 100,000-item load ran ANALYZE
    some thirty times (each time the table had grown by a tenth), costing as much as the
    inserts. Meanwhile stale statistics are harmless: numberMatched is counted instead of
    estimated (``count_matches``).
    """

    connect: Callable[[], AbstractAsyncContextManager[AsyncConnection]]
    written: int = 0
    due: float = 0.0
    task: "asyncio.Task[None] | None" = field(default=None, repr=False)

    def schedule(self, written: int) -> None:
        """Count ``written`` changed rows; analyse (if stale) once writes pause."""
        self.written += written
        self.due = time.monotonic() + ANALYZE_QUIET_S
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        deadline = time.monotonic() + ANALYZE_MAX_WAIT_S
        while (wait := min(self.due, deadline) - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        written, self.written = self.written, 0
        try:
            async with self.connect() as conn:
                await analyze_if_stale(conn, written)
        except Exception:  # a background job: the next write tries again
            _log.warning("deferred ANALYZE items failed", exc_info=True)


async def count_matches(
    conn: AsyncConnection,
    clauses: list[ColumnElement[bool]],
    seen: int,
    policy: CountPolicy,
    planned: list[ColumnElement[bool]] | None = None,
    fresh: Callable[[AsyncConnection], Awaitable[bool]] = statistics_fresh,
    source: FromClause = Item.__table__,
    estimate_past_stale: bool = False,
) -> int | None:
    """numberMatched of the items matching ``clauses``; ``seen`` of them are known to exist.

    The count query is planned first (EXPLAIN, no execution); it runs only when the planner
    expects at most twice ``limit`` matches and its estimated cost, capped at ``limit`` rows, is
    below ``max_cost``. Otherwise the planner's row estimate is returned, never below ``seen``,
    if the statistics are fresh; if not, ``stale_count`` decides.

    ``planned``, when given, are the clauses the planner estimates instead: the same rows, but
    with literals where ``clauses`` have values it cannot see when planning (a subquery).
    ``fresh`` says whether the statistics are fresh (``Freshness`` asks once a second).
    ``source``: the table counted, ``items`` or a vector collection's features.
    ``estimate_past_stale``: where ``stale_count`` gives up, the planner's estimate (never below
    ``seen``) instead of None (vector features publish one; STAC items leave it out).
    """
    matching: Select[Any] = select(literal_column("1")).select_from(source).where(*clauses)
    estimated = (
        matching
        if planned is None
        else select(literal_column("1")).select_from(source).where(*planned)
    )
    rows, startup, total = await _plan(conn, estimated)
    share = min(1.0, (policy.limit + 1) / max(rows, 1.0))
    # Far above the limit, counting would only confirm that it is exceeded.
    worth_counting = rows <= 2 * policy.limit
    if worth_counting and startup + (total - startup) * share <= policy.max_cost:
        exact = await _capped_count(conn, matching, policy.limit)
        if exact <= policy.limit:
            return exact
        seen = max(seen, policy.limit + 1)
    if await fresh(conn):
        return max(round(rows), seen)
    counted = await stale_count(conn, matching, policy)
    if counted is None and estimate_past_stale:
        return max(round(rows), seen)
    return counted


async def stale_count(
    conn: AsyncConnection, matching: Select[Any], policy: CountPolicy
) -> int | None:
    """The exact count, if at most ``stale_limit`` and found within ``stale_timeout_ms``;
    None (numberMatched left out) otherwise."""
    usual = await conn.scalar(select(func.current_setting("statement_timeout")))
    try:
        async with conn.begin_nested():  # a timeout rolls back to here, not the search
            await _set_timeout(conn, str(policy.stale_timeout_ms))
            exact = await _capped_count(conn, matching, policy.stale_limit)
            await _set_timeout(conn, str(usual))
    except DBAPIError as exc:
        if "statement timeout" in str(exc.orig):
            return None
        raise
    return exact if exact <= policy.stale_limit else None


async def _set_timeout(conn: AsyncConnection, value: str) -> None:
    await conn.execute(select(func.set_config("statement_timeout", value, True)))


async def _capped_count(conn: AsyncConnection, matching: Select[Any], cap: int) -> int:
    """How many rows ``matching`` has, counting at most ``cap`` + 1."""
    capped = matching.limit(cap + 1).subquery()
    return int(await conn.scalar(select(func.count()).select_from(capped)) or 0)


async def _plan(conn: AsyncConnection, query: Select[Any]) -> tuple[float, float, float]:
    """The planner's estimated rows, startup cost and total cost of ``query``."""
    plan = await conn.scalar(Explain(query))
    if isinstance(plan, str | bytes):
        plan = orjson.loads(plan)
    top = plan[0]["Plan"]
    return float(top["Plan Rows"]), float(top["Startup Cost"]), float(top["Total Cost"])
