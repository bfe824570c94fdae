"""Request models of the STAC API, declared once at the edge, and their parsing into searches.

The models replace stac-fastapi's base GET models so that ``bbox``, ``datetime`` and ``limit``
reach our own parsers (stable error codes, 3D bboxes, and a limit above the maximum served as
the maximum, as OGC API Features requires, instead of pydantic's 400).
"""

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import attr
import orjson
from fastapi import Path, Query
from pydantic import BaseModel, Field, JsonValue, model_validator
from stac_fastapi.extensions.filter.request import FilterExtensionPostRequest
from stac_fastapi.extensions.query.request import QueryExtensionPostRequest
from stac_fastapi.extensions.sort.request import SortExtensionPostRequest
from stac_fastapi.types.search import APIRequest, BaseSearchPostRequest, str2list

from catalog.errors import InvalidBBox, InvalidFilter, InvalidGeometry, InvalidParameter
from catalog.geometry import GEOMETRY_TYPES
from catalog.settings import CatalogSettings, LimitSettings
from catalog.stac.bounds import check_count, check_vertices
from catalog.stac.search import SearchParams, SortBy, check_limit

_BBOX = Query(
    description="Only items intersecting this box: west,south,east,north (or with min/max "
    "elevation: 6 numbers). west > east crosses the antimeridian.",
    openapi_examples={"user-provided": {"value": None}, "Madrid": {"value": "-3.9,40.3,-3.5,40.6"}},
)
_DATETIME = Query(
    description="RFC 3339 instant or interval (open ends as '..'); items whose time span meets it.",
    openapi_examples={
        "user-provided": {"value": None},
        "interval": {"value": "2024-01-01T00:00:00Z/2024-02-01T00:00:00Z"},
        "open": {"value": "2024-01-01T00:00:00Z/.."},
    },
)
_LIMIT = Query(
    description="Page size (at least 1; a value above the server maximum, 10000 by default, "
    "is served as the maximum)."
)


_OFFSET = Query(
    ge=0,
    description="Items to skip before the page, in the page's order (OGC API - Features "
    "clients page so; the `next` link's token is cheaper at any depth). Not with `token`.",
)


def parse_bbox(value: str | None) -> list[float] | None:
    """A comma-separated bbox query parameter as numbers."""
    if not value:
        return None
    try:
        return [float(v) for v in value.split(",")]
    except ValueError as exc:
        raise InvalidBBox(f"bbox must be 4 or 6 comma-separated numbers: {value!r}") from exc


@attr.s
class SearchGetRequest(APIRequest):
    """GET /search base parameters."""

    collections: Annotated[str | None, Query(description="Collection ids, comma-separated.")] = (
        attr.ib(default=None)
    )
    ids: Annotated[str | None, Query(description="Item ids, comma-separated.")] = attr.ib(
        default=None
    )
    bbox: Annotated[str | None, _BBOX] = attr.ib(default=None)
    intersects: Annotated[str | None, Query(description="A GeoJSON geometry (URL-encoded).")] = (
        attr.ib(default=None)
    )
    datetime: Annotated[str | None, _DATETIME] = attr.ib(default=None)
    limit: Annotated[int | None, _LIMIT] = attr.ib(default=None)
    offset: Annotated[int | None, _OFFSET] = attr.ib(default=None)


@attr.s
class ItemsGetRequest(APIRequest):
    """GET /collections/{collection_id}/items base parameters."""

    collection_id: Annotated[str, Path(description="Collection ID")] = attr.ib()
    bbox: Annotated[str | None, _BBOX] = attr.ib(default=None)
    datetime: Annotated[str | None, _DATETIME] = attr.ib(default=None)
    limit: Annotated[int | None, _LIMIT] = attr.ib(default=None)
    offset: Annotated[int | None, _OFFSET] = attr.ib(default=None)


@attr.s
class CollectionsGetRequest(APIRequest):
    """GET /collections base parameters (collection search)."""

    bbox: Annotated[str | None, _BBOX] = attr.ib(default=None)
    datetime: Annotated[str | None, _DATETIME] = attr.ib(default=None)
    limit: Annotated[int | None, _LIMIT] = attr.ib(default=None)


class SearchPostRequest(BaseSearchPostRequest):
    """POST /search body; ``limit`` is checked by the client (at least 1, capped at the maximum)."""

    limit: int | None = Field(
        default=None, description="Page size (at least 1; above the server maximum: the maximum)."
    )

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: Any) -> Any:
        # Ahead of stac-pydantic's own validators, which call ``data.get`` and fail with a 500.
        if not isinstance(data, dict):
            raise ValueError(f"the search body must be a JSON object, not {type(data).__name__}")
        return data


