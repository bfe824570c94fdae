"""One map tile rendered outside a request, exactly as the tile endpoints render it.

The item tile endpoint is titiler's ``tile`` route body on the factory's dependency slots
(tiler/factory.py): ``ItemReader(item, tms, **reader).tile(x, y, z, tilesize, **tile,
**layer, **dataset)`` in a ``rasterio.Env``, then ``render(image, output_format, colormap,
**render)``. ``TileLayer`` holds what those slots give for one set of options, built by calling
the same dependency functions (``preset_params``, ``preset_layer_params``, ...) with the values
a query string would carry; ``render_item_tile`` runs the route body's steps with it, stopping
before the encoder when every pixel is masked.

Mosaic tiles (tiler/mosaic.py) are ``CatalogBackend.tile`` over the items the catalogue finds
for the tile, then the preset and ``render`` steps of the mosaic route. ``render_mosaic_tile``
runs the same backend with the items given instead of looked up: a child process has no
database, so ``MosaicItems`` picks them from a list the export read beforehand (the search's
items in mosaic order), by footprint, as the tile query does.

Exports use these; the byte-identity tests compare their tiles with the endpoints' over HTTP.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import attr
import morecantile
import numpy as np
import rasterio
import shapely
from morecantile import TileMatrixSet
from pydantic import BaseModel, ConfigDict, Field
from rio_tiler.colormap import cmap as default_cmap
from rio_tiler.errors import MissingAssets, TileOutsideBounds
from rio_tiler.types import ColorMapType, RIOResampling, WarpResampling
from titiler.core.dependencies import DatasetParams, ImageRenderingParams
from titiler.core.resources.enums import ImageType
from titiler.mosaic.factory import PixelSelectionParams

from catalog.accounts.rights import EVERYTHING
from catalog.errors import InvalidParameter
from catalog.stac.search import SearchParams
from catalog.storage.base import Storage

from .cubes.export import cube_renderer
from .dependencies import (
    LayerQuery,
    ReaderOptions,
    SafeColorMapParams,
    TileOptions,
    check_color_formula,
)
from .encoders import PNG_LEVEL, render
from .errors import AssetNotReadable, InvalidLayer
from .mosaic import CatalogBackend, EmptyTile, MosaicPresetParams, MosaicSource
from .presets import (
    Preset,
    PresetQuery,
    preset_colormap_params,
    preset_layer_params,
    preset_params,
    preset_render_params,
    resolve_preset,
)
from .readers import ItemReader
from .readers.item import not_rendered
from .readers.kinds import ASSET_READERS
from .readers.shared import ReaderResources
from .tiling import tile_boxes

WEB_MERCATOR = "WebMercatorQuad"
# What renders a tile: bytes, or None when it has no data (all masked, or off the data).
TileRenderer = Callable[[int, int, int], bytes | None]


class RenderOptions(BaseModel):
    """Rendering options, named and read as the tile endpoint's query parameters."""

    model_config = ConfigDict(extra="forbid")

    assets: list[str] | None = Field(default=None, min_length=1)
    expression: str | None = None
    bidx: list[int] | None = Field(default=None, min_length=1)
    bands: list[str] | None = Field(default=None, min_length=1)
    rescale: list[str] | None = Field(default=None, min_length=1)
    colormap_name: str | None = None
    color_formula: str | None = None
    resampling: RIOResampling | None = None
    reproject: WarpResampling | None = None
    preset: str | None = None

    def check_layer(self) -> None:
        """What the endpoint's dependencies refuse before reading anything (400s)."""
        PresetQuery(preset=self.preset)
        if self.preset and (self.expression or self.bidx or self.bands):
            raise InvalidLayer(
                f"preset {self.preset!r} sets the bands itself: drop expression, bidx and bands"
            )
        if self.colormap_name is not None and self.colormap_name not in default_cmap.list():
            raise InvalidParameter(f"unknown colormap_name {self.colormap_name[:40]!r}")
        check_color_formula(self.color_formula)
        try:
            ImageRenderingParams(rescale=self.rescale)
        except (ValueError, AssertionError) as exc:
            raise InvalidParameter(f"invalid rescale: {exc}") from None

    def summary(self) -> str:
        """The options given, for an archive's description ('' when none)."""
        given = self.model_dump(exclude_none=True, include=set(RenderOptions.model_fields))
        if not given:
            return ""
        return " (" + ", ".join(f"{k}={v}" for k, v in sorted(given.items())) + ")"


