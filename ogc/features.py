"""OGC API - Features (Parts 1, 2 and 3) for vector collections, on the STAC item routes.

``/collections/{id}/items`` and ``/items/{featureId}`` are stac-fastapi's routes, one operation
each in OpenAPI. Our stac-fastapi client hands them to ``VectorItems`` first
(``CoreClient.collection_items``): a collection with a vector layer is answered here with
GeoJSON features, any other falls through to the STAC item search unchanged. The extra query
parameters (``crs``, ``bbox-crs``, ``properties``, ``skipGeometry``) are declared once, by
``FeaturesExtension.GET``, in the routes' request models; STAC item requests ignore them.
"""

import asyncio
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

import attr
import orjson
from fastapi import FastAPI, Query, Request
from stac_fastapi.types.extension import ApiExtension
from stac_fastapi.types.search import APIRequest, str2list
from starlette.responses import HTMLResponse, Response

from catalog import web
from catalog.errors import CatalogError, InvalidBBox, InvalidParameter
from catalog.settings import CatalogSettings, LimitSettings
from catalog.stac import cql2
from catalog.stac.requests import page_size, parse_bbox
from catalog.stac.search import SortBy
from catalog.timeparse import parse_interval
from catalog.vector.crs import CRS84, Crs, clamp_bbox, filter_in_crs84, parse_crs, parse_filter_crs
from catalog.vector.features import (
    FeatureNotFound,
    FeaturePage,
    FeatureReader,
    PageRequest,
    Selection,
    StaleLayer,
    selected,
)
from catalog.vector.query import FeatureQuery
from catalog.vector.repository import VectorRepository
from catalog.vector.schema import Layer

from .feature_pages import FeaturePages
from .settings import VectorStatsSettings
from .vector_stats import FacetCache, FacetParams, facets_member

GEOJSON = "application/geo+json"
JSON = "application/json"
_CONF = "http://www.opengis.net/spec/ogcapi-features-"
CONFORMANCE_CLASSES = [
    _CONF + "1/1.0/conf/core",
    _CONF + "1/1.0/conf/geojson",
    _CONF + "1/1.0/conf/oas30",
    _CONF + "2/1.0/conf/crs",
    _CONF + "3/1.0/conf/filter",
    _CONF + "3/1.0/conf/features-filter",
    _CONF + "3/1.0/conf/queryables",
    # Part 4 (draft OGC 20-002): POST, PUT, PATCH and DELETE of features, for vector
    # collections through the transaction client (catalog/vector/transactions.py).
    _CONF + "4/1.0/conf/create-replace-delete",
    _CONF + "4/1.0/conf/update",
    _CONF + "4/1.0/conf/features",
]
_FID = re.compile(r"[0-9]{1,18}")
# Filters up to this many characters parse on the event loop: ~15 us for a two-term filter,
# less than the hop to a thread (bench.features_pygeoapi); longer ones go to a thread.
INLINE_FILTER = 512
_ATTEMPTS = 3  # reads of a layer that changes under a request before it stops checking

_CRS = Query(
    description="Vector collections: the CRS of the response's coordinates (OGC API - "
    "Features Part 2): CRS84 (default), EPSG:4326 (latitude first), EPSG:3857, EPSG:2154 or "
    "a WGS 84 UTM zone, as http://www.opengis.net/def/crs/EPSG/0/<code>. STAC items: ignored."
)
_BBOX_CRS = Query(
    alias="bbox-crs",
    description="Vector collections: the CRS of `bbox` (same choices as `crs`; default CRS84).",
)
_PROPERTIES = Query(
    description="Vector collections: only these properties, comma-separated (unknown: 400)."
)
_SKIP = Query(
    alias="skipGeometry", description="Vector collections: features without their geometry."
)
_FORMAT = Query(
    description="Vector collections: `html` for a page rendered by pygeoapi's templates "
    "(default: GeoJSON). STAC items: ignored."
)


@attr.s
class FeatureParams(APIRequest):
    """What a vector collection's features hold: their CRS, properties and geometry."""

    crs: Annotated[str | None, _CRS] = attr.ib(default=None)
    properties: Annotated[str | None, _PROPERTIES] = attr.ib(default=None)
    skip_geometry: Annotated[bool | None, _SKIP] = attr.ib(default=None)
    f: Annotated[Literal["json", "geojson", "html"] | None, _FORMAT] = attr.ib(default=None)


_FACETBY = Query(
    description="Vector collections: value counts of these properties for the same selection, "
    "comma-separated, in a `facets` member next to the features (`limit=0`: facets only). "
    "See /collections/{id}/facets for every option."
)
_FACET_LIMIT = Query(ge=1, description="Vector collections: values listed per text facet.")
_FACET_BUCKETS = Query(ge=1, description="Vector collections: buckets of number/date facets.")


