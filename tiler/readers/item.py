"""A rio-tiler reader for the catalogue's own STAC items: assets in our storage only.

``ItemReader(item, storage=...)`` takes an item dict (or ``pystac.Item``) and reads its
GeoTIFF assets through ``storage.gdal_path`` with ``storage.gdal_options()`` (a local path,
or ``/vsis3/`` of object storage): an href this storage did not make (http(s), s3,
``/vsicurl/``, relative, another folder) raises ``AssetNotReadable`` when read, as does a
missing file (found out when it cannot be opened: no check per read). Each asset is read by
the reader its media type maps to (``readers``, by default ``kinds.ASSET_READERS``); GeoTIFFs by
``LocalTiffReader``, which opens them with the GTiff driver only and without looking for
side-car files. The app's ``datasets`` pool and ``grid_cache`` (``shared.py``) are shared
between its readers; without them a reader opens its files and works its grid out for
itself. It works outside FastAPI (mosaics and exports use it directly). Band names and
expressions: ``stac.py``.
"""

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import attr
import numpy
import rasterio
from morecantile import BoundingBox, Tile, TileMatrixSet
from rasterio._err import CPLE_BaseError  # GDAL errors; rasterio has no public alias
from rasterio.crs import CRS
from rasterio.errors import CRSError, NotGeoreferencedWarning, RasterioError
from rasterio.features import bounds as feature_bounds
from rasterio.transform import array_bounds
from rasterio.warp import transform_bounds
from rio_tiler.constants import WEB_MERCATOR_TMS, WGS84_CRS
from rio_tiler.errors import (
    InvalidAssetName,
    InvalidBounds,
    InvalidExpression,
    MissingAssets,
    PointOutsideBounds,
    RioTilerError,
    TileOutsideBounds,
)
from rio_tiler.io import BaseReader, MultiBaseReader
from rio_tiler.models import BandStatistics, ImageData, PointData
from rio_tiler.types import AssetInfo, AssetType, BBox
from rio_tiler.utils import cast_to_sequence

from catalog.storage.base import Storage, stored_key

from ..errors import AssetMissing, AssetNotReadable, ImageTooLarge, InvalidLayer
from .cog import AssetPlace
from .grids import grid_readable, reprojected_bounds
from .kinds import ASSET_READERS, media_type
from .pool import DatasetPool
from .shared import GridCache, storage_env
from .stac import (
    band_indexes,
    band_positions,
    band_statistics,
    default_assets,
    item_dict,
    projection,
    raster_assets,
    translate_expression,
)

# rio-tiler derives an expression's value range from every min/max combination of the
# stacked bands (2**n evaluations): beyond this many bands the statistics are dropped.
MAX_STATISTICS_BANDS = 10
MAX_EXPRESSION_LENGTH = 2048
MAX_EXPRESSION_BANDS = 16  # output bands (``;``-separated blocks)
MAX_EXTENT_RATIO = 64  # a crop's area over the item's (ItemReader._check_extent)
SPARSE_TILE_COVER = 0.25  # below this share of a tile covered, read only the covered part
DEFAULT_MAX_IMAGE_SIZE = 4096