@dataclass
class TileLayer:
    """What the tile endpoint's dependency slots give for one item and one set of options."""

    reader: ReaderOptions
    tile: TileOptions
    layer: LayerQuery
    dataset: DatasetParams
    render: ImageRenderingParams
    colormap: ColorMapType | None
    format: ImageType
    env: dict[str, Any]
    tms: TileMatrixSet  # looked up once: morecantile deep-copies it on every lookup
    encode: dict[str, Any] = field(default_factory=dict)  # png_level, quality (exports)


def _slots(
    options: RenderOptions, tile_size: int, reader: ReaderOptions
) -> tuple[LayerQuery, ReaderOptions, TileOptions, DatasetParams]:
    """The slots item and mosaic tiles share, after the checks their dependencies make."""
    options.check_layer()
    layer = LayerQuery(assets=options.assets, expression=options.expression,
                       indexes=options.bidx, bands=options.bands)  # fmt: skip
    return (
        layer,
        reader,
        # 512 px tiles are the endpoint's @2x tiles: the same grid, twice the pixels
        TileOptions(scale=2 if tile_size == 512 else None),
        DatasetParams(resampling_method=options.resampling, reproject_method=options.reproject),
    )


def tile_layer(
    item: Mapping[str, Any],
    options: RenderOptions,
    image_format: str,
    tile_size: int,
    reader: ReaderOptions,
) -> TileLayer:
    """The slots' values, through the same dependency functions the factory plugs in."""
    layer, reader, tile, dataset = _slots(options, tile_size, reader)
    resolve = preset_params(lambda: item)
    resolved = resolve(item=dict(item), layer=layer, preset=PresetQuery(preset=options.preset))
    layer = preset_layer_params(resolve)(layer=layer, resolved=resolved)
    rendering = preset_render_params(resolve)(
        render=ImageRenderingParams(rescale=options.rescale, color_formula=options.color_formula),
        resolved=resolved,
    )
    colormap = preset_colormap_params(resolve)(
        colormap=SafeColorMapParams(colormap_name=options.colormap_name, colormap=None),
        resolved=resolved,
    )
    return TileLayer(
        reader=reader,
        tile=tile,
        layer=layer,
        dataset=dataset,
        render=rendering,
        colormap=colormap,
        format=ImageType(image_format),
        env={},  # the factory's environment_dependency
        tms=morecantile.tms.get(WEB_MERCATOR),
    )


def render_item_tile(item: Mapping[str, Any], z: int, x: int, y: int, p: TileLayer) -> bytes | None:
    """The item tile endpoint's body for z/x/y; None where it would be all masked or a 404."""
    with rasterio.Env(**p.env):
        with ItemReader(dict(item), tms=p.tms, **p.reader.as_dict()) as src_dst:
            try:
                image = src_dst.tile(
                    x, y, z, tilesize=None, **p.tile.as_dict(), **p.layer.as_dict(),
                    **p.dataset.as_dict(),
                )  # fmt: skip
            except TileOutsideBounds:
                return None
            dst_colormap = getattr(src_dst, "colormap", None)
    if not image.mask.any():
        return None
    content, _ = render(image, output_format=p.format, colormap=p.colormap or dst_colormap,
                        **p.render.as_dict(), **p.encode)  # fmt: skip
    return content