@attr.s
class FeaturesParams(FeatureParams):
    """The ``/items`` parameters of vector collections that STAC item search has not."""

    bbox_crs: Annotated[str | None, _BBOX_CRS] = attr.ib(default=None)
    facetby: Annotated[str | None, _FACETBY] = attr.ib(default=None)
    facet_limit: Annotated[int | None, _FACET_LIMIT] = attr.ib(default=None)
    facet_buckets: Annotated[int | None, _FACET_BUCKETS] = attr.ib(default=None)


@attr.s
class FeaturesExtension(ApiExtension):
    """Declares the feature parameters (in the items route's model) and the conformance."""

    GET = FeaturesParams
    conformance_classes: list[str] = attr.ib(factory=lambda: list(CONFORMANCE_CLASSES))

    def register(self, app: FastAPI) -> None:
        """Nothing to add: the routes are stac-fastapi's (see the module docstring)."""


def _selection(layer: Layer, params: Mapping[str, Any]) -> Selection:
    names = str2list(params.get("properties"))
    return Selection(
        crs=parse_crs(params.get("crs")),
        properties=selected(layer, [n.strip() for n in names] if names is not None else None),
        skip_geometry=bool(params.get("skip_geometry")),
    )


def _bbox(params: Mapping[str, Any]) -> tuple[list[float] | None, int, bool]:
    """The bbox, its EPSG code, and whether it meets its CRS's area of use at all."""
    bbox = parse_bbox(params.get("bbox"))
    crs = parse_crs(params.get("bbox_crs"), "bbox-crs")
    if bbox is None:
        return None, crs.srid, True
    if crs.flip:  # EPSG:4326: latitude first
        order = (1, 0, 3, 2) if len(bbox) == 4 else (1, 0, 2, 4, 3, 5)
        bbox = [bbox[i] for i in order] if len(bbox) in (4, 6) else bbox
    if crs.stored or len(bbox) not in (4, 6):
        return bbox, crs.srid, True  # checked (and refused if need be) by the query builder
    flat = [bbox[0], bbox[1], bbox[3], bbox[4]] if len(bbox) == 6 else bbox
    if not all(math.isfinite(v) for v in flat) or flat[0] > flat[2] or flat[1] > flat[3]:
        raise InvalidBBox("a projected bbox is finite, with west <= east and south <= north")
    cut = clamp_bbox(flat, crs.srid)
    return (cut or flat), crs.srid, cut is not None


def _sortby(values: list[str] | None) -> list[SortBy]:
    result = []
    for raw in values or []:
        value = raw.strip()
        if value:
            result.append(SortBy(value.lstrip("+-").strip(), value.startswith("-")))
    return result


