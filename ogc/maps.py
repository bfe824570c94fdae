"""OGC API - Maps core: ``/collections/{collectionId}/map``, a collection drawn in a box.

- a raster collection: its mosaic (tiler/maps.py), then the features of the vector collections
  annotating it that the caller may read, drawn over it (a hybrid);
- a vector collection: its features (``filter``/``datetime`` select them, as for its items),
  drawn with its default style's colours (ogc/drawing.py) over a transparent background (white
  in JPEG).

``bbox`` is CRS84 (default: the extent); ``crs`` the map's CRS: CRS84 (the default) or
EPSG:4326 for every map, EPSG:3857 for vector collections (the mosaic is drawn in CRS84 only).
Sides are capped by ``TERRACAT_TILER_MAX_IMAGE_SIZE``; at most ``TERRACAT_TILES_MAP_MAX_FEATURES``
features are drawn (``X-Terracat-Features-Capped`` says when more were in the box). Drawing runs
in a worker thread (the route is sync); database reads go back to the event loop.
"""

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio.from_thread
import imagecodecs
import numpy
import shapely
from fastapi import APIRouter, Depends, Query, Request
from pyproj import Transformer
from rio_tiler.constants import WGS84_CRS
from rio_tiler.models import ImageData
from starlette.responses import Response

from catalog.accounts.web import readable_of
from catalog.errors import InvalidParameter
from catalog.vector.drawing import WEB_MERCATOR, WGS84, FeatureMapRepository, MapFrame
from catalog.vector.query import FeatureQuery
from catalog.vector.schema import Layer
from tiler.dependencies import LayerQuery, reader_params
from tiler.maps import default_box, encode, map_size, mosaic_image, parse_bbox
from tiler.mosaic import MosaicSource, collection_source, mosaic_repository
from tiler.readers.shared import ReaderResources
from tiler.settings import MosaicSettings, TilerSettings

from .drawing import draw, from_bytes, paint_of, to_bytes
from .feature_tiles import Filter, FilterLang, feature_query, layer_cache
from .settings import CRS84, TileSettings
from .styles import ColorBy, StyleService, collection_colour
from .vector_tiles import CAPPED_HEADER

CRS_URIS = {
    CRS84: WGS84,
    "http://www.opengis.net/def/crs/EPSG/0/4326": WGS84,
    "http://www.opengis.net/def/crs/EPSG/0/3857": WEB_MERCATOR,
}
_EPSG = re.compile(r"^\[?EPSG:(\d+)\]?$", re.IGNORECASE)
_TO_MERCATOR = Transformer.from_crs(WGS84, WEB_MERCATOR, always_xy=True)
MAX_MERCATOR_LAT = 85.0511287798066


class UnsupportedCrs(InvalidParameter):
    """A map CRS this server does not draw in."""

    code = "maps.UnsupportedCrs"


def map_srid(crs: str | None) -> int:
    """The SRID of a ``crs`` parameter (URI or ``EPSG:n``)."""
    if crs is None:
        return WGS84
    found = _EPSG.match(crs.strip())
    srid = int(found.group(1)) if found else CRS_URIS.get(crs.strip())
    if srid not in (WGS84, WEB_MERCATOR):
        raise UnsupportedCrs(f"maps are drawn in {CRS84}, EPSG:4326 or EPSG:3857, not {crs[:80]!r}")
    return srid


def crs_uri(srid: int) -> str:
    """The URI of a map CRS (CRS84 for lon/lat)."""
    return CRS84 if srid == WGS84 else f"http://www.opengis.net/def/crs/EPSG/0/{srid}"


def frame_box(box: tuple[float, float, float, float], srid: int) -> tuple[float, ...]:
    """``box`` (lon/lat) in the map's CRS."""
    if srid == WGS84:
        return box
    west, south, east, north = box
    south, north = max(south, -MAX_MERCATOR_LAT), min(north, MAX_MERCATOR_LAT)
    x0, y0 = _TO_MERCATOR.transform(west, south)
    x1, y1 = _TO_MERCATOR.transform(east, north)
    return (x0, y0, x1, y1)