def item_zooms(
    item: Mapping[str, Any],
    storage: Storage,
    assets: Sequence[str] | None = None,
    open_assets: bool = False,
) -> tuple[int, int]:
    """The item's WebMercatorQuad min and max zoom from its native resolution (rio-tiler's).

    The grid comes from the projection extension, else from the files of ``assets`` (default:
    the default ones); ``open_assets`` opens them in any case. An item with no raster asset, or
    an asset that cannot be read, is AssetNotReadable naming the asset and why: without a grid
    rio-tiler would answer the tile matrix set's zooms (0-24), and an export of those is vast.
    """
    try:
        reader = ItemReader(dict(item), storage=storage)
    except MissingAssets as exc:
        names = list(item.get("assets") or {})
        reasons = [not_rendered(item, name, ASSET_READERS) for name in names[:5]]
        raise AssetNotReadable(
            f"item {item.get('id')!r} has no raster asset to render"
            + (f": {'; '.join(reasons)}" if reasons else " (it has no asset)")
        ) from exc
    with reader as opened:
        if open_assets or not opened.gridded:
            zooms: tuple[int, int] = opened.asset_zooms(assets)
            if not opened.gridded:
                return zooms
        return int(opened.minzoom), int(opened.maxzoom)


# -- mosaics ------------------------------------------------------------------------------------
@dataclass
class MosaicLayer:
    """What the mosaic tile route's dependency slots give for one set of options."""

    reader: ReaderOptions
    tile: TileOptions
    layer: LayerQuery
    dataset: DatasetParams
    render: ImageRenderingParams
    colormap: ColorMapType | None
    preset: Preset | None
    pixel_selection: str
    format: ImageType
    tms: TileMatrixSet
    encode: dict[str, Any] = field(default_factory=dict)  # png_level, quality (exports)


def mosaic_layer(
    options: RenderOptions,
    pixel_selection: str,
    image_format: str,
    tile_size: int,
    reader: ReaderOptions,
) -> MosaicLayer:
    """The mosaic route's slot values (tiler/mosaic.py ``MosaicFactory``) for ``options``."""
    layer, reader, tile, dataset = _slots(options, tile_size, reader)
    return MosaicLayer(
        reader=reader,
        tile=tile,
        layer=layer,
        dataset=dataset,
        render=ImageRenderingParams(rescale=options.rescale, color_formula=options.color_formula),
        colormap=SafeColorMapParams(colormap_name=options.colormap_name, colormap=None),
        preset=MosaicPresetParams(layer=layer, preset=PresetQuery(preset=options.preset)),
        pixel_selection=pixel_selection,
        format=ImageType(image_format),
        tms=morecantile.tms.get(WEB_MERCATOR),
    )


@attr.s
class _GivenItemsBackend(CatalogBackend):
    """CatalogBackend whose tile items are given, not looked up in the catalogue."""

    items: list[dict[str, Any]] = attr.ib(factory=list)

    def assets_for_tile(self, x: int, y: int, z: int, **kwargs: Any) -> list[dict[str, Any]]:
        """The given items."""
        return self.items


def render_mosaic_tile(
    items: list[dict[str, Any]], z: int, x: int, y: int, p: MosaicLayer
) -> bytes | None:
    """The mosaic tile route's body for z/x/y over ``items``; None where it answers 204."""
    if not items:
        return None
    options = {**p.tile.as_dict(), **p.layer.as_dict(), **p.dataset.as_dict()}
    # The items are given (the export's planner chose them, within its caller's rights).
    source = MosaicSource(repository=None, params=SearchParams(), readable=EVERYTHING)  # type: ignore[arg-type]
    backend = _GivenItemsBackend(source, tms=p.tms, reader_options=p.reader.as_dict(), items=items)
    with backend as src:
        try:
            # threads=1: the items one by one, in order, as the route's pool (MOSAIC_THREADS)
            # hands them to the pixel selection; no pool made per tile.
            image, _ = src.tile(x, y, z, tilesize=None, preset=p.preset,
                                pixel_selection=PixelSelectionParams(p.pixel_selection),
                                threads=1, **options)  # fmt: skip
        except EmptyTile:
            return None
        used = src.used_items
    if not image.mask.any():
        return None
    rendering = p.render.as_dict()
    colormap = p.colormap
    if p.preset is not None:  # as the route: the preset as the newest item used resolves it
        found = resolve_preset(p.preset, used[0], p.layer.assets)
        rendering.setdefault("rescale", found.rescale)
        colormap = colormap if colormap is not None else found.colormap
    content, _ = render(image, output_format=p.format, colormap=colormap, **rendering, **p.encode)
    return content


