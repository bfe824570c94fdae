"""All SQL of the catalogue. Driver errors are translated into domain errors here, once."""

import asyncio
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import (
    Select,
    Text,
    any_,
    bindparam,
    delete,
    func,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from catalog.accounts.rights import Readable
from catalog.db.engine import connect
from catalog.db.models import Collection, Item, Queryable
from catalog.errors import Conflict, NotFound, UnknownQueryable
from catalog.geometry import as_sql
from catalog.stac.counts import (
    CountPolicy,
    DeferredAnalyze,
    Freshness,
    analyze_if_stale,
    count_matches,
)
from catalog.stac.item_copy import copy_insert, copy_values
from catalog.stac.queryables import Kind, json_kind, property_kinds
from catalog.stac.search import (
    SearchParams,
    SortKey,
    datetime_bound,
    datetime_hint,
    decode_token,
    keyset_filter,
    order_by,
    order_by_reversed,
    sort_keys,
    visible_collections,
    where_clauses,
)
from catalog.stac.serializers import summaries_kinds
from catalog.storage.base import stored_key

Registry = dict[str, frozenset[Kind]]


@dataclass
class Page:
    """One page of search results with the tokens to its neighbours."""

    rows: list[dict[str, Any]]
    next_values: list[Any] | None
    prev_values: list[Any] | None
    keys: list[SortKey]
    matched: int | None


_ITEM_COLUMNS = (Item.collection_id, Item.id, Item.properties, Item.content)


class CatalogRepository:
    """Reads and writes collections and items on an async SQLAlchemy engine."""

    def __init__(
        self,
        engine: AsyncEngine,
        count_limit: int = 1_000,
        count_max_cost: float = 5_000.0,
        count_stale_limit: int = 100_000,
        count_stale_timeout_ms: int = 1_000,
    ) -> None:
        self.engine = engine
        self.counts = CountPolicy(
            count_limit, count_max_cost, count_stale_limit, count_stale_timeout_ms
        )
        self._registry_cache: dict[str, tuple[float, Registry]] = {}
        self._bulk_analyze = DeferredAnalyze(lambda: self._connect(write=True))
        self.freshness = Freshness()
        self._known_kinds: set[tuple[str, str, str]] = set()

    def _connect(self, write: bool = False) -> AbstractAsyncContextManager[AsyncConnection]:
        return connect(self.engine, write)

    # -- collections ---------------------------------------------------------------------
    async def get_collection(self, collection_id: str) -> dict[str, Any]:
        """One collection row (id, content, declared_extent), or NotFound."""
        async with self._connect() as conn:
            row = (
                await conn.execute(
                    select(Collection.id, Collection.content, Collection.declared_extent).where(
                        Collection.id == collection_id
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f"collection {collection_id!r} does not exist")
        return dict(row._mapping)

    async def collection_exists(self, conn: AsyncConnection, collection_id: str) -> None:
        """Raise NotFound unless the collection exists."""
        found = await conn.scalar(select(Collection.id).where(Collection.id == collection_id))
        if found is None:
            raise NotFound(f"collection {collection_id!r} does not exist")

    async def list_collections(
        self,
        clauses: Sequence[ColumnElement[bool]],
        order: Sequence[ColumnElement[Any]],
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of collections matching ``clauses``, and how many match in all."""
        query = select(Collection.id, Collection.content).where(*clauses)
        async with self._connect() as conn:
            rows = (
                await conn.execute(
                    query.order_by(*order, Collection.id).limit(limit).offset(offset)
                )
            ).all()
            matched = await conn.scalar(select(func.count()).select_from(query.subquery()))
        return [dict(r._mapping) for r in rows], int(matched or 0)

    def _collection_values(self, row: Mapping[str, Any]) -> dict[str, Any]:
        spatial = row["spatial"]
        shape = as_sql(spatial) if spatial is not None else None
        return {
            "content": row["content"],
            "search_text": row["search_text"],
            "declared_extent": row["content"]["extent"],
            "declared_spatial": shape,
            "declared_start": row["start_datetime"],
            "declared_end": row["end_datetime"],
            # Served as given until terracat_apply_extent puts the items' extent in its place.
            "spatial": shape,
            "start_datetime": row["start_datetime"],
            "end_datetime": row["end_datetime"],
        }

    async def create_collection(
        self, row: Mapping[str, Any], owner_id: UUID | None = None, visibility: str = "public"
    ) -> None:
        """Insert a collection owned by ``owner_id`` (None: by nobody, admins' only);
        Conflict if the id exists, whoever may read it."""
        async with self._connect(write=True) as conn:
            result = await conn.execute(
                insert(Collection)
                .values(
                    id=row["id"],
                    owner_id=owner_id,
                    visibility=visibility,
                    **self._collection_values(row),
                )
                .on_conflict_do_nothing(index_elements=[Collection.id])
                .returning(Collection.id)
            )
            if result.first() is None:
                raise Conflict(f"collection {row['id']!r} already exists")
            await self._register_summaries(conn, row)

    async def update_collection(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Replace a collection and return it as stored (its extent the items' if it has
        any); NotFound if it does not exist."""
        async with self._connect(write=True) as conn:
            result = await conn.execute(
                update(Collection)
                .where(Collection.id == row["id"])
                .values(updated=func.now(), **self._collection_values(row))
                .returning(Collection.id)
            )
            if result.first() is None:
                raise NotFound(f"collection {row['id']!r} does not exist")
            await conn.execute(func.terracat_apply_extent(row["id"]).select())
            await self._register_summaries(conn, row)
            stored = (
                await conn.execute(
                    select(Collection.id, Collection.content).where(Collection.id == row["id"])
                )
            ).one()
        return dict(stored._mapping)

    async def delete_collection(self, collection_id: str) -> bool:
        """Delete a collection and its items; whether it existed."""
        async with self._connect(write=True) as conn:
            result = await conn.execute(
                delete(Collection).where(Collection.id == collection_id).returning(Collection.id)
            )
            existed = result.first() is not None
        self._forget(collection_id)
        if existed:
            await self.refresh_statistics(0)
        return existed

    async def _register_summaries(self, conn: AsyncConnection, row: Mapping[str, Any]) -> None:
        pairs = {
            (name, kind)
            for name, value in summaries_kinds(row["content"].get("summaries"))
            if (kind := json_kind(value)) is not None
        }
        await self._register(conn, row["id"], pairs)
        self._forget(row["id"])

    # -- queryables registry ---------------------------------------------------------------
    async def _register(
        self, conn: AsyncConnection, collection_id: str, pairs: set[tuple[str, Kind]]
    ) -> None:
        new = sorted(
            (collection_id, name, kind.value)
            for name, kind in pairs
            if (collection_id, name, kind.value) not in self._known_kinds
        )
        if not new:
            return
        await conn.execute(
            insert(Queryable)
            .values([{"collection_id": c, "name": n, "kind": k} for c, n, k in new])
            .on_conflict_do_nothing()
        )
        self._known_kinds.update(new)
        self._forget(collection_id)

    def _forget(self, collection_id: str) -> None:
        self._registry_cache.clear()
        self._known_kinds = {k for k in self._known_kinds if k[0] != collection_id}

    async def registry(
        self, collections: Sequence[str] | None = None, fresh: bool = False, ttl: float = 10.0
    ) -> Registry:
        """Property name -> kinds over the given collections (all when None)."""
        key = ",".join(sorted(collections)) if collections else "*"
        cached = self._registry_cache.get(key)
        if cached and not fresh and time.monotonic() - cached[0] < ttl:
            return cached[1]
        query = select(Queryable.name, Queryable.kind)
        if collections:
            query = query.where(Queryable.collection_id == any_(_text_array(collections)))
        async with self._connect() as conn:
            rows = (await conn.execute(query.distinct())).all()
        registry: dict[str, set[Kind]] = {}
        for name, kind in rows:
            registry.setdefault(name, set()).add(Kind(kind))
        frozen = {name: frozenset(kinds) for name, kinds in registry.items()}
        self._registry_cache[key] = (time.monotonic(), frozen)
        return frozen

    async def _registry_of(self, collections: list[str] | None, fresh: bool = False) -> Registry:
        """``registry`` of ``collections``, where an empty list has no properties at all."""
        if collections == []:
            return {}
        return await self.registry(collections, fresh=fresh)

    async def visible_registry(self, readable: Readable, fresh: bool = False) -> Registry:
        """The properties of the collections ``readable`` names (of every one when None)."""
        return await self._registry_of(readable.narrow(None), fresh)

    # -- items -------------------------------------------------------------------------------
    async def get_item(self, collection_id: str, item_id: str) -> dict[str, Any]:
        """One item row, or NotFound (naming what is missing)."""
        async with self._connect() as conn:
            row = (
                await conn.execute(
                    select(*_ITEM_COLUMNS).where(
                        Item.collection_id == collection_id, Item.id == item_id
                    )
                )
            ).first()
            if row is None:
                await self.collection_exists(conn, collection_id)
                raise NotFound(f"item {item_id!r} does not exist in collection {collection_id!r}")
        return dict(row._mapping)

    async def stored_assets(self, collection_id: str, ids: Sequence[str]) -> dict[str, Any]:
        """The ``storage:`` hrefs of these items' assets, by item id and asset name."""
        query = select(Item.id, Item.content["assets"].label("assets")).where(
            Item.collection_id == collection_id, Item.id == any_(_text_array(ids))
        )
        async with self._connect() as conn:
            rows = (await conn.execute(query)).all()
        return {
            row.id: {name: asset["href"] for name, asset in row.assets.items()
                     if isinstance(asset, dict) and stored_key(asset.get("href"))}
            for row in rows if isinstance(row.assets, dict)
        }  # fmt: skip

    async def item_exists(self, collection_id: str, item_id: str) -> bool:
        """Whether the item is in the catalogue."""
        async with self._connect() as conn:
            found = await conn.scalar(
                select(Item.id).where(Item.collection_id == collection_id, Item.id == item_id)
            )
        return found is not None

    async def write_items(
        self, collection_id: str, rows: Sequence[Mapping[str, Any]], upsert: bool
    ) -> int:
        """Insert (or upsert) checked item rows in one transaction; Conflict on existing ids."""
        written, _ = await self.store_items(collection_id, rows, upsert, atomic=True)
        return written

    async def store_items(
        self,
        collection_id: str,
        rows: Sequence[Mapping[str, Any]],
        upsert: bool,
        atomic: bool,
        analyze_later: bool = False,
    ) -> tuple[int, list[str]]:
        """Insert (or upsert) checked item rows in one transaction: how many were written, and
        the ids that already existed (insert only). ``atomic``: Conflict, and nothing written,
        if any id exists; otherwise those are left as they are and the others written.

        Rows are sorted by id so that concurrent batches into one collection lock in the same
        order and cannot deadlock. ``analyze_later``: a bulk load, whose statistics are
        refreshed once its writes pause (``DeferredAnalyze``).
        """
        if not rows:
            return 0, []
        by_id = {r["id"]: r for r in rows}
        if len(by_id) != len(rows):
            raise Conflict("the same item id appears more than once in the request")
        ordered = sorted(rows, key=lambda r: r["id"])
        pairs = property_kinds(r["properties"] for r in rows)
        async with self._connect(write=True) as conn:
            await self.collection_exists(conn, collection_id)
        if pairs:
            # Own short transaction: a queryable recorded for a batch that later fails is
            # harmless, and keeping it apart keeps the item insert's lock order simple.
            async with self._connect(write=True) as conn:
                await self._register(conn, collection_id, pairs)
        values = copy_values(ordered)
        async with self._connect(write=True) as conn:
            ids = await copy_insert(conn, collection_id, values, upsert)
            existing = sorted(set(by_id) - ids)
            if existing and atomic:
                await conn.rollback()
                raise Conflict(
                    f"{len(existing)} item(s) already exist in {collection_id!r}: "
                    + ", ".join(existing[:20]),
                    ids=existing,
                )
        if analyze_later:
            self.freshness.forget()
            self._bulk_analyze.schedule(len(ids))
        else:
            await self.refresh_statistics(len(ids))
        return len(ids), existing

    async def refresh_statistics(self, written: int) -> None:
        """ANALYZE ``items`` if ``written`` more changed rows leave its statistics stale, so
        numberMatched can be estimated again (catalog.stac.counts). Run after a write commits,
        in a transaction of its own: a stale table is analysed once per tenth of it changed.
        """
        self.freshness.forget()
        async with self._connect(write=True) as conn:
            await analyze_if_stale(conn, written)

    async def insert_item(
        self, conn: AsyncConnection, collection_id: str, row: Mapping[str, Any]
    ) -> None:
        """Insert one checked item row inside the caller's transaction; Conflict if it exists.

        The ingest job commits its item here together with its own success, so an item and
        the job that made it appear at once or not at all. Queryables are written in the same
        transaction, bypassing the in-process cache, since the caller may still roll back.
        """
        await self.collection_exists(conn, collection_id)
        pairs = property_kinds([row["properties"]])
        if pairs:
            await conn.execute(
                insert(Queryable)
                .values(
                    [{"collection_id": collection_id, "name": n, "kind": k.value} for n, k in pairs]
                )
                .on_conflict_do_nothing()
            )
            self._registry_cache.clear()
        payload = _records([row])
        written = await conn.execute(
            _bulk_insert(False), {"collection_id": collection_id, "rows": payload}
        )
        if written.first() is None:
            raise Conflict(
                f"item {row['id']!r} already exists in {collection_id!r}", ids=[row["id"]]
            )

    async def replace_item(self, collection_id: str, row: Mapping[str, Any]) -> None:
        """Replace an existing item; NotFound if it does not exist."""
        pairs = property_kinds([row["properties"]])
        async with self._connect(write=True) as conn:
            await self._register(conn, collection_id, pairs)
            result = await conn.execute(
                update(Item)
                .where(Item.collection_id == collection_id, Item.id == row["id"])
                .values(
                    geometry=_geometry_sql(row["geometry"]),
                    datetime=row["datetime"],
                    end_datetime=row["end_datetime"],
                    properties=row["properties"],
                    content=row["content"],
                    updated=func.now(),
                )
                .returning(Item.id)
            )
            if result.first() is None:
                await self.collection_exists(conn, collection_id)
                raise NotFound(f"item {row['id']!r} does not exist in {collection_id!r}")
        await self.refresh_statistics(1)

    async def delete_item(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        """Delete one item; the assets it had (None: it did not exist). NotFound if the
        collection does not exist."""
        async with self._connect(write=True) as conn:
            result = await conn.execute(
                delete(Item)
                .where(Item.collection_id == collection_id, Item.id == item_id)
                .returning(Item.content["assets"])
            )
            deleted = result.first()
            if deleted is None:
                await self.collection_exists(conn, collection_id)
                return None
        await self.refresh_statistics(1)
        assets = deleted[0]
        return dict(assets) if isinstance(assets, dict) else {}

    # -- search ------------------------------------------------------------------------------
    async def search(self, params: SearchParams) -> Page:
        """One page of items for ``params`` with keyset paging."""
        # Only the properties of collections the search reaches: a name only a private
        # collection has is unknown to those who may not read it.
        visible = visible_collections(params)
        registry = await self._registry_of(visible)
        try:
            clauses = await asyncio.to_thread(where_clauses, params, registry)
            keys = sort_keys(params.sortby, registry)
        except UnknownQueryable:
            # The registry may be a few seconds stale: look again before refusing the name.
            registry = await self._registry_of(visible, fresh=True)
            clauses = await asyncio.to_thread(where_clauses, params, registry)
            keys = sort_keys(params.sortby, registry)
        return await self._page(params, clauses, keys)

    async def _page(
        self, params: SearchParams, clauses: list[ColumnElement[bool]], keys: list[SortKey]
    ) -> Page:
        backwards = False
        page_clauses = list(clauses)
        if params.token:
            values, backwards = decode_token(params.token, keys)
            page_clauses.append(keyset_filter(keys, values, backwards))
        planned: list[ColumnElement[bool]] | None = None
        if (bound := datetime_bound(params.datetime, visible_collections(params))) is not None:
            hint = datetime_hint(params.datetime)
            planned = [*clauses, hint] if hint is not None else None
            clauses = [*clauses, bound]
            page_clauses.append(bound)
        async with self._connect() as conn:
            query = _page_query(keys, page_clauses, backwards, params.limit + 1, params.offset)
            rows = [dict(r._mapping) for r in (await conn.execute(query)).all()]
            more = len(rows) > params.limit
            matched: int | None = None
            if self.counts.limit > 0:
                # A first page that holds every match is its own exact count.
                complete = params.token is None and params.offset == 0 and not more
                matched = (
                    len(rows)
                    if complete
                    else await count_matches(
                        conn, clauses, len(rows), self.counts, planned, self.freshness
                    )
                )
        rows = rows[: params.limit]
        if backwards:
            rows.reverse()

        def key_values(row: Mapping[str, Any]) -> list[Any]:
            return [row[f"_k{i}"] for i in range(len(keys))]

        has_next = more if not backwards else True
        has_prev = (more if backwards else params.token is not None or params.offset > 0) and bool(
            rows
        )
        return Page(
            rows=rows,
            next_values=key_values(rows[-1]) if rows and has_next else None,
            prev_values=key_values(rows[0]) if has_prev else None,
            keys=keys,
            matched=matched,
        )


def _page_query(
    keys: list[SortKey],
    clauses: list[ColumnElement[bool]],
    backwards: bool,
    size: int,
    offset: int = 0,
) -> Select[Any]:
    """The rows of one page, in page order, with the sort values as ``_k0``, ``_k1``...; the
    first ``offset`` rows in that order are skipped."""
    order = order_by_reversed(keys) if backwards else order_by(keys)
    key_columns = [k.expr.label(f"_k{i}") for i, k in enumerate(keys)]
    first = keys[0]
    if not first.nullable:
        page = select(*_ITEM_COLUMNS, *key_columns).where(*clauses).order_by(*order)
        return (page.offset(offset) if offset else page).limit(size)
    # A property first: missing values sort last both ways, but its index (ascending, NULLS
    # LAST) walked backwards gives them first, so PostgreSQL would sort every match (130 ms
    # for a descending sort over 100k items). Read the items that have a value, in index
    # order, and those that do not, then merge the two short lists.
    descending = first.descending != backwards
    valued_order = [first.expr.desc() if descending else first.expr.asc(), *order[1:]]
    valued = (
        select(*_ITEM_COLUMNS, *key_columns)
        .where(*clauses, first.expr.is_not(None))
        .order_by(*valued_order)
        .limit(offset + size)
    )
    missing = (
        select(*_ITEM_COLUMNS, *key_columns)
        .where(*clauses, first.expr.is_(None))
        .order_by(*order[1:])
        .limit(offset + size)
    )
    merged = union_all(valued, missing).subquery()
    outer = [replace(k, expr=merged.c[f"_k{i}"]) for i, k in enumerate(keys)]
    page = select(merged).order_by(*(order_by_reversed(outer) if backwards else order_by(outer)))
    return (page.offset(offset) if offset else page).limit(size)


def _text_array(values: Sequence[str]) -> Any:
    # One array parameter: psycopg parses a statement's text per call, 10,000 placeholders too.
    return bindparam(None, list(values), type_=ARRAY(Text()))


def _records(rows: Sequence[Mapping[str, Any]]) -> str:
    """Item rows as the one JSON parameter of ``_bulk_insert``."""
    return orjson.dumps(
        [
            {
                "id": r["id"],
                "geometry": r["geometry"],
                "datetime": r["datetime"].isoformat(),
                "end_datetime": r["end_datetime"].isoformat(),
                "properties": r["properties"],
                "content": r["content"],
            }
            for r in rows
        ]
    ).decode()


def _geometry_sql(geometry: Any) -> Any:
    if geometry is None:
        return None
    return func.ST_SetSRID(func.ST_GeomFromGeoJSON(orjson.dumps(geometry).decode()), 4326)


_RECORD = (
    "r(id text, geometry jsonb, datetime timestamptz, end_datetime timestamptz, "
    "properties jsonb, content jsonb)"
)


def _bulk_insert(upsert: bool) -> Any:
    conflict = (
        "DO UPDATE SET geometry = EXCLUDED.geometry, datetime = EXCLUDED.datetime, "
        "end_datetime = EXCLUDED.end_datetime, properties = EXCLUDED.properties, "
        "content = EXCLUDED.content, updated = now()"
        if upsert
        else "DO NOTHING"
    )
    return text(
        "INSERT INTO items (collection_id, id, geometry, datetime, end_datetime, properties, "
        "content) "
        "SELECT :collection_id, r.id, "
        "CASE WHEN jsonb_typeof(r.geometry) = 'object' "
        "THEN ST_SetSRID(ST_GeomFromGeoJSON(r.geometry), 4326) END, "
        "r.datetime, r.end_datetime, r.properties, r.content "
        f"FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS {_RECORD} ORDER BY r.id "
        f"ON CONFLICT (collection_id, id) {conflict} RETURNING id"
    )
