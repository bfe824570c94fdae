"""Raster endpoints of one catalogue item: titiler's MultiBaseTilerFactory on ``ItemReader``.

Mounted at ``/collections/{collection_id}/items/{item_id}``; the item comes from the path
(``ItemParams``), never a ``url=``. Routes are titiler 2.4's (tiles, tilejson, tilesets, info,
statistics, point, preview, bbox/feature crops, WMTS) plus ``@{scale}x`` tiles, which titiler 2
dropped. Behaviour is set through the factory's dependency slots (dependencies.py, presets.py);
route bodies are titiler's; images are encoded by ``encoders.render``.
"""

import re
from typing import Any
from urllib.parse import quote

import morecantile
from attrs import define
from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute
from morecantile import TileMatrixSet
from morecantile.defaults import TileMatrixSets
from rio_tiler.io import MultiBaseReader
from starlette.requests import Request
from starlette.responses import Response
from titiler.core.dependencies import (
    ColorMapParams,
    DatasetParams,
    ImageRenderingParams,
    TileParams,
)
from titiler.core.factory import MultiBaseTilerFactory, img_endpoint_params
from titiler.extensions.wmts import wmtsExtension

from catalog import web

from .cubes.items import cube_item_redirect
from .cubes.params import CubeLookup
from .dependencies import (
    AlgorithmParams,
    AssetsQuery,
    ItemParams,
    LayerQuery,
    SafeCrsParams,
    ScaledTileParams,
    reader_params,
    scale_path,
    statistics_params,
)
from .encoders import renderer
from .errors import TilerError
from .presets import (
    PresetQuery,
    preset_colormap_params,
    preset_layer_params,
    preset_params,
    preset_render_params,
)
from .readers import ItemReader
from .readers.shared import ReaderResources
from .settings import MAX_ZOOM, TilerSettings

ITEM_PREFIX = "/collections/{collection_id}/items/{item_id}"
# One path of each tile and TileJSON route (the routes' own matching picks them)
CUBE_ITEM_PATHS = ("/tiles/T/0/0/0", "/tiles/T/0/0/0.png", "/tiles/T/0/0/0@2x",
                   "/tiles/T/0/0/0@2x.png", "/T/tilejson.json")  # fmt: skip


def cache_control_for(value: str, authorized: bool) -> str:
    """``value`` for a response to a request with (``authorized``) or without credentials.

    A tile fetched with a token may be of a collection only that token reads: shared caches
    (proxies, CDNs) must not keep it for others, so its ``public`` becomes ``private``. What
    an anonymous request got, anyone may get: it stays as configured.
    """
    if not authorized:
        return value
    parts = [p.strip() for p in value.split(",") if p.strip()]
    parts = ["private" if p.lower() == "public" else p for p in parts]
    if not any(p.lower() in ("private", "no-store") for p in parts):
        parts.insert(0, "private")
    return ", ".join(parts)


def vary_on_authorization(headers: Any) -> None:
    """Add ``Authorization`` to the ``Vary`` header (the response depends on the caller)."""
    present = [v.strip() for v in headers.get("Vary", "").split(",") if v.strip()]
    if "authorization" not in (v.lower() for v in present):
        headers["Vary"] = ", ".join([*present, "Authorization"])


def cache_control_route(value: str, route_names: frozenset[str]) -> type[APIRoute]:
    """An APIRoute class adding ``Cache-Control: value`` to successful responses of some routes
    (``private`` where the request carried credentials, ``cache_control_for``)."""

    class CacheControlRoute(APIRoute):
        def get_route_handler(self) -> Any:
            handler = super().get_route_handler()
            if not value or self.name not in route_names:
                return handler

            async def cached(request: Request) -> Response:
                response = await handler(request)
                if response.status_code == 200:
                    authorized = "authorization" in request.headers
                    response.headers.setdefault(
                        "Cache-Control", cache_control_for(value, authorized)
                    )
                    vary_on_authorization(response.headers)
                return response

            return cached

    return CacheControlRoute


