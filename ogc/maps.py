"""OGC API - Maps core: ``/collections/{collectionId}/map``, a collection drawn in a box.

- a raster collection: its mosaic (tiler/maps.py), then the features of the vector collections
  annotating it that the caller may read, drawn over it (a hybrid);
- a vector collection: its features (``filter``/``datetime`` select them, as for its items),
  drawn with its default style's colours (ogc/drawing.py) over a transparent background (white
  in JPEG).

``bbox`` is CRS84 (default: the extent); ``crs`` the map's CRS: CRS84 (the default) or
EPSG:4326 for every map; for vector collections also every CRS their items are served in
(catalog/vector/crs.py: EPSG:3857, EPSG:2154 and the WGS 84 UTM zones, which their documents
list in ``crs``), the box then being the projected rectangle that holds ``bbox`` (cut to the
CRS's area of use). The mosaic is drawn in CRS84 only. ``width``/``height`` give the size (a
missing one keeps the aspect, neither: 1024 pixels on the long side), or ``scale-denominator``
does, at OGC's 0.28 mm a pixel, over the ground the map covers (geodesic lengths of its middle
lines). Sides are capped by ``TERRACAT_TILER_MAX_IMAGE_SIZE``; at most
``TERRACAT_TILES_MAP_MAX_FEATURES`` features are drawn (``X-Terracat-Features-Capped`` says when
more were in the box). ``f`` (png, jpeg) or else ``Accept`` chooses the format. Drawing runs in
a worker thread (the route is sync); database reads go back to the event loop.

OGC API - Maps - Part 1 conformance (``CONFORMANCE_CLASSES``): core (``/map``, ``Content-Crs``,
``Content-Bbox``, ``Content-Datetime`` for collections with a temporal extent, negotiated
format), collection-map (the ``[ogc-rel:map]`` link of every collection, server/features.py),
crs, scaling, png and jpeg. Not spatial-subsetting: there is no ``bbox-crs``, ``center`` or
``subset`` (``bbox`` is CRS84 only); nor datetime, background, orientation or display-resolution.
"""

import datetime as dt
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal

import anyio.from_thread
import attr
import imagecodecs
import numpy
import shapely
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from pyproj import CRS, Geod, Transformer
from rio_tiler.constants import WGS84_CRS
from rio_tiler.models import ImageData
from stac_fastapi.types.extension import ApiExtension
from starlette.responses import Response

from catalog.accounts.web import readable_of
from catalog.cubes.model import CubeRepository
from catalog.errors import CatalogError, InvalidBBox, InvalidParameter, NotFound
from catalog.vector.crs import UnsupportedCrs as UnsupportedFeatureCrs
from catalog.vector.crs import parse_crs
from catalog.vector.drawing import WEB_MERCATOR, WGS84, FeatureMapRepository, MapFrame
from catalog.vector.query import FeatureQuery
from catalog.vector.schema import Layer
from tiler.dependencies import LayerQuery, reader_params
from tiler.maps import default_box, encode, map_size, mosaic_image, parse_bbox
from tiler.mosaic import MosaicSource, collection_source, mosaic_repository
from tiler.readers.shared import ReaderResources
from tiler.settings import MosaicSettings, TilerSettings

from .drawing import draw, from_bytes, paint_of, to_bytes
from .feature_tiles import Filter, FilterCrs, FilterLang, feature_query, layer_cache
from .settings import CRS84, TileSettings
from .styles import ColorBy, StyleService, collection_colour
from .vector_tiles import CAPPED_HEADER

CONF = "http://www.opengis.net/spec/ogcapi-maps-1/1.0/conf/"
CONFORMANCE_CLASSES = [CONF + name for name in
                       ("core", "collection-map", "crs", "scaling", "png", "jpeg")]  # fmt: skip
_TO_MERCATOR = Transformer.from_crs(WGS84, WEB_MERCATOR, always_xy=True)
MAX_MERCATOR_LAT = 85.0511287798066
MM_PER_PIXEL = 0.28  # OGC's standardized rendering pixel (scale-denominator)
_GEOD = Geod(ellps="WGS84")
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}


