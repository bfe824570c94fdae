"""Raster endpoints of one catalogue item: titiler's MultiBaseTilerFactory on ``ItemReader``.

Mounted at ``/collections/{collection_id}/items/{item_id}``; the item comes from the path
(``ItemParams``), never a ``url=``. Routes are titiler 2.4's (tiles, tilejson, tilesets, info,
statistics, point, preview, bbox/feature crops, WMTS) plus ``@{scale}x`` tiles, which titiler 2
dropped. Behaviour is set through the factory's dependency slots (dependencies.py, presets.py);
route bodies are titiler's.
"""

import io
import re
from typing import Any
from urllib.parse import quote

import attr
import imagecodecs
import morecantile
import numpy
from attrs import define
from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute
from morecantile import TileMatrixSet
from morecantile.defaults import TileMatrixSets
from rio_tiler.io import MultiBaseReader
from rio_tiler.models import ImageData
from rio_tiler.types import ColorMapType
from rio_tiler.utils import linear_rescale
from starlette.requests import Request
from starlette.responses import Response
from titiler.core.dependencies import (
    ColorMapParams,
    DatasetParams,
    ImageRenderingParams,
    TileParams,
)
from titiler.core.factory import MultiBaseTilerFactory, img_endpoint_params
from titiler.core.resources.enums import ImageType
from titiler.core.utils import render_image
from titiler.extensions import wmtsExtension

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
from .presets import (
    PresetQuery,
    preset_colormap_params,
    preset_layer_params,
    preset_params,
    preset_render_params,
)
from .readers import ItemReader
from .readers.shared import ReaderResources
from .settings import TilerSettings

ITEM_PREFIX = "/collections/{collection_id}/items/{item_id}"
# Data types each output format takes as they are (titiler's table); others are stretched.
FORMAT_DTYPES: dict[ImageType | None, tuple[str, ...]] = {
    None: ("uint8",),
    ImageType.png: ("uint8", "uint16"),
    ImageType.jpeg: ("uint8",),
    ImageType.jpg: ("uint8",),
    ImageType.webp: ("uint8",),
    ImageType.jp2: ("uint8", "int16", "uint16"),
}
PNG_LEVEL = 6  # zlib level of PNG tiles (GDAL's default too)


def render(
    image: ImageData,
    colormap: ColorMapType | None = None,
    output_format: ImageType | None = None,
    rescale: Any = None,
    **kwargs: Any,
) -> tuple[bytes, str]:
    """titiler's render_image, stretching data the format cannot hold first.

    titiler stretches such data itself (between the bands' statistics, else the data type's
    range) but warns on every tile; we do the same stretch up front. A 256-entry colormap
    needs 8-bit data too; discrete and interval colormaps get the raw values.
    """
    lut = isinstance(colormap, dict) and len(colormap) == 256
    allowed = FORMAT_DTYPES.get(output_format)
    dtype = str(image.data.dtype)
    if not rescale and dtype != "uint8" and ((allowed and dtype not in allowed) or lut):
        if image.dataset_statistics:
            rescale = list(image.dataset_statistics)
        elif numpy.issubdtype(image.data.dtype, numpy.integer):
            info = numpy.iinfo(image.data.dtype)
            rescale = [(float(info.min), float(info.max))]
        else:
            valid = image.array.compressed()
            valid = valid[numpy.isfinite(valid)]
            low, high = (float(valid.min()), float(valid.max())) if valid.size else (0.0, 1.0)
            rescale = [(low, high if high > low else low + 1.0)]
    if output_format is None and not colormap:
        # titiler's automatic format, decided here so that its PNGs take the encoder below
        output_format = ImageType.png if (image.mask == 0).any() else ImageType.jpeg
    if output_format == ImageType.png:
        content = _png(image, colormap, rescale, kwargs)
        if content is not None:
            return content, ImageType.png.mediatype
    if output_format in (ImageType.jpeg, ImageType.jpg):
        content = _jpeg(image, colormap, rescale, kwargs)
        if content is not None:
            return content, output_format.mediatype
    return render_image(image, colormap=colormap, output_format=output_format, rescale=rescale,
                        **kwargs)  # fmt: skip


def _prepared(
    image: ImageData, colormap: ColorMapType | None, rescale: Any, kwargs: dict[str, Any]
) -> numpy.ndarray:
    """The bands titiler would encode (rescale, color formula, colormap, mask as last band):
    its ``npy`` output, computed on a copy since titiler rescales in place."""
    copy = attr.evolve(image, array=image.array.copy())
    content, _ = render_image(copy, colormap=colormap, output_format=ImageType.npy,
                             rescale=rescale, **kwargs)  # fmt: skip
    return numpy.load(io.BytesIO(content))


