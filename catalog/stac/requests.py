"""Request models of the STAC API, declared once at the edge.

They replace stac-fastapi's base GET models so that ``bbox``, ``datetime`` and ``limit`` reach
our own parsers (stable error codes, 3D bboxes, and a limit above the maximum served as the
maximum, as OGC API Features requires, instead of pydantic's 400).
"""

from typing import Annotated, Any, Literal

import attr
from fastapi import Path, Query
from pydantic import BaseModel, Field
from stac_fastapi.extensions.filter.request import FilterExtensionPostRequest
from stac_fastapi.types.search import APIRequest, BaseSearchPostRequest

from catalog.errors import InvalidBBox, InvalidFilter

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


@attr.s
class ItemsGetRequest(APIRequest):
    """GET /collections/{collection_id}/items base parameters."""

    collection_id: Annotated[str, Path(description="Collection ID")] = attr.ib()
    bbox: Annotated[str | None, _BBOX] = attr.ib(default=None)
    datetime: Annotated[str | None, _DATETIME] = attr.ib(default=None)
    limit: Annotated[int | None, _LIMIT] = attr.ib(default=None)


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


def check_filter_crs(value: str | None) -> None:
    """Only CRS84 (lon/lat WGS 84) literals are supported in filters."""
    if value and value.strip() not in CRS84:
        raise InvalidFilter(f"filter-crs {value!r} is not supported; use CRS84")