class UnsupportedCrs(InvalidParameter):
    """A map CRS this server does not draw in."""

    code = "maps.UnsupportedCrs"


class NoMap(NotFound):
    """A collection this route draws no map of (a datacube: its tiles draw it)."""

    code = "maps.NoMap"


class MapTooLarge(CatalogError):
    """A map whose ``scale-denominator`` needs more pixels than the size cap."""

    code = "maps.TooLarge"
    status = 413


class NotAcceptable(CatalogError):
    """An ``Accept`` header that takes none of the map formats (and no ``f``)."""

    code = "maps.NotAcceptable"
    status = 406


def map_srid(crs: str | None) -> int:
    """The SRID of a ``crs`` parameter (URI or ``EPSG:n``): those of feature responses."""
    try:
        return parse_crs(crs).srid
    except UnsupportedFeatureCrs:
        raise UnsupportedCrs(
            f"maps are drawn in {CRS84}, EPSG:4326, EPSG:3857, EPSG:2154 or a WGS 84 UTM zone "
            f"(imagery in CRS84 only), not {str(crs)[:80]!r}"
        ) from None


def map_format(f: str | None, accept: str | None) -> str:
    """``png`` or ``jpeg``: ``f`` if given, else the first of them ``Accept`` takes (PNG when
    it takes both alike, or says nothing)."""
    if f is not None:
        return "jpeg" if f == "jpg" else f
    if not accept or not accept.strip():
        return "png"
    weights: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.lower().startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        weights[media.lower()] = q
    ranked = []
    for fmt, media in MEDIA_TYPES.items():
        q = weights.get(media, weights.get("image/*", weights.get("*/*", 0.0)))
        if q > 0:
            ranked.append((-q, fmt != "png", fmt))
    if not ranked:
        raise NotAcceptable(f"maps are image/png or image/jpeg, not {accept[:120]!r}")
    return min(ranked)[2]


def crs_uri(srid: int) -> str:
    """The URI of a map CRS (CRS84 for lon/lat)."""
    return CRS84 if srid == WGS84 else f"http://www.opengis.net/def/crs/EPSG/0/{srid}"


@cache
def _area_of_use(srid: int) -> tuple[float, float, float, float]:
    area = CRS.from_epsg(srid).area_of_use
    return area.bounds if area is not None else (-180.0, -90.0, 180.0, 90.0)


@cache
def _transformer(source: int, target: int) -> Transformer:
    return Transformer.from_crs(source, target, always_xy=True)


def frame_boxes(
    box: tuple[float, float, float, float], srid: int
) -> tuple[tuple[float, float, float, float], tuple[float, ...]]:
    """The lon/lat box whose features a map in EPSG:``srid`` draws, and the map's box in
    ``srid``: for a projection other than Web Mercator, the rectangle holding ``box`` (cut to
    the CRS's area of use) and the lon/lat box holding that rectangle."""
    if srid == WGS84:
        return box, box
    west, south, east, north = box
    if srid == WEB_MERCATOR:
        south, north = max(south, -MAX_MERCATOR_LAT), min(north, MAX_MERCATOR_LAT)
        x0, y0 = _TO_MERCATOR.transform(west, south)
        x1, y1 = _TO_MERCATOR.transform(east, north)
        return box, (x0, y0, x1, y1)
    a_west, a_south, a_east, a_north = _area_of_use(srid)
    cut = (max(west, a_west), max(south, a_south), min(east, a_east), min(north, a_north))
    if cut[0] >= cut[2] or cut[1] >= cut[3]:
        raise InvalidBBox(f"the map's box lies outside EPSG:{srid}'s area of use")
    projected = _transformer(WGS84, srid).transform_bounds(*cut, densify_pts=21)
    lonlat = _transformer(srid, WGS84).transform_bounds(*projected, densify_pts=21)
    return lonlat, projected


