"""Mosaic maps of collections and saved searches: titiler.mosaic on a catalogue backend.

``CatalogBackend`` is a rio-tiler mosaic backend whose ``assets_for_tile`` asks
catalog/maps/mosaic.py for the items of a search that meet the tile (newest first, or the search's
``sortby``; at most ``max_items_per_tile``). Each item is read with ``ItemReader`` (only files
of our storage), and ``rio_tiler.mosaic.mosaic_reader`` merges them with the requested
``pixel_selection`` (``first``, the default, stops reading once every pixel is filled).

Routes (``MosaicFactory``, a ``MosaicTilerFactory`` whose tile and TileJSON routes are ours):

- ``/collections/{collectionId}/tiles/{tileMatrixSetId}/{z}/{x}/{y}[@{scale}x][.{format}]``
  and ``.../tilejson.json``: the collection's mosaic. ``/collections/{collectionId}/tiles/
  {tileMatrixSetId}`` itself is the OGC tileset metadata (ogc/tiles.py), not served here.
- the same below ``/searches/{searchId}/tiles``; ``POST /searches`` and ``GET /searches/{id}``
  register and describe saved searches (tiler/searches.py).

Tile routes are sync (titiler renders in the threadpool); the backend reaches the async
repository with ``anyio.from_thread.run``: the API's one engine, pool, statement timeout and
error translation serve tiles too, and a threadpool worker waits only for its own query.
A tile without items, or whose items have no pixels there, is ``204 No Content`` (as vector
tiles are: MapLibre shows it as empty); an unknown collection or search is 404.

Rights (server/policy.py). A collection mosaic's collection is checked before the route runs
(``READ``: 404 when the caller may not read it). A saved search's tiles and TileJSON are
``LISTED``: drawn with the rights of whoever asks for them, the item lookups filtering by the
caller's readable collections in SQL (``MosaicSource.readable``). A saved search is its
saver's: ``GET /searches/{searchId}`` answers 404 to anyone else but an admin.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import anyio.from_thread
import attr
import morecantile
from attrs import define
from fastapi import APIRouter, Depends, Path, Query
from morecantile import TileMatrixSet
from rio_tiler.constants import WEB_MERCATOR_TMS, WGS84_CRS
from rio_tiler.errors import (
    EmptyMosaicError,
    InvalidFormat,
    MissingAssets,
    NoAssetFoundError,
    TileOutsideBounds,
)
from rio_tiler.models import ImageData
from rio_tiler.mosaic.backend import BaseBackend
from rio_tiler.mosaic.reader import mosaic_reader
from starlette.requests import Request
from starlette.responses import Response
from titiler.core.factory import img_endpoint_params
from titiler.core.models.mapbox import TileJSON
from titiler.core.resources.enums import ImageType
from titiler.mosaic.factory import MOSAIC_THREADS, MosaicTilerFactory

from catalog.accounts.rights import Readable
from catalog.accounts.web import readable_of
from catalog.maps.mosaic import (
    Coverage,
    MosaicRepository,
    collection_params,
)
from catalog.maps.tiles import WGS84, TileBounds
from catalog.stac.search import SearchParams
from catalog.vector.layers import app_layers
from catalog.web import base_url, json_response

from .cubes.extent import cube_coverage
from .cubes.params import cube_params, no_cube
from .cubes.reader import CubeTileRequest
from .cubes.render import render_cube_tile
from .dependencies import (
    AlgorithmParams,
    LayerQuery,
    SafeColorMapParams,
    ScaledTileParams,
    reader_params,
    scale_path,
)
from .encoders import renderer
from .errors import AssetNotReadable, InvalidLayer, TilerError
from .factory import SharedTileMatrixSets, cache_control_route
from .presets import Preset, PresetQuery, resolve_preset
from .readers import ItemReader
from .readers.shared import ReaderResources
from .searches import searches_router
from .settings import MosaicSettings, TilerSettings

WEB_MERCATOR = "WebMercatorQuad"
MAX_MERCATOR_LAT = 85.0511287798066
METRES_PER_DEGREE = 2 * math.pi * 6_378_137 / 360
# Items a mosaic leaves out instead of failing: not a file of our storage, or no GeoTIFF.
SKIPPED = (TileOutsideBounds, AssetNotReadable, MissingAssets)
TILE = "/{tileMatrixSetId}/{z}/{x}/{y}"
TEMPLATE = "{tileMatrix}/{tileCol}/{tileRow}"


class UnknownTileMatrixSet(TilerError):
    """A tile matrix set the mosaics do not offer (same code as the OGC tiles routes)."""

    code = "tiles.UnknownTileMatrixSet"
    status = 404


# -- the backend -------------------------------------------------------------------------------
@dataclass(frozen=True)
class MosaicSource:
    """What a mosaic draws: the items of ``params``; ``collection_id`` for a collection's."""

    repository: MosaicRepository
    params: SearchParams
    readable: Readable
    collection_id: str | None = None

    async def coverage(self) -> Coverage:
        """Bounds and resolutions of the mosaic's items (of readable collections)."""
        if self.collection_id is not None:
            return await self.repository.collection_coverage(self.collection_id)
        return await self.repository.coverage(self.params, self.readable)


