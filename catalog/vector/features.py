"""Pages of features of a vector collection: GeoJSON made by PostgreSQL, keyset paging.

Each feature is serialized once, by PostgreSQL (``json_build_object``), and the page is joined
as text: the properties are typed columns, so there is nothing to convert in Python. Rows are
selected with ``query.where`` (as every reader of features), ordered by the requested sort keys
and then the feature id, and paged by keyset tokens on those keys (``catalog/stac/search.py``'s
tokens, so a token of another sort order is refused). ``numberMatched`` is exact when nothing
is filtered (the layer's count, kept by every write); a bbox alone is counted up to the cap in
the page's own statement (the spatial index bounds it); otherwise it is found as the STAC
items' is (``catalog.stac.counts.count_matches`` on the layer's table): exact when few, else
the planner's estimate from fresh statistics, as documented in docs/api.md.

A page is one statement on an autocommit connection (no BEGIN and ROLLBACK round trips),
joined to its layer's ``vector_layers`` row: the reader keeps layers in memory, and that row's
version (``xmin``) in the page's own snapshot tells whether the layer used is still current.
"""

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
import shapely
from sqlalchemy import (
    JSON,
    DateTime,
    Integer,
    LargeBinary,
    Select,
    Text,
    bindparam,
    cast,
    column,
    func,
    literal,
    literal_column,
    select,
    table,
    true,
)
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from catalog.db.engine import autocommit, connect
from catalog.db.reads import ReadPool
from catalog.errors import InvalidSortBy, NotFound
from catalog.geometry import bbox_shape
from catalog.stac.counts import CountPolicy, Freshness, count_matches
from catalog.stac.queryables import Kind
from catalog.stac.search import (
    SortBy,
    SortKey,
    decode_token,
    encode_token,
    keyset_filter,
    order_by,
    order_by_reversed,
)

from .crs import CRS84_CRS, Crs
from .query import FeatureQuery, bbox_clause, is_rectangle, where
from .query import field as query_field
from .repository import get_layer_version
from .schema import FID, GEOM, Layer, PropertyType

_SORTABLE = (Kind.NUMBER, Kind.TIMESTAMP, Kind.STRING, Kind.BOOLEAN)
_MAX_ARGS = 50  # json_build_object takes at most 100 arguments: 50 name/value pairs
DECIMALS = 9  # ST_AsGeoJSON's default: 0.1 mm in degrees, 1 nm in metres


class FeatureNotFound(NotFound):
    """No feature of that id in the collection."""

    code = "features.FeatureNotFound"


@dataclass(frozen=True)
class Selection:
    """What each feature of a response holds: its CRS, which properties, and the geometry?"""

    crs: Crs = CRS84_CRS
    properties: tuple[str, ...] | None = None  # None: every property, in the layer's order
    skip_geometry: bool = False


@dataclass(frozen=True)
class PageRequest:
    """A page of features: which, in what order, from where, and what each holds."""

    query: FeatureQuery = field(default_factory=FeatureQuery)
    sortby: Sequence[SortBy] = ()
    limit: int = 10
    offset: int = 0
    token: str | None = None
    selection: Selection = field(default_factory=Selection)


@dataclass(frozen=True)
class FeaturePage:
    """The features (GeoJSON text each), tokens of the next and previous pages, and counts."""

    features: list[str]
    next_token: str | None
    prev_token: str | None
    matched: int | None


def selected(layer: Layer, names: Sequence[str] | None) -> tuple[str, ...] | None:
    """``properties=`` checked against the layer (unknown names: 400 listing the allowed)."""
    if names is None:
        return None
    for name in names:
        query_field(layer, name)  # raises UnknownQueryable with the allowed names
    return tuple(dict.fromkeys(names))


def sort_keys(layer: Layer, sortby: Sequence[SortBy]) -> list[SortKey]:
    """Sort keys of ``sortby`` on the layer's properties, then the feature id."""
    keys: list[SortKey] = []
    for sort in sortby:
        found = query_field(layer, sort.field)
        kind = found.kind
        if kind not in _SORTABLE:
            raise InvalidSortBy(f"{sort.field!r} is not sortable (only plain values are)")
        if any(k.name == found.name for k in keys):
            continue
        nullable = found.name not in ("id", FID)
        expr, prop = found.expr(), layer.prop(found.name)
        # Keyset tokens carry JSON values: dates go as timestamps, booleans as 0/1 (SQL
        # compares neither a date with a string nor a boolean with ">").
        if prop is not None and prop.type is PropertyType.DATE:
            expr = cast(expr, DateTime(timezone=True))
        elif kind is Kind.BOOLEAN:
            expr, kind = cast(expr, Integer), Kind.NUMBER  # boolean -> integer: 0 or 1
        keys.append(SortKey(found.name, expr, sort.descending, nullable, kind))
    if not any(k.expr is layer.table.c[FID] for k in keys):
        last = keys[-1].descending if keys else False
        keys.append(SortKey("id", layer.table.c[FID], last, False, Kind.NUMBER))
    return keys


