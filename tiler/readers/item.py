"""A rio-tiler reader for the catalogue's own STAC items: GeoTIFF assets in our storage only.

``ItemReader(item, data_dir=...)`` takes an item dict (or ``pystac.Item``) and reads its
GeoTIFF assets through ``LocalStorage(data_dir).gdal_path``: an href this storage did not make
(http(s), s3, ``/vsicurl/``, relative, another folder, a missing file) raises
``AssetNotReadable`` when read. GDAL opens the files with the GTiff driver only and without
looking for side-car files. It works outside FastAPI (mosaics and exports use it directly).

Band names. After the assets are read and stacked, ``b1``..``bn`` are the positions in the stack
(rio-tiler's rule). Expressions may also use each band's ``eo:bands`` ``name`` and
``common_name`` (case-insensitive): ``(nir-red)/(nir+red)`` becomes ``(b4-b1)/(b4+b1)`` on
an RGBN item. ``bands=["red", "nir"]`` selects bands by those names.
"""

import atexit
import contextlib
import functools
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attr
import numpy
import pystac
import rasterio
from affine import Affine
from cachetools import LRUCache
from morecantile import BoundingBox, Tile, TileMatrixSet
from rasterio._err import CPLE_BaseError  # GDAL errors; rasterio has no public alias
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.env import get_gdal_config
from rasterio.errors import CRSError
from rasterio.features import bounds as feature_bounds
from rasterio.io import DatasetReader
from rasterio.transform import array_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform, transform_bounds
from rasterio.windows import Window
from rio_tiler.constants import WEB_MERCATOR_TMS, WGS84_CRS
from rio_tiler.errors import (
    InvalidAssetName,
    InvalidBandName,
    InvalidBounds,
    InvalidExpression,
    MissingAssets,
    PointOutsideBounds,
    TileOutsideBounds,
)
from rio_tiler.io import BaseReader, MultiBaseReader, Reader
from rio_tiler.models import BandStatistics, ImageData, PointData
from rio_tiler.types import AssetInfo, AssetType, BBox
from rio_tiler.utils import cast_to_sequence, dtype_ranges, has_alpha_band, non_alpha_indexes

from catalog.storage.local import LocalStorage

from .errors import AssetNotReadable, ImageTooLarge, InvalidLayer, UnsafeCrs

RASTER_MEDIA_TYPES = frozenset({"image/tiff", "image/x.geotiff", "image/vnd.stac.geotiff"})
# GDAL looks for .ovr/.aux.xml/.msk side-cars next to a file unless told not to.
GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
_ZOOMS: LRUCache[tuple[Any, ...], tuple[int, int]] = LRUCache(maxsize=4096)
_TMS_BOUNDS: LRUCache[tuple[Any, ...], tuple[float, float, float, float] | None]
_TMS_BOUNDS = LRUCache(maxsize=4096)
_ZOOMS_LOCK = threading.Lock()  # of both caches
# rio-tiler derives an expression's value range from every min/max combination of the
# stacked bands (2**n evaluations): beyond this many bands the statistics are dropped.
MAX_STATISTICS_BANDS = 10
MAX_EXPRESSION_LENGTH = 2048
MAX_EXPRESSION_BANDS = 16  # output bands (``;``-separated blocks)
MAX_EXTENT_RATIO = 64  # a crop's area over the item's (ItemReader._check_extent)
SPARSE_TILE_COVER = 0.25  # below this share of a tile covered, read only the covered part
DEFAULT_MAX_IMAGE_SIZE = 4096

_AUTHORITY_CODE = re.compile(r"^(EPSG|OGC|ESRI|IAU_2015):([A-Za-z0-9_.]{1,32})$", re.IGNORECASE)
_CRS_URI = re.compile(
    r"^(?:https?://www\.opengis\.net/def/crs/(EPSG|OGC|ESRI|IAU_2015)/[^/]{1,16}/"
    r"|urn:ogc:def:crs:(EPSG|OGC|ESRI|IAU_2015):[^:]{0,16}:)([A-Za-z0-9_.]{1,32})$",
    re.IGNORECASE,
)
_NAME = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()")
_POSITIONAL = re.compile(r"^b\d+$", re.IGNORECASE)


# -- CRS text from clients and items -----------------------------------------------------------
def safe_crs(text: str) -> CRS:
    """A CRS from an ``AUTH:CODE`` or an OGC CRS URI/URN, parsed without any file or network.

    GDAL's "user input" parser also opens file names and fetches URLs; PROJ strings may read
    ``+init`` files. Anything but these plain forms raises ``UnsafeCrs``.
    """
    value = text.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    if match := _AUTHORITY_CODE.match(value):
        authority, code = match.groups()
    elif match := _CRS_URI.match(value):
        authority, code = match.group(1) or match.group(2), match.group(3)
    else:
        raise UnsafeCrs(f"unsupported CRS {text[:80]!r}: use EPSG:<code> or an opengis.net CRS URI")
    try:
        return CRS.from_user_input(f"{authority.upper()}:{code}")
    except CRSError as exc:
        raise UnsafeCrs(f"unknown CRS {text[:80]!r}") from exc


# -- item metadata -----------------------------------------------------------------------------
def _item_dict(value: dict[str, Any] | pystac.Item) -> dict[str, Any]:
    if isinstance(value, pystac.Item):
        return value.to_dict(include_self_link=False, transform_hrefs=False)
    if not isinstance(value, Mapping) or not isinstance(value.get("assets"), Mapping):
        raise MissingAssets("not a STAC item with assets")
    return dict(value)


def is_raster_asset(asset: Any) -> bool:
    """Whether an asset (dict) is a GeoTIFF by its media type."""
    if not isinstance(asset, Mapping) or not isinstance(asset.get("type"), str):
        return False
    return asset["type"].split(";")[0].strip().lower() in RASTER_MEDIA_TYPES