class MosaicItems:
    """The items of a mosaic meeting a tile, in mosaic order, at most ``limit`` (the route's
    ``tile_items``), picked from ``items`` (in mosaic order) by their GeoJSON footprints."""

    def __init__(
        self, items: Sequence[dict[str, Any]], footprints: Sequence[str], limit: int
    ) -> None:
        self.items = list(items)
        self.limit = limit
        self.tree = shapely.STRtree(shapely.from_geojson(list(footprints)))

    def __call__(self, z: int, x: int, y: int) -> list[dict[str, Any]]:
        """The items whose footprint meets tile z/x/y (touching counts, as ST_Intersects)."""
        box = tile_boxes(z, np.array([x]), np.array([y]))[0]
        found = np.sort(self.tree.query(box, predicate="intersects"))
        return [self.items[i] for i in found[: self.limit]]


# -- plans: what a child process rebuilds its renderer from (JSON) ------------------------------
def _options(request: Any) -> RenderOptions:
    return RenderOptions.model_validate(request.model_dump(include=set(RenderOptions.model_fields)))


def _encode(request: Any, png_level: int) -> dict[str, Any]:
    """The encoder's options of an export: ``render``'s png_level and quality."""
    return {"png_level": png_level, "quality": request.quality}


def item_plan(
    item: Mapping[str, Any],
    request: Any,
    reader: ReaderOptions,
    png_level: int = PNG_LEVEL,
) -> dict[str, Any]:
    """A JSON plan rendering ``item`` with ``request``'s options (resolved now, to fail early).

    ``reader`` are the options of the assets' storage; ``png_level`` is the tile endpoints'
    (``TilerSettings.png_level``), so that PNG tiles are theirs.
    """
    options = _options(request)
    tile_layer(item, options, request.format, request.tile_size, reader)
    return {
        "kind": "item",
        "item": dict(item),
        "options": options.model_dump(),
        "format": request.format,
        "encode": _encode(request, png_level),
        "tile_size": request.tile_size,
        "max_image_size": reader.max_image_size,
    }


def mosaic_plan(
    items: Sequence[dict[str, Any]],
    footprints: Sequence[str],
    max_items: int,
    request: Any,
    reader: ReaderOptions,
    png_level: int = PNG_LEVEL,
) -> dict[str, Any]:
    """A JSON plan rendering the mosaic of ``items`` (mosaic order, GeoJSON footprints)."""
    options = _options(request)
    pixel_selection = request.pixel_selection or "first"
    mosaic_layer(options, pixel_selection, request.format, request.tile_size, reader)
    return {
        "kind": "mosaic",
        "items": list(items),
        "footprints": list(footprints),
        "max_items": max_items,
        "options": options.model_dump(),
        "pixel_selection": pixel_selection,
        "format": request.format,
        "encode": _encode(request, png_level),
        "tile_size": request.tile_size,
        "max_image_size": reader.max_image_size,
    }


def renderer_from_plan(plan: Mapping[str, Any], resources: ReaderResources) -> TileRenderer:
    """The tile renderer a plan of ``item_plan``, ``mosaic_plan`` or ``cube_plan`` stands for.

    ``resources`` are the storage the export's plan carries, the pool and the cache its
    tiles share (the caller closes them); forked render processes inherit them.
    """
    if plan["kind"] == "cube":
        return cube_renderer(plan, resources)
    options = RenderOptions.model_validate(plan["options"])
    reader = ReaderOptions.shared(resources, plan["max_image_size"])
    common = (plan["format"], plan["tile_size"], reader)
    if plan["kind"] == "item":
        item = plan["item"]
        layer = tile_layer(item, options, *common)
        layer.encode = plan["encode"]

        def render_tile(z: int, x: int, y: int) -> bytes | None:
            return render_item_tile(item, z, x, y, layer)

        return render_tile
    if plan["kind"] == "mosaic":
        mosaic = mosaic_layer(options, plan["pixel_selection"], *common)
        mosaic.encode = plan["encode"]
        pick = MosaicItems(plan["items"], plan["footprints"], plan["max_items"])

        def render_mosaic(z: int, x: int, y: int) -> bytes | None:
            return render_mosaic_tile(pick(z, x, y), z, x, y, mosaic)

        return render_mosaic
    raise ValueError(f"unknown renderer kind {plan['kind']!r}")
