"""GeoTIFF -> Cloud-Optimized GeoTIFF, with rio-cogeo driving GDAL's COG driver."""

import errno
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
from rasterio._err import CPLE_BaseError
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.errors import NodataAlphaMaskWarning

from ..settings import IngestSettings
from .errors import Corrupt
from .validate import GDAL_OPTIONS, RasterInfo, gdal_env, gdal_message, open_local

# rio-cogeo stages the raster uncompressed, in memory up to this size, else in a compressed
# temporary file next to the destination (a 20 GB upload must not need 20 GB of RAM).
IN_MEMORY_BYTES = 512 * 1024**2


def overview_level(width: int, height: int, blocksize: int) -> int:
    """Overview count so the smallest level fits in one block (each level at least 1 px)."""
    level, factor = 0, 1
    while max(width, height) // factor > blocksize and min(width, height) // (factor * 2) >= 1:
        factor *= 2
        level += 1
    return level


def predictor(dtype: str) -> int:
    """TIFF predictor: horizontal differencing (2) for integers, floating point (3) for floats."""
    return 3 if np.dtype(dtype).kind == "f" else 2


def to_cog(src: Path, dst: Path, info: RasterInfo, settings: IngestSettings) -> bool:
    """Write ``src`` as a COG at ``dst``; False when ``src`` already was one (then linked).

    A valid COG (``info.is_cog``) is kept byte for byte: ``dst`` becomes a hard link to
    ``src`` (a copy across filesystems), ``src`` stays in place. Anything else is converted in
    its own CRS: tiled ``settings.blocksize``, ``settings.compression`` with a predictor,
    internal overviews, nodata / alpha / internal mask kept, BigTIFF when needed.
    A read error during conversion raises ``Corrupt``.
    """
    dst.unlink(missing_ok=True)
    if info.is_cog:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        return False
    try:
        _convert(src, dst, info, settings)
    except BaseException:
        dst.unlink(missing_ok=True)
        raise
    valid, errors, _ = cog_validate(str(dst), quiet=True, config=GDAL_OPTIONS)
    if not valid or errors:
        dst.unlink(missing_ok=True)
        raise RuntimeError(f"GDAL wrote an invalid COG: {'; '.join(errors)}")
    return True


def _convert(src: Path, dst: Path, info: RasterInfo, settings: IngestSettings) -> None:
    itemsize = max(np.dtype(dtype).itemsize for dtype in info.dtypes)
    in_memory = info.width * info.height * info.count * itemsize <= IN_MEMORY_BYTES
    profile = {
        "driver": "GTiff",
        "tiled": True,
        "blockxsize": settings.blocksize,
        "blockysize": settings.blocksize,
        "compress": settings.compression,
        "predictor": predictor(info.dtypes[0]),
        "bigtiff": "IF_SAFER",
        "num_threads": "ALL_CPUS",
    }
    config = {**GDAL_OPTIONS, "GDAL_NUM_THREADS": "ALL_CPUS"}
    try:
        with gdal_env(), warnings.catch_warnings(), open_local(src) as dataset:
            # nodata wins over a mask when a file has both (rio-cogeo says so by a warning)
            warnings.simplefilter("ignore", NodataAlphaMaskWarning)
            paletted = dataset.colorinterp[0] == ColorInterp.palette
            cog_translate(
                dataset,
                str(dst),
                profile,
                overview_level=overview_level(info.width, info.height, settings.blocksize),
                overview_resampling="nearest" if paletted else "average",
                in_memory=in_memory,
                allow_intermediate_compression=not in_memory,
                temporary_compression="ZSTD",
                config=config,
                use_cog_driver=True,
                forward_band_tags=True,
                quiet=True,
            )
    except (RasterioError, CPLE_BaseError) as exc:
        message = gdal_message(exc, src)
        if "No space left" in message:
            raise OSError(errno.ENOSPC, message) from exc
        raise Corrupt(f"the pixels cannot be read: {message}") from exc
