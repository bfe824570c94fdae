"""Facets and aggregations of a vector collection's features.

- ``GET /collections/{collectionId}/facets?facetby=a,b``: value counts per property for the
  features ``bbox``, ``datetime`` and ``filter`` select (``getCollectionFacets``); the items
  route of a vector collection attaches the same member (``facets_member``) next to its
  features when asked for ``facetby``.
- ``GET /collections/{collectionId}/aggregate?group_by=..&metrics=..``: metrics per group,
  as JSON or CSV (``f=csv`` or ``Accept: text/csv``) (``getCollectionAggregate``).

Both select rows with catalog/vector/query.py, so a filter means what it means on the items.
A collection without features is 404 ``features.NotVector``. The SQL is in catalog/vector/
(facets.py, aggregate.py); parsing and compiling a filter runs in a worker thread.
"""

import asyncio
import csv
import inspect
import io
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote

import orjson
from cachetools import LRUCache
from fastapi import APIRouter, Depends, Header, Query, Request
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from catalog.db.engine import autocommit, connect, one_snapshot
from catalog.settings import LimitSettings
from catalog.stac import cql2
from catalog.stac.requests import parse_bbox
from catalog.timeparse import parse_interval
from catalog.vector.aggregate import aggregate, parse_group_by, parse_metrics
from catalog.vector.analysis import InvalidFacet, NotVector
from catalog.vector.crs import filter_in_crs84, parse_filter_crs
from catalog.vector.facets import (
    facet_counts,
    facet_counts_shared,
    facet_properties,
    parse_edges,
)
from catalog.vector.query import Clause, FeatureQuery, where
from catalog.vector.repository import VectorRepository
from catalog.vector.schema import Layer
from catalog.web import JSON, json_response, subresource_links

from .settings import VectorStatsSettings
from .tiles import CollectionID

CSV = "text/csv"

BBox = Annotated[
    str | None,
    Query(description="Only features intersecting this box: west,south,east,north (CRS84)."),
]
Interval = Annotated[
    str | None,
    Query(
        alias="datetime",
        description="Only features whose datetime property meets this RFC 3339 instant or "
        "interval (start/end, ../end, start/..).",
    ),
]
Filter = Annotated[
    str | None, Query(alias="filter", description="A CQL2 filter on the features' properties.")
]
FilterLang = Annotated[
    Literal["cql2-text", "cql2-json"] | None,
    Query(alias="filter-lang", description="The filter's language (default: inferred)."),
]
FilterCrs = Annotated[
    str | None,
    Query(alias="filter-crs", description="The CRS of the filter's geometries (as on items)."),
]


@dataclass
class FacetParams:
    """The ``facetby`` parameters (of the facets route and of the items route)."""

    facetby: Annotated[
        str | None,
        Query(description="Properties to count values of, comma-separated (e.g. crop,farmer)."),
    ] = None
    facet_limit: Annotated[
        int | None,
        Query(ge=1, description="Values listed per string or boolean facet (the most frequent)."),
    ] = None
    facet_buckets: Annotated[
        int | None,
        Query(ge=1, description="Equal-width buckets of number, integer and date facets."),
    ] = None
    facet_edges: Annotated[
        list[str] | None,
        Query(
            description="Bucket edges of one property instead: `name:e1,e2,...` (numbers, "
            "dates or RFC 3339 date-times, increasing); repeat for more properties."
        ),
    ] = None

    def names(self) -> list[str]:
        """The properties to count."""
        return [n.strip() for n in (self.facetby or "").split(",") if n.strip()]


async def facet_params(**values: Any) -> FacetParams:
    """``FacetParams`` from the query, as a route dependency: FastAPI builds a class
    dependency in a worker thread, a hop that cost more than the dataclass."""
    return FacetParams(**values)


facet_params.__signature__ = inspect.signature(FacetParams)  # type: ignore[attr-defined]


# -- dependencies ------------------------------------------------------------------------------
def engine_of(request: Request) -> AsyncEngine:
    """The catalogue's database (set in the app's lifespan)."""
    engine: AsyncEngine = request.app.state.repository.engine
    return engine