class VectorDrawer:
    """Draws vector layers into a map (called from the route's worker thread)."""

    def __init__(
        self, request: Request, settings: TileSettings, query: Any, color_by: str | None = None
    ) -> None:
        self.request = request
        self.settings = settings
        self.query = query
        self.color_by = color_by
        self.capped = False

    def over(
        self,
        image: numpy.ndarray | None,
        layer: Layer,
        frame: MapFrame,
        projected: tuple[float, ...],
        size: tuple[int, int],
    ) -> numpy.ndarray:
        """``layer``'s features drawn over ``image`` with its default style's colours."""
        repository = FeatureMapRepository(self.request.app.state.repository.engine)
        # color_by colours a vector collection (400 for a property it lacks), or those of a
        # hybrid's annotations that have the property
        color_by = self.color_by
        drawn_for = self.request.path_params.get("collectionId")
        if (
            color_by is not None
            and layer.prop(color_by) is None
            and layer.collection_id != drawn_for
        ):
            color_by = None
        style = anyio.from_thread.run(self._style, layer.collection_id, color_by)
        paint = paint_of(style, layer.collection_id, collection_colour(layer.collection_id))
        read = [prop for prop in layer.properties if prop.name in paint.properties]
        shapes, capped = anyio.from_thread.run(
            repository.shapes, layer, self.query, frame, self.settings.map_max_features, read
        )
        self.capped |= capped
        features = [(shapely.from_wkb(wkb), props) for wkb, props in shapes]
        return draw(features, (projected[0], projected[1], projected[2], projected[3]), size,
                    paint, image)  # fmt: skip

    async def _style(self, collection_id: str, color_by: str | None) -> dict[str, Any]:
        collection = await self.request.app.state.repository.get_collection(collection_id)
        return await StyleService(self.request, self.settings).default(collection, color_by)


def _encode(image: numpy.ndarray, f: str, png_level: int) -> tuple[bytes, str]:
    pixels = to_bytes(image)
    if f == "png":
        return bytes(imagecodecs.png_encode(pixels, level=png_level)), "image/png"
    alpha = image[..., 3:4]
    white = image[..., :3] * alpha + 255 * (1 - alpha)
    rgb = numpy.ascontiguousarray(numpy.clip(numpy.rint(white), 0, 255).astype("uint8"))
    return bytes(imagecodecs.jpeg8_encode(rgb, level=85, optimize=True)), "image/jpeg"


def map_router(
    tiler: TilerSettings,
    tiles: TileSettings,
    resources: ReaderResources,
    settings: MosaicSettings | None = None,
) -> APIRouter:
    """``GET /collections/{collectionId}/map``."""
    source_dependency = collection_source(mosaic_repository(settings or MosaicSettings()))
    reader_dependency = reader_params(resources, tiler.max_image_size)
    side = Query(ge=1, le=tiler.max_image_size, description="Pixels (default: keep the aspect)")
    box_query = Query(description="minLon,minLat,maxLon,maxLat (CRS84; default: the extent)")
    crs_query = Query(description="The map's CRS: CRS84 (default), EPSG:4326 or EPSG:3857")

    def get_map(
        request: Request,
        source: Annotated[MosaicSource, Depends(source_dependency)],
        reader_options: Annotated[Any, Depends(reader_dependency)],
        layer: Annotated[LayerQuery, Depends()],
        bbox: Annotated[str | None, box_query] = None,
        width: Annotated[int | None, side] = None,
        height: Annotated[int | None, side] = None,
        crs: Annotated[str | None, crs_query] = None,
        filter_: Filter = None,
        filter_lang: FilterLang = None,
        datetime: Annotated[str | None, Query(description="Features of this time")] = None,
        color_by: ColorBy = None,
        f: Annotated[Literal["png", "jpeg", "jpg"], Query(description="Format")] = "png",
    ) -> Response:
        """The collection drawn over ``bbox`` at ``width`` x ``height`` pixels."""
        request_ = MapRequest(
            source, reader_options.as_dict(), layer.as_dict(), bbox, (width, height),
            map_srid(crs), feature_query(filter_, filter_lang, datetime),
            "jpeg" if f == "jpg" else f, color_by,
        )  # fmt: skip
        return draw_map(request, request_, tiler, tiles)

    router = APIRouter(tags=["Maps"])
    router.add_api_route(
        "/collections/{collectionId}/map", get_map, methods=["GET"],
        operation_id="getCollectionMap",
        summary="A map of the collection: imagery, features, or imagery with its annotations",
        response_class=Response,
        responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}},
    )  # fmt: skip
    return router