def raster_assets(item: Mapping[str, Any]) -> list[str]:
    """Names of the item's GeoTIFF assets, in the item's order."""
    return [name for name, asset in item["assets"].items() if is_raster_asset(asset)]


def default_assets(item: Mapping[str, Any]) -> list[str]:
    """``data`` if it is a GeoTIFF, else the GeoTIFF assets with role ``data`` (maybe none)."""
    rasters = raster_assets(item)
    if "data" in rasters:
        return ["data"]
    return [n for n in rasters if "data" in (item["assets"][n].get("roles") or [])]


def asset_bands(item: Mapping[str, Any], name: str) -> list[dict[str, Any]] | None:
    """The asset's ``eo:bands`` (STAC 1.0) or ``bands`` (1.1), or None when it has neither."""
    asset = item["assets"].get(name) or {}
    bands = asset.get("eo:bands") or asset.get("bands")
    if not isinstance(bands, list):
        return None
    return [band if isinstance(band, dict) else {} for band in bands]


def band_names(band: Mapping[str, Any]) -> set[str]:
    """The lower-case names a band answers to: ``name`` and its common name."""
    values = (band.get("name"), band.get("common_name"), band.get("eo:common_name"))
    return {v.lower() for v in values if isinstance(v, str) and v}


def band_indexes(item: Mapping[str, Any], asset: str, wanted: Sequence[str]) -> list[int]:
    """1-based band indexes of ``asset`` for band names or common names; InvalidBandName."""
    bands = asset_bands(item, asset)
    if bands is None:
        raise InvalidBandName(f"asset {asset!r} has no eo:bands to select bands by name")
    indexes = []
    for name in wanted:
        found = [i for i, band in enumerate(bands, 1) if name.lower() in band_names(band)]
        if not found:
            raise InvalidBandName(f"asset {asset!r} has no band named {name!r}")
        indexes.append(found[0])
    return indexes


def _asset_name(asset: AssetType) -> str:
    return asset if isinstance(asset, str) else str(asset.get("name"))


def band_positions(
    item: Mapping[str, Any], assets: Sequence[AssetType], indexes: Sequence[int] | None = None
) -> dict[str, list[int]]:
    """Band names -> their 1-based positions in the stack the assets make (lower case).

    ``indexes`` (``bidx``) applies to every asset, like rio-tiler's; an asset's own
    ``indexes`` or ``bands`` option wins. Names stop at the first asset without eo:bands (its
    band count is unknown until it is read).
    """
    positions: dict[str, list[int]] = {}
    offset = 0
    for asset in assets:
        name = _asset_name(asset)
        bands = asset_bands(item, name)
        if bands is None:
            break
        options = asset if isinstance(asset, Mapping) else {}
        if options.get("bands"):
            chosen = band_indexes(item, name, options["bands"])
        else:
            chosen = list(options.get("indexes") or indexes or range(1, len(bands) + 1))
        for index in chosen:
            offset += 1
            if 1 <= index <= len(bands):
                for band_name in band_names(bands[index - 1]):
                    positions.setdefault(band_name, []).append(offset)
    return positions


def translate_expression(expression: str, positions: Mapping[str, list[int]]) -> str:
    """Replace band names in an expression by ``b<position>``; ``b<n>`` are left alone."""

    def replace(match: re.Match[str]) -> str:
        word = match.group(1)
        key = word.lower()
        if _POSITIONAL.match(key) or key not in positions:
            return word
        found = positions[key]
        if len(found) > 1:
            where = ", ".join(f"b{p}" for p in found)
            raise InvalidExpression(f"band name {word!r} is ambiguous here ({where}): use b<n>")
        return f"b{found[0]}"

    return _NAME.sub(replace, expression)


def _projection(
    item: Mapping[str, Any], assets: Sequence[str]
) -> tuple[CRS, Affine, int, int] | None:
    """CRS, transform, height and width from the projection extension (asset, then item)."""
    sources = [item["assets"][name] for name in assets] + [item.get("properties") or {}]
    for source in sources:
        shape, transform = source.get("proj:shape"), source.get("proj:transform")
        code = source.get("proj:code") or (
            f"EPSG:{source['proj:epsg']}" if source.get("proj:epsg") else None
        )
        wkt = source.get("proj:wkt2")
        if not (shape and transform and (code or wkt)):
            continue
        try:
            crs = safe_crs(str(code)) if code else CRS.from_wkt(str(wkt))
            height, width = int(shape[0]), int(shape[1])
            affine = Affine(*(float(v) for v in transform[:6]))
        except (UnsafeCrs, CRSError, ValueError, TypeError, IndexError, KeyError):
            continue
        if height > 0 and width > 0 and affine.determinant != 0:
            return crs, affine, height, width
    return None


def _reprojected_bounds(
    src_crs: CRS, bounds: tuple[float, ...], dst_crs: CRS
) -> tuple[float, float, float, float] | None:
    """``bounds`` in ``dst_crs`` (edges densified); None where they do not reproject."""
    if src_crs == dst_crs:
        return (bounds[0], bounds[1], bounds[2], bounds[3])
    try:
        found = transform_bounds(src_crs, dst_crs, *bounds, densify_pts=21)
    except (CPLE_BaseError, CRSError, ValueError):
        return None
    return found if all(numpy.isfinite(found)) else None


# -- open files --------------------------------------------------------------------------------
FileKey = tuple[str, int, int, int, int]  # path, device, inode, mtime (ns), size
# Options of a tile read that ``TileGrids`` reads as rio-tiler would; any other is left to it.
GRID_OPTIONS = frozenset({"reproject_method", "resampling_method", "threads"})
_NO_OP_ZERO = frozenset({"buffer", "padding"})  # options whose 0 means "none"
MAX_GRIDS = 32  # warped grids kept per open file (zoom levels x tile sizes x kernels)


