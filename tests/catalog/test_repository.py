"""Repository against PostGIS: concurrent bulk writes, counting, index use."""

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from catalog.db.engine import create_engine
from catalog.errors import Conflict
from catalog.settings import DatabaseSettings
from catalog.stac.repository import CatalogRepository
from catalog.stac.search import SearchParams, SortBy
from catalog.stac.serializers import collection_row, item_row
from tests.factories import collection, item


@pytest.fixture
async def repo(database_url: str) -> AsyncIterator[CatalogRepository]:
    engine = create_engine(database_url, DatabaseSettings(pool_size=10, max_overflow=10))
    repository = CatalogRepository(engine, count_limit=50)
    await repository.create_collection(collection_row(collection("c1")))
    yield repository
    await engine.dispose()


def _rows(ids: list[str], cloud: float = 1.0) -> list[dict[str, Any]]:
    return [item_row(item(i, lon=(n % 300) / 2 - 75, **{"eo:cloud_cover": cloud}), "c1")
            for n, i in enumerate(ids)]  # fmt: skip


async def test_concurrent_batches_into_one_collection(repo: CatalogRepository) -> None:
    # Interleaved ids: each batch's rows fall between the others' in index order.
    batches = [[f"item-{n:05d}" for n in range(k, 4000, 8)] for k in range(8)]
    written = await asyncio.gather(
        *(repo.write_items("c1", _rows(b), upsert=False) for b in batches)
    )
    assert written == [500] * 8
    page = await repo.search(SearchParams(collections=["c1"], limit=1))
    assert page.matched is not None and page.matched > 50  # count_limit 50: an estimate above it
    async with repo.engine.begin() as conn:
        written_rows = text("SELECT count(*) FROM items WHERE collection_id = 'c1'")
        assert await conn.scalar(written_rows) == 4000
        # Until the table is analysed the planner may guess far off (20054 rows in one CI
        # run), and a guess above 2 * count_limit is returned as it is.
        await conn.execute(text("ANALYZE items"))
    exact = CatalogRepository(repo.engine, count_limit=10_000)
    assert (await exact.search(SearchParams(collections=["c1"], limit=1))).matched == 4000


async def test_number_matched_is_estimated_when_counting_would_cost_too_much(
    repo: CatalogRepository,
) -> None:
    await repo.write_items("c1", _rows([f"e-{n:04d}" for n in range(300)]), upsert=False)
    async with repo.engine.begin() as conn:
        await conn.execute(text("ANALYZE items"))
    counting = CatalogRepository(repo.engine, count_limit=10_000)
    assert (await counting.search(SearchParams(collections=["c1"], limit=10))).matched == 300
    estimating = CatalogRepository(repo.engine, count_limit=10_000, count_max_cost=0)
    page = await estimating.search(SearchParams(collections=["c1"], limit=10))
    assert page.matched is not None and 270 <= page.matched <= 330  # the planner's estimate
    few = await estimating.search(SearchParams(collections=["c1"], ids=["e-0001", "e-0002"]))
    assert few.matched == 2  # the first page holds every match: exact without counting
    silent = CatalogRepository(repo.engine, count_limit=0)
    assert (await silent.search(SearchParams(collections=["c1"], limit=10))).matched is None


async def test_concurrent_overlapping_upserts_do_not_deadlock(repo: CatalogRepository) -> None:
    ids = [f"u-{n:04d}" for n in range(600)]
    batches = []
    for k in range(6):
        chosen = random.Random(k).sample(ids, 300)  # heavy overlap, random order
        batches.append(_rows(chosen, cloud=float(k)))
    results = await asyncio.gather(*(repo.write_items("c1", b, upsert=True) for b in batches))
    assert results == [300] * 6
    page = await repo.search(SearchParams(collections=["c1"], limit=1000))
    assert len(page.rows) == len({r["id"] for b in batches for r in b})


async def test_concurrent_insert_of_same_ids_conflicts_cleanly(repo: CatalogRepository) -> None:
    rows = _rows([f"d-{n}" for n in range(200)])
    outcomes = await asyncio.gather(
        *(repo.write_items("c1", rows, upsert=False) for _ in range(4)), return_exceptions=True
    )
    assert sum(1 for o in outcomes if o == 200) == 1
    assert all(isinstance(o, Conflict) for o in outcomes if o != 200)


def test_cloud_cover_filter_uses_expression_index(sync_engine: Engine) -> None:
    with sync_engine.begin() as conn:
        conn.execute(text("INSERT INTO collections (id, content) VALUES ('x', '{}')"))
        conn.execute(
            text(
                "INSERT INTO items (collection_id, id, datetime, end_datetime, properties, "
                "content) "
                "SELECT 'x', 'i' || g, now(), now(), "
                "jsonb_build_object('eo:cloud_cover', g % 100, 'platform', 'p' || (g % 7)), '{}' "
                "FROM generate_series(1, 20000) g"
            )
        )
        conn.execute(text("ANALYZE items"))
        from sqlalchemy import select
        from sqlalchemy.dialects import postgresql

        from catalog.db.models import Item
        from catalog.stac.queryables import Kind, typed_property

        query = select(Item.id).where(typed_property("eo:cloud_cover", Kind.NUMBER) < 0.5)
        sql = str(query.compile(dialect=postgresql.dialect(),
                                compile_kwargs={"literal_binds": True}))  # fmt: skip
        plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql)))
        assert "items_prop_eo_cloud_cover_idx" in plan, plan


