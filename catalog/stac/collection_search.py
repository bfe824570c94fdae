"""Collection search: bbox, datetime, free text ``q``, CQL2 ``filter``, sortby, limit/offset."""

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Text, and_, case, func, literal, literal_column, or_
from sqlalchemy.sql.elements import ColumnElement

from catalog.accounts.rights import Readable
from catalog.db.models import Collection
from catalog.errors import InvalidParameter, InvalidSortBy, UnknownQueryable
from catalog.geometry import as_sql, bbox_shape
from catalog.settings import CatalogSettings, LimitSettings
from catalog.stac import cql2
from catalog.stac.bounds import check_count
from catalog.stac.queryables import Field, Kind
from catalog.stac.requests import parse_bbox
from catalog.stac.search import check_limit
from catalog.timeparse import parse_interval

if TYPE_CHECKING:
    from catalog.stac.repository import CatalogRepository


def _content_text(name: str) -> ColumnElement[Any]:
    value = Collection.content.op("->")(literal(name, Text, literal_execute=True))
    return case(
        (func.jsonb_typeof(value) == literal_column("'string'"),
         Collection.content.op("->>", return_type=Text)(literal(name, Text, literal_execute=True)))
    )  # fmt: skip


def _content_array(name: str) -> ColumnElement[Any]:
    value = Collection.content.op("->")(literal(name, Text, literal_execute=True))
    return case((func.jsonb_typeof(value) == literal_column("'array'"), value))


COLLECTION_FIELDS: dict[str, Field] = {
    "id": Field("id", frozenset({Kind.STRING}), Collection.id.expression),
    "title": Field("title", frozenset({Kind.STRING}), _content_text("title")),
    "description": Field("description", frozenset({Kind.STRING}), _content_text("description")),
    "license": Field("license", frozenset({Kind.STRING}), _content_text("license")),
    "keywords": Field("keywords", frozenset({Kind.ARRAY}), _content_array("keywords")),
    # An open end of a temporal extent is unbounded, not unknown.
    "datetime": Field(
        "datetime",
        frozenset({Kind.TIMESTAMP}),
        func.coalesce(Collection.start_datetime, literal_column("'-infinity'::timestamptz")),
        func.coalesce(Collection.end_datetime, literal_column("'infinity'::timestamptz")),
    ),
    "start_datetime": Field(
        "start_datetime", frozenset({Kind.TIMESTAMP}), Collection.start_datetime.expression
    ),
    "end_datetime": Field(
        "end_datetime", frozenset({Kind.TIMESTAMP}), Collection.end_datetime.expression
    ),
    "geometry": Field("geometry", frozenset({Kind.GEOMETRY}), Collection.spatial.expression),
    # When the collection was made and last replaced here (stac-browser sorts on them).
    "created": Field("created", frozenset({Kind.TIMESTAMP}), Collection.created.expression),
    "updated": Field("updated", frozenset({Kind.TIMESTAMP}), Collection.updated.expression),
}
SORTABLE_SCHEMAS: dict[str, Any] = {
    "id": {"type": "string"},
    "title": {"type": "string"},
    "license": {"type": "string"},
    "datetime": {"type": "string", "format": "date-time"},
    "start_datetime": {"type": "string", "format": "date-time"},
    "end_datetime": {"type": "string", "format": "date-time"},
    "created": {"title": "Created in this catalogue", "type": "string", "format": "date-time"},
    "updated": {"title": "Last replaced or changed", "type": "string", "format": "date-time"},
}


def resolve_collection_field(name: str) -> Field:
    """A queryable of collection search."""
    found = COLLECTION_FIELDS.get(name)
    if found is None:
        raise UnknownQueryable(f"collections cannot be filtered on {name!r}", field=name)
    return found