class TileGrids:
    """One open GeoTIFF seen through warped VRTs on the grid of a tile matrix, one per zoom.

    rio-tiler reads a tile through a VRT made for that tile at the data's own resolution,
    then resamples it to the tile's size: every tile sets up a new warper (PROJ transformer,
    GDAL warp options), and below the data's resolution it warps up to twice as many pixels
    per side as the tile has (a z17 tile of 0.5 m data at 48 N warps 410 px a side). Here
    one VRT spans the tiles over the data at one zoom, at the tile matrix's resolution, from
    the file's finest overview no finer than needed; a tile is a window of it. GDAL keeps
    the VRT's warped blocks in its cache, so neighbouring tiles (a map view, an export) are
    warped once. The VRTs are made with rio-tiler's options (nodata, alpha, data type,
    ``reproject_method`` kernel) and read as its ``read`` does, so a tile holds the same
    bands, mask, statistics and metadata; pixels are the kernel's at the tile's resolution.
    """

    def __init__(self, dataset: DatasetReader) -> None:
        self.dataset = dataset
        self._native: dict[str, float | None] = {}
        self._overviews: dict[int, DatasetReader] = {}
        self._grids: OrderedDict[tuple[Any, ...], tuple[WarpedVRT, int, int] | None]
        self._grids = OrderedDict()

    def close(self) -> None:
        """Close the VRTs, then the overview datasets (not the file's own dataset)."""
        for grid in self._grids.values():
            if grid is not None:
                grid[0].close()
        for overview in self._overviews.values():
            overview.close()
        self._grids.clear()
        self._overviews.clear()

    def __len__(self) -> int:
        return sum(1 for grid in self._grids.values() if grid is not None)

    def vrts(self) -> list[WarpedVRT]:
        """The grids' VRTs, least recently used first."""
        return [grid[0] for grid in self._grids.values() if grid is not None]

    def tile(
        self, tms: TileMatrixSet, x: int, y: int, z: int, size: int,
        indexes: Sequence[int] | None, kernel: str,
    ) -> ImageData | None:  # fmt: skip
        """Tile ``z/x/y`` of ``tms`` at ``size`` px; None where this grid cannot read it."""
        key = (tms.id, str(tms.crs), z, size, kernel)
        if key in self._grids:
            self._grids.move_to_end(key)
            grid = self._grids[key]
        else:
            grid = self._grid(tms, x, y, z, size, kernel)
            self._grids[key] = grid
            while len(self._grids) > MAX_GRIDS:
                evicted = self._grids.popitem(last=False)[1]
                if evicted is not None:
                    evicted[0].close()
        if grid is None:
            return None
        vrt, col0, row0 = grid
        col, row = (x - col0) * size, (y - row0) * size
        if not (0 <= col <= vrt.width - size and 0 <= row <= vrt.height - size):
            return None
        return self._read(vrt, Window(col, row, size, size), indexes, tms, x, y, z)

    def _grid(
        self, tms: TileMatrixSet, x: int, y: int, z: int, size: int, kernel: str
    ) -> tuple[WarpedVRT, int, int] | None:
        """The VRT of zoom ``z`` over the data, and its first tile's column and row."""
        matrix = tms.matrix(z)
        crs = tms.rasterio_crs
        data = self._data_bounds(crs)
        if matrix.variableMatrixWidths or data is None:
            return None
        left, bottom, right, top = tms.xy_bounds(Tile(x, y, z))
        width, height = right - left, top - bottom
        origin_x, origin_y = left - x * width, top + y * height  # the matrix's top-left corner
        col0 = max(0, math.floor((data[0] - origin_x) / width))
        col1 = min(matrix.matrixWidth - 1, math.floor((data[2] - origin_x) / width))
        row0 = max(0, math.floor((origin_y - data[3]) / height))
        row1 = min(matrix.matrixHeight - 1, math.floor((origin_y - data[1]) / height))
        columns, rows = (col1 - col0 + 1) * size, (row1 - row0 + 1) * size
        if not (0 < columns < 2**31 and 0 < rows < 2**31):
            return None
        source = self._source(crs, min(width, height) / size, kernel)
        if source is None:
            return None
        transform = Affine(width / size, 0.0, origin_x + col0 * width,
                           0.0, -height / size, origin_y - row0 * height)  # fmt: skip
        # rio-tiler's WarpedVRT options (rio_tiler.reader.read)
        options: dict[str, Any] = {"crs": crs, "add_alpha": True,
                                   "resampling": Resampling[kernel],
                                   "dtype": self.dataset.dtypes[0]}  # fmt: skip
        nodata = self.dataset.nodata
        if nodata is not None:
            options.update(nodata=nodata, add_alpha=False, src_nodata=nodata)
        if has_alpha_band(self.dataset):
            options["add_alpha"] = False
        vrt = WarpedVRT(source, transform=transform, width=columns, height=rows, **options)
        return vrt, col0, row0

    def _data_bounds(self, crs: CRS) -> tuple[float, float, float, float] | None:
        """The file's bounds in ``crs``, as ItemReader works out the item's."""
        return _reprojected_bounds(self.dataset.crs, tuple(self.dataset.bounds), crs)

    def overview_level(self, crs: CRS, resolution: float, kernel: str = "nearest") -> int | None:
        """The overview GDAL's RasterIO would read for pixels of ``resolution`` in ``crs``.

        GDAL's rule: the most reduced overview whose reduction stays below the wanted one
        times ``GDAL_OVERVIEW_OVERSAMPLING_THRESHOLD`` (by default 1.2 for nearest
        neighbours, else 1.0 and a hair). -1 for the file itself, None when the file's pixel
        size in ``crs`` cannot be worked out.
        """
        name = crs.to_string()
        if name not in self._native:
            self._native[name] = self._native_resolution(crs)
        native = self._native[name]
        if native is None:
            return None
        given = get_gdal_config("GDAL_OVERVIEW_OVERSAMPLING_THRESHOLD")
        threshold = float(given) if given is not None else (1.2 if kernel == "nearest" else 1.0)
        threshold += 0.01 if threshold == 1.0 else 0.0  # GDAL's guard against rounding
        wanted = resolution / native
        level = -1
        for i, factor in enumerate(self.dataset.overviews(1)):
            if factor < wanted * threshold:
                level = i
        return level

    def _source(self, crs: CRS, resolution: float, kernel: str) -> DatasetReader | None:
        """The dataset a grid of ``resolution`` warps from (``overview_level``)."""
        level = self.overview_level(crs, resolution, kernel)
        if level is None:
            return None
        if level < 0:
            return self.dataset
        if level not in self._overviews:
            self._overviews[level] = rasterio.open(
                self.dataset.name, driver="GTiff", overview_level=level
            )
        return self._overviews[level]

    def _native_resolution(self, crs: CRS) -> float | None:
        """The file's pixel size in ``crs`` (rio-tiler's: GDAL's suggested warp output)."""
        dataset = self.dataset
        if dataset.crs == crs:
            return float(min(abs(dataset.res[0]), abs(dataset.res[1])))
        try:
            transform, _, _ = calculate_default_transform(
                dataset.crs, crs, dataset.width, dataset.height, *dataset.bounds
            )
        except (CPLE_BaseError, CRSError, ValueError):
            return None
        native = min(abs(transform.a), abs(transform.e))
        return float(native) if math.isfinite(native) and native > 0 else None

    def _read(
        self, vrt: WarpedVRT, window: Window, indexes: Sequence[int] | None,
        tms: TileMatrixSet, x: int, y: int, z: int,
    ) -> ImageData:  # fmt: skip
        """One window, read and masked as ``rio_tiler.reader.read`` reads its VRT."""
        dataset = self.dataset
        indexes = list(cast_to_sequence(indexes) or non_alpha_indexes(vrt))
        nodata = vrt.nodata
        alpha_mask = None
        if ColorInterp.alpha in vrt.colorinterp and nodata is None:
            alpha = vrt.colorinterp.index(ColorInterp.alpha) + 1
            values = vrt.read([*indexes, alpha], window=window)
            values, alpha_mask = values[:-1], values[-1]
            _, opaque = dtype_ranges[str(values.dtype)]
            real_alpha = ColorInterp.alpha in dataset.colorinterp
            if not real_alpha and alpha_mask.max() == 255:
                opaque = 255  # rio-tiler's: GDAL's alpha of a mask is 0-255 whatever the type
            mask = alpha_mask != opaque
            if not real_alpha:
                alpha_mask = None
        else:
            values = vrt.read(indexes, window=window)
            if nodata is None:
                mask = numpy.zeros(values.shape, bool)
            elif numpy.isnan(nodata):
                mask = numpy.isnan(values)
            else:
                mask = values == nodata
        if mask.ndim == 2:
            mask = numpy.broadcast_to(mask, values.shape).copy()
        stats = []
        for index in indexes:
            tags = dataset.tags(index)
            if "STATISTICS_MINIMUM" in tags and "STATISTICS_MAXIMUM" in tags:
                stats.append((float(tags["STATISTICS_MINIMUM"]),
                              float(tags["STATISTICS_MAXIMUM"])))  # fmt: skip
        array = numpy.ma.MaskedArray(values, mask=mask)
        if nodata is not None:
            array.fill_value = nodata  # as rasterio's masked read sets it
        return ImageData(
            array,
            bounds=BoundingBox(*tms.xy_bounds(Tile(x, y, z))),
            crs=vrt.crs,
            band_names=[f"b{index}" for index in indexes],
            band_descriptions=[dataset.descriptions[i - 1] or f"b{i}" for i in indexes],
            dataset_statistics=stats if len(stats) == len(indexes) else None,
            metadata=dataset.tags(),
            nodata=nodata,
            alpha_mask=alpha_mask,
            scales=[dataset.scales[i - 1] for i in indexes],
            offsets=[dataset.offsets[i - 1] for i in indexes],
        )