async def vector_layer(collection_id: CollectionID, request: Request) -> Layer:
    """The layer of the collection in the path; 404 features.NotVector when it has none."""
    layer = await VectorRepository(engine_of(request)).layer(collection_id)
    if layer is None:
        # A missing collection answers as everywhere (catalog.NotFound), so that one nobody
        # may read and one that does not exist look alike (server/policy.py).
        await request.app.state.repository.get_collection(collection_id)
        raise NotVector(f"collection {collection_id!r} holds no vector features")
    return layer


def feature_query_dependency(limits: LimitSettings) -> Callable[..., Any]:
    """The ``bbox``, ``datetime`` and ``filter`` parameters as a FeatureQuery."""

    async def feature_query(
        bbox: BBox = None,
        interval: Interval = None,
        filter_text: Filter = None,
        filter_lang: FilterLang = None,
        filter_crs: FilterCrs = None,
    ) -> FeatureQuery:
        parsed = None
        crs = parse_filter_crs(filter_crs)
        if filter_text:  # CPU work bounded by the limits, still off the event loop
            parsed = await asyncio.to_thread(cql2.parse, filter_text, filter_lang, limits)
        if isinstance(parsed, dict):
            parsed = await asyncio.to_thread(filter_in_crs84, parsed, crs)
        return FeatureQuery(
            bbox=parse_bbox(bbox),
            datetime=parse_interval(interval) if interval else None,
            filter=parsed,
        )

    return feature_query


async def clauses_of(layer: Layer, query: FeatureQuery) -> list[Clause]:
    """``where(layer, query)``, compiled in a worker thread."""
    return await asyncio.to_thread(where, layer, query)


class FacetCache:
    """Facet answers by collection version, query and facet parameters (a dependency).

    The version is the layer's ``updated``, which every write sets (refresh_extent): a key is
    only ever read with the data it was counted on or newer, so no answer is stale. Each server
    process keeps its own ``size`` answers (LRU); paging through items with one ``facetby``
    counts once.
    """

    def __init__(self, size: int) -> None:
        self.cache: LRUCache[Hashable, tuple[int, dict[str, Any]]] | None = (
            LRUCache(maxsize=size) if size > 0 else None
        )

    async def __call__(self) -> "FacetCache":
        """The cache itself, as a route dependency (a coroutine: FastAPI runs any other
        callable in a worker thread)."""
        return self

    @staticmethod
    def key(layer: Layer, query: FeatureQuery, params: FacetParams, *rest: Any) -> Hashable:
        """The key of an answer (None: not to be cached, the layer has no version)."""
        if layer.updated is None:
            return None
        selection = (
            tuple(query.bbox) if query.bbox is not None else None,
            query.datetime,
            orjson.dumps(query.filter, option=orjson.OPT_SORT_KEYS),
        )
        edges = tuple(params.facet_edges or ())
        return (layer.collection_id, layer.table_name, layer.updated, selection,
                tuple(params.names()), edges, *rest)  # fmt: skip

    def get(self, key: Hashable) -> tuple[int, dict[str, Any]] | None:
        """The answer kept for ``key``, if any."""
        return None if self.cache is None or key is None else self.cache.get(key)

    def put(self, key: Hashable, answer: tuple[int, dict[str, Any]]) -> None:
        """Keep ``answer``."""
        if self.cache is not None and key is not None:
            self.cache[key] = answer


