"""The queryables and sortables clients: the JSON schemas of what a caller's readable items hold."""

import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attr
from fastapi import Request
from stac_fastapi.extensions.filter.client import AsyncBaseFiltersClient
from stac_fastapi.extensions.sort.client import AsyncBaseSortablesClient

from catalog import web
from catalog.accounts.web import readable_of
from catalog.stac import collection_search
from catalog.stac.queryables import CORE_FIELDS, Kind
from catalog.stac.repository import CatalogRepository
from catalog.vector.queryables import layer_schema
from catalog.vector.repository import VectorRepository

# -- schemas ---------------------------------------------------------------
_CORE_SCHEMAS: dict[str, dict[str, Any]] = {
    "id": {"title": "Item ID", "type": "string"},
    "collection": {"title": "Collection ID", "type": "string"},
    "datetime": {"title": "Acquisition time", "type": "string", "format": "date-time"},
    "start_datetime": {"title": "Start time", "type": "string", "format": "date-time"},
    "end_datetime": {"title": "End time", "type": "string", "format": "date-time"},
}
GEOJSON_GEOMETRY = "https://geojson.org/schema/Geometry.json"
_GEOMETRY_FILE = Path(__file__).resolve().parents[1] / "schemas/geojson.org/schema/Geometry.json"


@cache
def _geometry_schema() -> dict[str, Any]:
    """The footprint's schema: GeoJSON's geometry schema inlined, not a ``$ref`` to geojson.org.

    Browser clients dereference queryables (stac-browser with json-schema-ref-parser): a ``$ref``
    to another host makes them fetch it, which fails offline (a console error in each search
    form) and leaks every visit to that host. ``format`` is OGC API - Features Part 3's hint.
    """
    geojson = json.loads(_GEOMETRY_FILE.read_text())
    inlined = {k: v for k, v in geojson.items() if k not in ("$schema", "$id", "title")}
    return {"title": "Footprint", "description": f"A GeoJSON geometry ({GEOJSON_GEOMETRY})",
            "format": "geometry-any", **inlined}  # fmt: skip


_KIND_SCHEMAS: dict[Kind, dict[str, Any]] = {
    Kind.STRING: {"type": "string"},
    Kind.NUMBER: {"type": "number"},
    Kind.BOOLEAN: {"type": "boolean"},
    Kind.TIMESTAMP: {"type": "string", "format": "date-time"},
    Kind.ARRAY: {"type": "array"},
    Kind.OBJECT: {"type": "object"},
}


def _property_schema(kinds: frozenset[Kind]) -> dict[str, Any]:
    schemas = [_KIND_SCHEMAS[k] for k in sorted(kinds)]
    if len(schemas) == 1:
        return dict(schemas[0])
    return {"anyOf": schemas}


async def _schema(
    request: Request, collection_id: str | None, title: str, sortable: bool
) -> dict[str, Any]:
    repo: CatalogRepository = request.app.state.repository
    base_url = web.base_url(request)
    path = f"collections/{quote(collection_id, safe='')}/" if collection_id else ""
    schema_id = f"{base_url}{path}{'sortables' if sortable else 'queryables'}"
    vectors: VectorRepository | None = getattr(request.app.state, "vectors", None)
    if collection_id is not None and vectors is not None:
        # a vector collection: its typed properties, as its features are filtered and sorted
        if (layer := await vectors.layer(collection_id)) is not None:
            return layer_schema(layer, schema_id, _geometry_schema(), sortable)
    if collection_id is not None:
        await repo.get_collection(collection_id)
        registry = await repo.registry([collection_id], fresh=True)
    else:
        # Not the properties only collections the caller may not read have.
        registry = await repo.visible_registry(await readable_of(request), fresh=True)
    properties: dict[str, Any] = {}
    for name in CORE_FIELDS:
        if sortable and name == "geometry":
            continue
        properties[name] = _geometry_schema() if name == "geometry" else dict(_CORE_SCHEMAS[name])
    for name, kinds in sorted(registry.items()):
        if sortable and not kinds & {Kind.NUMBER, Kind.STRING, Kind.TIMESTAMP, Kind.BOOLEAN}:
            continue
        properties.setdefault(name, _property_schema(kinds))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id,
        "type": "object",
        "title": title,
        "properties": properties,
        "additionalProperties": False,
    }


@attr.s
class FiltersClient(AsyncBaseFiltersClient):
    """Queryables: core fields plus every property recorded for the collection(s)."""

    async def get_queryables(
        self, collection_id: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """GET /queryables and /collections/{collection_id}/queryables."""
        request: Request = kwargs["request"]
        title = f"Queryables of {collection_id}" if collection_id else "Queryables"
        return await _schema(request, collection_id, title, sortable=False)


def _given(request: Request | None) -> Request:
    """The request stac-fastapi passes (its base signatures make it optional)."""
    if request is None:
        raise TypeError("a sortables endpoint was called without its request")
    return request


@attr.s
class SortablesClient(AsyncBaseSortablesClient):
    """Sortables: the queryables that have an order."""

    async def get_sortables(self, request: Request | None = None, **kwargs: Any) -> dict[str, Any]:
        """GET /sortables."""
        return await _schema(_given(request), None, "Sortables", sortable=True)

    async def get_collection_sortables(
        self, collection_id: str, request: Request | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """GET /collections/{collection_id}/sortables."""
        title = f"Sortables of {collection_id}"
        return await _schema(_given(request), collection_id, title, sortable=True)

    async def get_collections_sortables(
        self, request: Request | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """GET /collections-sortables: what collection search can sort on."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{web.base_url(_given(request))}collections-sortables",
            "type": "object",
            "title": "Collection sortables",
            "properties": collection_search.SORTABLE_SCHEMAS,
            "additionalProperties": False,
        }


# -- transactions ---------------------------------------------------------------------------