async def _seen_fresh(conn: Any) -> bool:
    """Statistics this process saw fresh a moment ago (``Freshness.known``), taken as fresh
    for the request: it counts on an autocommit connection, where no timeout savepoint fits."""
    return True


def _prepared(request: PageRequest) -> bool:
    """Whether a page is a usual one: the first, selected by a CRS84 bbox or nothing."""
    query = request.query
    return (
        request.token is None
        and request.offset == 0
        and query.datetime is None
        and query.filter is None
        and (query.bbox is None or query.bbox_srid == 4326)
    )


def _index_bounded(query: FeatureQuery) -> bool:
    """Whether the spatial index alone finds the matches of ``query`` (a bbox, nothing else)."""
    return query.bbox is not None and query.datetime is None and query.filter is None


def geometry_json(layer: Layer, crs: Crs) -> ColumnElement[Any]:
    """The geometry as GeoJSON in ``crs`` (reprojected and axis-swapped by PostGIS)."""
    geom: ColumnElement[Any] = layer.table.c[GEOM]
    if not crs.stored:
        geom = func.ST_Transform(geom, crs.srid)
    if crs.flip:
        geom = func.ST_FlipCoordinates(geom)
    return cast(func.ST_AsGeoJSON(geom, DECIMALS, 0), JSON)  # 0: no "crs" member


def _name(value: str) -> ColumnElement[Any]:
    return cast(literal(value), Text)  # bound: property names come from files


def properties_json(layer: Layer, names: Sequence[str] | None) -> ColumnElement[Any]:
    """The properties object (in the layer's order, or in ``names``' order)."""
    props = layer.properties if names is None else [layer.prop(n) for n in names]
    pairs = [(p.name, layer.table.c[p.column]) for p in props if p is not None]
    if len(pairs) <= _MAX_ARGS:
        return func.json_build_object(*(x for name, col in pairs for x in (_name(name), col)))
    # jsonb sorts keys (shortest first): only for layers of more than 50 properties
    chunks = [pairs[i : i + _MAX_ARGS] for i in range(0, len(pairs), _MAX_ARGS)]
    merged: ColumnElement[Any] | None = None
    for chunk in chunks:
        part = func.jsonb_build_object(*(x for name, col in chunk for x in (_name(name), col)))
        merged = part if merged is None else merged.op("||")(part)
    return cast(merged, JSON)


def feature_json(layer: Layer, selection: Selection) -> ColumnElement[Any]:
    """One GeoJSON Feature as text, made by PostgreSQL."""
    geometry = (
        literal_column("NULL::json")
        if selection.skip_geometry
        else geometry_json(layer, selection.crs)
    )
    return cast(
        func.json_build_object(
            _name("type"), _name("Feature"), _name("id"), layer.table.c[FID],
            _name("geometry"), geometry,
            _name("properties"), properties_json(layer, selection.properties),
        ),
        Text,
    )  # fmt: skip


class StaleLayer(Exception):
    """The layer a page was built from is no longer the collection's (another write since)."""


# The row of a layer, as a page statement reads it: its version and count in the page's
# snapshot (``xmin`` changes with every write of the row).
_LAYERS = table("vector_layers", column("collection_id"), column("feature_count"), column("xmin"))
_KEPT_LAYERS = 1024
_KEPT_STATEMENTS = 512
_GONE = ("42P01", "42703")  # undefined_table, undefined_column