def _png(
    image: ImageData, colormap: ColorMapType | None, rescale: Any, kwargs: dict[str, Any]
) -> bytes | None:
    """titiler's PNG with libpng on zlib-ng (imagecodecs) instead of GDAL's PNG driver.

    GDAL's driver compresses with zlib, about 30 ms for a 256 px RGBA tile of an orthophoto:
    half the time of the whole tile. The same pixels compress here in a quarter of that, to
    about 6% more bytes. titiler still prepares them (rescale, color formula, colormap, mask):
    its ``npy`` output is the array its PNG would hold. None when libpng cannot take that
    array (more than 4 bands, other data types): titiler's own PNG then says what is wrong.
    """
    pixels = _prepared(image, colormap, rescale, kwargs)
    if pixels.dtype not in (numpy.uint8, numpy.uint16) or not 1 <= len(pixels) <= 4:
        return None
    if pixels.dtype == numpy.uint16 and kwargs.get("add_mask", True):
        # the mask is 0-255 whatever the data type; rio-tiler stretches it for 16-bit PNGs
        pixels[-1] = linear_rescale(pixels[-1], (0, 255), (0, 65535)).astype(numpy.uint16)
    return bytes(imagecodecs.png_encode(numpy.ascontiguousarray(numpy.moveaxis(pixels, 0, -1)),
                                        level=PNG_LEVEL))  # fmt: skip


def _jpeg(
    image: ImageData, colormap: ColorMapType | None, rescale: Any, kwargs: dict[str, Any]
) -> bytes | None:
    """titiler's JPEG, encoded by libjpeg-turbo through imagecodecs instead of GDAL's driver.

    Same library, quality (titiler's 85) and Huffman optimisation as GDAL's JPEG driver: the
    bytes are the same (tests/tiler/test_jpeg.py), in half the time (no in-memory GDAL
    dataset). titiler prepares the pixels as for PNG; JPEG has no mask band. None for what
    JPEG cannot hold (not 8-bit, not 1 or 3 bands): titiler's own JPEG then says so.
    """
    pixels = _prepared(image, colormap, rescale, {**kwargs, "add_mask": False})
    if pixels.dtype != numpy.uint8 or len(pixels) not in (1, 3):
        return None
    quality = ImageType.jpeg.profile.get("quality", 85)
    planes = pixels[0] if len(pixels) == 1 else numpy.moveaxis(pixels, 0, -1)
    return bytes(imagecodecs.jpeg8_encode(numpy.ascontiguousarray(planes), level=quality,
                                          optimize=True))  # fmt: skip


def cache_control_route(value: str, route_names: frozenset[str]) -> type[APIRoute]:
    """An APIRoute class adding ``Cache-Control: value`` to successful responses of some routes."""

    class CacheControlRoute(APIRoute):
        def get_route_handler(self) -> Any:
            handler = super().get_route_handler()
            if not value or self.name not in route_names:
                return handler

            async def cached(request: Request) -> Response:
                response = await handler(request)
                if response.status_code == 200:
                    response.headers.setdefault("Cache-Control", value)
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

    def __attrs_post_init__(self) -> None:
        """Register titiler's routes and extensions, then rename their operation ids."""
        super().__attrs_post_init__()
        for route in self.router.routes:
            if isinstance(route, APIRoute) and route.operation_id:
                name = route.operation_id.removeprefix(self.operation_prefix)
                verb = re.match(r"[a-z]*", name).group()  # type: ignore[union-attr]
                route.operation_id = f"{verb}{self.operation_noun}{name[len(verb) :]}"
                route.unique_id = route.operation_id

    def tile(self) -> None:
        """titiler's tile routes, preceded by ``…/{y}@{scale}x[.{format}]`` on the same endpoint.

        They come first: ``{y}`` alone would also match ``1@2x`` and fail as a number.
        """
        start = len(self.router.routes)
        super().tile()
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
        return str(url_path.make_absolute_url(base_url=str(request.base_url) + prefix))


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
    return ItemTilerFactory(
        router=APIRouter(route_class=route_class, dependencies=[Depends(SafeCrsParams)]),
        router_prefix=ITEM_PREFIX,
        path_dependency=item,
        reader_dependency=reader_params(resources, settings.max_image_size),
        layer_dependency=preset_layer_params(preset),
        render_dependency=preset_render_params(preset),
        colormap_dependency=preset_colormap_params(preset),
        stats_dependency=stats,
        histogram_dependency=histogram,
        render_func=render,
        supported_tms=SharedTileMatrixSets(
            {name: morecantile.tms.get(name) for name in settings.tile_matrix_sets}
        ),
        max_tile_scale=settings.max_tile_scale,
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


def _layer_name(item: Any) -> str:
    if isinstance(item, dict):
        return f"{item.get('collection')}.{item.get('id')}"
    return "item"