# -- services the routes (and the items route) call ----------------------------------------------
async def facets_member(
    engine: AsyncEngine,
    layer: Layer,
    query: FeatureQuery,
    params: FacetParams,
    settings: VectorStatsSettings,
    clauses: Sequence[Clause] | None = None,
    cache: FacetCache | None = None,
) -> tuple[int, dict[str, Any]]:
    """The number of features ``query`` selects and the ``facets`` member for ``params``.

    Do not change the member returned: with a ``cache`` it is shared with later answers.
    """
    names = params.names()
    props = facet_properties(layer, names, settings.facet_max_properties)  # 400 before any SQL
    limit = params.facet_limit or settings.facet_limit
    buckets = params.facet_buckets or settings.facet_buckets
    if limit > settings.facet_max_limit:
        raise InvalidFacet(f"facet_limit is at most {settings.facet_max_limit}")
    if buckets > settings.facet_max_buckets:
        raise InvalidFacet(f"facet_buckets is at most {settings.facet_max_buckets}")
    edges = _edges(layer, params.facet_edges or [], settings.facet_max_buckets)
    key = FacetCache.key(layer, query, params, limit, buckets)
    if cache is not None and (kept := cache.get(key)) is not None:
        return kept
    if clauses is None:
        # A filter compiles off the event loop; a bbox or datetime alone takes microseconds.
        clauses = await clauses_of(layer, query) if query.filter else where(layer, query)
    shares = min(len(props), settings.facet_statements)
    # Split only the facets of every feature, and only when nothing else of this process is
    # using the database. Each share reads all the rows again: under a filter that reading
    # is most of the work (crop = 'wheat' over 100,000 rows: 57 -> 71 ms split), and under
    # load the cores are busy anyway.
    idle = _checked_out(engine) == 0
    big = layer.feature_count >= settings.facet_split_features
    if not clauses and big and shares > 1 and idle:
        async with one_snapshot(engine, shares) as conns:
            found = await facet_counts_shared(
                conns, layer, query, names, limit, buckets, edges, clauses
            )
    else:
        # One statement (two when the layer changed under it): no transaction to open
        async with autocommit(engine) as conn:
            found = await facet_counts(conn, layer, query, names, limit, buckets, edges, clauses)
    answer = found.matched, found.to_json()
    if cache is not None:
        cache.put(key, answer)
    return answer


def _checked_out(engine: AsyncEngine) -> int:
    """Connections of the engine's pool in use in this process (0 if it cannot tell)."""
    checked_out = getattr(engine.pool, "checkedout", None)
    return int(checked_out()) if callable(checked_out) else 0


def _edges(layer: Layer, specs: Sequence[str], most: int) -> dict[str, list[Any]]:
    edges: dict[str, list[Any]] = {}
    for spec in specs:
        name, colon, values = spec.partition(":")
        prop = layer.prop(name.strip())
        if not colon or prop is None:
            raise InvalidFacet(f"facet_edges is name:e1,e2,... of a property, not {spec!r}")
        edges[prop.name] = parse_edges(prop, values.split(","), most)
    return edges