def grid_readable(options: Mapping[str, Any]) -> bool:
    """Whether ``TileGrids`` reads a tile with these rio-tiler options as rio-tiler would.

    Only the warp kernel (``reproject_method``) and a nearest-neighbour ``resampling_method``
    (a tile is read at its own size: nothing is resampled after the warp).
    """
    given = {
        key
        for key, value in options.items()
        if value is not None and value is not False and not (key in _NO_OP_ZERO and value == 0)
    }
    return given <= GRID_OPTIONS and options.get("resampling_method") in (None, "nearest")


class DatasetPool:
    """GeoTIFFs left open between reads of the same file, one reader at a time per handle.

    Opening the file again for every tile costs its header and IFDs, and drops the blocks
    GDAL has decoded for that handle: map tiles next to each other (a map view, an export
    walking the tiles in order) read the same blocks. ``borrow`` hands out an idle handle of
    the file, or opens one, with its ``TileGrids``; the reader's exit gives them back.
    A handle belongs to one file version (inode, mtime, size): a replaced file is opened
    anew and the old handles age out. At most ``size`` idle handles are kept, none idle for
    more than ``idle_s``; a forked child starts with none (a handle's file offset would be
    shared with its parent).
    """

    def __init__(self, size: int = 64, idle_s: float = 60.0) -> None:
        self.size = size
        self.idle_s = idle_s
        self._idle: OrderedDict[tuple[FileKey, int], tuple[float, DatasetReader, TileGrids]]
        self._idle = OrderedDict()
        self._lock = threading.Lock()
        self._serial = 0
        self.opened = 0  # files opened, for tests and benchmarks
        os.register_at_fork(after_in_child=self._forget)
        atexit.register(self.clear)  # closed by GDAL while Python still runs, not at teardown

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._idle = OrderedDict()  # the parent's handles are not ours to read through

    def borrow(self, path: str, stack: contextlib.ExitStack) -> DatasetReader:
        """An open dataset of ``path`` for the life of ``stack`` (a reader's context)."""
        return self.borrow_grids(path, stack)[0]

    def borrow_grids(
        self, path: str, stack: contextlib.ExitStack
    ) -> tuple[DatasetReader, TileGrids | None]:
        """``borrow``, with the handle's tile grids (None for a file that is gone)."""
        try:
            info = os.stat(path)
        except OSError:  # gone: GDAL says so as it always did
            return stack.enter_context(rasterio.open(path, driver="GTiff")), None
        key: FileKey = (path, info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)
        found = None
        with self._lock:
            closing = self._expired(time.monotonic())
            for slot in self._idle:
                if slot[0] == key:
                    found = self._idle.pop(slot)[1:]
                    break
        _close(closing)
        if found is None:
            dataset = rasterio.open(path, driver="GTiff")
            found = (dataset, TileGrids(dataset))
            self.opened += 1
        stack.callback(self._give, key, *found)
        return found

    def _give(self, key: FileKey, dataset: DatasetReader, grids: TileGrids) -> None:
        now = time.monotonic()
        with self._lock:
            self._serial += 1
            self._idle[(key, self._serial)] = (now, dataset, grids)
            closing = self._expired(now)
            while len(self._idle) > self.size:
                closing.append(self._idle.popitem(last=False)[1][1:])
        _close(closing)

    def _expired(self, now: float) -> list[tuple[DatasetReader, TileGrids]]:
        """Pop the handles idle for longer than ``idle_s`` (oldest first); lock held."""
        expired = []
        while self._idle:
            slot, (since, dataset, grids) = next(iter(self._idle.items()))
            if now - since <= self.idle_s:
                break
            del self._idle[slot]
            expired.append((dataset, grids))
        return expired

    def clear(self) -> None:
        """Close every idle handle."""
        with self._lock:
            idle, self._idle = self._idle, OrderedDict()
        _close([entry[1:] for entry in idle.values()])

    def __len__(self) -> int:
        return len(self._idle)


