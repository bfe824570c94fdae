"""Vector tiles of a collection: its features, or its item footprints (OGC API - Tiles + mvt).

A vector collection (one with a ``vector_layers`` row) serves its features
(catalog/vector/tiles.py), selected by ``filter``/``filter-lang`` and ``datetime`` as its items
are, with the attributes ``properties`` names (ogc/feature_tiles.py); any other collection
serves its item footprints (a hybrid's raster collection too: its annotations are collections
of their own).

``/collections/{collectionId}/items/tiles/{tileMatrixSetId}/{z}/{x}/{y}.mvt`` (or without the
suffix and ``f=mvt``), x the column and y the row. One layer named after the collection, so
tiles of several collections can share one map source without their layers mixing. An empty
tile is ``204 No Content``: every MapLibre GL and Mapbox GL version takes it as an empty tile,
while a 200 with no body made versions before MapLibre 4 log an error per tile.

Tiles are gzipped here when the client accepts gzip (the app's gzip middleware leaves MVT
alone), by libdeflate (imagecodecs, already there for PNG tiles) at a fast level: a z2 tile of
10k footprints (120 kB) takes 0.53 ms at level 1 for 44.0 kB, where Python's zlib took 1.16 ms
for 45.5 kB, and level 6 three times as long for ~8 % fewer bytes. The ETag is a digest of the
tile's bytes (SHA-1: 0.07 ms for that tile where MD5 took 0.17, the CPU computes it), one per
encoding, and ``If-None-Match`` gets a 304.
"""

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import attr
import imagecodecs
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from stac_fastapi.types.extension import ApiExtension
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from catalog.errors import InvalidParameter
from catalog.maps.tiles import TileBounds, VectorTile, VectorTileRepository
from catalog.settings import LimitSettings
from catalog.vector.tiles import FeatureTileParams, FeatureTileRepository
from tiler.factory import cache_control_for

from .feature_tiles import (
    Filter,
    FilterCrs,
    FilterLang,
    Properties,
    chosen_properties,
    feature_query,
    layer_cache,
)
from .settings import TileSettings
from .tiles import MVT, CollectionID, TileMatrixSetID, TileMatrixSets

CONF = "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/"
CONFORMANCE_CLASSES = [CONF + "core", CONF + "mvt"]
CAPPED_HEADER = "X-Terracat-Features-Capped"
EXTENT = 4096
BUFFER = 64
# Smaller tiles (a few footprints) gain nothing from gzip's 18-byte frame and a compressor.
GZIP_MINIMUM = 512


Z = Annotated[int, Path(description="Tile matrix (zoom level).")]
X = Annotated[int, Path(description="Tile column.")]
Y = Annotated[int, Path(description="Tile row.")]
Interval = Annotated[
    str | None,
    Query(
        alias="datetime",
        description="Only items whose time span meets this RFC 3339 instant or interval "
        "(start/end, ../end, start/..).",
    ),
]
Format = Annotated[Literal["mvt"], Query(description="Tile format (the only one: mvt).")]
AcceptEncoding = Annotated[str | None, Header(include_in_schema=False)]
IfNoneMatch = Annotated[str | None, Header(include_in_schema=False)]
Authorization = Annotated[str | None, Header(include_in_schema=False)]


def repository_dependency(
    settings: TileSettings,
) -> Callable[[Request], Awaitable[VectorTileRepository]]:
    """The default ``repository`` slot: the renderer on the app's database."""

    # async: a plain function would run in the thread pool, two thread hops per tile.
    async def vector_tile_repository(request: Request) -> VectorTileRepository:
        state = request.app.state
        return VectorTileRepository(state.repository.engine, EXTENT, BUFFER, settings.simplify,
                                    getattr(state, "reads", None))  # fmt: skip

    return vector_tile_repository


def feature_params(settings: TileSettings) -> FeatureTileParams:
    """How feature tiles are cut, from the settings."""
    return FeatureTileParams(EXTENT, BUFFER, settings.simplify, settings.vector_min_size)


@dataclass(frozen=True)
class _TileQuery:
    """The query parameters of a tile request."""

    datetime: str | None = None
    filter: str | None = None
    filter_lang: str | None = None
    filter_crs: str | None = None
    properties: str | None = None


@dataclass(frozen=True)
class _TileHeaders:
    """The request headers a tile answer depends on."""

    accept_encoding: str | None = None
    if_none_match: str | None = None
    authorization: str | None = None


