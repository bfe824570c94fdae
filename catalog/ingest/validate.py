"""First look at an upload: is it a GeoTIFF we can turn into a COG, and within the limits?

GDAL only ever opens a plain local file here, with the GTiff driver alone, with sidecar files
ignored (a stray ``.aux.xml``, ``.ovr`` or world file next to a staged upload must not change
what the upload is) and without writing a ``.aux.xml`` beside it.
"""

import math
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import DatasetReader
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from ..settings import IngestSettings
from .errors import (
    Corrupt,
    Implausible,
    NotARaster,
    NotGeoreferenced,
    TooLarge,
    TooManyBands,
    UnsupportedDataType,
)

# Pixel types rasterio writes to a COG with a predictor (Float16 and complex types excluded).
WRITABLE_DTYPES = frozenset(
    {"uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32",
     "float64"}
)  # fmt: skip
GDAL_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no sidecar files
    "GDAL_PAM_ENABLED": "NO",  # never write .aux.xml next to a file we read
    "GDAL_TIFF_INTERNAL_MASK": "YES",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".none",
}
_PROBE_SIZE = 256  # long side of the decimated read of the Corrupt probe
_PROBE_FULL_PIXELS = 4096 * 4096  # no overviews: decimated probe read up to this size only


@dataclass(frozen=True)
class RasterInfo:
    """What ``inspect`` learnt about an upload."""

    width: int
    height: int
    count: int
    dtypes: tuple[str, ...]
    crs: str  # "EPSG:n", or WKT when the CRS has no EPSG code
    nodata: float | None
    has_alpha_or_mask: bool
    is_cog: bool  # a valid COG: rio-cogeo reports neither errors nor warnings
    driver: str


@contextmanager
def gdal_env() -> Iterator[None]:
    """GDAL settings for every ingest step (no sidecars, no .aux.xml, internal masks)."""
    with rasterio.Env(**GDAL_OPTIONS):
        yield


def open_local(path: Path) -> DatasetReader:
    """Open a regular local file as a GeoTIFF (call inside ``gdal_env``); NotARaster if not."""
    real = Path(path).absolute()
    try:
        mode = real.lstat().st_mode
    except OSError as exc:
        raise NotARaster(f"the file cannot be read: {exc.strerror}") from exc
    if not stat.S_ISREG(mode) or str(real).startswith("/vsi"):
        raise NotARaster("only a regular local file can be ingested")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dataset = rasterio.open(str(real), driver="GTiff")
    except RasterioError as exc:
        raise NotARaster("the file is not a GeoTIFF (GDAL cannot open it as one)") from exc
    if dataset.count == 0 or dataset.driver != "GTiff":
        dataset.close()
        raise NotARaster("the file is a TIFF without raster bands")
    return dataset


def gdal_message(exc: BaseException, path: Path | None = None) -> str:
    """The GDAL message behind a rasterio error, without our file paths."""
    cause = exc.__cause__ or exc.__context__ or exc
    args = getattr(cause, "args", ())  # CPLE_* errors: (class, number, message)
    text = str(args[-1]) if args else str(cause)
    if path is not None:
        text = text.replace(str(Path(path).absolute()), "file")
        text = text.removeprefix(f"{Path(path).name}, ").removeprefix("file, ")
    return text


def crs_string(dataset: DatasetReader) -> str:
    """``EPSG:n`` for a CRS with an EPSG code, its WKT otherwise."""
    crs = dataset.crs
    epsg = crs.to_epsg() if crs.is_epsg_code else None
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def inspect(path: Path, settings: IngestSettings) -> RasterInfo:
    """Check an upload before conversion; raise the ``IngestError`` that says what is wrong.

    Checks run in this order: NotARaster, TooLarge, Implausible, TooManyBands, UnsupportedDataType,
    NotGeoreferenced, Corrupt (a cheap read of the first and last blocks, and of a decimated
    window when the file has overviews or is at most 4096 x 4096 px).
    """
    with gdal_env(), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with open_local(path) as src:
            _check_limits(src, Path(path), settings)
            _check_georeferencing(src)
            _probe(src, Path(path))
            mask_flags = {flag for flags in src.mask_flag_enums for flag in flags}
            has_alpha_or_mask = ColorInterp.alpha in src.colorinterp or (
                MaskFlags.per_dataset in mask_flags and MaskFlags.nodata not in mask_flags
            )
            info = RasterInfo(
                width=src.width,
                height=src.height,
                count=src.count,
                dtypes=tuple(src.dtypes),
                crs=crs_string(src),
                nodata=src.nodata,
                has_alpha_or_mask=has_alpha_or_mask,
                is_cog=False,
                driver=src.driver,
            )
        valid, errors, cog_warnings = cog_validate(str(Path(path).absolute()), quiet=True)
    return replace(info, is_cog=bool(valid and not errors and not cog_warnings))


