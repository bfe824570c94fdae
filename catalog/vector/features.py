"""Pages of features of a vector collection: GeoJSON made by PostgreSQL, keyset paging.

Each feature is serialized once, by PostgreSQL (``json_build_object``), and the page is joined
as text: the properties are typed columns, so there is nothing to convert in Python. Rows are
selected with ``query.where`` (as every reader of features), ordered by the requested sort keys
and then the feature id, and paged by keyset tokens on those keys (``catalog/stac/search.py``'s
tokens, so a token of another sort order is refused). ``numberMatched`` is exact when nothing
is filtered (the layer's count, kept by every write); otherwise it is found as the STAC items'
is (``catalog.stac.counts.count_matches`` on the layer's table): exact when few, else the
planner's estimate from fresh statistics, as documented in docs/api.md.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Integer,
    Text,
    cast,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from catalog.db.engine import connect
from catalog.errors import InvalidSortBy, NotFound
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
from .query import FeatureQuery, where
from .query import field as query_field
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


class FeatureReader:
    """Reads features of vector collections for the API (``app.state.features``)."""

    def __init__(self, engine: AsyncEngine, counts: CountPolicy) -> None:
        self.engine = engine
        self.counts = counts
        self._fresh: dict[str, Freshness] = {}  # by feature table

    async def page(self, layer: Layer, request: PageRequest) -> FeaturePage:
        """One page of ``layer``'s features matching ``request``."""
        clauses = where(layer, request.query)
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
        async with connect(self.engine) as conn:
            rows = list((await conn.execute(query)).all())
            more = len(rows) > request.limit
            first_page = request.token is None and request.offset == 0
            matched: int | None
            if self.counts.limit <= 0:
                matched = None  # TERRACAT_CATALOG_COUNT_LIMIT=0: never counted, as for items
            elif not clauses:
                matched = layer.feature_count
            elif first_page and not more:
                matched = len(rows)  # a first page holding every match is its own count
            else:
                matched = await self._count(conn, layer, clauses, len(rows))
        rows = rows[: request.limit]
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

    async def _count(
        self, conn: Any, layer: Layer, clauses: list[ColumnElement[Any]], seen: int
    ) -> int | None:
        """As the STAC items' numberMatched (catalog/stac/counts.py): planned first, counted
        exactly when few and cheap, else the planner's estimate from fresh statistics of the
        layer's table, else counted up to a cap within a time limit. Counting every match
        first (with its timeout's savepoint) cost six round trips and most of a page's time."""

        fresh = self._fresh.get(layer.table_name)
        if fresh is None:
            if len(self._fresh) > 1024:
                self._fresh.clear()
            fresh = self._fresh[layer.table_name] = Freshness(table=layer.qualified_name)
        return await count_matches(
            conn, clauses, seen, self.counts, fresh=fresh, source=layer.table,
            estimate_past_stale=True,
        )  # fmt: skip

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


__all__ = [
    "FeatureNotFound",
    "FeaturePage",
    "FeatureReader",
    "PageRequest",
    "Selection",
    "feature_json",
    "selected",
    "sort_keys",
]