@dataclass(frozen=True)
class _TileService:
    """What both kinds of tile route run once they have their parameters."""

    settings: TileSettings
    sets: TileMatrixSets
    limits: LimitSettings | None

    async def tile(
        self,
        request: Request,
        tiles: VectorTileRepository,
        collection_id: str,
        at: tuple[str, int, int, int],
        query: _TileQuery,
        headers: _TileHeaders,
    ) -> Response:
        """A vector tile of the collection's features, or of its item footprints (204 when
        empty, gzip when accepted, 304 when ``If-None-Match`` holds its ETag)."""
        settings = self.settings
        tms_id, z, x, y = at
        bounds = self.sets.bounds(tms_id, z, x, y)
        layer = await layer_cache(request, settings).get(collection_id)
        if layer is not None:
            selection = feature_query(query.filter, query.filter_lang, query.datetime,
                                      self.limits, query.filter_crs)  # fmt: skip
            chosen = chosen_properties(layer, query.properties, z,
                                       settings.vector_properties_minzoom)  # fmt: skip
            state = request.app.state
            renderer = FeatureTileRepository(state.repository.engine, feature_params(settings),
                                             getattr(state, "reads", None))  # fmt: skip
            tile = await renderer.tile(
                layer, bounds, selection, chosen, name=collection_id,
                limit=settings.vector_max_features,
            )  # fmt: skip
            capped_at = settings.vector_max_features
        else:
            if query.filter is not None or query.properties is not None:
                raise InvalidParameter(
                    f"{collection_id!r} holds no vector features: filter and properties "
                    "select features of vector collections only"
                )
            tile = await _footprints(tiles, collection_id, bounds, settings, query.datetime)
            capped_at = settings.max_features
        cache_control = cache_control_for(settings.cache_control, headers.authorization is not None)
        return _response(tile, capped_at, settings, headers.accept_encoding,
                         headers.if_none_match, cache_control)  # fmt: skip


def _tile_endpoint(
    service: _TileService, repository: Callable[[Request], Any]
) -> Callable[..., Any]:
    async def get_tile(
        request: Request,
        collection_id: CollectionID,
        tms_id: TileMatrixSetID,
        z: Z,
        x: X,
        y: Y,
        tiles: Annotated[VectorTileRepository, Depends(repository)],
        interval: Interval = None,
        filter_: Filter = None,
        filter_lang: FilterLang = None,
        filter_crs: FilterCrs = None,
        properties: Properties = None,
        f: Format = "mvt",
        accept_encoding: AcceptEncoding = None,
        if_none_match: IfNoneMatch = None,
        authorization: Authorization = None,
    ) -> Response:
        """A vector tile of the collection's features, or of its item footprints (204 when
        empty, gzip when accepted, 304 when ``If-None-Match`` holds its ETag)."""
        query = _TileQuery(interval, filter_, filter_lang, filter_crs, properties)
        headers = _TileHeaders(accept_encoding, if_none_match, authorization)
        return await service.tile(request, tiles, collection_id, (tms_id, z, x, y), query,
                                  headers)  # fmt: skip

    return get_tile


# -- the lean route -----------------------------------------------------------------------------
# A tile request with nothing out of the ordinary (canonical integers, at most ``datetime`` and
# ``f=mvt``, each once) skips FastAPI: its parameter solving, the walk through the app's
# routers and the dependency machinery cost more Python time per tile than PostGIS took for a
# z8 tile. Any other request (a filter, properties, a value FastAPI would refuse, HEAD) falls
# through to the documented route, which answers it with the same validation and error codes.
_CANONICAL_INT = re.compile(r"0|[1-9][0-9]{0,8}")
_LEAN_QUERY = frozenset({"datetime", "f"})
LEAN_QUERY_KEY = "terracat.tile_query"  # the scope key of the query the match parsed
Guard = Callable[[Request, str], Awaitable[object]]


def _lean_query(query_string: bytes) -> dict[str, str] | None:
    """The query of a request the lean route serves (``datetime`` and ``f=mvt`` at most, each
    once, parsed as Starlette does), or None."""
    if not query_string:
        return {}
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    query = dict(pairs)
    if len(query) != len(pairs) or not query.keys() <= _LEAN_QUERY:
        return None
    if query.get("f", "mvt") != "mvt":
        return None
    return query


class LeanTileRoute(Route):
    """A tile route matched before the app's others for ordinary requests only (see above)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """A full match for a plain GET of a tile; no match for anything else."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return Match.NONE, {}
        match, child = super().matches(scope)
        if match is not Match.FULL:
            return Match.NONE, {}
        params = child["path_params"]
        if not all(_CANONICAL_INT.fullmatch(params[k]) for k in "zxy"):
            return Match.NONE, {}
        query = _lean_query(scope.get("query_string", b""))
        if query is None:
            return Match.NONE, {}
        return match, {**child, LEAN_QUERY_KEY: query}  # parsed once: the endpoint reads it


def _lean_endpoint(
    service: _TileService,
    repository: Callable[[Request], Awaitable[VectorTileRepository]],
    guard: Guard,
    operation_id: str,
) -> Callable[[Request], Awaitable[Response]]:
    async def lean_tile(request: Request) -> Response:
        await guard(request, operation_id)  # the app's rights check, as on every route
        query: dict[str, str] = request.scope[LEAN_QUERY_KEY]
        p = request.path_params
        at = (p["tileMatrixSetId"], int(p["z"]), int(p["x"]), int(p["y"]))
        h = request.headers
        headers = _TileHeaders(h.get("accept-encoding"), h.get("if-none-match"),
                               h.get("authorization"))  # fmt: skip
        tiles = await repository(request)
        return await service.tile(request, tiles, p["collectionId"], at,
                                  _TileQuery(query.get("datetime")), headers)  # fmt: skip

    return lean_tile


