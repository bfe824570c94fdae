"""Tile and image encoders: titiler's ``render_image`` with PNG and JPEG by imagecodecs.

``render`` is the ``render_func`` of the item and mosaic factories and of exports: it
stretches data the output format cannot hold (as titiler would, without its warning per
tile), then encodes PNG with libpng on zlib-ng and JPEG with libjpeg-turbo; other formats,
and arrays those encoders cannot take, go to titiler's ``render_image`` (GDAL).
"""

import functools
import io
from collections.abc import Callable
from typing import Any

import attr
import imagecodecs
import numpy
from rio_tiler.models import ImageData
from rio_tiler.types import ColorMapType
from rio_tiler.utils import linear_rescale
from rio_tiler.utils import render as rio_render
from titiler.core.resources.enums import ImageType
from titiler.core.utils import render_image

# Data types each output format takes as they are (titiler's table); others are stretched.
FORMAT_DTYPES: dict[ImageType | None, tuple[str, ...]] = {
    None: ("uint8",),
    ImageType.png: ("uint8", "uint16"),
    ImageType.jpeg: ("uint8",),
    ImageType.jpg: ("uint8",),
    ImageType.webp: ("uint8",),
    ImageType.jp2: ("uint8", "int16", "uint16"),
}
PNG_LEVEL = 6  # zlib level of PNG tiles (GDAL's default too): TilerSettings.png_level
Render = Callable[..., tuple[bytes, str]]  # ``render`` with the server's encoder settings


def render(
    image: ImageData,
    colormap: ColorMapType | None = None,
    output_format: ImageType | None = None,
    rescale: Any = None,
    png_level: int = PNG_LEVEL,
    quality: int | None = None,
    **kwargs: Any,
) -> tuple[bytes, str]:
    """titiler's render_image, stretching data the format cannot hold first.

    titiler stretches such data itself (between the bands' statistics, else the data type's
    range) but warns on every tile; we do the same stretch up front. A 256-entry colormap
    needs 8-bit data too; discrete and interval colormaps get the raw values. ``png_level``
    is the zlib level of PNGs (lossless: it trades size for time), ``quality`` that of JPEG
    and WEBP (None: titiler's, 85 and 75).
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
        content = _png(image, colormap, rescale, kwargs, png_level)
        if content is not None:
            return content, ImageType.png.mediatype
    if output_format in (ImageType.jpeg, ImageType.jpg):
        content = _jpeg(image, colormap, rescale, kwargs, quality)
        if content is not None:
            return content, output_format.mediatype
    if quality is not None and output_format == ImageType.webp:
        content = _webp(image, colormap, rescale, kwargs, quality)
        if content is not None:
            return content, ImageType.webp.mediatype
    return render_image(image, colormap=colormap, output_format=output_format, rescale=rescale,
                        **kwargs)  # fmt: skip


def renderer(png_level: int = PNG_LEVEL) -> Render:
    """``render`` encoding PNGs at ``png_level``: the ``render_func`` of the factories."""
    if png_level == PNG_LEVEL:
        return render
    return functools.partial(render, png_level=png_level)


def _prepared(
    image: ImageData, colormap: ColorMapType | None, rescale: Any, kwargs: dict[str, Any]
) -> numpy.ndarray:
    """The bands titiler would encode (rescale, color formula, colormap, mask as last band):
    its ``npy`` output, computed on a copy since titiler rescales in place."""
    copy = attr.evolve(image, array=image.array.copy())
    content, _ = render_image(copy, colormap=colormap, output_format=ImageType.npy,
                             rescale=rescale, **kwargs)  # fmt: skip
    pixels: numpy.ndarray = numpy.load(io.BytesIO(content))
    return pixels


def _png(
    image: ImageData,
    colormap: ColorMapType | None,
    rescale: Any,
    kwargs: dict[str, Any],
    level: int = PNG_LEVEL,
) -> bytes | None:
    """titiler's PNG with libpng on zlib-ng (imagecodecs) instead of GDAL's PNG driver.

    GDAL's driver compresses with zlib, about 30 ms for a 256 px RGBA tile of an orthophoto:
    half the time of the whole tile. The same pixels compress here in a quarter of that, at
    the same level to 6% fewer bytes on photographs and 7% more on the benchmark's synthetic
    orthophoto (docs/benchmarks.md, "PNG encoder"). titiler still prepares them (rescale,
    color formula, colormap, mask): its ``npy`` output is the array its PNG would hold. None
    when libpng cannot take that array (more than 4 bands, other data types): titiler's own
    PNG then says what is wrong.
    """
    pixels = _prepared(image, colormap, rescale, kwargs)
    if pixels.dtype not in (numpy.uint8, numpy.uint16) or not 1 <= len(pixels) <= 4:
        return None
    if pixels.dtype == numpy.uint16 and kwargs.get("add_mask", True):
        # the mask is 0-255 whatever the data type; rio-tiler stretches it for 16-bit PNGs
        pixels[-1] = linear_rescale(pixels[-1], (0, 255), (0, 65535)).astype(numpy.uint16)
    try:
        return bytes(imagecodecs.png_encode(numpy.ascontiguousarray(numpy.moveaxis(pixels, 0, -1)),
                                            level=level))  # fmt: skip
    except ValueError:  # shapes libpng refuses (a 1 px tile): titiler's PNG takes or refuses them
        return None


def _jpeg(
    image: ImageData,
    colormap: ColorMapType | None,
    rescale: Any,
    kwargs: dict[str, Any],
    quality: int | None = None,
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
    if quality is None:
        quality = int(ImageType.jpeg.profile.get("quality", 85))
    planes = pixels[0] if len(pixels) == 1 else numpy.moveaxis(pixels, 0, -1)
    return bytes(imagecodecs.jpeg8_encode(numpy.ascontiguousarray(planes), level=quality,
                                          optimize=True))  # fmt: skip


def _webp(
    image: ImageData,
    colormap: ColorMapType | None,
    rescale: Any,
    kwargs: dict[str, Any],
    quality: int,
) -> bytes | None:
    """titiler's WEBP (GDAL's driver) at ``quality``: titiler's profile would override it.

    The pixels titiler prepares, handed to rio-tiler's ``render`` as titiler does, with the
    quality given; at titiler's 75 the bytes are its own. None for what WEBP cannot hold.
    """
    pixels = _prepared(image, colormap, rescale, kwargs)
    if pixels.dtype != numpy.uint8:
        return None
    options = {**ImageType.webp.profile, "quality": quality}
    if kwargs.get("add_mask", True):
        return bytes(rio_render(pixels[:-1], pixels[-1], img_format="WEBP", **options))
    return bytes(rio_render(pixels, img_format="WEBP", **options))