class FeatureReader:
    """Reads features of vector collections for the API (``app.state.features``).

    ``layer`` answers from the layers this process has read, and ``page`` checks in its own
    statement that the layer it was given is still the collection's (its row version), so a
    page costs one statement, one round trip, with no transaction to open or close; a layer
    changed or removed since raises ``StaleLayer`` and the caller reads it anew.
    """

    def __init__(
        self, engine: AsyncEngine, counts: CountPolicy, reads: ReadPool | None = None
    ) -> None:
        self.engine = engine
        self.counts = counts
        # The usual page's one statement straight through psycopg (catalog/db/reads.py):
        # SQLAlchemy's connection and result machinery cost a tenth of such a request.
        self.reads = reads
        self._fresh: dict[str, Freshness] = {}  # by feature table
        self._layers: dict[str, tuple[Layer, str]] = {}  # by collection: layer, row version
        self._sql: dict[Hashable, tuple[str, dict[str, Any], list[SortKey]]] = {}

    async def layer(self, collection_id: str, fresh: bool = False) -> tuple[Layer, str] | None:
        """The layer of ``collection_id`` and its row version, as last read by this process
        (``fresh``: read now); None for a collection without one (never kept: it may get one)."""
        kept = None if fresh else self._layers.get(collection_id)
        if kept is not None:
            return kept
        async with autocommit(self.engine) as conn:
            found = await get_layer_version(conn, collection_id)
        if found is None:
            self._layers.pop(collection_id, None)
            return None
        if len(self._layers) >= _KEPT_LAYERS:
            self._layers.clear()
        self._layers[collection_id] = found
        return found

    def kept(self, collection_id: str) -> bool:
        """Whether ``layer`` answers for ``collection_id`` from memory (a vector collection
        this process has read)."""
        return collection_id in self._layers

    def forget(self, collection_id: str) -> None:
        """Read the layer of ``collection_id`` anew next time."""
        self._layers.pop(collection_id, None)

    async def page(
        self, layer: Layer, request: PageRequest, version: str | None = None
    ) -> FeaturePage:
        """One page of ``layer``'s features matching ``request``; with ``version`` (of
        ``layer``), ``StaleLayer`` unless the layer is still at that version. The usual page
        (a first page, no filter or datetime, a CRS84 bbox or none) runs SQL compiled once per
        layer version, selection, order and size: building it again took longer than the
        database's answer."""
        clauses: list[ColumnElement[Any]] | None = None
        params: dict[str, Any] = {"_c": layer.collection_id}
        query = request.query
        # A bbox alone is answered by the spatial index: counting its matches up to the cap
        # reads at most that many rows, so it goes into the page's statement.
        inline = _index_bounded(query)
        sql: str | None = None
        if _prepared(request):
            sql, keys = self._usual(layer, version, request, inline, params)
            backwards, selects = False, query.bbox is not None
        else:
            clauses = where(layer, query)
            statement, keys, backwards = self._build(layer, request, clauses, inline)
            selects = bool(clauses)
        first_page = request.token is None and request.offset == 0
        matched: int | None = None
        counted = False
        rows: list[Any]
        try:
            if sql is not None and self.reads is not None:
                rows = [_Row(row) for row in await self.reads.all(sql, params)]
                rows, matched, counted = self._matched(rows, version, layer, selects, first_page,
                                                       request.limit)  # fmt: skip
                if not counted:
                    matched, counted = await self._fresh_count(None, layer, query, None, rows)
            else:
                async with autocommit(self.engine) as conn:
                    if sql is not None:
                        rows = list((await conn.exec_driver_sql(sql, params)).all())
                    else:
                        rows = list((await conn.execute(statement, params)).all())
                    rows, matched, counted = self._matched(rows, version, layer, selects,
                                                           first_page, request.limit)  # fmt: skip
                    if not counted:
                        matched, counted = await self._fresh_count(conn, layer, query, clauses,
                                                                   rows)  # fmt: skip
        except (ProgrammingError, psycopg.ProgrammingError) as exc:
            # A table or column of an older layer, gone since (collection deleted, replaced)
            state = getattr(getattr(exc, "orig", exc), "sqlstate", None)
            if version is not None and state in _GONE:
                raise StaleLayer(layer.collection_id) from exc
            raise
        if not counted:
            async with connect(self.engine) as conn:
                found = where(layer, query) if clauses is None else clauses
                matched = await self._count(conn, layer, found, len(rows))
        more = len(rows) > request.limit
        return _page_of(rows[: request.limit], keys, more, backwards, first_page, matched)

    def _matched(
        self, rows: list[Any], version: str | None, layer: Layer, selects: bool,
        first_page: bool, limit: int,
    ) -> tuple[list[Any], int | None, bool]:  # fmt: skip
        """The page's features, and numberMatched when its statement tells (counted: False
        when a count must follow); StaleLayer when the layer is not ``version`` any more."""
        if not rows or (version is not None and rows[0]._v != version):
            raise StaleLayer(layer.collection_id)
        count, capped = rows[0]._n, rows[0]._count
        rows = [row for row in rows if row._f is not None]
        if self.counts.limit <= 0:
            return rows, None, True  # TERRACAT_CATALOG_COUNT_LIMIT=0: never counted, as items
        if not selects:
            return rows, int(count), True  # the layer's count (same snapshot)
        if first_page and len(rows) <= limit:
            return rows, len(rows), True  # a first page holding every match
        if capped is not None and capped <= self.counts.limit:
            return rows, int(capped), True
        return rows, None, False

    async def _fresh_count(
        self, conn: AsyncConnection | None, layer: Layer, query: Any,
        clauses: list[ColumnElement[Any]] | None, rows: list[Any],
    ) -> tuple[int | None, bool]:  # fmt: skip
        """(matches, counted) on the page's connection (``conn``; None: the page came from
        the read pool, an autocommit connection of the engine) when the statistics are fresh:
        no count under a timeout (a savepoint) can be needed, so the plan and any count run
        there, without a transaction; (None, False) else, before any connection is taken."""
        if not self._freshness(layer).known():
            return None, False
        found = where(layer, query) if clauses is None else clauses
        if conn is not None:
            return await self._count(conn, layer, found, len(rows), _seen_fresh), True
        async with autocommit(self.engine) as own:
            return await self._count(own, layer, found, len(rows), _seen_fresh), True

    def _usual(
        self, layer: Layer, version: str | None, request: PageRequest, inline: bool,
        params: dict[str, Any],
    ) -> tuple[str, list[SortKey]]:  # fmt: skip
        """The SQL and sort keys of a usual page (``_prepared``); its values go in ``params``."""
        query = request.query
        box = bbox_shape(query.bbox) if query.bbox is not None else None
        sql, defaults, keys = self._compiled(layer, version, request, inline, box)
        params.update(defaults, _c=layer.collection_id)
        if box is not None:
            params["_box"] = shapely.to_wkb(box)
        return sql, keys

    def _compiled(
        self, layer: Layer, version: str | None, request: PageRequest, inline: bool,
        box: shapely.Geometry | None,
    ) -> tuple[str, dict[str, Any], list[SortKey]]:  # fmt: skip
        """The SQL of a usual page (``_prepared``), its constant parameters and sort keys
        (``box``: the bbox's shape, bound as ``_box``)."""
        # A version names the layer's row as it was read; without one, the layer itself.
        known = (layer.collection_id, version) if version is not None else layer
        kind = None if box is None else is_rectangle(box)
        shape = (known, request.selection, tuple(request.sortby), request.limit,
                 kind, inline, self.counts.limit)  # fmt: skip
        found = self._sql.get(shape)
        if found is None:
            bound = func.ST_GeomFromWKB(bindparam("_box", type_=LargeBinary), 4326)
            clauses = [] if kind is None else [bbox_clause(layer, bound, kind)]
            statement, keys, _ = self._build(layer, request, clauses, inline)
            compiled = statement.compile(dialect=self.engine.dialect)
            if len(self._sql) >= _KEPT_STATEMENTS:
                self._sql.clear()
            found = self._sql[shape] = (str(compiled), dict(compiled.params), keys)
        return found

    def _build(
        self,
        layer: Layer,
        request: PageRequest,
        clauses: list[ColumnElement[Any]],
        inline: bool,
    ) -> tuple[Select[Any], list[SortKey], bool]:
        """The statement of a page, its sort keys, and whether it walks them backwards."""
        keys = sort_keys(layer, request.sortby)
        backwards = False
        page_clauses = list(clauses)
        if request.token:
            values, backwards = decode_token(request.token, keys)
            page_clauses.append(keyset_filter(keys, values, backwards))
        order = order_by_reversed(keys) if backwards else order_by(keys)
        columns = [feature_json(layer, request.selection).label("_f")]
        columns += [k.expr.label(f"_k{i}") for i, k in enumerate(keys)]
        query = (
            select(*columns)
            .select_from(layer.table)
            .where(*page_clauses)
            .order_by(*order)
            .limit(request.limit + 1)
        )
        if request.offset and not request.token:
            query = query.offset(request.offset)
        counted = clauses if inline and self.counts.limit > 0 else None
        return self._statement(layer, query, keys, backwards, counted), keys, backwards

    def _statement(
        self,
        layer: Layer,
        query: Select[Any],
        keys: Sequence[SortKey],
        backwards: bool,
        counted: Sequence[ColumnElement[Any]] | None,
    ) -> Select[Any]:
        """The page joined to its layer's row: the row's version and feature count on every
        row (and alone, with null features, when the page is empty), and the matches counted
        up to the cap when ``counted`` are the clauses to count."""
        page = query.lateral("p")
        capped: ColumnElement[Any] = literal_column("NULL::bigint")
        if counted is not None:
            matching: Select[Any] = (
                select(literal_column("1")).select_from(layer.table).where(*counted)
            )
            inner = matching.limit(self.counts.limit + 1).subquery("m")
            capped = select(func.count()).select_from(inner).scalar_subquery()
        # Rows come out of the lateral page in its order; the outer ORDER BY (over a page's
        # rows) makes it a promise, not a plan's habit.
        outer = [replace(k, expr=page.c[f"_k{i}"]) for i, k in enumerate(keys)]
        return (
            select(
                cast(_LAYERS.c.xmin, Text).label("_v"),
                _LAYERS.c.feature_count.label("_n"),
                capped.label("_count"),
                *page.c,
            )
            .select_from(_LAYERS.outerjoin(page, true()))
            .where(_LAYERS.c.collection_id == bindparam("_c"))
            .order_by(*(order_by_reversed(outer) if backwards else order_by(outer)))
        )

    async def _count(
        self,
        conn: Any,
        layer: Layer,
        clauses: list[ColumnElement[Any]],
        seen: int,
        fresh: Callable[[Any], Awaitable[bool]] | None = None,
    ) -> int | None:
        """As the STAC items' numberMatched (catalog/stac/counts.py): planned first, counted
        exactly when few and cheap, else the planner's estimate from fresh statistics of the
        layer's table, else counted up to a cap within a time limit. Counting every match
        first (with its timeout's savepoint) cost six round trips and most of a page's time."""

        return await count_matches(
            conn, clauses, seen, self.counts, fresh=fresh or self._freshness(layer),
            source=layer.table, estimate_past_stale=True,
        )  # fmt: skip

    def _freshness(self, layer: Layer) -> Freshness:
        fresh = self._fresh.get(layer.table_name)
        if fresh is None:
            if len(self._fresh) > 1024:
                self._fresh.clear()
            fresh = self._fresh[layer.table_name] = Freshness(table=layer.qualified_name)
        return fresh

    async def feature(self, layer: Layer, fid: int, selection: Selection) -> str:
        """One feature as GeoJSON text; FeatureNotFound when the id is not there."""
        query = (
            select(feature_json(layer, selection))
            .select_from(layer.table)
            .where(layer.table.c[FID] == fid)
        )
        async with connect(self.engine) as conn:
            found = await conn.scalar(query)
        if found is None:
            raise FeatureNotFound(f"collection {layer.collection_id!r} has no feature {fid}")
        return str(found)