def wants_csv(f: str | None, accept: str | None) -> bool:
    """Whether the client asked for CSV: ``f=csv``, or an ``Accept`` that gives text/csv a
    higher quality than JSON (a tie, as ``*/*``, is JSON)."""
    if f is not None:
        return f == "csv"
    quality: dict[str, float] = {}
    for part in (accept or "").split(","):
        media, *params = (p.strip().lower() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[media] = max(q, quality.get(media, 0.0))

    def q_of(media: str) -> float:
        kind = media.split("/")[0]
        for candidate in (media, f"{kind}/*", "*/*"):
            if candidate in quality:
                return quality[candidate]
        return 0.0

    return q_of(CSV) > q_of(JSON)


def csv_body(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as CSV with a header (null is an empty field, booleans true/false)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            ["" if v is None else str(v).lower() if isinstance(v, bool) else v for v in row]
        )
    return out.getvalue()


def _links(request: Request, layer: Layer, rel_self: str) -> list[dict[str, Any]]:
    links = subresource_links(request, layer.collection_id, rel_self)
    collection = links[-1]["href"]
    return [*links, {"rel": "items", "type": "application/geo+json", "href": f"{collection}/items"}]


# -- routes ------------------------------------------------------------------------------------
LayerDep = Annotated[Layer, Depends(vector_layer)]
GroupBy = Annotated[
    str | None,
    Query(
        description="Group keys, comma-separated: properties, or P1D, P1W, P1M, P1Y (a time "
        "bucket of the datetime property)."
    ),
]
Metrics = Annotated[
    str | None,
    Query(
        description="Comma-separated: count, count(p), sum(p), mean(p), min(p), max(p), "
        "stddev(p), area (m²), length (m), perimeter (m). Default: count."
    ),
]
Format = Annotated[Literal["json", "csv"] | None, Query(description="Output format.")]
Accept = Annotated[str | None, Header(include_in_schema=False)]


def _facets_endpoint(
    settings: VectorStatsSettings, query_dependency: Any, cache: FacetCache
) -> Any:
    async def get_facets(
        request: Request,
        layer: LayerDep,
        query: Annotated[FeatureQuery, Depends(query_dependency)],
        params: Annotated[FacetParams, Depends(facet_params)],
        kept: Annotated[FacetCache, Depends(cache)],
    ) -> Response:
        """Counts per value (strings, booleans) or bucket (numbers, dates) of each property
        named in ``facetby``, over the features ``bbox``, ``datetime`` and ``filter`` select."""
        matched, facets = await facets_member(
            engine_of(request), layer, query, params, settings, cache=kept
        )
        return json_response(
            {
                "collection": layer.collection_id,
                "numberMatched": matched,
                "facets": facets,
                "links": _links(request, layer, "facets"),
            }
        )

    return get_facets


def _aggregate_endpoint(settings: VectorStatsSettings, query_dependency: Any) -> Any:
    async def get_aggregate(
        request: Request,
        layer: LayerDep,
        query: Annotated[FeatureQuery, Depends(query_dependency)],
        group_by: GroupBy = None,
        metrics: Metrics = None,
        f: Format = None,
        accept: Accept = None,
    ) -> Response:
        """Metrics of the features ``bbox``, ``datetime`` and ``filter`` select, per group."""
        keys = parse_group_by(layer, _split(group_by), settings.aggregate_max_keys)
        wanted = parse_metrics(layer, _split(metrics), settings.aggregate_max_metrics)
        clauses = await clauses_of(layer, query)
        async with connect(engine_of(request)) as conn:
            found = await aggregate(
                conn, layer, query, keys, wanted, settings.aggregate_max_groups, clauses
            )
        if wants_csv(f, accept):
            name = quote(f"{layer.collection_id}-aggregate.csv", safe="")
            return Response(
                csv_body(found.columns, found.rows),
                media_type=f"{CSV}; charset=utf-8",
                headers={"Content-Disposition": f'inline; filename="{name}"'},
            )
        return json_response(
            {
                "collection": layer.collection_id,
                "group_by": [k.name if k.interval is None else k.interval for k in keys],
                "metrics": [m.name for m in wanted],
                "columns": found.columns,
                "groups": found.records(),
                "links": _links(request, layer, "aggregate"),
            }
        )

    return get_aggregate


def vector_stats_router(settings: VectorStatsSettings, limits: LimitSettings) -> APIRouter:
    """The facets and aggregate routes of vector collections."""
    router = APIRouter(tags=["OGC API - Features"])
    query_dependency = feature_query_dependency(limits)
    cache = FacetCache(settings.facet_cache_size)
    router.add_api_route(
        "/collections/{collectionId}/facets",
        _facets_endpoint(settings, query_dependency, cache),
        methods=["GET"],
        operation_id="getCollectionFacets",
        summary="Value counts per property of the features selected",
        response_class=Response,
        responses={200: {"content": {JSON: {}}}},
    )
    router.add_api_route(
        "/collections/{collectionId}/aggregate",
        _aggregate_endpoint(settings, query_dependency),
        methods=["GET"],
        operation_id="getCollectionAggregate",
        summary="Metrics per group of the features selected (JSON or CSV)",
        response_class=Response,
        responses={200: {"content": {JSON: {}, CSV: {}}}},
    )
    return router


def _split(value: str | None) -> list[str]:
    """Comma-separated terms, commas inside parentheses kept (``sum(a)``, ``count``)."""
    terms, depth, current = [], 0, ""
    for char in value or "":
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
    terms.append(current)
    return [t.strip() for t in terms if t.strip()]


__all__ = [
    "FacetCache",
    "FacetParams",
    "facets_member",
    "feature_query_dependency",
    "vector_layer",
    "vector_stats_router",
    "wants_csv",
]