@define(kw_only=True)
class ItemTilerFactory(MultiBaseTilerFactory):
    """titiler's MultiBaseTilerFactory with ``@{scale}x`` tiles and camelCase operation ids.

    Operation ids name the resource: titiler's ``getTile`` becomes ``getItemTile``
    (``operation_noun``), unique next to the collection and OGC routes.
    """

    reader: type[MultiBaseReader] = ItemReader
    layer_dependency: Any = LayerQuery
    assets_dependency: Any = AssetsQuery
    tile_dependency: Any = ScaledTileParams
    process_dependency: Any = AlgorithmParams
    operation_noun: str = "Item"
    max_tile_scale: int = 4
    add_viewer: bool = False
    # a route dependency of the tile and TileJSON routes sending datacube items elsewhere
    cube_item_dependency: Any = None

    def __attrs_post_init__(self) -> None:
        """Register titiler's routes and extensions, then rename their operation ids."""
        super().__attrs_post_init__()  # type: ignore[no-untyped-call]  # titiler: unannotated
        if self.cube_item_dependency is not None:
            self.add_route_dependencies(
                scopes=[{"path": p, "method": "GET"} for p in CUBE_ITEM_PATHS],
                dependencies=[Depends(self.cube_item_dependency)],
            )
        for route in self.router.routes:
            if isinstance(route, APIRoute) and route.operation_id:
                name = route.operation_id.removeprefix(self.operation_prefix)
                verb = re.match(r"[a-z]*", name).group()  # type: ignore[union-attr]
                route.operation_id = f"{verb}{self.operation_noun}{name[len(verb) :]}"
                route.unique_id = route.operation_id
        # titiler builds a tile matrix for every zoom between them: maxzoom=500000 built half a
        # million (schemathesis). A zoom is a level of the grid, so bounded like the grid's.
        self.add_route_dependencies(
            scopes=[{"path": "/tiles/{tileMatrixSetId}", "method": "GET"}],
            dependencies=[Depends(zoom_bounds)],
        )

    def tile(self) -> None:
        """titiler's tile routes, preceded by ``…/{y}@{scale}x[.{format}]`` on the same endpoint.

        They come first: ``{y}`` alone would also match ``1@2x`` and fail as a number.
        """
        start = len(self.router.routes)
        super().tile()  # type: ignore[no-untyped-call]  # titiler: unannotated
        titiler_routes = self.router.routes[start:]
        del self.router.routes[start:]
        endpoint = titiler_routes[0].endpoint  # type: ignore[attr-defined]
        scale = [Depends(scale_path(self.max_tile_scale))]
        for suffix, operation in (("@{scale}x", "getTileWithScale"),
                                  ("@{scale}x.{format}", "getTileWithScaleAndFormat")):  # fmt: skip
            self.router.add_api_route(
                "/tiles/{tileMatrixSetId}/{z}/{x}/{y}" + suffix, endpoint, methods=["GET"],
                name="tile", operation_id=f"{self.operation_prefix}{operation}",
                dependencies=scale, **img_endpoint_params,
            )  # fmt: skip
        self.router.routes.extend(titiler_routes)

    def url_for(self, request: Request, name: str, **path_params: Any) -> str:
        """Absolute URL of a route of this factory, for the item of ``request`` (ids quoted)."""
        url_path = self.router.url_path_for(name, **path_params)
        ids = {k: quote(str(v), safe="") for k, v in request.path_params.items()}
        prefix = self.router_prefix.format_map(_Keep(ids)).lstrip("/")
        return str(url_path.make_absolute_url(base_url=web.base_url(request) + prefix))


class _Keep(dict[str, str]):
    """format_map source leaving unknown ``{fields}`` as they are."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class SharedTileMatrixSets(TileMatrixSets):
    """morecantile's registry without its deep copy per lookup: the routes look a set up for
    every request, and a copy loses the set's cached CRS conversions (``rasterio_crs`` alone
    is 3 ms to rebuild): with the copy a tile cost ~8 ms more than in-process. Nothing here
    changes a set, so every request shares one."""

    def get(self, identifier: str) -> TileMatrixSet:
        """The registered set itself."""
        found = self.tilematrixsets.get(identifier)
        if not isinstance(found, TileMatrixSet):  # unknown, or not loaded yet: morecantile's
            found = super().get(identifier)
            self.tilematrixsets[identifier] = found
        return found


def item_tiler_factory(settings: TilerSettings, resources: ReaderResources) -> ItemTilerFactory:
    """The item tiler reading the assets of ``resources.storage`` (the app's resources)."""
    item = ItemParams(settings.item_cache_ttl_s, settings.item_cache_size)
    preset = preset_params(item)
    stats, histogram = statistics_params(settings.max_histogram_bins)
    route_class = cache_control_route(settings.tile_cache_control, frozenset({"tile"}))
    # titiler annotates these slots as DefaultDependency classes; any FastAPI dependency works
    slots: dict[str, Any] = {
        "reader_dependency": reader_params(resources, settings.max_image_size),
        "render_dependency": preset_render_params(preset),
        "stats_dependency": stats,
        "histogram_dependency": histogram,
    }
    return ItemTilerFactory(
        router=APIRouter(route_class=route_class, dependencies=[Depends(SafeCrsParams)]),
        router_prefix=ITEM_PREFIX,
        path_dependency=item,
        layer_dependency=preset_layer_params(preset),
        colormap_dependency=preset_colormap_params(preset),
        render_func=renderer(settings.png_level),
        supported_tms=SharedTileMatrixSets(
            {name: morecantile.tms.get(name) for name in settings.tile_matrix_sets}
        ),
        max_tile_scale=settings.max_tile_scale,
        cube_item_dependency=cube_item_redirect(
            CubeLookup(settings.item_cache_ttl_s, settings.item_cache_size)
        ),
        **slots,
        extensions=[
            wmtsExtension(
                # WMTS checks layer parameters by calling these with query values only
                tile_dependencies=[
                    LayerQuery,
                    PresetQuery,
                    DatasetParams,
                    TileParams,
                    ImageRenderingParams,
                    ColorMapParams,
                ],
                layer_identifier_provider=_layer_name,
            )
        ],
    )


def item_maps_router(settings: TilerSettings, resources: ReaderResources) -> APIRouter:
    """The item tiler's routes, below ``ITEM_PREFIX``."""
    items = item_tiler_factory(settings, resources)
    router = APIRouter()
    router.include_router(items.router, prefix=items.router_prefix, tags=["Item maps"])
    return router


def _layer_name(item: Any) -> str:
    if isinstance(item, dict):
        return f"{item.get('collection')}.{item.get('id')}"
    return "item"


class InvalidZoom(TilerError):
    """A ``minzoom`` or ``maxzoom`` outside the zoom levels a grid can have."""

    code = "tiler.InvalidZoom"


def zoom_bounds(request: Request) -> None:
    """Refuse a tileset's ``minzoom``/``maxzoom`` outside 0..MAX_ZOOM (``tiler.InvalidZoom``)."""
    for name in ("minzoom", "maxzoom"):
        value = request.query_params.get(name)
        if value is not None and value.lstrip("-").isdigit() and not 0 <= int(value) <= MAX_ZOOM:
            raise InvalidZoom(f"{name} must be between 0 and {MAX_ZOOM}")
