"""Errors of the tiler and the exception -> (code, status) table of the libraries it drives.

Our own errors are ``CatalogError`` subclasses, so the server's error table already renders
them as ``{"code", "description"}``. ``ERRORS`` maps rio-tiler, titiler and rasterio exceptions
the same way (titiler's statuses, our codes, plus ``PointOutsideBounds`` which titiler leaves
at 500); ``error_handlers`` makes its handlers, which the raster parts of the app register.
Descriptions of 5xx errors are generic: rasterio messages carry local file paths.
"""

import logging
from collections.abc import Callable

from fastapi import Request
from rasterio._err import CPLE_NotSupportedError
from rasterio.errors import RasterioError, RasterioIOError
from rio_tiler import errors as rt
from starlette.responses import JSONResponse
from titiler.core.errors import BadRequestError, TileNotFoundError

from catalog.errors import CatalogError

logger = logging.getLogger("terracat.tiler")


class TilerError(CatalogError):
    """Base of the tiler's own errors."""

    code = "tiler.Error"


class AssetNotReadable(TilerError):
    """An asset whose href is not a file of this catalogue's storage (or is missing there).

    422: the request is well formed, but the item it names cannot be rendered here.
    """

    code = "tiler.AssetNotReadable"
    status = 422


class AssetMissing(AssetNotReadable):
    """An asset of this catalogue's storage with nothing stored under its key (the message
    names the asset and its item)."""


class InvalidLayer(TilerError):
    """Rendering parameters that contradict each other (a preset with an expression, ...)."""

    code = "tiler.InvalidLayer"


class UnknownPreset(TilerError):
    """A ``preset`` name this server does not define."""

    code = "tiler.UnknownPreset"


class PresetUnavailable(TilerError):
    """A preset that needs bands (by common name) the item does not have."""

    code = "tiler.PresetUnavailable"


class InvalidColorMap(TilerError):
    """A ``colormap`` that is JSON but not a colour map."""

    code = "tiler.InvalidColorMap"


class ImageTooLarge(TilerError):
    """An output image larger than ``TilerSettings.max_image_size`` (or too many bins)."""

    code = "tiler.ImageTooLarge"


class UnsafeCrs(TilerError):
    """A CRS parameter that is not a plain EPSG/OGC code or URI (GDAL would open files/URLs)."""

    code = "tiler.UnsafeCrs"


# Most specific first is not needed: Starlette looks handlers up along each exception's MRO.
ERRORS: dict[type[Exception], tuple[str, int]] = {
    rt.TileOutsideBounds: ("tiler.TileOutsideBounds", 404),
    rt.PointOutsideBounds: ("tiler.PointOutsideBounds", 404),
    rt.InvalidAssetName: ("tiler.InvalidAssetName", 404),
    rt.InvalidBandName: ("tiler.InvalidBandName", 404),
    rt.MissingAssets: ("tiler.MissingAssets", 400),
    rt.MissingBands: ("tiler.MissingBands", 400),
    rt.InvalidExpression: ("tiler.InvalidExpression", 400),
    rt.InvalidFormat: ("tiler.InvalidFormat", 400),
    rt.InvalidColorFormat: ("tiler.InvalidColorFormat", 400),
    rt.InvalidColorMapName: ("tiler.InvalidColorMapName", 400),
    rt.InvalidBufferSize: ("tiler.InvalidBufferSize", 400),
    rt.InvalidBounds: ("tiler.InvalidBounds", 400),
    rt.AssetAsBandError: ("tiler.AssetAsBandError", 400),
    rt.MaxArraySizeError: ("tiler.ImageTooLarge", 400),
    BadRequestError: ("tiler.BadRequest", 400),
    TileNotFoundError: ("tiler.TileNotFound", 404),
    # GDAL cannot do what the request asks: no coordinate operation from the data's CRS to a
    # dst_crs on another body (IAU_2015:49900 is Mars), for one.
    CPLE_NotSupportedError: ("tiler.NotSupported", 400),
    rt.RioTilerError: ("tiler.Error", 500),
    RasterioIOError: ("tiler.ReadError", 500),
    RasterioError: ("tiler.ReadError", 500),
}


def _handler(code: str, status: int) -> Callable[[Request, Exception], JSONResponse]:
    def handle(request: Request, exc: Exception) -> JSONResponse:
        if status >= 500:
            logger.error("%s on %s %s", code, request.method, request.url.path, exc_info=exc)
            description = "the raster could not be read or rendered"
        else:
            description = str(exc) or code
        return JSONResponse({"code": code, "description": description}, status)

    return handle


def error_handlers() -> dict[type[Exception], Callable[[Request, Exception], JSONResponse]]:
    """``ERRORS`` as exception handlers (our ``TilerError``s go through the CatalogError one)."""
    return {exc_class: _handler(code, status) for exc_class, (code, status) in ERRORS.items()}
