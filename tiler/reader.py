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
from rasterio.errors import CRSError
from rasterio.features import bounds as feature_bounds
from rasterio.io import DatasetReader
from rasterio.transform import array_bounds
from rasterio.warp import transform_bounds
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
from rio_tiler.utils import cast_to_sequence

from catalog.ingest.storage import LocalStorage

from .errors import AssetNotReadable, ImageTooLarge, InvalidLayer, UnsafeCrs

RASTER_MEDIA_TYPES = frozenset({"image/tiff", "image/x.geotiff", "image/vnd.stac.geotiff"})
# GDAL looks for .ovr/.aux.xml/.msk side-cars next to a file unless told not to.
GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
_ZOOMS: LRUCache[tuple[Any, ...], tuple[int, int]] = LRUCache(maxsize=4096)
_ZOOMS_LOCK = threading.Lock()
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


# -- open files --------------------------------------------------------------------------------
FileKey = tuple[str, int, int, int, int]  # path, device, inode, mtime (ns), size


class DatasetPool:
    """GeoTIFFs left open between reads of the same file, one reader at a time per handle.

    Opening the file again for every tile costs its header and IFDs, and drops the blocks
    GDAL has decoded for that handle: map tiles next to each other (a map view, an export
    walking the tiles in order) read the same blocks. ``borrow`` hands out an idle handle of
    the file, or opens one; the reader's exit gives it back.
    A handle belongs to one file version (inode, mtime, size): a replaced file is opened
    anew and the old handles age out. At most ``size`` idle handles are kept, none idle for
    more than ``idle_s``; a forked child starts with none (a handle's file offset would be
    shared with its parent).
    """

    def __init__(self, size: int = 64, idle_s: float = 60.0) -> None:
        self.size = size
        self.idle_s = idle_s
        self._idle: OrderedDict[tuple[FileKey, int], tuple[float, DatasetReader]] = OrderedDict()
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
        try:
            info = os.stat(path)
        except OSError:  # gone: GDAL says so as it always did
            return stack.enter_context(rasterio.open(path, driver="GTiff"))
        key: FileKey = (path, info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)
        dataset = None
        with self._lock:
            closing = self._expired(time.monotonic())
            for slot in self._idle:
                if slot[0] == key:
                    dataset = self._idle.pop(slot)[1]
                    break
        for old in closing:
            old.close()
        if dataset is None:
            dataset = rasterio.open(path, driver="GTiff")
            self.opened += 1
        stack.callback(self._give, key, dataset)
        return dataset

    def _give(self, key: FileKey, dataset: DatasetReader) -> None:
        now = time.monotonic()
        with self._lock:
            self._serial += 1
            self._idle[(key, self._serial)] = (now, dataset)
            closing = self._expired(now)
            while len(self._idle) > self.size:
                closing.append(self._idle.popitem(last=False)[1][1])
        for old in closing:
            old.close()

    def _expired(self, now: float) -> list[DatasetReader]:
        """Pop the handles idle for longer than ``idle_s`` (oldest first); lock held."""
        expired = []
        while self._idle:
            slot, (since, dataset) = next(iter(self._idle.items()))
            if now - since <= self.idle_s:
                break
            del self._idle[slot]
            expired.append(dataset)
        return expired

    def clear(self) -> None:
        """Close every idle handle."""
        with self._lock:
            idle, self._idle = self._idle, OrderedDict()
        for _, dataset in idle.values():
            dataset.close()

    def __len__(self) -> int:
        return len(self._idle)


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

    def __attrs_post_init__(self) -> None:
        """Borrow the file, opened with the GTiff driver, then let Reader read its metadata."""
        if self.dataset is None:
            self.dataset = DATASETS.borrow(self.input, self._ctx_stack)
        super().__attrs_post_init__()

    tile = _checked_options(Reader.tile)
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
        image = (
            None
            if kwargs.get("buffer")
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
        try:
            bounds = transform_bounds(self.crs, self.tms.rasterio_crs, *self.bounds, densify_pts=21)
        except (CPLE_BaseError, CRSError, ValueError):
            return None
        return bounds if all(numpy.isfinite(bounds)) else None

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