@attr.s
class ItemReader(MultiBaseReader):
    """A catalogue item's GeoTIFF assets as one multi-asset dataset (rio-tiler MultiBaseReader).

    Default assets: ``data``, or those with role ``data``. ``info``/``statistics`` default
    to every GeoTIFF asset. Tiles, previews, crops and points also take ``bands`` (names or
    common names) and expressions with band names (module docstring); ``tile`` takes
    ``scale`` (``@2x``). Output images are limited to ``max_image_size`` pixels a side.
    """

    input: dict[str, Any] = attr.ib(converter=item_dict)
    storage: Storage = attr.ib(kw_only=True)
    datasets: DatasetPool | None = attr.ib(default=None, kw_only=True)
    grid_cache: GridCache | None = attr.ib(default=None, kw_only=True)
    tms: TileMatrixSet = attr.ib(default=WEB_MERCATOR_TMS)
    minzoom: int | None = attr.ib(default=None)
    maxzoom: int | None = attr.ib(default=None)
    # media type -> reader class of the assets it renders (kinds.py)
    readers: Mapping[str, type[BaseReader]] = attr.ib(default=ASSET_READERS, kw_only=True)
    reader_options: dict[str, Any] = attr.ib(factory=dict)
    max_image_size: int = attr.ib(default=DEFAULT_MAX_IMAGE_SIZE, kw_only=True)
    ctx: Any = attr.ib(default=rasterio.Env)
    # rio-tiler reads the assets of one call on a thread pool it makes for that call. Every new
    # thread sets GDAL and PROJ up again (~15 ms a tile here, half a tile's time), while a
    # server already reads tiles concurrently on its own threads: assets are read in turn.
    threads: int = attr.ib(default=1, kw_only=True)

    assets: Sequence[str] = attr.ib(init=False)
    default_assets: Sequence[AssetType] | None = attr.ib(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        """List the GeoTIFF assets and take the footprint from the projection extension."""
        self.assets = raster_assets(self.input, self.readers)
        if not self.assets:
            raise MissingAssets(f"item {self.input.get('id')!r} has no GeoTIFF asset")
        self.default_assets = default_assets(self.input, self.readers) or None
        found = projection(self.input, list(self.default_assets or self.assets))
        # Without the projection extension the grid is unknown until an asset is opened, and
        # rio-tiler's zooms fall back to the tile matrix set's full range (0-24).
        self.gridded = found is not None
        if found:
            self.crs, self.transform, self.height, self.width = found
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

        def work_out() -> tuple[int, int]:
            return int(self._minzoom), int(self._maxzoom)

        if self.grid_cache is None:
            return work_out()
        return self.grid_cache.remember(self.grid_cache.zooms, key, work_out)

    def asset_zooms(self, assets: Sequence[str] | None = None) -> tuple[int, int]:
        """Min and max zoom of ``assets`` (default: the default ones), each opened as it would
        be rendered; AssetNotReadable naming the asset and why when one cannot be."""
        zooms = []
        for name in assets or self.default_assets or self.assets:
            if not isinstance(name, str) or name not in self.assets:
                reason = not_rendered(self.input, name, self.readers)
                raise AssetNotReadable(f"item {self.input.get('id')!r}: {reason}")
            zooms.append(self._file_zooms(name, self._get_asset_info(name)))
        return min(z[0] for z in zooms), max(z[1] for z in zooms)

    def _file_zooms(self, name: str, info: AssetInfo) -> tuple[int, int]:
        """Min and max zoom of one asset's file, opened by its reader."""
        where = f"asset {name!r} of item {self.input.get('id')!r}"
        try:
            with (
                warnings.catch_warnings(action="ignore", category=NotGeoreferencedWarning),
                rasterio.Env(**info["env"]),
                self._get_reader(info)(info["url"], tms=self.tms, **info["reader_options"]) as src,
            ):
                crs, zooms = src.crs, (int(src.minzoom), int(src.maxzoom))
        except AssetMissing:  # names the asset already
            raise
        except AssetNotReadable as exc:  # the reader's own: not a GeoTIFF
            raise AssetNotReadable(f"{where}: {exc}") from exc
        except (RasterioError, CPLE_BaseError, RioTilerError) as exc:
            reason = str(exc).replace(info["url"], "the file") or type(exc).__name__
            raise AssetNotReadable(f"{where} cannot be read as a GeoTIFF: {reason}") from exc
        if crs is None:
            raise AssetNotReadable(
                f"{where} has no coordinate reference system: it cannot be placed on a map"
            )
        return zooms

    # -- asset resolution ----------------------------------------------------------------------
    def _get_asset_info(self, asset: AssetType) -> AssetInfo:
        """The local path and read options of one asset; AssetNotReadable for foreign hrefs."""
        options: dict[str, Any] = {"name": asset} if isinstance(asset, str) else dict(asset)
        name = options.get("name")
        if not isinstance(name, str) or name not in self.assets:
            raise InvalidAssetName(f"{name!r} is not a GeoTIFF asset of this item: {self.assets}")
        meta = self.input["assets"][name]
        reader = self._reader(meta)
        key = stored_key(meta.get("href"))  # None for any href this catalogue did not store
        try:
            if key is None or not key.startswith("assets/"):
                raise ValueError("not a stored asset")
            path = self.storage.gdal_path(key)
        except ValueError as exc:
            raise AssetNotReadable(
                f"asset {name!r} of item {self.input.get('id')!r} is not a file of this "
                "catalogue's storage, so it is not rendered"
            ) from exc
        place = AssetPlace(self.storage, key, f"asset {name!r} of item {self.input.get('id')!r}",
                           meta.get("file:checksum"))  # fmt: skip
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
            reader_options=self._shared_options(reader, place),
            method_options=method_options,
            env={**getattr(reader, "gdal_env", {}), **storage_env(self.storage)},
        )
        if stats := band_statistics(meta):
            info["dataset_statistics"] = stats
        return info

    def _reader(self, asset: Mapping[str, Any]) -> type[BaseReader]:
        """The reader class of an asset of this item, by its media type."""
        return self.readers[media_type(asset) or ""]

    def _shared_options(self, reader: type[BaseReader], place: AssetPlace) -> dict[str, Any]:
        """The app's pool, for asset readers that keep their files in one (``datasets``), and
        where the file is stored, for those that take it (``place``)."""
        fields = attr.fields_dict(reader) if attr.has(reader) else {}
        options: dict[str, Any] = {"place": place} if "place" in fields else {}
        if "datasets" in fields and self.datasets is not None:
            options["datasets"] = self.datasets
        return options

    def _get_reader(self, asset_info: AssetInfo) -> type[BaseReader]:
        """rio-tiler's hook: the reader of one asset."""
        return self._reader(self.input["assets"][asset_info["name"]])

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

        def work_out() -> tuple[float, float, float, float] | None:
            return reprojected_bounds(self.crs, tuple(self.bounds), self.tms.rasterio_crs)

        if self.grid_cache is None:
            return work_out()
        return self.grid_cache.remember(self.grid_cache.tms_bounds, key, work_out)

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
            box = tuple(float(v) for v in feature_bounds(shape))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise InvalidBounds("not a GeoJSON geometry or feature") from exc
        if len(box) == 6:  # a GeoJSON "bbox" member in 3D: west, south, low, east, north, high
            box = (box[0], box[1], box[3], box[4])
        if len(box) != 4:  # rasterio hands back a "bbox" member as it is
            raise InvalidBounds(f"a GeoJSON bbox has 4 or 6 numbers, not {len(box)}")
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


def not_rendered(item: Mapping[str, Any], name: Any, readers: Mapping[str, Any]) -> str:
    """Why asset ``name`` of ``item`` is not rendered: absent, or not of a raster media type
    (for a message that names the item)."""
    asset = item["assets"].get(name) if isinstance(name, str) else None
    if asset is None:
        return f"there is no asset {name!r} (the assets: {', '.join(item['assets'])})"
    kind = media_type(asset)
    return (
        f"asset {name!r} is {kind or 'of no media type'}, not a raster the tiler reads "
        f"({', '.join(sorted(readers))})"
    )