async def _footprints(
    tiles: VectorTileRepository,
    collection_id: str,
    bounds: TileBounds,
    settings: TileSettings,
    interval: str | None,
) -> VectorTile:
    return await tiles.footprints(
        collection_id, bounds, layer=collection_id, limit=settings.max_features,
        interval=interval,
    )  # fmt: skip


def _response(
    tile: VectorTile,
    capped_at: int,
    settings: TileSettings,
    accept_encoding: str | None,
    if_none_match: str | None,
    cache_control: str,
) -> Response:
    """The tile as the client asked for it: gzipped or not, or 304 Not Modified.

    ``Vary: Authorization``: what a token fetched is not what anyone else may get.
    """
    headers = {"Cache-Control": cache_control, "Vary": "Accept-Encoding, Authorization"}
    if tile.capped:
        headers[CAPPED_HEADER] = str(capped_at)
    digest = hashlib.sha1(tile.content, usedforsecurity=False).hexdigest()
    # Strong ETags differ between encodings of one tile (RFC 9110 8.8.3.3).
    gzipped = len(tile.content) >= GZIP_MINIMUM and accepts_gzip(accept_encoding)
    headers["ETag"] = f'"{digest}-gzip"' if gzipped else f'"{digest}"'
    if _etag_matches(if_none_match, digest):
        return Response(status_code=304, headers=headers)
    if not tile.content:
        return Response(status_code=204, headers=headers)
    content = tile.content
    if gzipped:
        content = bytes(imagecodecs.gzip_encode(content, level=settings.gzip_level))
        headers["Content-Encoding"] = "gzip"
    return Response(content, headers=headers, media_type=MVT)


def accepts_gzip(header: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header takes gzip (``gzip``, ``x-gzip`` or ``*``, q > 0)."""
    for part in (header or "").split(","):
        coding, _, weight = part.partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip", "*"):
            name, _, value = weight.replace(" ", "").partition("=")
            try:
                return name.lower() != "q" or float(value) > 0
            except ValueError:
                return False
    return False


def _etag_matches(header: str | None, digest: str) -> bool:
    """Whether ``If-None-Match`` names this tile (in either encoding) or is ``*``."""
    if not header:
        return False
    for tag in header.split(","):
        tag = tag.strip().removeprefix("W/")
        if tag == "*" or tag.strip('"').removesuffix("-gzip") == digest:
            return True
    return False


@attr.s
class VectorTilesExtension(ApiExtension):
    """The footprint vector tile routes as a stac-fastapi extension.

    ``repository`` is the dependency slot that gives the renderer (default: PostGIS on the
    app's engine, see ``repository_dependency``). ``guard`` is the app's rights check of an
    operation (server/auth.py ``authorize_operation``): with it, and the default renderer,
    plain tile requests take a lean route (``LeanTileRoute``) that runs it itself.
    """

    settings: TileSettings = attr.ib(factory=TileSettings)
    repository: Callable[[Request], Any] | None = attr.ib(default=None)
    limits: LimitSettings | None = attr.ib(default=None)
    guard: Guard | None = attr.ib(default=None)
    conformance_classes: list[str] = attr.ib(factory=lambda: list(CONFORMANCE_CLASSES))
    router: APIRouter = attr.ib(factory=lambda: APIRouter(tags=["OGC API - Tiles"]))

    def register(self, app: FastAPI) -> None:
        """Add the routes to ``app``."""
        default = repository_dependency(self.settings)
        repository = self.repository or default
        service = _TileService(self.settings, TileMatrixSets(self.settings.tile_matrix_sets),
                               self.limits)  # fmt: skip
        endpoint = _tile_endpoint(service, repository)
        path = "/collections/{collectionId}/items/tiles/{tileMatrixSetId}/{z}/{x}/{y}"
        responses: dict[int | str, dict[str, Any]] = {
            200: {"content": {MVT: {}}, "description": "A Mapbox Vector Tile"},
            204: {"description": "No feature or item in this tile"},
            304: {"description": "`If-None-Match` holds the tile's `ETag`"},
        }
        lean_routes: list[BaseRoute] = []
        for suffix, operation_id in (
            (".mvt", "getCollectionVectorTile"),
            ("", "getCollectionVectorTileByFormat"),
        ):
            self.router.add_api_route(
                path + suffix, endpoint, methods=["GET"], operation_id=operation_id,
                summary="A vector tile of features or item footprints", response_class=Response,
                responses=responses,
            )  # fmt: skip
            if self.guard is not None and self.repository is None:
                lean = _lean_endpoint(service, default, self.guard, operation_id)
                lean_routes.append(LeanTileRoute(path + suffix, lean, methods=["GET"],
                                                 include_in_schema=False))  # fmt: skip
        app.include_router(self.router)
        # First of the app's routes: matched before the walk through every router.
        app.router.routes[0:0] = lean_routes