def ground_size(projected: tuple[float, ...], srid: int) -> tuple[float, float]:
    """Metres on the ground across the map's middle, west-east and south-north (geodesic)."""
    x0, y0, x1, y1 = projected[:4]
    steps = numpy.linspace(0.0, 1.0, 65)
    across = (x0 + (x1 - x0) * steps, numpy.full(65, (y0 + y1) / 2))
    down = (numpy.full(65, (x0 + x1) / 2), y0 + (y1 - y0) * steps)
    lengths = []
    for xs, ys in (across, down):
        lons, lats = (xs, ys) if srid == WGS84 else _transformer(srid, WGS84).transform(xs, ys)
        lengths.append(float(_GEOD.line_length(lons, lats)))
    return lengths[0], lengths[1]


def scaled_size(
    projected: tuple[float, ...], srid: int, scale: float, largest: int
) -> tuple[int, int]:
    """The map's pixels at 1:``scale`` (OGC's 0.28 mm pixel); MapTooLarge above ``largest``."""
    metres_per_pixel = MM_PER_PIXEL / 1000 * scale
    wide, high = (max(1, round(m / metres_per_pixel)) for m in ground_size(projected, srid))
    if max(wide, high) > largest:
        raise MapTooLarge(
            f"at 1:{scale:g} this map is {wide} x {high} pixels, above the {largest} allowed a "
            "side: a larger scale-denominator or a smaller bbox"
        )
    return wide, high


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


_QUERIES = (
    Query(description="minLon,minLat,maxLon,maxLat (CRS84; default: the extent)"),
    Query(
        description="The map's CRS: CRS84 (default) or EPSG:4326; for vector collections also "
        "EPSG:3857, EPSG:2154 or a WGS 84 UTM zone (as their `crs` lists)"
    ),
    Query(
        alias="scale-denominator", gt=0,
        description="The map's scale 1:n at 0.28 mm a pixel, instead of width and height",
    ),
    Query(description="Format (default: from Accept, else png)"),
)  # fmt: skip


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
    box_query, crs_query, scale_query, format_query = _QUERIES

    def get_map(
        request: Request,
        source: Annotated[MosaicSource, Depends(source_dependency)],
        reader_options: Annotated[Any, Depends(reader_dependency)],
        layer: Annotated[LayerQuery, Depends()],
        bbox: Annotated[str | None, box_query] = None,
        width: Annotated[int | None, side] = None,
        height: Annotated[int | None, side] = None,
        scale_denominator: Annotated[float | None, scale_query] = None,
        crs: Annotated[str | None, crs_query] = None,
        filter_: Filter = None,
        filter_lang: FilterLang = None,
        filter_crs: FilterCrs = None,
        datetime: Annotated[str | None, Query(description="Features of this time")] = None,
        color_by: ColorBy = None,
        f: Annotated[Literal["png", "jpeg", "jpg"] | None, format_query] = None,
        accept: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Response:
        """The collection drawn over ``bbox`` at ``width`` x ``height`` pixels."""
        if scale_denominator is not None and (width is not None or height is not None):
            raise InvalidParameter(
                "scale-denominator sets the size: give it without width and height"
            )
        request_ = MapRequest(
            source, reader_options.as_dict(), layer.as_dict(), bbox, (width, height),
            map_srid(crs), feature_query(filter_, filter_lang, datetime, crs=filter_crs),
            map_format(f, accept), color_by, scale_denominator,
        )  # fmt: skip
        response = draw_map(request, request_, tiler, tiles)
        if f is None:
            response.headers["Vary"] = "Accept"
        return response

    router = APIRouter(tags=["Maps"])
    router.add_api_route(
        "/collections/{collectionId}/map", get_map, methods=["GET"],
        operation_id="getCollectionMap",
        summary="A map of the collection: imagery, features, or imagery with its annotations",
        response_class=Response,
        responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}},
    )  # fmt: skip
    return router