@attr.s
class VectorItems:
    """The items routes of vector collections (``CoreClient.collection_items``)."""

    settings: CatalogSettings = attr.ib(factory=CatalogSettings)
    limits: LimitSettings = attr.ib(factory=LimitSettings)
    pages: FeaturePages | None = attr.ib(default=None)  # f=html
    stats: VectorStatsSettings = attr.ib(factory=VectorStatsSettings)  # facetby
    facet_cache: FacetCache = attr.ib(default=None)

    def __attrs_post_init__(self) -> None:
        if self.facet_cache is None:
            self.facet_cache = FacetCache(self.stats.facet_cache_size)

    async def _layer(self, request: Request, collection_id: str) -> Layer | None:
        vectors: VectorRepository = request.app.state.vectors
        return await vectors.layer(collection_id)

    async def items(
        self, request: Request, collection_id: str, params: Mapping[str, Any]
    ) -> Response | None:
        """GET /collections/{id}/items of a vector collection; None for any other.

        The layer comes from the reader's memory and the page's statement checks it is still
        current; a layer changed since (``StaleLayer``), or one that refuses a parameter, is
        read again and the request answered from that. Facets are kept by layer version
        (``FacetCache``), so a request with ``facetby`` reads the layer first.
        """
        reader: FeatureReader = request.app.state.features
        facet = FacetParams(
            params.get("facetby"), params.get("facet_limit"), params.get("facet_buckets")
        )
        fresh = bool(facet.names())
        for attempt in range(_ATTEMPTS):
            found = await reader.layer(collection_id, fresh=fresh)
            if found is None:
                return None
            layer, version = found
            # Writes keep coming: the last attempt reads the page without checking the version.
            checked = version if attempt < _ATTEMPTS - 1 else None
            try:
                return await self._items(request, collection_id, layer, checked, facet, params)
            except StaleLayer:
                pass
            except CatalogError:
                if fresh:
                    raise
                again = await reader.layer(collection_id, fresh=True)
                if again is not None and again[1] == version:
                    raise  # refused by the layer as it is
            fresh = True
        return None  # the layer went away while we read it

    async def _items(
        self,
        request: Request,
        collection_id: str,
        layer: Layer,
        version: str | None,
        facet: FacetParams,
        params: Mapping[str, Any],
    ) -> Response:
        # limit=0 with facetby: the facets alone (and numberMatched), no page of features.
        only_facets = params.get("limit") == 0 and bool(facet.names())
        page_request = await self._page_request(
            layer, {**params, "limit": None} if only_facets else params
        )
        facets: dict[str, Any] | None = None
        matched: int | None = None
        if facet.names():
            engine = request.app.state.vectors.engine
            matched, facets = await facets_member(
                engine, layer, page_request.query, facet, self.stats, cache=self.facet_cache
            )
        reader: FeatureReader = request.app.state.features
        page = (
            FeaturePage(features=[], matched=matched, next_token=None, prev_token=None)
            if only_facets
            else await reader.page(layer, page_request, version)
        )
        base_url = web.base_url(request)
        route = f"collections/{quote(collection_id, safe='')}/items"
        links = [
            {"rel": "self", "type": GEOJSON, "href": _url(base_url + route, request, None)},
            {"rel": "collection", "type": JSON, "href": base_url + route.rsplit("/", 1)[0]},
        ]
        if self.pages is not None:
            html = _url(base_url + route, request, None, {"f": "html"})
            links.append({"rel": "alternate", "type": "text/html", "href": html})
        for rel, token in (("next", page.next_token), ("prev", page.prev_token)):
            if token is not None:
                links.append(
                    {"rel": rel, "type": GEOJSON, "href": _url(base_url + route, request, token)}
                )
        rest: dict[str, Any] = {"links": links, "timeStamp": _now()}
        if page.matched is not None:
            rest["numberMatched"] = page.matched
        rest["numberReturned"] = len(page.features)
        if facets is not None:
            rest["facets"] = facets
        body = b'{"type":"FeatureCollection","features":[%s],%s' % (
            ",".join(page.features).encode(),
            orjson.dumps(rest)[1:],
        )
        if params.get("f") == "html" and self.pages is not None:
            paged = page_request.token is not None or page_request.offset > 0
            drawn = _lonlat(page_request.selection)
            return await self._page(request, collection_id, orjson.loads(body), paged, drawn)
        return _geojson(body, page_request.selection.crs)

    async def _page(
        self,
        request: Request,
        collection_id: str,
        doc: dict[str, Any],
        paged: bool | None,
        drawn: bool,
    ) -> Response:
        """The HTML of an answer (pygeoapi's templates; ``paged`` None: one feature; ``drawn``:
        with a map of the features, whose coordinates are lon/lat)."""
        if self.pages is None:
            raise RuntimeError("no pages configured")
        pages = self.pages
        row = await request.app.state.repository.get_collection(collection_id)
        title = str(row["content"].get("title") or collection_id)
        base_url, safe_id = web.base_url(request), quote(collection_id, safe="")
        if paged is None:
            html = await asyncio.to_thread(pages.item, base_url, title, doc, drawn)
        else:
            html = await asyncio.to_thread(pages.items, base_url, safe_id, title, doc, paged, drawn)
        return HTMLResponse(html)

    async def _page_request(self, layer: Layer, params: Mapping[str, Any]) -> PageRequest:
        for stac_only in ("query", "fields"):
            if params.get(stac_only):
                raise InvalidParameter(f"{stac_only} is for STAC items, not vector features")
        filter_crs = parse_filter_crs(params.get("filter_crs"))
        offset = params.get("offset") or 0
        if offset and params.get("token"):
            raise InvalidParameter("offset and token cannot be used together: follow the links")
        if offset > self.settings.max_offset:
            raise InvalidParameter(f"offset above {self.settings.max_offset}: follow the links")
        interval = params.get("datetime")
        bbox, srid, meets = _bbox(params)
        raw_filter = params.get("filter_expr")
        parsed = None
        lang = params.get("filter_lang")
        if raw_filter is not None and len(raw_filter) <= INLINE_FILTER and filter_crs.stored:
            parsed = self._parse(raw_filter, lang, filter_crs)
        elif raw_filter is not None:  # a long (or reprojected) filter: off the event loop
            parsed = await asyncio.to_thread(self._parse, raw_filter, lang, filter_crs)
        if not meets:  # a box outside its CRS's area of use selects nothing
            parsed = False
        query = FeatureQuery(
            bbox=bbox,
            datetime=parse_interval(interval) if interval else None,
            filter=parsed,
            bbox_srid=srid,
        )
        return PageRequest(
            query=query,
            sortby=_sortby(params.get("sortby")),
            limit=page_size(params.get("limit"), self.settings),
            offset=offset,
            token=params.get("token"),
            selection=_selection(layer, params),
        )

    def _parse(self, raw: Any, lang: str | None, crs: Crs) -> dict[str, Any] | bool:
        """The filter as CQL2-JSON, its geometry literals in CRS84 (``filter-crs``: ``crs``)."""
        parsed = cql2.parse(raw, lang, self.limits)
        return parsed if isinstance(parsed, bool) else filter_in_crs84(parsed, crs)

    async def item(
        self, request: Request, collection_id: str, item_id: str, params: Mapping[str, Any]
    ) -> Response | None:
        """GET /collections/{id}/items/{featureId} of a vector collection; None for others."""
        layer = await self._layer(request, collection_id)
        if layer is None:
            return None
        if not _FID.fullmatch(item_id):
            raise FeatureNotFound(f"collection {collection_id!r} has no feature {item_id!r}")
        selection = _selection(layer, params)
        reader: FeatureReader = request.app.state.features
        feature = await reader.feature(layer, int(item_id), selection)
        collection = f"{web.base_url(request)}collections/{quote(collection_id, safe='')}"
        links = [
            {"rel": "self", "type": GEOJSON, "href": f"{collection}/items/{item_id}"},
            {"rel": "collection", "type": JSON, "href": collection},
        ]
        body = b"%s,%s" % (feature.encode()[:-1], orjson.dumps({"links": links})[1:])
        if params.get("f") == "html" and self.pages is not None:
            doc = orjson.loads(body)
            return await self._page(request, collection_id, doc, None, _lonlat(selection))
        return _geojson(body, selection.crs)


