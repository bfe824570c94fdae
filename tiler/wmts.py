"""WMTS capabilities of a collection's mosaic: ``/collections/{collectionId}/WMTSCapabilities.xml``.

titiler.mosaic's WMTS extension writes the document; its tile URLs are the collection mosaic's
(tiler/mosaic.py, ``.../tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}``). The extension puts
its route below the factory's prefix, where ``/collections/{collectionId}/tiles/{id}`` is the
OGC tileset (ogc/tiles.py) and would take ``WMTSCapabilities.xml`` for a tile matrix set id: so
a factory of its own makes the route and only that route is served, one level up.
"""

from typing import Any
from urllib.parse import quote

import anyio.from_thread
import attr
import morecantile
from attrs import define
from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from titiler.core.dependencies import (
    ColorMapParams,
    DatasetParams,
    ImageRenderingParams,
    TileParams,
)
from titiler.mosaic.extensions.wmts import wmtsExtension

from catalog import web

from .dependencies import LayerQuery, reader_params
from .encoders import renderer
from .factory import SharedTileMatrixSets
from .mosaic import (
    MAX_MERCATOR_LAT,
    CatalogBackend,
    MosaicFactory,
    MosaicSource,
    collection_source,
    mosaic_repository,
    zoom_range,
)
from .readers.shared import ReaderResources
from .settings import MosaicSettings, TilerSettings

PREFIX = "/collections/{collectionId}"


@attr.s
class CoverageBackend(CatalogBackend):
    """The mosaic backend with the mosaic's own extent and zooms, which the capabilities
    describe (the tiles' backend spans its whole tile matrix set)."""

    def __attrs_post_init__(self) -> None:
        """Bounds (within Web Mercator's latitudes) and zooms of the collection's items."""
        super().__attrs_post_init__()
        coverage = anyio.from_thread.run(self.input.coverage)
        west, south, east, north = coverage.bounds or self.bounds
        if west > east:  # across the antimeridian: every longitude
            west, east = -180.0, 180.0
        lat = MAX_MERCATOR_LAT - 1e-6
        self.bounds = (west, max(south, -lat), east, min(north, lat))
        self.minzoom, self.maxzoom = zoom_range(self.tms, coverage)


@define(kw_only=True)
class CollectionWmtsFactory(MosaicFactory):
    """The collection mosaic factory whose URLs follow the proxy-aware base URL."""

    backend: type[CatalogBackend] = CoverageBackend

    def url_for(self, request: Request, name: str, **path_params: Any) -> str:
        """Absolute URL of a route of this factory for the request's collection (id quoted)."""
        url_path = self.router.url_path_for(name, **path_params)
        ids = {k: quote(str(v), safe="") for k, v in request.path_params.items()}
        prefix = self.router_prefix.lstrip("/").format_map(ids)
        return str(url_path.make_absolute_url(base_url=web.base_url(request) + prefix))


def _layer_name(source: Any) -> str:
    return str(source.collection_id) if isinstance(source, MosaicSource) else "mosaic"


def collection_wmts_router(
    tiler: TilerSettings, resources: ReaderResources, settings: MosaicSettings | None = None
) -> APIRouter:
    """``GET /collections/{collectionId}/WMTSCapabilities.xml``."""
    factory = CollectionWmtsFactory(
        router=APIRouter(),
        router_prefix=f"{PREFIX}/tiles",
        path_dependency=collection_source(mosaic_repository(settings or MosaicSettings())),
        reader_dependency=reader_params(resources, tiler.max_image_size),
        render_func=renderer(tiler.png_level),
        supported_tms=SharedTileMatrixSets(
            {name: morecantile.tms.get(name) for name in tiler.tile_matrix_sets}
        ),
        max_tile_scale=tiler.max_tile_scale,
        extensions=[
            wmtsExtension(
                # checked by calling them with query values only, as for the items' WMTS
                tile_dependencies=[
                    LayerQuery,
                    DatasetParams,
                    TileParams,
                    ImageRenderingParams,
                    ColorMapParams,
                ],  # fmt: skip
                layer_identifier_provider=_layer_name,
            )
        ],
    )
    router = APIRouter(tags=["Mosaics"])
    for route in factory.router.routes:
        if isinstance(route, APIRoute) and route.path == "/WMTSCapabilities.xml":
            route.operation_id = "getCollectionMosaicWMTS"
            router.routes.append(route)
    wrapped = APIRouter()
    wrapped.include_router(router, prefix=PREFIX)
    return wrapped
