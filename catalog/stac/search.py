"""Item search: one filter builder per search parameter, sort keys, and keyset paging tokens."""

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    DateTime,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    false,
    func,
    literal_column,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement

from catalog.accounts.rights import Readable
from catalog.db.models import Collection, Item
from catalog.errors import InvalidLimit, InvalidSortBy, InvalidToken, UnknownQueryable
from catalog.geometry import as_sql, bbox_shape, geojson_shape
from catalog.settings import LimitSettings
from catalog.stac import cql2
from catalog.stac.bounds import check_filter
from catalog.stac.queryables import Kind, resolve
from catalog.stac.queryables import UnknownQueryable as _Unknown
from catalog.timeparse import parse_interval

Registry = Mapping[str, frozenset[Kind]]


@dataclass(frozen=True)
class SortBy:
    """One requested sort field."""

    field: str
    descending: bool = False


@dataclass
class SearchParams:
    """A normalized item search, whatever HTTP form it came in."""

    collections: list[str] | None = None
    ids: list[str] | None = None
    bbox: Sequence[float] | None = None
    intersects: Any = None
    datetime: str | None = None
    filter: Any = None
    filter_lang: str | None = None
    query: dict[str, Any] | None = None
    sortby: list[SortBy] = field(default_factory=list)
    limit: int = 10
    token: str | None = None
    offset: int = 0  # items skipped before the page (OGC API Features clients page so)
    # Bounds of the filter and query, checked as they are parsed (catalog/stac/bounds.py).
    limits: LimitSettings | None = None
    # The caller's readable collections (None: no filter, the worker's and admins' searches).
    readable: Readable | None = None


def visible_collections(params: SearchParams) -> list[str] | None:
    """The collections a search reaches: those it asks for (every one when None or empty)
    that the caller reads. An empty list reaches none: asking only for collections the caller
    may not read finds what asking for missing ones finds, nothing."""
    asked = params.collections or None
    if params.readable is None:
        return asked
    return params.readable.narrow(asked)


# -- filter builders: each returns one clause (or None when the parameter is absent) ----------
def _any(values: list[str]) -> ColumnElement[Any]:
    # One array parameter, not one per value (PostgreSQL takes at most 65,535).
    return any_(bindparam(None, values, type_=ARRAY(Text())))


def collections_filter(collections: list[str] | None) -> ColumnElement[bool] | None:
    """Items of the given collections (None: of every one; an empty list: of none)."""
    return None if collections is None else Item.collection_id == _any(collections)


def ids_filter(ids: list[str] | None) -> ColumnElement[bool] | None:
    """Items with the given ids."""
    return Item.id == _any(ids) if ids else None


def bbox_filter(bbox: Sequence[float] | None) -> ColumnElement[bool] | None:
    """Items whose footprint intersects the bbox (2D or 3D; may cross the antimeridian)."""
    if bbox is None:
        return None
    return func.ST_Intersects(Item.geometry, as_sql(bbox_shape(bbox)))


def intersects_filter(geometry: Any) -> ColumnElement[bool] | None:
    """Items whose footprint intersects a GeoJSON geometry (dict or JSON text)."""
    if geometry is None:
        return None
    return func.ST_Intersects(Item.geometry, as_sql(geojson_shape(geometry)))


def datetime_filter(value: str | None) -> ColumnElement[bool] | None:
    """Items whose time span intersects an RFC 3339 instant or interval."""
    if not value:
        return None
    start, end = parse_interval(value)
    clauses = []
    if end is not None:
        clauses.append(Item.datetime <= end)
    if start is not None:
        clauses.append(Item.end_datetime >= start)
    return and_(*clauses)


def interval_start(value: str | None) -> datetime | None:
    """The start of a ``datetime`` parameter (None when absent or open)."""
    return parse_interval(value)[0] if value else None


def max_span_query(collections: list[str] | None) -> Select[timedelta | None]:
    """The longest item time span of ``collections`` (of all when None), or longer: see
    migration 0006. NULL when they have no items."""
    query = select(func.max(Collection.item_max_span))
    return query.where(Collection.id.in_(collections)) if collections else query


# The earliest instant PostgreSQL holds: the bound never subtracts past it (an item spanning
# thousands of years would otherwise put every interval search out of range).
_FIRST_INSTANT = literal_column("'4713-01-01 00:00:00+00 BC'::timestamptz", DateTime(timezone=True))