# -- the OpenAPI document --------------------------------------------------------------------
_SCHEMAS = "#/components/schemas/"
_FEATURE_SCHEMAS: dict[str, dict[str, Any]] = {
    "VectorFeature": {
        "title": "Feature of a vector collection (OGC API - Features)",
        "type": "object",
        "required": ["type", "id", "geometry", "properties"],
        "properties": {
            "type": {"const": "Feature"},
            "id": {"type": "integer"},
            "geometry": {"anyOf": [{"type": "object"}, {"type": "null"}]},
            "properties": {"type": "object"},
            "links": {"type": "array", "items": {"type": "object"}},
        },
    },
    "VectorFeatureCollection": {
        "title": "Features of a vector collection (OGC API - Features)",
        "type": "object",
        "required": ["type", "features", "links", "numberReturned", "timeStamp"],
        "properties": {
            "type": {"const": "FeatureCollection"},
            "features": {"type": "array", "items": {"$ref": _SCHEMAS + "VectorFeature"}},
            "links": {"type": "array", "items": {"type": "object"}},
            "numberMatched": {"type": "integer", "minimum": 0},
            "numberReturned": {"type": "integer", "minimum": 0},
            "timeStamp": {"type": "string", "format": "date-time"},
        },
    },
}
_ANSWERS = {"getFeatures": "VectorFeatureCollection", "getFeature": "VectorFeature"}


def describe_feature_answers(doc: dict[str, Any]) -> dict[str, Any]:
    """The items routes answer STAC items or, for vector collections, features (or HTML with
    ``f=html``): say so in the OpenAPI document (an ``amend_openapi`` step)."""
    doc.setdefault("components", {}).setdefault("schemas", {}).update(_FEATURE_SCHEMAS)
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            name = (
                _ANSWERS.get(str(operation.get("operationId")))
                if isinstance(operation, dict)
                else None
            )
            if name is None:
                continue
            content = (
                operation.setdefault("responses", {})
                .setdefault("200", {})
                .setdefault("content", {})
            )
            geojson = content.setdefault(GEOJSON, {})
            ours = {"$ref": _SCHEMAS + name}
            stac = geojson.get("schema")
            geojson["schema"] = {"anyOf": [stac, ours]} if stac else ours
            content["text/html"] = {"schema": {"type": "string"}}
    return doc


def _lonlat(selection: Selection) -> bool:
    """Whether the features' coordinates are lon/lat (CRS84), as a web map draws them."""
    return selection.crs.uri == CRS84 and not selection.skip_geometry


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _geojson(body: bytes, crs: Crs) -> Response:
    return Response(body, media_type=GEOJSON, headers={"Content-Crs": f"<{crs.uri}>"})


def _url(
    route_url: str, request: Request, token: str | None, replace: Mapping[str, str] | None = None
) -> str:
    """The request's URL at ``route_url``; with ``token``, paged from there instead; with
    ``replace``, those parameters set to those values."""
    query = list(request.query_params.multi_items())
    if token is not None:
        query = [(k, v) for k, v in query if k not in ("token", "offset")] + [("token", token)]
    if replace:
        query = [(k, v) for k, v in query if k not in replace] + list(replace.items())
    return route_url + ("?" + urlencode(query) if query else "")


__all__ = [
    "CONFORMANCE_CLASSES", "FeatureParams", "FeaturesExtension", "VectorItems",
    "describe_feature_answers",
]  # fmt: skip
