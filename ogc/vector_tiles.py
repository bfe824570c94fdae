"""Vector tiles of a collection's item footprints (OGC API - Tiles core + mvt).

``/collections/{collectionId}/items/tiles/{tileMatrixSetId}/{z}/{x}/{y}.mvt`` (or without the
suffix and ``f=mvt``), x the column and y the row. One layer named after the collection, so
tiles of several collections can share one map source without their layers mixing. An empty
tile is ``204 No Content``: every MapLibre GL and Mapbox GL version takes it as an empty tile,
while a 200 with no body made versions before MapLibre 4 log an error per tile.

Tiles are gzipped here when the client accepts gzip (the app's gzip middleware leaves MVT
alone): at a fast level, as a z2 tile of 10k footprints costs ~5 ms to compress at level 1
and twice that at 6 for ~10 % fewer bytes. The ETag is a digest of the tile's bytes, one per
encoding, and ``If-None-Match`` gets a 304.
"""

import gzip
import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import attr
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from stac_fastapi.types.extension import ApiExtension
from starlette.responses import Response

from catalog.maps.tiles import VectorTile, VectorTileRepository
from tiler.factory import cache_control_for

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
        engine = request.app.state.repository.engine
        return VectorTileRepository(engine, EXTENT, BUFFER, settings.simplify)

    return vector_tile_repository


def _tile_endpoint(
    settings: TileSettings,
    sets: TileMatrixSets,
    repository: Callable[[Request], Any],
) -> Callable[..., Any]:
    async def get_tile(
        collection_id: CollectionID,
        tms_id: TileMatrixSetID,
        z: Z,
        x: X,
        y: Y,
        tiles: Annotated[VectorTileRepository, Depends(repository)],
        interval: Interval = None,
        f: Format = "mvt",
        accept_encoding: AcceptEncoding = None,
        if_none_match: IfNoneMatch = None,
        authorization: Authorization = None,
    ) -> Response:
        """A vector tile of the collection's item footprints (204 when empty, gzip when
        accepted, 304 when ``If-None-Match`` holds its ETag)."""
        bounds = sets.bounds(tms_id, z, x, y)
        tile = await tiles.footprints(
            collection_id,
            bounds,
            layer=collection_id,
            limit=settings.max_features,
            interval=interval,
        )
        cache_control = cache_control_for(settings.cache_control, authorization is not None)
        return _response(tile, settings, accept_encoding, if_none_match, cache_control)

    return get_tile


def _response(
    tile: VectorTile,
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
        headers[CAPPED_HEADER] = str(settings.max_features)
    digest = hashlib.md5(tile.content, usedforsecurity=False).hexdigest()
    # Strong ETags differ between encodings of one tile (RFC 9110 8.8.3.3).
    gzipped = len(tile.content) >= GZIP_MINIMUM and accepts_gzip(accept_encoding)
    headers["ETag"] = f'"{digest}-gzip"' if gzipped else f'"{digest}"'
    if _etag_matches(if_none_match, digest):
        return Response(status_code=304, headers=headers)
    if not tile.content:
        return Response(status_code=204, headers=headers)
    content = tile.content
    if gzipped:
        content = gzip.compress(content, compresslevel=settings.gzip_level, mtime=0)
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
    app's engine, see ``repository_dependency``).
    """

    settings: TileSettings = attr.ib(factory=TileSettings)
    repository: Callable[[Request], Any] | None = attr.ib(default=None)
    conformance_classes: list[str] = attr.ib(factory=lambda: list(CONFORMANCE_CLASSES))
    router: APIRouter = attr.ib(factory=lambda: APIRouter(tags=["OGC API - Tiles"]))

    def register(self, app: FastAPI) -> None:
        """Add the routes to ``app``."""
        repository = self.repository or repository_dependency(self.settings)
        sets = TileMatrixSets(self.settings.tile_matrix_sets)
        endpoint = _tile_endpoint(self.settings, sets, repository)
        path = "/collections/{collectionId}/items/tiles/{tileMatrixSetId}/{z}/{x}/{y}"
        responses: dict[int | str, dict[str, Any]] = {
            200: {"content": {MVT: {}}, "description": "A Mapbox Vector Tile"},
            204: {"description": "No item in this tile"},
            304: {"description": "`If-None-Match` holds the tile's `ETag`"},
        }
        for suffix, operation_id in (
            (".mvt", "getCollectionVectorTile"),
            ("", "getCollectionVectorTileByFormat"),
        ):
            self.router.add_api_route(
                path + suffix, endpoint, methods=["GET"], operation_id=operation_id,
                summary="A vector tile of item footprints", response_class=Response,
                responses=responses,
            )  # fmt: skip
        app.include_router(self.router)