@attr.s(kw_only=True)
class MapsExtension(ApiExtension):
    """``/collections/{collectionId}/map`` and the OGC API - Maps classes it meets."""

    tiler: TilerSettings = attr.ib()
    tiles: TileSettings = attr.ib()
    resources: ReaderResources = attr.ib()
    settings: MosaicSettings | None = attr.ib(default=None)
    conformance_classes: list[str] = attr.ib(factory=lambda: list(CONFORMANCE_CLASSES))

    def register(self, app: FastAPI) -> None:
        """Add the route to ``app``."""
        app.include_router(map_router(self.tiler, self.tiles, self.resources, self.settings))


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
    scale: float | None = None  # scale-denominator


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
        cubes = CubeRepository(request.app.state.repository.engine)
        if anyio.from_thread.run(cubes.ids, [collection_id]):
            # Its time slices' Zarr assets are no mosaic's: the map would be transparent.
            raise NoMap(f"{collection_id!r} is a datacube collection: draw it with its tiles "
                        "(/collections/{id}/tiles/...?layers=&datetime=)")  # fmt: skip
        if srid != WGS84:
            raise UnsupportedCrs("maps of imagery are drawn in CRS84 (or EPSG:4326) only")
        if bbox:
            box = parse_bbox(bbox)
            anyio.from_thread.run(asked.source.repository.collection_exists, collection_id)
        else:
            box = default_box(asked.source)  # 404 for an unknown collection here
        vectors = anyio.from_thread.run(_annotations, request, tiles, collection_id)
        base = (box, asked.reader_options, asked.layer)
    box, projected = frame_boxes(box, srid)
    if asked.scale is not None:
        size = scaled_size(projected, srid, asked.scale, tiler.max_image_size)
    else:
        size = map_size(projected, *asked.size, tiler.max_image_size)  # type: ignore[arg-type]
    headers = {"Content-Crs": f"<{crs_uri(srid)}>",
               "Content-Bbox": ",".join(str(v) for v in projected)}  # fmt: skip
    when = anyio.from_thread.run(_content_datetime, request, collection_id, asked.query, found)
    if when is not None:
        headers["Content-Datetime"] = when
    image = _mosaic(asked.source, base, size, asked.fmt, tiler.png_level, bool(vectors))
    if isinstance(image, Response):
        image.headers.update(headers)
        return image
    drawer = VectorDrawer(request, tiles, asked.query, asked.color_by)
    frame = MapFrame(box, srid, (projected[2] - projected[0]) / size[0])
    for vector in vectors:
        image = drawer.over(image, vector, frame, projected, size)
    if image is None:  # no layer drew: a transparent map of the size asked for
        image = numpy.zeros((size[1], size[0], 4), "float64")
    content, media_type = _encode(image, asked.fmt, tiler.png_level)
    if drawer.capped:
        headers[CAPPED_HEADER] = str(tiles.map_max_features)
    return Response(content, media_type=media_type, headers=headers)


def _stamp(value: Any) -> str:
    if value is None:
        return ".."
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return str(value)


async def _content_datetime(
    request: Request, collection_id: str, query: FeatureQuery, layer: Layer | None
) -> str | None:
    """What ``Content-Datetime`` says: the features' ``datetime`` asked for, else the
    collection's temporal extent; None for a collection without one."""
    if query.datetime is not None:
        start, end = query.datetime
    elif layer is not None:
        start, end = layer.interval
    else:
        row = await request.app.state.repository.get_collection(collection_id)
        temporal = (row["content"].get("extent") or {}).get("temporal") or {}
        intervals = temporal.get("interval") or [[None, None]]
        start, end = (list(intervals[0]) + [None, None])[:2]
    if start is None and end is None:
        return None
    if start is not None and start == end:
        return _stamp(start)
    return f"{_stamp(start)}/{_stamp(end)}"


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
    if not overlaid:  # draw_map adds the headers
        content, media_type = encode(image, fmt, png_level)
        return Response(content, media_type=media_type)
    content, _ = encode(ImageData(image.array, bounds=box, crs=WGS84_CRS), "png", 1)
    return from_bytes(numpy.asarray(imagecodecs.png_decode(content)))


__all__ = ["CONFORMANCE_CLASSES", "MapsExtension", "map_format", "map_router", "map_srid"]