@dataclass(frozen=True)
class MapRequest:
    """What a map request asks for."""

    source: MosaicSource
    reader_options: dict[str, Any]
    layer: dict[str, Any]
    bbox: str | None
    size: tuple[int | None, int | None]
    srid: int
    query: FeatureQuery
    fmt: str
    color_by: str | None = None


def draw_map(
    request: Request, asked: MapRequest, tiler: TilerSettings, tiles: TileSettings
) -> Response:
    """The map (call from a worker thread)."""
    collection_id, srid, bbox = str(asked.source.collection_id), asked.srid, asked.bbox
    found = anyio.from_thread.run(layer_cache(request, tiles).get, collection_id)
    base = None
    if found is not None:
        box = parse_bbox(bbox) if bbox else _layer_box(found)
        vectors = [found]
    else:
        if srid != WGS84:
            raise UnsupportedCrs("maps of imagery are drawn in CRS84 (or EPSG:4326) only")
        if bbox:
            box = parse_bbox(bbox)
            anyio.from_thread.run(asked.source.repository.collection_exists, collection_id)
        else:
            box = default_box(asked.source)  # 404 for an unknown collection here
        vectors = anyio.from_thread.run(_annotations, request, tiles, collection_id)
        base = (box, asked.reader_options, asked.layer)
    projected = frame_box(box, srid)
    size = map_size(projected, *asked.size, tiler.max_image_size)  # type: ignore[arg-type]
    image = _mosaic(asked.source, base, size, asked.fmt, tiler.png_level, bool(vectors))
    if isinstance(image, Response):
        return image
    drawer = VectorDrawer(request, tiles, asked.query, asked.color_by)
    frame = MapFrame(box, srid, (projected[2] - projected[0]) / size[0])
    for vector in vectors:
        image = drawer.over(image, vector, frame, projected, size)
    if image is None:  # no layer drew: a transparent map of the size asked for
        image = numpy.zeros((size[1], size[0], 4), "float64")
    content, media_type = _encode(image, asked.fmt, tiler.png_level)
    headers = {"Content-Crs": f"<{crs_uri(srid)}>",
               "Content-Bbox": ",".join(str(v) for v in projected)}  # fmt: skip
    if drawer.capped:
        headers[CAPPED_HEADER] = str(tiles.map_max_features)
    return Response(content, media_type=media_type, headers=headers)


def _layer_box(layer: Layer) -> tuple[float, float, float, float]:
    if layer.bbox is None:
        return (-180.0, -90.0, 180.0, 90.0)
    west, south, east, north = layer.bbox
    if east - west < 1e-9 or north - south < 1e-9:  # one point: a small box around it
        return (west - 0.01, south - 0.01, east + 0.01, north + 0.01)
    return (west, south, east, north) if west < east else (-180.0, south, 180.0, north)


async def _annotations(request: Request, tiles: TileSettings, collection_id: str) -> list[Layer]:
    readable = await readable_of(request)
    layers = await layer_cache(request, tiles).annotations(collection_id)
    return [layer for layer in layers if readable.allows(layer.collection_id)]


def _mosaic(
    source: MosaicSource,
    base: tuple[Any, dict[str, Any], dict[str, Any]] | None,
    size: tuple[int, int],
    fmt: str,
    png_level: int,
    overlaid: bool,
) -> numpy.ndarray | Response | None:
    """The mosaic as a float RGBA image to draw over; or, without annotations, the finished
    response (encoded as the mosaic routes always did); None for a vector collection."""
    if base is None:
        return None
    box, reader_options, layer = base
    image: ImageData = mosaic_image(source, reader_options, layer, box, size)
    if not overlaid:
        content, media_type = encode(image, fmt, png_level)
        headers = {"Content-Crs": f"<{CRS84}>", "Content-Bbox": ",".join(str(v) for v in box)}
        return Response(content, media_type=media_type, headers=headers)
    content, _ = encode(ImageData(image.array, bounds=box, crs=WGS84_CRS), "png", 1)
    return from_bytes(numpy.asarray(imagecodecs.png_decode(content)))


__all__ = ["map_router", "map_srid"]