class ItemSearchPostRequest(SearchPostRequest):
    """The POST /search body. ``intersects`` is kept as sent: the server reads it from the body
    and checks it itself (vertex limit, then shapely in a worker thread), while validating it
    here with geojson-pydantic took ~270 ms of the event loop for 10,000 vertices."""

    intersects: dict[str, Any] | None = Field(  # type: ignore[assignment]
        default=None,
        description="A GeoJSON geometry; items whose footprint intersects it.",
        # A schema of its own, not a $ref to geojson.org: client generators and validators of
        # the OpenAPI document must not need the internet.
        json_schema_extra={
            "required": ["type"],
            "properties": {
                "type": {"enum": list[JsonValue](sorted(GEOMETRY_TYPES))},
                "coordinates": {"type": "array"},
                "geometries": {"type": "array"},
            },
        },
    )


class FilterPostRequest(BaseModel):
    """POST filter: CQL2-JSON, or CQL2-text as a string with ``filter-lang: cql2-text``.

    Not a subclass of stac-fastapi's model: that one takes CQL2-JSON only, and its narrower
    ``filter`` and ``filter-lang`` cannot be widened in a subclass.
    """

    filter_expr: dict[str, Any] | str | None = Field(
        None, alias="filter", description="A CQL2 expression (JSON object or text)."
    )
    filter_crs: str | None = Field(
        None,
        alias="filter-crs",
        description=FilterExtensionPostRequest.model_fields["filter_crs"].description,
    )
    filter_lang: Literal["cql2-json", "cql2-text"] | None = Field(
        None, alias="filter-lang", description="Encoding of 'filter' (default: from its type)."
    )


CRS84 = frozenset(
    {
        "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
        "https://www.opengis.net/def/crs/OGC/1.3/CRS84",
        "http://www.opengis.net/def/crs/EPSG/0/4326",
        "https://www.opengis.net/def/crs/EPSG/0/4326",
    }
)


class SavedSearchBody(
    SearchPostRequest, FilterPostRequest, QueryExtensionPostRequest, SortExtensionPostRequest
):
    """The item-search POST body with the filter, query and sort extensions (saved searches)."""


def check_filter_crs(value: str | None) -> None:
    """Only CRS84 (lon/lat WGS 84) literals are supported in filters."""
    if value and value.strip() not in CRS84:
        raise InvalidFilter(f"filter-crs {value!r} is not supported; use CRS84")


# -- item-search parameters -------------------------------------------------------------------
# Include, exclude, and whether the base is the default field set (fields extension).
FieldSelection = tuple[set[str], set[str], bool]


def _sortby_get(values: Sequence[str] | None) -> list[SortBy]:
    result = []
    for raw in values or []:
        value = raw.strip()
        if not value:
            continue
        descending = value.startswith("-")
        name = value.lstrip("+-").strip()
        result.append(SortBy(name, descending))
    return result


def _sortby_post(values: Sequence[Any] | None) -> list[SortBy]:
    return [
        SortBy(v.field, str(v.direction) in ("desc", "SortDirections.desc")) for v in values or []
    ]


def _fields_get(values: Sequence[str] | None) -> tuple[set[str], set[str]]:
    include: set[str] = set()
    exclude: set[str] = set()
    for raw in values or []:
        value = raw.strip()
        if value.startswith("-"):
            exclude.add(value[1:])
        elif value:
            include.add(value.lstrip("+"))
    return include, exclude


def post_fields(body: Mapping[str, Any]) -> FieldSelection:
    """Include, exclude and whether the base is the default field set (fields extension).

    ``{}`` or empty include and exclude: the default set. Only ``exclude``: the full item
    minus those fields. ``exclude`` with ``include`` null or empty: the default set minus them.
    """
    if "fields" not in body:
        return set(), set(), False
    fields = body["fields"]
    if not isinstance(fields, dict):
        raise InvalidParameter("fields must be an object with 'include' and/or 'exclude' lists")
    include = set(fields.get("include") or ())
    exclude = set(fields.get("exclude") or ())
    return include, exclude, not include and ("include" in fields or not exclude)