@dataclass
class CollectionSearch:
    """A normalized collection search."""

    bbox: list[float] | None = None
    datetime: str | None = None
    q: list[str] = field(default_factory=list)
    filter: Any = None
    filter_lang: str | None = None
    sortby: list[tuple[str, bool]] = field(default_factory=list)
    include: set[str] = field(default_factory=set)
    exclude: set[str] = field(default_factory=set)
    limit: int = 10
    offset: int = 0
    limits: LimitSettings | None = None  # the filter's, checked as it is parsed
    readable: Readable | None = None  # the caller's collections (None: every one)

    @classmethod
    def from_get(
        cls,
        kwargs: Mapping[str, Any],
        settings: CatalogSettings,
        limits: LimitSettings | None = None,
    ) -> "CollectionSearch":
        """From the keyword arguments stac-fastapi passes to ``all_collections``; refused over
        ``limits`` (the filter's as it is parsed)."""
        sortby = []
        for raw in kwargs.get("sortby") or []:
            value = raw.strip()
            if value:
                sortby.append((value.lstrip("+-"), value.startswith("-")))
        include: set[str] = set()
        exclude: set[str] = set()
        for raw in kwargs.get("fields") or []:
            (exclude if raw.startswith("-") else include).add(raw.lstrip("+-"))
        offset = kwargs.get("offset") or 0
        if not isinstance(offset, int) or offset < 0:
            raise InvalidParameter(f"offset must be a non-negative integer, got {offset!r}")
        if offset > settings.max_offset:
            raise InvalidParameter(f"offset {offset} is above the largest, {settings.max_offset}")
        if limits is not None:
            check_count(sortby, "sortby keys", "sortby_max_keys", limits)
            check_count([*include, *exclude], "fields", "fields_max_count", limits)
        return cls(
            bbox=parse_bbox(kwargs.get("bbox")),
            datetime=kwargs.get("datetime"),
            q=[t.strip() for t in kwargs.get("q") or [] if t and t.strip()],
            filter=kwargs.get("filter_expr"),
            filter_lang=kwargs.get("filter_lang"),
            sortby=sortby,
            include=include,
            exclude=exclude,
            limit=check_limit(kwargs.get("limit"), settings.default_limit, settings.max_limit),
            offset=offset,
            limits=limits,
        )


def bbox_filter(bbox: list[float] | None) -> ColumnElement[bool] | None:
    """Collections whose spatial extent intersects the bbox."""
    if not bbox:
        return None
    return func.ST_Intersects(Collection.spatial, as_sql(bbox_shape(bbox)))


def datetime_filter(value: str | None) -> ColumnElement[bool] | None:
    """Collections whose temporal extent (open ends allowed) meets the instant or interval."""
    if not value:
        return None
    start, end = parse_interval(value)
    clauses = []
    if end is not None:
        clauses.append(or_(Collection.start_datetime.is_(None), Collection.start_datetime <= end))
    if start is not None:
        clauses.append(or_(Collection.end_datetime.is_(None), Collection.end_datetime >= start))
    return and_(*clauses)


def q_filter(terms: list[str]) -> ColumnElement[bool] | None:
    """Free text: any term (comma-separated in ``q``) found in id, title, description, keywords."""
    if not terms:
        return None
    query: ColumnElement[Any] = func.plainto_tsquery(
        literal_column("'simple'::regconfig"), terms[0]
    )
    for term in terms[1:]:
        query = query.op("||")(func.plainto_tsquery(literal_column("'simple'::regconfig"), term))
    return Collection.search_vector.op("@@")(query)


def filter_filter(
    value: Any, lang: str | None, limits: LimitSettings | None = None
) -> ColumnElement[bool] | None:
    """CQL2 over collection fields (id, title, description, license, keywords, datetime...)."""
    if value is None or value == "" or value == {}:
        return None
    parsed = cql2.parse(value, lang, limits)
    return cql2.compile_filter(parsed, {}, resolver=resolve_collection_field)


def order(sortby: list[tuple[str, bool]]) -> list[ColumnElement[Any]]:
    """ORDER BY for collection search (by id when nothing is asked)."""
    clauses: list[ColumnElement[Any]] = []
    for name, descending in sortby:
        if name not in SORTABLE_SCHEMAS:
            raise InvalidSortBy(f"collections cannot be sorted on {name!r}")
        expr = COLLECTION_FIELDS[name].expr()
        clauses.append((expr.desc() if descending else expr.asc()).nulls_last())
    return clauses


async def run(
    repo: "CatalogRepository", params: CollectionSearch
) -> tuple[list[dict[str, Any]], int]:
    """Execute a collection search."""
    # Parsing and compiling a large filter is CPU work: off the event loop.
    cql = await asyncio.to_thread(filter_filter, params.filter, params.filter_lang, params.limits)
    clauses = [
        c
        for c in (
            bbox_filter(params.bbox),
            datetime_filter(params.datetime),
            q_filter(params.q),
            cql,
            params.readable.column_filter(Collection.id) if params.readable else None,
        )
        if c is not None
    ]
    return await repo.list_collections(clauses, order(params.sortby), params.limit, params.offset)