async def test_api_connections_run_without_jit_or_parallel_workers(
    repo: CatalogRepository,
) -> None:
    async with repo.engine.connect() as conn:
        assert await conn.scalar(text("SHOW jit")) == "off"
        assert await conn.scalar(text("SHOW max_parallel_workers_per_gather")) == "0"
    engine = create_engine(repo.engine.url.render_as_string(hide_password=False),
                           DatabaseSettings(parallel_workers=2))  # fmt: skip
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(text("SHOW max_parallel_workers_per_gather")) == "2"
    finally:
        await engine.dispose()


async def test_stale_counts_over_their_limit_are_left_out(
    repo: CatalogRepository, sync_engine: Engine
) -> None:
    from tests.server.test_number_matched import ITEMS, load_behind_the_api

    with sync_engine.begin() as conn:
        conn.execute(text("ALTER TABLE items SET (autovacuum_enabled = off)"))
    try:
        load_behind_the_api(sync_engine)  # the planner now expects about 3 * ITEMS rows
        limited = CatalogRepository(repo.engine, count_stale_limit=ITEMS - 1)
        assert (await limited.search(SearchParams(collections=["c1"], limit=1))).matched is None
        few = await limited.search(SearchParams(ids=["i1", "i2", "i3"], limit=10))
        assert few.matched == 3  # a complete first page counts itself
        counting = CatalogRepository(repo.engine, count_stale_limit=ITEMS)
        page = await counting.search(SearchParams(collections=["c1"], limit=1))
        assert page.matched == ITEMS
        await counting.refresh_statistics(0)  # ANALYZE: estimates are fine again
        assert (await limited.search(SearchParams(collections=["c1"], limit=1))).matched == ITEMS
    finally:
        with sync_engine.begin() as conn:
            conn.execute(text("ALTER TABLE items RESET (autovacuum_enabled)"))


async def test_ascending_interval_search_reads_only_from_the_interval(
    repo: CatalogRepository, sync_engine: Engine
) -> None:
    # 5,000 items a day apart before a one-year interval: the page query's index scan must
    # start at the interval (less the longest span, 2 days here), not at the first item.
    with sync_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO items (collection_id, id, datetime, end_datetime, properties, "
                "content) SELECT 'c1', 'i' || g, t, t + interval '2 days' * (g % 2), '{}', '{}' "
                "FROM generate_series(1, 6000) g, "
                "LATERAL (SELECT timestamptz '2000-01-01Z' + interval '1 day' * g AS t) x"
            )
        )
        conn.execute(text("ANALYZE items"))
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "ORDER BY items.datetime ASC" in statement:
            statements.append((statement, parameters))

    event.listen(repo.engine.sync_engine, "before_cursor_execute", capture)
    try:
        params = SearchParams(
            datetime="2013-09-10T00:00:00Z/2014-09-10T00:00:00Z",
            sortby=[SortBy("datetime")],
            limit=10,
        )
        page = await repo.search(params)
    finally:
        event.remove(repo.engine.sync_engine, "before_cursor_execute", capture)
    first = min(r["_k0"] for r in page.rows)
    assert first == datetime(2013, 9, 8, tzinfo=UTC)  # a 2-day span ending on the 10th
    (statement, parameters), *_ = statements
    with sync_engine.connect() as conn:
        raw = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
        plan = raw.scalar_one()[0]["Plan"]
    scans = list(_nodes(plan))
    read = sum(n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0) for n in scans)
    assert scans and read <= 20, plan  # 5,000 before the fix


def _nodes(plan: dict[str, Any]) -> Any:
    """The scan nodes on ``items`` in a JSON plan."""
    if plan.get("Relation Name") == "items":
        yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def test_concurrent_writers_never_lower_the_longest_span(repo: CatalogRepository) -> None:
    # Eight batches into one collection, each with its own longest span; a search that only
    # the longest item (4 years, ending 2024-06-01) matches must find it.
    def span_row(item_id: str, years: int) -> dict[str, Any]:
        end = datetime(2024, 6, 1, tzinfo=UTC)
        doc = item(item_id, when=None, start_datetime=(end - timedelta(days=365 * years))
                   .isoformat(), end_datetime=end.isoformat())  # fmt: skip
        return item_row(doc, "c1")

    batches = [[span_row(f"w{k}-{n}", 1 + (k * 3 + n) % 4) for n in range(5)] for k in range(8)]
    await asyncio.gather(*(repo.write_items("c1", b, upsert=False) for b in batches))
    longest = {r["id"] for b in batches for r in b if r["end_datetime"] - r["datetime"] >
               timedelta(days=365 * 3 + 1)}  # fmt: skip
    page = await repo.search(
        SearchParams(datetime="2024-05-31T00:00:00Z/..", sortby=[SortBy("datetime")], limit=100)
    )
    assert len(page.rows) == 40
    assert {r["id"] for r in page.rows[: len(longest)]} == longest