def page_size(limit: int | None, settings: CatalogSettings) -> int:
    """The page size: a limit above the maximum is served as the maximum."""
    # OGC API - Features 1.0, /req/core/fc-limit-response-1 C (inherited by STAC API): a limit
    # above the maximum "SHALL NOT result in an error (instead use the maximum ...)".
    if limit is not None and limit > settings.max_limit:
        limit = settings.max_limit
    return check_limit(limit, settings.default_limit, settings.max_limit)


def _json_param(name: str, value: Any) -> Any:
    if value is None or isinstance(value, dict):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidParameter(f"{name} is not valid JSON: {exc}") from exc


def check_bounds(
    params: SearchParams, fields: FieldSelection | None, limits: LimitSettings | None
) -> SearchParams:
    """Refuse a search over ``limits`` (counts and vertices here; the filter where it is
    parsed, in a worker thread) and give it the limits its filter is held to."""
    if limits is None:
        return params
    check_count(params.ids, "ids", "ids_max_count", limits)
    check_count(params.collections, "collections", "ids_max_count", limits)
    check_count(params.sortby, "sortby keys", "sortby_max_keys", limits)
    if fields is not None:
        check_count([*fields[0], *fields[1]], "fields", "fields_max_count", limits)
    if isinstance(params.intersects, str | bytes):  # GET: JSON text, read once here
        try:
            params.intersects = orjson.loads(params.intersects)
        except orjson.JSONDecodeError as exc:
            raise InvalidGeometry(f"intersects is not JSON: {exc}") from exc
    if params.intersects is not None:
        check_vertices(params.intersects, limits)
    params.limits = limits
    return params


def post_search_params(
    search_request: BaseSearchPostRequest,
    body: Mapping[str, Any],
    limit: int,
    limits: LimitSettings | None = None,
) -> SearchParams:
    """The search of a POST item-search body, validated as ``search_request``.

    ``body`` is the JSON as sent: ``intersects`` and ``datetime`` are read from it unchanged.
    Saved searches (catalog/maps/mosaic.py) go through here too, so both read bodies alike.
    """
    check_filter_crs(getattr(search_request, "filter_crs", None))
    params = SearchParams(
        collections=search_request.collections,
        ids=search_request.ids,
        bbox=search_request.bbox,
        intersects=body.get("intersects"),
        datetime=body.get("datetime"),
        filter=getattr(search_request, "filter_expr", None),
        filter_lang=getattr(search_request, "filter_lang", None),
        query=getattr(search_request, "query", None),
        sortby=_sortby_post(getattr(search_request, "sortby", None)),
        limit=limit,
        token=getattr(search_request, "token", None),
    )  # fmt: skip
    return check_bounds(params, post_fields(body) if limits else None, limits)


def get_search_params(
    kwargs: Mapping[str, Any],
    query_params: Mapping[str, str],
    settings: CatalogSettings,
    limits: LimitSettings | None = None,
) -> tuple[SearchParams, FieldSelection]:
    """The search and field selection of a GET item search (stac-fastapi's keyword arguments)."""
    include, exclude = _fields_get(kwargs.get("fields"))
    # Fields extension v1.0.0, rules 1 and 4: in GET, fields without include (empty, or
    # only exclusions) starts from the default set.
    default_base = "fields" in query_params and not include
    if kwargs.get("bbox") and kwargs.get("intersects"):
        raise InvalidParameter("bbox and intersects cannot be used together")
    check_filter_crs(kwargs.get("filter_crs"))
    offset = kwargs.get("offset") or 0
    if offset and kwargs.get("token"):
        raise InvalidParameter("offset and token cannot be used together: follow the links")
    if offset > settings.max_offset:
        raise InvalidParameter(
            f"offset {offset} is above the largest, {settings.max_offset}: follow the next "
            "links (tokens) to page deeper"
        )
    params = SearchParams(
        collections=str2list(kwargs.get("collections")),
        ids=str2list(kwargs.get("ids")),
        bbox=parse_bbox(kwargs.get("bbox")),
        intersects=kwargs.get("intersects"),
        datetime=kwargs.get("datetime"),
        filter=kwargs.get("filter_expr"),
        filter_lang=kwargs.get("filter_lang"),
        query=_json_param("query", kwargs.get("query")),
        sortby=_sortby_get(kwargs.get("sortby")),
        limit=page_size(kwargs.get("limit"), settings),
        token=kwargs.get("token"),
        offset=offset,
    )  # fmt: skip
    fields = (include, exclude, default_base)
    return check_bounds(params, fields, limits), fields
