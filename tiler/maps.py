"""A collection's mosaic drawn in a box, for OGC API - Maps ``/collections/{collectionId}/map``
(the route is ogc/maps.py's, which also draws vector collections and annotations).

The map is the mosaic the collection's tiles show (tiler/mosaic.py: the same items, newest
first, read with ``ItemReader``) resampled to ``width`` x ``height`` pixels over ``bbox``, in
CRS84. Without ``bbox`` it covers the collection's extent (all longitudes if that crosses the
antimeridian); without a size its longer side is ``DEFAULT_SIZE`` pixels. The format is ``f``
(``png``, the default, with alpha; or ``jpeg``). Where no item has pixels the map is
transparent (PNG) or black (JPEG): a map client expects an image of the size it asked for.
Collections link it with rel ``.../ogc/1.0/map`` (server/features.py); GDAL's OGCAPI driver
reads it with ``-oo API=MAP``.
"""

import math
from typing import Any

import anyio.from_thread
import numpy
from rio_tiler.constants import WGS84_CRS
from rio_tiler.errors import InvalidBounds
from rio_tiler.models import ImageData
from titiler.core.resources.enums import ImageType

from catalog.errors import InvalidBBox
from catalog.geometry import normalize_bbox

from .encoders import render
from .errors import InvalidLayer
from .mosaic import SKIPPED, CatalogBackend, MosaicSource
from .readers import ItemReader

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
DEFAULT_SIZE = 1024
MAP_SKIPPED = (*SKIPPED, InvalidBounds)
FORMATS = {"png": ImageType.png, "jpeg": ImageType.jpeg, "jpg": ImageType.jpeg}


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``minLon,minLat,maxLon,maxLat`` in CRS84, west of east (no antimeridian crossing)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InvalidBBox(f"bbox must be numbers: {text[:80]!r}") from None
    west, south, east, north = normalize_bbox(values)
    if west >= east or south >= north:
        raise InvalidBBox("a map bbox needs west < east and south < north")
    return west, south, east, north


def map_size(
    box: tuple[float, float, float, float], width: int | None, height: int | None, largest: int
) -> tuple[int, int]:
    """The size asked for; a missing side keeps the box's aspect (in degrees), and then neither
    side passes ``largest`` (both shrink alike)."""
    if width is not None and height is not None:
        return width, height
    aspect = (box[2] - box[0]) / (box[3] - box[1])
    if width is not None:
        wide, high = float(width), width / aspect
    elif height is not None:
        wide, high = height * aspect, float(height)
    else:
        wide, high = (DEFAULT_SIZE, DEFAULT_SIZE / aspect) if aspect >= 1 else (
            DEFAULT_SIZE * aspect, DEFAULT_SIZE)  # fmt: skip
    shrink = min(1.0, largest / max(wide, high))
    return max(1, round(wide * shrink)), max(1, round(high * shrink))


def _window(
    item: dict[str, Any], box: tuple[float, float, float, float], size: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """The map pixels (col0, row0, col1, row1) the item's bbox covers; None if it misses."""
    west, south, east, north = box
    width, height = size
    left, bottom, right, top = normalize_bbox(item.get("bbox") or box)  # checked when stored
    if left > right:  # across the antimeridian: every column
        left, right = west, east
    dx, dy = (east - west) / width, (north - south) / height
    col0 = max(0, math.floor((left - west) / dx))
    col1 = min(width, math.ceil((right - west) / dx))
    row0 = max(0, math.floor((north - top) / dy))
    row1 = min(height, math.ceil((north - bottom) / dy))
    return (col0, row0, col1, row1) if col0 < col1 and row0 < row1 else None


def draw(
    backend: CatalogBackend,
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    options: dict[str, Any],
) -> ImageData:
    """The newest pixels of the items in ``box`` at ``size``; masked where none has any.

    Each item is read only over the map pixels its bbox covers, at the map's resolution (a
    crop much larger than an item is refused by ``ItemReader``, and slow), and fills what
    newer items left empty.
    """
    west, south, east, north = box
    width, height = size
    dx, dy = (east - west) / width, (north - south) / height
    data: numpy.ndarray | None = None
    valid = numpy.zeros((0, height, width), bool)
    for item in backend.assets_for_bbox(*box):
        window = _window(item, box, size)
        if window is None:
            continue
        col0, row0, col1, row1 = window
        part_box = (west + col0 * dx, north - row1 * dy, west + col1 * dx, north - row0 * dy)
        try:
            with backend.reader(item, **backend.reader_options) as src:
                part = src.part(
                    part_box, dst_crs=WGS84_CRS, bounds_crs=WGS84_CRS,
                    width=col1 - col0, height=row1 - row0, max_size=None, **options,
                )  # fmt: skip
        except MAP_SKIPPED:  # not ours, not there, or far below a map pixel
            continue
        if data is None:
            data = numpy.zeros((part.count, height, width), part.data.dtype)
            valid = numpy.zeros(data.shape, bool)
        elif part.count != data.shape[0]:
            raise InvalidLayer(
                "the items of this map give different numbers of bands: choose the same bands "
                "of each with assets, bidx, bands or expression"
            )
        here = valid[:, row0:row1, col0:col1]
        take = ~numpy.ma.getmaskarray(part.array) & ~here
        data[:, row0:row1, col0:col1][take] = part.data[take]
        here |= take
        if valid.all():
            break
    if data is None:
        data, valid = (
            numpy.zeros((3, height, width), "uint8"),
            numpy.zeros((3, height, width), bool),
        )
    return ImageData(numpy.ma.MaskedArray(data, mask=~valid), bounds=box, crs=WGS84_CRS)


def default_box(source: MosaicSource) -> tuple[float, float, float, float]:
    """The box of a map without ``bbox``: the collection's extent (all longitudes if it crosses
    the antimeridian); NotFound for an unknown collection. Call from a worker thread."""
    coverage = anyio.from_thread.run(source.coverage)
    west, south, east, north = coverage.bounds or (-180.0, -90.0, 180.0, 90.0)
    return (west, south, east, north) if west < east else (-180.0, south, 180.0, north)


def mosaic_image(
    source: MosaicSource,
    reader_options: dict[str, Any],
    layer: dict[str, Any],
    box: tuple[float, float, float, float],
    size: tuple[int, int],
) -> ImageData:
    """The collection's mosaic over ``box`` (CRS84) at ``size``. Call from a worker thread."""
    with CatalogBackend(source, reader=ItemReader, reader_options=reader_options) as backend:
        return draw(backend, box, size, layer)


def encode(image: ImageData, f: str, png_level: int) -> tuple[bytes, str]:
    """The map as PNG (with alpha) or JPEG."""
    return render(image, output_format=FORMATS[f], png_level=png_level)