class _Row:
    """A row of ``ReadPool.all`` read as SQLAlchemy's rows are (``row._f``, ``row._mapping``):
    the page's columns are named ``_f``, ``_k0``..., which named tuples refuse."""

    __slots__ = ("_mapping",)

    def __init__(self, mapping: dict[str, Any]) -> None:
        self._mapping = mapping

    def __getattr__(self, name: str) -> Any:
        try:
            return self._mapping[name]
        except KeyError:
            raise AttributeError(name) from None


def _page_of(
    rows: list[Any], keys: list[SortKey], more: bool, backwards: bool, first_page: bool,
    matched: int | None,
) -> FeaturePage:  # fmt: skip
    """The page of ``rows`` (read in the page's order, or backwards), with its paging tokens."""
    if backwards:
        rows.reverse()
    has_next = more if not backwards else True
    has_prev = bool(rows) and (more if backwards else not first_page)

    def token(row: Any, back: bool) -> str:
        return encode_token(keys, [row[f"_k{i}"] for i in range(len(keys))], back)

    return FeaturePage(
        features=[row._f for row in rows],
        next_token=token(rows[-1]._mapping, False) if rows and has_next else None,
        prev_token=token(rows[0]._mapping, True) if has_prev else None,
        matched=matched,
    )


__all__ = [
    "FeatureNotFound",
    "FeaturePage",
    "FeatureReader",
    "PageRequest",
    "Selection",
    "StaleLayer",
    "feature_json",
    "selected",
    "sort_keys",
]