def datetime_bound(value: str | None, collections: list[str] | None) -> ColumnElement[bool] | None:
    """``datetime >= start - max_span``: implied by :func:`datetime_filter` when no item spans
    longer than ``max_span`` (the longest span of ``collections``, see migration 0006), but on
    the indexed column, so that a search sorted ascending does not walk the datetime index from
    the first item ever. None when the interval has no start.

    The span is a scalar subquery of the same statement: read in the same snapshot as the items
    (an item spanning longer than all others, committed in between, is never missed), with no
    round trip of its own. PostgreSQL evaluates it once and bounds the index scan with it.
    """
    start = interval_start(value)
    if start is None:
        return None
    at = bindparam(None, start, type_=DateTime(timezone=True))
    span = max_span_query(collections).scalar_subquery()
    return Item.datetime >= at - func.least(span, at - _FIRST_INSTANT)


def datetime_hint(value: str | None) -> ColumnElement[bool] | None:
    """``datetime >= start``, for the planner's row estimate of an interval search only: what
    :func:`datetime_bound` bounds, as a literal it can see (items that began before the
    interval and reach into it are missed by it, so it never selects rows)."""
    start = interval_start(value)
    return None if start is None else Item.datetime >= start


def filter_filter(
    value: Any, lang: str | None, registry: Registry, limits: LimitSettings | None = None
) -> ColumnElement[bool] | None:
    """Items matching a CQL2 filter (text or JSON), refused over ``limits``."""
    if value is None or value == "" or value == {}:
        return None
    return cql2.compile_filter(cql2.parse(value, lang, limits), registry)


def query_filter(
    query: dict[str, Any] | None, registry: Registry, limits: LimitSettings | None = None
) -> ColumnElement[bool] | None:
    """Items matching the STAC ``query`` extension object, refused over ``limits``."""
    if not query:
        return None
    expr = cql2.query_to_cql2(query)
    if limits is not None:
        check_filter(expr, limits)
    return cql2.compile_filter(expr, registry, numeric_strings=True)


def where_clauses(params: SearchParams, registry: Registry) -> list[ColumnElement[bool]]:
    """Every clause of a search, in a stable order.

    CPU-bound for a large filter or geometry (parsing, validation, SQL building): async
    callers run it in a worker thread, off the event loop.
    """
    clauses = [
        collections_filter(visible_collections(params)),
        ids_filter(params.ids),
        bbox_filter(params.bbox),
        intersects_filter(params.intersects),
        datetime_filter(params.datetime),
        filter_filter(params.filter, params.filter_lang, registry, params.limits),
        query_filter(params.query, registry, params.limits),
    ]
    return [c for c in clauses if c is not None]


def check_limit(limit: int | None, default: int, maximum: int) -> int:
    """The page size: ``default`` when absent, else 1..maximum."""
    if limit is None:
        return default
    if not 1 <= limit <= maximum:
        raise InvalidLimit(f"limit must be between 1 and {maximum}, got {limit}")
    return limit


# -- sorting ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SortKey:
    """A resolved ORDER BY key. Missing values sort last in both directions."""

    name: str
    expr: ColumnElement[Any]
    descending: bool
    nullable: bool
    kind: Kind

    def reversed(self) -> "SortKey":
        """The same key in the opposite direction."""
        return SortKey(self.name, self.expr, not self.descending, self.nullable, self.kind)


_SORT_PREFERENCE = (Kind.NUMBER, Kind.TIMESTAMP, Kind.STRING, Kind.BOOLEAN)


def sort_keys(sortby: list[SortBy], registry: Registry) -> list[SortKey]:
    """Resolve ``sortby`` and append the unique tie-breakers (id, collection)."""
    keys: list[SortKey] = []
    seen: set[str] = set()
    requested = sortby or [SortBy("datetime", descending=True)]
    for sort in requested:
        try:
            found = resolve(sort.field, registry)
        except _Unknown as exc:
            raise UnknownQueryable(
                f"cannot sort on unknown field {sort.field!r}", field=sort.field
            ) from exc
        if found.name in seen:
            continue
        kind = next((k for k in _SORT_PREFERENCE if k in found.kinds), None)
        if kind is None:
            raise InvalidSortBy(f"field {sort.field!r} is not sortable")
        nullable = found.is_property
        keys.append(SortKey(found.name, found.expr(kind), sort.descending, nullable, kind))
        seen.add(found.name)
    last_desc = keys[-1].descending
    for name, column in (("id", Item.id.expression), ("collection", Item.collection_id.expression)):
        if name not in seen:
            keys.append(SortKey(name, column, last_desc, False, Kind.STRING))
    return keys