class EmptyTile(Exception):
    """No item of the mosaic has pixels in this tile (answered 204)."""


def tile_bounds(tms: TileMatrixSet, x: int, y: int, z: int) -> TileBounds:
    """Where a tile lies, for catalog/maps/mosaic.py: in its CRS if an EPSG one, else in lon/lat."""
    tile = morecantile.Tile(x, y, z)
    crs = tms.rasterio_crs
    code = None if crs.is_geographic else crs.to_epsg()
    if code is None:
        return TileBounds(*tms.bounds(tile), WGS84)
    box = tms.xy_bounds(tile)
    zxy = (z, x, y) if tms.id == WEB_MERCATOR else None
    return TileBounds(box.left, box.bottom, box.right, box.top, code, zxy)


@attr.s
class CatalogBackend(BaseBackend):
    """rio-tiler mosaic backend over a catalogue search, reading items with ``ItemReader``.

    Call it from a threadpool worker of the app (a sync route): the item lookup runs on the
    app's event loop through ``anyio.from_thread.run``.
    """

    input: MosaicSource = attr.ib()
    tms: TileMatrixSet = attr.ib(default=WEB_MERCATOR_TMS)
    reader: type[ItemReader] = attr.ib(default=ItemReader)
    reader_options: dict[str, Any] = attr.ib(factory=dict)
    used_items: list[dict[str, Any]] = attr.ib(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        """A mosaic spans its tile matrix set; its data extent is what TileJSON reports."""
        self.bounds = (-180.0, -90.0, 180.0, 90.0)
        self.crs = WGS84_CRS
        self.minzoom, self.maxzoom = self.tms.minzoom, self.tms.maxzoom

    def _items(self, bounds: TileBounds) -> list[dict[str, Any]]:
        source = self.input
        items: list[dict[str, Any]] = anyio.from_thread.run(
            partial(source.repository.tile_items, readable=source.readable),
            source.params,
            bounds,
        )
        return items

    def assets_for_tile(self, x: int, y: int, z: int, **kwargs: Any) -> list[dict[str, Any]]:
        """The items meeting tile x/y/z, in mosaic order."""
        return self._items(tile_bounds(self.tms, x, y, z))

    def assets_for_point(self, lng: float, lat: float, *a: Any, **k: Any) -> list[dict[str, Any]]:
        """The items at a lon/lat point."""
        return self.assets_for_bbox(lng, lat, lng, lat)

    def assets_for_bbox(
        self, xmin: float, ymin: float, xmax: float, ymax: float, *a: Any, **k: Any
    ) -> list[dict[str, Any]]:
        """The items meeting a lon/lat box."""
        return self._items(TileBounds(xmin, ymin, xmax, ymax, WGS84))

    def asset_name(self, asset: Any) -> str:
        """``collection/item``."""
        return f"{asset['collection']}/{asset['id']}"

    def tile(  # type: ignore[override]
        self,
        x: int,
        y: int,
        z: int,
        search_options: dict[str, Any] | None = None,
        preset: Preset | None = None,
        **kwargs: Any,
    ) -> tuple[ImageData, list[str]]:
        """The mosaic tile; EmptyTile when no item has pixels there.

        ``preset`` is resolved against each item's own bands (items may differ).
        """
        items = self.assets_for_tile(x, y, z)
        if not items:
            if self.input.collection_id is not None:  # 404 rather than 204 for a typo
                anyio.from_thread.run(
                    self.input.repository.collection_exists, self.input.collection_id
                )
            raise EmptyTile(f"no item in tile {z}/{x}/{y}")

        def read(item: dict[str, Any], x: int, y: int, z: int, **options: Any) -> ImageData:
            with self.reader(item, tms=self.tms, **self.reader_options) as src:
                if preset is not None:
                    found = resolve_preset(preset, item, options.get("assets"))
                    options["expression"] = found.expression
                image: ImageData = src.tile(x, y, z, **options)
                return image

        try:
            image, used = mosaic_reader(items, read, x, y, z, allowed_exceptions=SKIPPED, **kwargs)
        except (EmptyMosaicError, NoAssetFoundError) as exc:
            raise EmptyTile(f"no pixels in tile {z}/{x}/{y}") from exc
        except AssertionError as exc:  # rio-tiler asserts that every item gives as many bands
            raise InvalidLayer(
                "the items of this mosaic give different numbers of bands: choose the same "
                "bands of each with assets, bidx, bands, expression or preset"
            ) from exc
        self.used_items = used
        return image, [self.asset_name(item) for item in used]


# -- dependencies ------------------------------------------------------------------------------
def mosaic_repository(settings: MosaicSettings) -> Callable[[Request], MosaicRepository]:
    """Dependency: the app's MosaicRepository, made on first use over the app's catalogue."""

    def dependency(request: Request) -> MosaicRepository:
        state = request.app.state
        repo: MosaicRepository | None = getattr(state, "mosaics", None)
        if repo is None or repo.catalog is not state.repository:
            repo = MosaicRepository(
                state.repository, settings.max_items_per_tile, settings.search_cache_ttl_s
            )
            state.mosaics = repo
        return repo

    return dependency


class FeatureTilesElsewhere(TilerError):
    """A vector collection's tiles are its features, below ``items/tiles``: 307 there."""

    code = "tiles.VectorCollection"
    status = 307


class VectorTileJSONWebMercatorOnly(TilerError):
    """TileJSON of a vector collection in another tile matrix set than WebMercatorQuad."""

    code = "tiles.TileJSONWebMercatorOnly"
    status = 400


async def _vector_redirect(request: Request, collection_id: str) -> None:
    """FeatureTilesElsewhere (307) when ``collection_id`` is a vector collection: its tiles
    and TileJSON are at ``.../items/tiles/{tileMatrixSetId}`` (ogc/vector_tiles.py)."""
    if await app_layers(request.app.state).get(collection_id) is None:
        return
    path = request.url.path
    head, _, tail = path.rpartition(f"/{quote(collection_id, safe='')}/tiles/")
    if not head:
        head, _, tail = path.rpartition(f"/{collection_id}/tiles/")
    if tail.endswith("/tilejson.json") and tail.split("/", 1)[0] != WEB_MERCATOR_TMS.id:
        # The tileset the redirect would lead to has TileJSON members in WebMercatorQuad only
        # (ogc/tiles.py), as TileJSON itself is of Web Mercator tiles.
        raise VectorTileJSONWebMercatorOnly(
            f"{collection_id!r} is a vector collection: its TileJSON is in WebMercatorQuad "
            "only; other tile matrix sets have their tileset (TMS 2.0) at "
            f".../items/tiles/{tail.split('/', 1)[0]}"
        )
    tail = tail.removesuffix("/tilejson.json")
    moved = f"{head}/{quote(collection_id, safe='')}/items/tiles/{tail}"
    error = FeatureTilesElsewhere(
        f"{collection_id!r} is a vector collection: its tiles are its features' ({moved})"
    )
    error.headers = {"Location": str(request.url.replace(path=moved))}
    raise error


def collection_source(
    repository: Callable[..., MosaicRepository], vector_redirect: bool = False
) -> Callable[..., Any]:
    """Path dependency of collection mosaics; with ``vector_redirect``, a vector collection's
    tile and TileJSON requests are sent to its feature tiles (307)."""

    async def dependency(
        request: Request,
        collection_id: Annotated[str, Path(alias="collectionId", description="A collection id.")],
        repo: Annotated[MosaicRepository, Depends(repository)],
    ) -> MosaicSource:
        if vector_redirect:
            await _vector_redirect(request, collection_id)
        # The rights check let the caller read this collection (or 404'd); the readable set
        # filters the item lookups as well, so nothing else can ever be drawn.
        readable = await readable_of(request)
        return MosaicSource(repo, collection_params(collection_id), readable, collection_id)

    return dependency


def search_source(repository: Callable[..., MosaicRepository]) -> Callable[..., Any]:
    """Path dependency of saved-search mosaics: the search (cached briefly); 404 if unknown."""

    async def dependency(
        request: Request,
        search_id: Annotated[str, Path(alias="searchId", description="A saved search id.")],
        repo: Annotated[MosaicRepository, Depends(repository)],
    ) -> MosaicSource:
        saved = await repo.use(search_id)
        # Drawn with the rights of the caller, not of the search's owner.
        return MosaicSource(repo, saved.params, await readable_of(request))

    return dependency


def MosaicPresetParams(  # noqa: N802 - FastAPI dependency named like a class (house style)
    layer: Annotated[LayerQuery, Depends()],
    preset: Annotated[Preset | None, Depends(PresetQuery)],
) -> Preset | None:
    """``preset``, which sets the bands itself: not with expression, bidx or bands."""
    if preset is not None and (layer.expression or layer.indexes or layer.bands):
        raise InvalidLayer(
            f"preset {preset.name!r} sets the bands itself: drop expression, bidx and bands"
        )
    return preset


def image_format(request: Request) -> ImageType:
    """The ``.{format}`` of a tile path (default PNG, with alpha)."""
    raw = request.path_params.get("format")
    return ImageType.png if raw is None else _image_type(str(raw))


def format_path(
    format: Annotated[str, Path(description="Image format: " + ", ".join(ImageType))],  # noqa: A002
) -> ImageType:
    """A route dependency declaring and checking the ``{format}`` of ``.{format}`` tile paths."""
    return _image_type(format)


def _image_type(raw: str) -> ImageType:
    try:
        return ImageType(raw.lower())
    except ValueError:
        formats = ", ".join(t.value for t in ImageType)
        raise InvalidFormat(f"unknown tile format {raw[:20]!r}: one of {formats}") from None


# -- TileJSON ----------------------------------------------------------------------------------
def _metres_per_unit(tms: TileMatrixSet) -> float:
    crs = tms.rasterio_crs
    if crs.is_geographic:
        return METRES_PER_DEGREE
    return float(crs.linear_units_factor[1])


def zoom_range(tms: TileMatrixSet, coverage: Coverage) -> tuple[int, int]:
    """minzoom (an item's full extent about one tile) and maxzoom (the finest gsd)."""
    if not coverage.finest_gsd or coverage.finest_gsd <= 0:
        return tms.minzoom, tms.maxzoom
    unit = _metres_per_unit(tms)
    maxzoom = min(tms.maxzoom, tms.zoom_for_res(coverage.finest_gsd / unit))
    minzoom = tms.minzoom
    if coverage.largest_size and coverage.largest_size > 0:
        width = tms.matrix(tms.minzoom).tileWidth
        minzoom = tms.zoom_for_res(coverage.largest_size / unit / width)
    return max(tms.minzoom, min(minzoom, maxzoom)), maxzoom


def tilejson_bounds(tms: TileMatrixSet, coverage: Coverage) -> list[float]:
    """TileJSON bounds: the data's lon/lat extent (whole longitudes across the antimeridian)."""
    west, south, east, north = coverage.bounds or tuple(tms.bbox)
    if west > east:
        west, east = -180.0, 180.0
    if tms.id == WEB_MERCATOR:
        south, north = max(south, -MAX_MERCATOR_LAT), min(north, MAX_MERCATOR_LAT)
    return [west, south, east, north]


def tilejson_center(tms: TileMatrixSet, coverage: Coverage, zoom: int) -> tuple[float, float, int]:
    """The middle of the data, also when its extent crosses the antimeridian (TileJSON's
    whole-longitude bounds would put it at longitude 0, far from any data)."""
    west, south, east, north = tilejson_bounds(tms, coverage)
    if coverage.bounds is not None and coverage.bounds[0] > coverage.bounds[2]:
        middle = (coverage.bounds[0] + coverage.bounds[2] + 360.0) / 2
        return (middle - 360.0 if middle > 180.0 else middle), (south + north) / 2, zoom
    return (west + east) / 2, (south + north) / 2, zoom


# -- the factory -------------------------------------------------------------------------------
@define(kw_only=True)
class MosaicFactory(MosaicTilerFactory):
    """titiler's MosaicTilerFactory with our tile and TileJSON routes only.

    Routes sit below ``router_prefix`` (``/collections/{collectionId}/tiles`` or
    ``/searches/{searchId}/tiles``); titiler's ``/tiles``, ``/tiles/{tileMatrixSetId}``,
    info, point, assets and viewer routes are not registered (ogc/tiles.py describes tilesets).
    """

    backend: type[BaseBackend] = CatalogBackend
    dataset_reader: Any = ItemReader
    reader_dependency: Any = None
    layer_dependency: Any = LayerQuery
    tile_dependency: Any = ScaledTileParams
    colormap_dependency: Any = SafeColorMapParams
    process_dependency: Any = AlgorithmParams
    preset_dependency: Callable[..., Preset | None] = MosaicPresetParams
    # a datacube collection's tile request (tiler/cubes/params.py), or None: draw the mosaic
    cube_dependency: Callable[..., Any] = no_cube
    max_tile_scale: int = 4
    noun: str = "CollectionMosaic"
    add_viewer: bool = False

    def register_routes(self) -> None:
        """Tiles and TileJSON."""
        self.tile()
        self.tilejson()

    def _tms(self, tms_id: str) -> TileMatrixSet:
        if tms_id not in self.supported_tms.list():
            offered = ", ".join(self.supported_tms.list())
            raise UnknownTileMatrixSet(f"tile matrix set {tms_id[:64]!r} is not offered: {offered}")
        return self.supported_tms.get(tms_id)

    def tile(self) -> None:
        """``{z}/{x}/{y}``, with ``@{scale}x`` and ``.{format}`` variants (most specific first)."""
        scale = [Depends(scale_path(self.max_tile_scale))]
        fmt = [Depends(format_path)]
        variants: list[tuple[str, str, list[Any]]] = [
            ("@{scale}x.{format}", "WithScaleAndFormat", scale + fmt),
            ("@{scale}x", "WithScale", scale),
            (".{format}", "WithFormat", fmt),
            ("", "", []),
        ]
        endpoint = self._tile_endpoint()
        for suffix, operation, dependencies in variants:
            self.router.add_api_route(
                TILE + suffix, endpoint, methods=["GET"], name="tile",
                operation_id=f"get{self.noun}Tile{operation}", dependencies=dependencies,
                summary="A map tile of the mosaic (204 when no item has pixels there)",
                response_class=img_endpoint_params["response_class"],
                responses={**img_endpoint_params["responses"], 204: {"description": "No pixels"}},
            )  # fmt: skip

    def _tile_endpoint(self) -> Callable[..., Response]:
        def tile(
            z: Annotated[int, Path(description="Zoom level (tile matrix)")],
            x: Annotated[int, Path(description="Column")],
            y: Annotated[int, Path(description="Row")],
            tms_id: Annotated[str, Path(alias="tileMatrixSetId")],
            fmt: Annotated[ImageType, Depends(image_format)],
            source: Annotated[MosaicSource, Depends(self.path_dependency)],
            reader_params: Annotated[Any, Depends(self.reader_dependency)],
            layer: Annotated[Any, Depends(self.layer_dependency)],
            dataset: Annotated[Any, Depends(self.dataset_dependency)],
            pixel_selection: Annotated[Any, Depends(self.pixel_selection_dependency)],
            tile_params: Annotated[Any, Depends(self.tile_dependency)],
            preset: Annotated[Preset | None, Depends(self.preset_dependency)],
            post_process: Annotated[Any, Depends(self.process_dependency)],
            colormap: Annotated[Any, Depends(self.colormap_dependency)],
            render_params: Annotated[Any, Depends(self.render_dependency)],
            cube: Annotated[CubeTileRequest | None, Depends(self.cube_dependency)],
            tilesize: Annotated[int | None, Query(gt=0, description="Tile size in px")] = None,
        ) -> Response:
            tms = self._tms(tms_id)
            if not _in_matrix(tms, x, y, z):
                raise TileOutsideBounds(f"tile {z}/{x}/{y} is outside {tms_id}")
            if cube is not None:
                size = tilesize or tms.matrix(z).tileWidth * (tile_params.scale or 1)
                rendering = render_params.as_dict()
                return render_cube_tile(cube, tms, (x, y, z), size, fmt, post_process,
                                        colormap, rendering, self.render_func)  # fmt: skip
            options = {**tile_params.as_dict(), **layer.as_dict(), **dataset.as_dict()}
            with self.backend(source, tms=tms, reader_options=reader_params.as_dict()) as src:
                try:
                    image, _ = src.tile(x, y, z, tilesize=tilesize, preset=preset,
                                        pixel_selection=pixel_selection,
                                        threads=MOSAIC_THREADS, **options)  # fmt: skip
                except EmptyTile:
                    return Response(status_code=204)
                used = src.used_items
            rendering = render_params.as_dict()
            if preset is not None:  # the preset as the newest item used resolves it
                found = resolve_preset(preset, used[0], layer.assets)
                rendering.setdefault("rescale", found.rescale)
                colormap = colormap if colormap is not None else found.colormap
            if post_process:
                image = post_process(image)
            content, media_type = self.render_func(
                image, output_format=fmt, colormap=colormap, **rendering
            )
            return Response(content, media_type=media_type)

        return tile

    def tilejson(self) -> None:
        """``{tileMatrixSetId}/tilejson.json``: TileJSON 3.0.0 of the mosaic."""
        self.router.add_api_route(
            "/{tileMatrixSetId}/tilejson.json", self._tilejson_endpoint(), methods=["GET"],
            name="tilejson", operation_id=f"get{self.noun}TileJSON", response_model=TileJSON,
            response_model_exclude_none=True, summary="TileJSON 3.0.0 of the mosaic",
        )  # fmt: skip

    def _tilejson_endpoint(self) -> Callable[..., Any]:
        async def tilejson(
            request: Request,
            tms_id: Annotated[str, Path(alias="tileMatrixSetId")],
            source: Annotated[MosaicSource, Depends(self.path_dependency)],
            layer: Annotated[Any, Depends(self.layer_dependency)],
            dataset: Annotated[Any, Depends(self.dataset_dependency)],
            pixel_selection: Annotated[Any, Depends(self.pixel_selection_dependency)],
            preset: Annotated[Preset | None, Depends(self.preset_dependency)],
            colormap: Annotated[Any, Depends(self.colormap_dependency)],
            render_params: Annotated[Any, Depends(self.render_dependency)],
            cube: Annotated[CubeTileRequest | None, Depends(self.cube_dependency)],
            tile_format: Annotated[ImageType | None, Query(description="Tile format")] = None,
            tile_scale: Annotated[
                int | None, Query(ge=1, le=self.max_tile_scale, description="@{scale}x tiles")
            ] = None,
        ) -> Response:
            tms = self._tms(tms_id)
            coverage = cube_coverage(cube.cube) if cube else await source.coverage()
            minzoom, maxzoom = zoom_range(tms, coverage)
            suffix = (f"@{tile_scale}x" if tile_scale else "") + (
                f".{tile_format.value}" if tile_format else ""
            )
            url = f"{_prefix_url(request, self.router_prefix)}/{quote(tms_id, safe='')}"
            query = [(k, v) for k, v in request.query_params.multi_items()
                     if k not in ("tile_format", "tile_scale")]  # fmt: skip
            tiles = f"{url}/{{z}}/{{x}}/{{y}}{suffix}" + (f"?{urlencode(query)}" if query else "")
            doc = TileJSON(
                tiles=[tiles], minzoom=minzoom, maxzoom=maxzoom,
                bounds=tilejson_bounds(tms, coverage),
                center=tilejson_center(tms, coverage, minzoom),
            )  # fmt: skip
            return json_response(doc.model_dump(exclude_none=True, mode="json"))

        return tilejson


def _in_matrix(tms: TileMatrixSet, x: int, y: int, z: int) -> bool:
    if not tms.minzoom <= z <= tms.maxzoom:
        return False
    matrix = tms.matrix(z)
    return 0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight


def _prefix_url(request: Request, prefix: str) -> str:
    """The absolute URL of ``prefix`` with the request's path parameters filled in (quoted)."""
    ids = {k: quote(str(v), safe="") for k, v in request.path_params.items()}
    return base_url(request) + prefix.lstrip("/").format_map(ids)


def mosaic_router(
    tiler: TilerSettings,
    resources: ReaderResources,
    write_dependencies: Sequence[Any] = (),
    settings: MosaicSettings | None = None,
) -> APIRouter:
    """Every mosaic route: collection and saved-search tiles, and the saved searches."""
    settings = settings or MosaicSettings()
    repository = mosaic_repository(settings)
    sets = SharedTileMatrixSets(
        {name: morecantile.tms.get(name) for name in tiler.tile_matrix_sets}
    )
    route_class = cache_control_route(settings.tile_cache_control, frozenset({"tile"}))
    router = APIRouter()
    router.include_router(searches_router(repository, tiler.tile_matrix_sets, write_dependencies))
    cubes = cube_params(resources, tiler)
    for prefix, source, noun, cube in (
        (
            "/collections/{collectionId}/tiles",
            collection_source(repository, True),
            "CollectionMosaic",
            cubes,
        ),  # fmt: skip
        ("/searches/{searchId}/tiles", search_source(repository), "SearchMosaic", no_cube),
    ):
        factory = MosaicFactory(
            router=APIRouter(route_class=route_class),
            router_prefix=prefix,
            path_dependency=source,
            reader_dependency=reader_params(resources, tiler.max_image_size),
            render_func=renderer(tiler.png_level),
            supported_tms=sets,
            max_tile_scale=tiler.max_tile_scale,
            noun=noun,
            cube_dependency=cube,
        )
        router.include_router(factory.router, prefix=prefix, tags=["Mosaics"])
    return router