def _close(handles: Sequence[tuple[DatasetReader, TileGrids]]) -> None:
    for dataset, grids in handles:
        grids.close()
        dataset.close()


DATASETS = DatasetPool()


# -- readers -----------------------------------------------------------------------------------
def _checked_options(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Reader method: band indexes outside the file, or a nodata value its data type
    cannot hold, are InvalidLayer (400) instead of IndexError/TypeError deep in numpy."""

    @functools.wraps(method)
    def wrapper(self: Reader, *args: Any, indexes: Any = None, **kwargs: Any) -> Any:
        count = self.dataset.count
        if any(not 1 <= i <= count for i in cast_to_sequence(indexes) or ()):
            raise InvalidLayer(f"band indexes {indexes} out of range: the asset has {count}")
        nodata = kwargs.get("nodata")
        dtype = numpy.dtype(self.dataset.dtypes[0])
        if nodata is not None and dtype.kind in "iu":
            info = numpy.iinfo(dtype)
            if not (numpy.isfinite(nodata) and info.min <= nodata <= info.max):
                raise InvalidLayer(f"nodata {nodata} does not fit the data type {dtype}")
        return method(self, *args, indexes=indexes, **kwargs)

    return wrapper


@attr.s
class LocalTiffReader(Reader):
    """rio-tiler's Reader for a local GeoTIFF: GDAL may use its GTiff driver only (no VRT).

    The file comes from ``DATASETS``: open handles are reused from one read to the next.
    """

    grids: TileGrids | None = attr.ib(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        """Borrow the file, opened with the GTiff driver, then let Reader read its metadata."""
        if self.dataset is None:
            self.dataset, self.grids = DATASETS.borrow_grids(self.input, self._ctx_stack)
        super().__attrs_post_init__()

    @_checked_options
    def tile(
        self,
        tile_x: int,
        tile_y: int,
        tile_z: int,
        tilesize: int | None = None,
        indexes: Sequence[int] | int | None = None,
        expression: str | None = None,
        buffer: float | None = None,
        **kwargs: Any,
    ) -> ImageData:
        """A tile, read through the file's ``TileGrids`` where it can read it, else rio-tiler's."""
        options = {**self.options, **kwargs}
        if self.grids is not None and not expression and not buffer and grid_readable(options):
            size = tilesize or self.tms.matrix(tile_z).tileWidth
            kernel = options.get("reproject_method") or "nearest"
            image = self.grids.tile(self.tms, tile_x, tile_y, tile_z, size,
                                    cast_to_sequence(indexes), kernel)  # fmt: skip
            if image is not None:
                image.assets = [self.input]
                return image
        return super().tile(tile_x, tile_y, tile_z, tilesize=tilesize, indexes=indexes,
                            expression=expression, buffer=buffer, **kwargs)  # fmt: skip

    part = _checked_options(Reader.part)
    preview = _checked_options(Reader.preview)
    point = _checked_options(Reader.point)
    feature = _checked_options(Reader.feature)
    statistics = _checked_options(Reader.statistics)


@attr.s
class ItemReader(MultiBaseReader):
    """A catalogue item's GeoTIFF assets as one multi-asset dataset (rio-tiler MultiBaseReader).

    Default assets: ``data``, or those with role ``data``. ``info``/``statistics`` default
    to every GeoTIFF asset. Tiles, previews, crops and points also take ``bands`` (names or
    common names) and expressions with band names (module docstring); ``tile`` takes
    ``scale`` (``@2x``). Output images are limited to ``max_image_size`` pixels a side.
    """

    input: dict[str, Any] = attr.ib(converter=_item_dict)
    data_dir: Path = attr.ib(kw_only=True, converter=Path)
    tms: TileMatrixSet = attr.ib(default=WEB_MERCATOR_TMS)
    minzoom: int | None = attr.ib(default=None)
    maxzoom: int | None = attr.ib(default=None)
    reader: type[BaseReader] = attr.ib(default=LocalTiffReader)
    reader_options: dict[str, Any] = attr.ib(factory=dict)
    max_image_size: int = attr.ib(default=DEFAULT_MAX_IMAGE_SIZE, kw_only=True)
    ctx: Any = attr.ib(default=rasterio.Env)
    # rio-tiler reads the assets of one call on a thread pool it makes for that call. Every new
    # thread sets GDAL and PROJ up again (~15 ms a tile here, half a tile's time), while a
    # server already reads tiles concurrently on its own threads: assets are read in turn.
    threads: int = attr.ib(default=1, kw_only=True)

    assets: Sequence[str] = attr.ib(init=False)
    default_assets: Sequence[AssetType] | None = attr.ib(init=False, default=None)
    storage: LocalStorage = attr.ib(init=False)

    def __attrs_post_init__(self) -> None:
        """List the GeoTIFF assets and take the footprint from the projection extension."""
        self.storage = LocalStorage(self.data_dir)
        self.assets = raster_assets(self.input)
        if not self.assets:
            raise MissingAssets(f"item {self.input.get('id')!r} has no GeoTIFF asset")
        self.default_assets = default_assets(self.input) or None
        projection = _projection(self.input, list(self.default_assets or self.assets))
        if projection:
            self.crs, self.transform, self.height, self.width = projection
            self.bounds = array_bounds(self.height, self.width, self.transform)
        else:
            self.crs = WGS84_CRS
            bbox, geometry = self.input.get("bbox"), self.input.get("geometry")
            if isinstance(bbox, list) and len(bbox) == 4:
                self.bounds = tuple(bbox)
            elif isinstance(bbox, list) and len(bbox) == 6:
                self.bounds = (bbox[0], bbox[1], bbox[3], bbox[4])
            elif geometry:
                self.bounds = feature_bounds(geometry)
            else:
                self.bounds = (-180.0, -90.0, 180.0, 90.0)
        if self.minzoom is None or self.maxzoom is None:
            minzoom, maxzoom = self._native_zooms()
            self.minzoom = self.minzoom if self.minzoom is not None else minzoom
            self.maxzoom = self.maxzoom if self.maxzoom is not None else maxzoom

    def _native_zooms(self) -> tuple[int, int]:
        """rio-tiler's min and max zoom of the data, remembered by grid and tile matrix set.

        A reader is made per request, and working the zooms out (a reprojection of the grid)
        was ~2 ms of every tile; a grid's zooms never change.
        """
        key = (self.tms.id, self.crs, tuple(self.bounds), self.transform, self.height, self.width)
        with _ZOOMS_LOCK:
            found = _ZOOMS.get(key)
        if found is None:
            found = (int(self._minzoom), int(self._maxzoom))
            with _ZOOMS_LOCK:
                _ZOOMS[key] = found
        return found

    # -- asset resolution ----------------------------------------------------------------------
    def _get_asset_info(self, asset: AssetType) -> AssetInfo:
        """The local path and read options of one asset; AssetNotReadable for foreign hrefs."""
        options = {"name": asset} if isinstance(asset, str) else dict(asset)
        name = options.get("name")
        if name not in self.assets:
            raise InvalidAssetName(f"{name!r} is not a GeoTIFF asset of this item: {self.assets}")
        meta = self.input["assets"][name]
        href = meta.get("href")
        try:
            path = self.storage.gdal_path(href if isinstance(href, str) else "")
        except ValueError as exc:
            raise AssetNotReadable(
                f"asset {name!r} of item {self.input.get('id')!r} is not a file of this "
                "catalogue's storage, so it is not rendered"
            ) from exc
        if not os.path.isfile(path):
            raise AssetNotReadable(
                f"asset {name!r} of item {self.input.get('id')!r} is missing from storage"
            )
        method_options: dict[str, Any] = {}
        if options.get("bands"):
            method_options["indexes"] = band_indexes(self.input, name, options["bands"])
        elif options.get("indexes"):
            method_options["indexes"] = options["indexes"]
        if options.get("expression"):
            method_options["expression"] = options["expression"]
        info = AssetInfo(
            url=path,
            name=name,
            media_type=meta.get("type"),
            reader_options={},
            method_options=method_options,
            env=dict(GDAL_ENV),
        )
        if stats := _band_statistics(meta):
            info["dataset_statistics"] = stats
        return info

    def _layer(
        self,
        assets: Sequence[AssetType] | AssetType | None,
        expression: str | None,
        bands: Sequence[str] | None,
        indexes: Sequence[int] | int | None,
    ) -> tuple[list[AssetType], str | None]:
        chosen = list(cast_to_sequence(assets) or self.default_assets or [])
        if not chosen:
            raise MissingAssets(f"this item has no default asset: choose from {self.assets}")
        if bands:
            if indexes:
                raise InvalidLayer("use either bands or bidx, not both")
            chosen = [
                {"name": a, "bands": list(bands)} if isinstance(a, str) else {**a, "bands": bands}
                for a in chosen
            ]
        if expression is not None:
            blocks = expression.split(";")
            if len(expression) > MAX_EXPRESSION_LENGTH or len(blocks) > MAX_EXPRESSION_BANDS:
                raise InvalidExpression(
                    f"expressions are at most {MAX_EXPRESSION_LENGTH} characters and "
                    f"{MAX_EXPRESSION_BANDS} output bands"
                )
            if not all(block.strip() for block in blocks):
                raise InvalidExpression(f"empty output band in expression {expression[:80]!r}")
            positions = band_positions(self.input, chosen, cast_to_sequence(indexes))
            expression = translate_expression(expression, positions)
        return chosen, expression

    def _check_size(self, options: dict[str, Any], default_max: int | None) -> None:
        for key in ("max_size", "width", "height"):
            value = options.get(key)
            if value is not None and not 0 < value <= self.max_image_size:
                raise ImageTooLarge(f"{key} must be between 1 and {self.max_image_size}")
        if default_max and not any(options.get(k) for k in ("max_size", "width", "height")):
            options["max_size"] = default_max

    def _check_extent(self, bbox: Sequence[float], crs: CRS) -> None:
        """A crop must touch the data and be at most MAX_EXTENT_RATIO times its area.

        GDAL reads a crop through a window at the data's resolution, so a bbox much larger
        than the data takes minutes whatever the output size (a preview is the way to see
        everything).
        """
        try:
            west, south, east, north = transform_bounds(crs, self.crs, *bbox, densify_pts=21)
        except (CPLE_BaseError, CRSError, ValueError) as exc:
            raise InvalidBounds(f"bbox {list(bbox)} cannot be taken to the data's CRS") from exc
        left, bottom, right, top = self.bounds
        if not all(numpy.isfinite((west, south, east, north))):
            raise InvalidBounds(f"bbox {list(bbox)} is outside the data's CRS domain")
        if west >= right or east <= left or south >= top or north <= bottom:
            raise TileOutsideBounds(f"bbox {list(bbox)} does not touch the data")
        ratio = (east - west) * (north - south) / max((right - left) * (top - bottom), 1e-12)
        if ratio > MAX_EXTENT_RATIO:
            raise InvalidBounds(
                f"bbox {list(bbox)} is {ratio:.0f} times the item's extent (at most "
                f"{MAX_EXTENT_RATIO}); use the preview for the whole item"
            )

    @staticmethod
    def _apply(image: ImageData, expression: str | None) -> ImageData:
        if not expression:
            return image
        if image.count > MAX_STATISTICS_BANDS:
            image.dataset_statistics = None
        return image.apply_expression(expression)

    # -- rio-tiler API -------------------------------------------------------------------------
    def info(self, assets: Sequence[AssetType] | AssetType | None = None, **kwargs: Any) -> Any:
        """Info of each asset (default: every GeoTIFF asset)."""
        return super().info(
            list(cast_to_sequence(assets) or self.assets), threads=self.threads, **kwargs
        )

    def statistics(
        self, assets: Sequence[AssetType] | AssetType | None = None, **kwargs: Any
    ) -> dict[str, dict[str, BandStatistics]]:
        """Statistics of each asset (default: every GeoTIFF asset)."""
        self._check_size(kwargs, None)
        kwargs.setdefault("threads", self.threads)
        return super().statistics(list(cast_to_sequence(assets) or self.assets), **kwargs)

    def tile(  # type: ignore[override]
        self,
        tile_x: int,
        tile_y: int,
        tile_z: int,
        assets: Sequence[AssetType] | AssetType | None = None,
        expression: str | None = None,
        bands: Sequence[str] | None = None,
        scale: int = 1,
        tilesize: int | None = None,
        **kwargs: Any,
    ) -> ImageData:
        """A map tile; ``scale`` multiplies the tile size (``@2x`` = 512 px on 256 px TMS)."""
        size = (tilesize or self.tms.tileMatrices[0].tileWidth) * scale
        if not 0 < size + 2 * (kwargs.get("buffer") or 0) <= self.max_image_size:
            raise ImageTooLarge(f"tiles are at most {self.max_image_size} px")
        if not self._in_matrix(tile_x, tile_y, tile_z):
            raise TileOutsideBounds(f"Tile(x={tile_x}, y={tile_y}, z={tile_z}) is outside bounds")
        chosen, expression = self._layer(assets, expression, bands, kwargs.get("indexes"))
        kwargs.setdefault("threads", self.threads)
        gridded = grid_readable(kwargs) and not self.tms.matrix(tile_z).variableMatrixWidths
        image = (
            None
            if kwargs.get("buffer") or gridded
            else self._sparse_tile(tile_x, tile_y, tile_z, size, chosen, kwargs)
        )
        if image is None:
            image = super().tile(tile_x, tile_y, tile_z, assets=chosen, tilesize=size, **kwargs)
        return self._apply(image, expression)

    def _sparse_tile(
        self, x: int, y: int, z: int, size: int, assets: list[AssetType], options: dict[str, Any]
    ) -> ImageData | None:
        """A tile the data covers little of, read as that part only and placed on the tile.

        rio-tiler reads a tile through a VRT at the data's resolution spanning the whole tile:
        a few zoom levels below the data's minzoom that VRT is vast and GDAL takes minutes
        (a zoomed-out map asks for such tiles). None when the data covers much of the tile.
        """
        if self._tms_bounds is None:
            return None
        crs = self.tms.rasterio_crs
        tx0, ty0, tx1, ty1 = self.tms.xy_bounds(Tile(x, y, z))
        dx0, dy0, dx1, dy1 = self._tms_bounds
        ix0, iy0, ix1, iy1 = max(tx0, dx0), max(ty0, dy0), min(tx1, dx1), min(ty1, dy1)
        if ix0 >= ix1 or iy0 >= iy1:
            raise TileOutsideBounds(f"Tile(x={x}, y={y}, z={z}) is outside bounds")
        if (ix1 - ix0) * (iy1 - iy0) > SPARSE_TILE_COVER * (tx1 - tx0) * (ty1 - ty0):
            return None
        xres, yres = (tx1 - tx0) / size, (ty1 - ty0) / size
        col0, col1 = math.floor((ix0 - tx0) / xres), min(size, math.ceil((ix1 - tx0) / xres))
        row0, row1 = math.floor((ty1 - iy1) / yres), min(size, math.ceil((ty1 - iy0) / yres))
        window = (tx0 + col0 * xres, ty1 - row1 * yres, tx0 + col1 * xres, ty1 - row0 * yres)
        part = super().part(
            window, assets=assets, dst_crs=crs, bounds_crs=crs, width=col1 - col0,
            height=row1 - row0, **options,
        )  # fmt: skip
        # zeros under the mask, as rio-tiler leaves them (np.ma.masked_all keeps garbage there)
        shape = (part.count, size, size)
        canvas = numpy.ma.MaskedArray(numpy.zeros(shape, part.array.dtype), mask=True)
        canvas[:, row0:row1, col0:col1] = part.array
        return attr.evolve(
            part, array=canvas, bounds=BoundingBox(tx0, ty0, tx1, ty1), crs=crs,
            alpha_mask=None, cutline_mask=None,
        )  # fmt: skip

    @functools.cached_property
    def _tms_bounds(self) -> tuple[float, float, float, float] | None:
        """The data's bounds in the tile matrix set's CRS, remembered like the zooms."""
        key = (self.tms.id, self.crs, tuple(self.bounds))
        with _ZOOMS_LOCK:
            if key in _TMS_BOUNDS:
                return _TMS_BOUNDS[key]
        found = _reprojected_bounds(self.crs, tuple(self.bounds), self.tms.rasterio_crs)
        with _ZOOMS_LOCK:
            _TMS_BOUNDS[key] = found
        return found

    def tile_exists(self, tile_x: int, tile_y: int, tile_z: int) -> bool:
        """rio-tiler's test, against the data's bounds in the tile matrix set's CRS.

        rio-tiler reprojects the tile's bounds for every tile (~1 ms); these bounds are
        worked out once per grid.
        """
        data = self._tms_bounds
        if data is None:
            return bool(super().tile_exists(tile_x, tile_y, tile_z))
        left, bottom, right, top = self.tms.xy_bounds(Tile(tile_x, tile_y, tile_z))
        return left < data[2] and right > data[0] and bottom < data[3] and top > data[1]

    def _in_matrix(self, x: int, y: int, z: int) -> bool:
        if not self.tms.minzoom <= z <= self.tms.maxzoom:
            return False
        matrix = self.tms.matrix(z)
        return 0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight

    def part(  # type: ignore[override]
        self,
        bbox: BBox,
        assets: Sequence[AssetType] | AssetType | None = None,
        expression: str | None = None,
        bands: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> ImageData:
        """A crop; without a size it is at most ``max_image_size`` px a side."""
        if (
            len(bbox) != 4
            or not all(numpy.isfinite(bbox))
            or not (bbox[0] < bbox[2] and bbox[1] < bbox[3])
        ):
            raise InvalidBounds(f"bbox must be finite minx,miny,maxx,maxy with min < max: {bbox}")
        self._check_extent(bbox, kwargs.get("bounds_crs") or kwargs.get("dst_crs") or self.crs)
        self._check_size(kwargs, self.max_image_size)
        chosen, expression = self._layer(assets, expression, bands, kwargs.get("indexes"))
        kwargs.setdefault("threads", self.threads)
        return self._apply(super().part(bbox, assets=chosen, **kwargs), expression)

    def feature(  # type: ignore[override]
        self,
        shape: dict[str, Any],
        assets: Sequence[AssetType] | AssetType | None = None,
        expression: str | None = None,
        bands: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> ImageData:
        """The crop of a GeoJSON feature; sizes as for ``part``."""
        try:
            box = feature_bounds(shape)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise InvalidBounds("not a GeoJSON geometry or feature") from exc
        self._check_extent(box, kwargs.get("shape_crs") or WGS84_CRS)
        self._check_size(kwargs, self.max_image_size)
        chosen, expression = self._layer(assets, expression, bands, kwargs.get("indexes"))
        kwargs.setdefault("threads", self.threads)
        return self._apply(super().feature(shape, assets=chosen, **kwargs), expression)

    def preview(  # type: ignore[override]
        self,
        assets: Sequence[AssetType] | AssetType | None = None,
        expression: str | None = None,
        bands: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> ImageData:
        """A preview (default at most 1024 px, rio-tiler's default)."""
        self._check_size(kwargs, 1024)
        chosen, expression = self._layer(assets, expression, bands, kwargs.get("indexes"))
        kwargs.setdefault("threads", self.threads)
        return self._apply(super().preview(assets=chosen, **kwargs), expression)

    def point(  # type: ignore[override]
        self,
        lon: float,
        lat: float,
        assets: Sequence[AssetType] | AssetType | None = None,
        expression: str | None = None,
        bands: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> PointData:
        """The values of the stacked bands at a point (WGS84 unless ``coord_crs``)."""
        if not (numpy.isfinite(lon) and numpy.isfinite(lat)):
            raise PointOutsideBounds(f"not a point: {lon}, {lat}")
        chosen, expression = self._layer(assets, expression, bands, kwargs.get("indexes"))
        try:
            data = super().point(lon, lat, assets=chosen, threads=self.threads, **kwargs)
        except CPLE_BaseError as exc:  # PROJ cannot take the point to the data CRS
            raise PointOutsideBounds(f"point ({lon}, {lat}) is outside the data") from exc
        return data.apply_expression(expression) if expression else data


def _band_statistics(asset: Mapping[str, Any]) -> list[tuple[float, float]] | None:
    """Per-band (minimum, maximum) from ``raster:bands`` when every band has finite ones."""
    bands = asset.get("raster:bands") or asset.get("bands")
    if not isinstance(bands, list) or not bands:
        return None
    stats = []
    for band in bands:
        values = band.get("statistics") if isinstance(band, dict) else None
        if not isinstance(values, dict):
            return None
        low, high = values.get("minimum"), values.get("maximum")
        if not all(isinstance(v, int | float) and numpy.isfinite(v) for v in (low, high)):
            return None
        stats.append((float(low), float(high)))
    return stats