def order_by(keys: Sequence[SortKey]) -> list[ColumnElement[Any]]:
    """ORDER BY clauses for ``keys`` (NULLS LAST)."""
    return [
        (k.expr.desc() if k.descending else k.expr.asc()).nulls_last()
        if k.nullable
        else (k.expr.desc() if k.descending else k.expr.asc())
        for k in keys
    ]


def order_by_reversed(keys: Sequence[SortKey]) -> list[ColumnElement[Any]]:
    """ORDER BY for walking ``keys`` backwards (NULLS FIRST where nullable)."""
    return [
        (k.expr.asc() if k.descending else k.expr.desc()).nulls_first()
        if k.nullable
        else (k.expr.asc() if k.descending else k.expr.desc())
        for k in keys
    ]


def _after(key: SortKey, value: Any, backwards: bool) -> ColumnElement[bool]:
    descending = key.descending != backwards
    if value is None:
        # NULLs are last going forwards, first going backwards.
        return key.expr.is_not(None) if backwards else false()
    beyond: ColumnElement[bool] = key.expr < value if descending else key.expr > value
    if key.nullable and not backwards:
        return or_(beyond, key.expr.is_(None))
    return beyond


def _equal(key: SortKey, value: Any) -> ColumnElement[bool]:
    return key.expr.is_(None) if value is None else key.expr == value


def keyset_filter(
    keys: Sequence[SortKey], values: Sequence[Any], backwards: bool
) -> ColumnElement[bool]:
    """Rows strictly after (or, backwards, before) the row whose sort values are ``values``."""
    if all(not k.nullable for k in keys) and len({k.descending for k in keys}) == 1:
        # Row comparison: lets PostgreSQL walk the (datetime, id, collection) index directly.
        left = tuple_(*[k.expr for k in keys])
        right = tuple_(*values)
        return left < right if keys[0].descending != backwards else left > right
    branches = []
    for i, key in enumerate(keys):
        equal_prefix = [_equal(k, v) for k, v in zip(keys[:i], values[:i], strict=True)]
        branches.append(and_(true(), *equal_prefix, _after(key, values[i], backwards)))
    return or_(*branches)


# -- paging tokens ---------------------------------------------------------------------------
def _fingerprint(keys: Sequence[SortKey]) -> str:
    spec = ",".join(f"{'-' if k.descending else '+'}{k.name}" for k in keys)
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    return value


def _decode_value(value: Any, kind: Kind) -> Any:
    if isinstance(value, dict):
        if kind is not Kind.TIMESTAMP or set(value) != {"t"} or not isinstance(value["t"], str):
            raise InvalidToken("token does not fit this query")
        try:
            return datetime.fromisoformat(value["t"])
        except ValueError as exc:
            raise InvalidToken("token does not fit this query") from exc
    if value is not None and not isinstance(value, str | int | float | bool):
        raise InvalidToken("token does not fit this query")
    return value


def encode_token(keys: Sequence[SortKey], values: Sequence[Any], backwards: bool) -> str:
    """An opaque token for the page after (or before) the row with sort ``values``."""
    payload = {
        "d": "prev" if backwards else "next",
        "s": _fingerprint(keys),
        "v": [_encode_value(v) for v in values],
    }
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def decode_token(token: str, keys: Sequence[SortKey]) -> tuple[list[Any], bool]:
    """Sort values and direction (True = backwards) of a token made by :func:`encode_token`."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidToken("paging token is malformed") from exc
    if (
        not isinstance(payload, dict)
        or payload.get("d") not in ("next", "prev")
        or payload.get("s") != _fingerprint(keys)
        or not isinstance(payload.get("v"), list)
        or len(payload["v"]) != len(keys)
    ):
        raise InvalidToken("paging token does not belong to this query (sortby changed?)")
    values = [_decode_value(v, k.kind) for v, k in zip(payload["v"], keys, strict=True)]
    return values, payload["d"] == "prev"