def _check_limits(src: DatasetReader, path: Path, settings: IngestSettings) -> None:
    pixels = src.width * src.height
    if pixels > settings.max_pixels:
        raise TooLarge(
            f"the raster has {src.width} x {src.height} = {pixels:,} pixels; "
            f"the limit is {settings.max_pixels:,}"
        )
    size = path.stat().st_size
    if size > settings.max_file_bytes:
        raise TooLarge(f"the file has {size:,} bytes; the limit is {settings.max_file_bytes:,}")
    pixel_bytes = pixels * sum(numpy.dtype(t).itemsize for t in src.dtypes)
    if pixel_bytes > max(settings.compression_check_bytes, settings.max_compression_ratio * size):
        raise Implausible(
            f"the raster declares {src.width} x {src.height} px ({pixel_bytes:,} bytes of pixels) "
            f"in a file of {size:,} bytes: more than {settings.max_compression_ratio:g} times "
            "its size, as sparse or 'bomb' TIFFs do. Upload the data without empty blocks, or "
            "ask for TERRACAT_INGEST_MAX_COMPRESSION_RATIO to be raised"
        )
    if src.count > settings.max_bands:
        raise TooManyBands(f"the raster has {src.count} bands; the limit is {settings.max_bands}")
    unsupported = sorted(set(src.dtypes) - WRITABLE_DTYPES)
    if unsupported:
        raise UnsupportedDataType(
            f"pixel type {', '.join(unsupported)} cannot be converted to a Cloud-Optimized "
            f"GeoTIFF; supported types: {', '.join(sorted(WRITABLE_DTYPES))}"
        )


def _check_georeferencing(src: DatasetReader) -> None:
    points, _ = src.gcps
    if src.crs is None or not src.crs.to_wkt():
        if points:
            raise NotGeoreferenced(
                f"the raster is georeferenced by {len(points)} ground control points (GCPs) "
                "only, without a geotransform: warp it first (for example with gdalwarp)"
            )
        if src.rpcs:
            raise NotGeoreferenced(
                "the raster is georeferenced by rational polynomial coefficients (RPCs) only: "
                "orthorectify it first (for example with gdalwarp -rpc)"
            )
        raise NotGeoreferenced("the raster has no coordinate reference system (CRS)")
    transform: Affine = src.transform
    if transform in (Affine.identity(), Affine(1, 0, 0, 0, -1, 0)) or not math.isfinite(
        transform.determinant
    ) or transform.determinant == 0:  # fmt: skip
        if points:
            raise NotGeoreferenced(
                "the raster has ground control points (GCPs) but no geotransform: "
                "warp it first (for example with gdalwarp)"
            )
        raise NotGeoreferenced("the raster has a CRS but no geotransform (pixel positions)")
    try:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    except RasterioError as exc:
        raise NotGeoreferenced(
            f"the raster's CRS cannot be related to longitude/latitude: {gdal_message(exc)}"
        ) from exc
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise NotGeoreferenced("the raster's extent does not map to longitude/latitude")


def _probe(src: DatasetReader, path: Path) -> None:
    """Read little but reach the end of the file: truncated or damaged files fail here."""
    height, width = src.block_shapes[0]
    rows, cols = math.ceil(src.height / height), math.ceil(src.width / width)
    windows = [
        Window(0, 0, min(width, src.width), min(height, src.height)),
        Window(
            (cols - 1) * width,
            (rows - 1) * height,
            src.width - (cols - 1) * width,
            src.height - (rows - 1) * height,
        ),
    ]
    try:
        for window in windows:
            src.read(window=window)
            src.dataset_mask(window=window)
        # A decimated read touches every block of a tiled file without overviews: only do it
        # when overviews exist or the raster is small enough for that to be cheap.
        if src.overviews(1) or src.width * src.height <= _PROBE_FULL_PIXELS:
            scale = max(1.0, max(src.width, src.height) / _PROBE_SIZE)
            shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
            src.read(out_shape=(src.count, *shape))
    except (RasterioError, CPLE_BaseError) as exc:
        raise Corrupt(f"the pixels cannot be read: {gdal_message(exc, path)}") from exc
