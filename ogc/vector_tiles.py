"""Vector tiles of a collection's item footprints (OGC API - Tiles core + mvt).

``/collections/{collectionId}/items/tiles/{tileMatrixSetId}/{z}/{x}/{y}.mvt`` (or without the
suffix and ``f=mvt``), x the column and y the row. One layer named after the collection, so
tiles of several collections can share one map source without their layers mixing. An empty
tile is ``204 No Content``: every MapLibre GL and Mapbox GL version takes it as an empty tile,
while a 200 with no body made versions before MapLibre 4 log an error per tile.
"""

from collections.abc import Callable
from typing import Annotated, Any, Literal

import attr
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from stac_fastapi.types.extension import ApiExtension
from starlette.responses import Response

from catalog.maps.tiles import VectorTileRepository

from .settings import TileSettings
from .tiles import MVT, CollectionID, TileMatrixSetID, TileMatrixSets

CONF = "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/"
CONFORMANCE_CLASSES = [CONF + "core", CONF + "mvt"]
CAPPED_HEADER = "X-Terracat-Features-Capped"
EXTENT = 4096
BUFFER = 64


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


def repository_dependency(settings: TileSettings) -> Callable[[Request], VectorTileRepository]:
    """The default ``repository`` slot: the renderer on the app's database."""

    def vector_tile_repository(request: Request) -> VectorTileRepository:
        engine = request.app.state.repository.engine
        return VectorTileRepository(engine, EXTENT, BUFFER, settings.simplify)

    return vector_tile_repository


def _tile_endpoint(
    settings: TileSettings,
    sets: TileMatrixSets,
    repository: Callable[[Request], VectorTileRepository],
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
    ) -> Response:
        """A vector tile of the collection's item footprints (204 when empty)."""
        bounds = sets.bounds(tms_id, z, x, y)
        tile = await tiles.footprints(
            collection_id,
            bounds,
            layer=collection_id,
            limit=settings.max_features,
            interval=interval,
        )
        headers = {"Cache-Control": settings.cache_control}
        if tile.capped:
            headers[CAPPED_HEADER] = str(settings.max_features)
        if not tile.content:
            return Response(status_code=204, headers=headers)
        return Response(tile.content, headers=headers, media_type=MVT)

    return get_tile


@attr.s
class VectorTilesExtension(ApiExtension):
    """The footprint vector tile routes as a stac-fastapi extension.

    ``repository`` is the dependency slot that gives the renderer (default: PostGIS on the
    app's engine, see ``repository_dependency``).
    """

    settings: TileSettings = attr.ib(factory=TileSettings)
    repository: Callable[[Request], VectorTileRepository] | None = attr.ib(default=None)
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
