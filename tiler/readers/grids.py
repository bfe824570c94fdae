"""Tiles of an open GeoTIFF read as windows of one warped VRT per zoom (``TileGrids``)."""

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy
import rasterio
from affine import Affine
from morecantile import BoundingBox, Tile, TileMatrixSet
from rasterio._err import CPLE_BaseError  # GDAL errors; rasterio has no public alias
from rasterio.crs import CRS
from rasterio.dtypes import dtype_ranges
from rasterio.enums import ColorInterp, Resampling
from rasterio.env import get_gdal_config
from rasterio.errors import CRSError
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform, transform_bounds
from rasterio.windows import Window
from rio_tiler.models import ImageData
from rio_tiler.utils import cast_to_sequence, has_alpha_band, non_alpha_indexes

# Options of a tile read that ``TileGrids`` reads as rio-tiler would; any other is left to it.
GRID_OPTIONS = frozenset({"reproject_method", "resampling_method", "threads"})
_NO_OP_ZERO = frozenset({"buffer", "padding"})  # options whose 0 means "none"
MAX_GRIDS = 32  # warped grids kept per open file (zoom levels x tile sizes x kernels)


def reprojected_bounds(
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
        vrt, first_col, first_row = grid
        col, row = x * size - first_col, y * size - first_row
        if not (-size < col < vrt.width and -size < row < vrt.height):
            return None
        return self._read(vrt, Window(col, row, size, size), indexes, tms, x, y, z)

    def _grid(
        self, tms: TileMatrixSet, x: int, y: int, z: int, size: int, kernel: str
    ) -> tuple[WarpedVRT, int, int] | None:
        """The VRT of zoom ``z`` over the data, and the matrix pixel of its top-left corner."""
        matrix = tms.matrix(z)
        crs = tms.rasterio_crs
        data = self._data_bounds(crs)
        if matrix.variableMatrixWidths or data is None:
            return None
        left, bottom, right, top = tms.xy_bounds(Tile(x, y, z))
        xres, yres = (right - left) / size, (top - bottom) / size
        origin_x, origin_y = left - x * size * xres, top + y * size * yres  # the matrix's corner
        cols = _span((data[0] - origin_x) / xres, (data[2] - origin_x) / xres,
                     matrix.matrixWidth, size)  # fmt: skip
        rows = _span((origin_y - data[3]) / yres, (origin_y - data[1]) / yres,
                     matrix.matrixHeight, size)  # fmt: skip
        if cols is None or rows is None:
            return None
        source = self._source(crs, min(xres, yres), kernel)
        if source is None:
            return None
        transform = Affine(xres, 0.0, origin_x + cols[0] * xres,
                           0.0, -yres, origin_y - rows[0] * yres)  # fmt: skip
        # rio-tiler's WarpedVRT options (rio_tiler.reader.read)
        options: dict[str, Any] = {"crs": crs, "add_alpha": True,
                                   "resampling": Resampling[kernel],
                                   "dtype": self.dataset.dtypes[0]}  # fmt: skip
        nodata = self.dataset.nodata
        if nodata is not None:
            options.update(nodata=nodata, add_alpha=False, src_nodata=nodata)
        if has_alpha_band(self.dataset):
            options["add_alpha"] = False
        vrt = WarpedVRT(source, transform=transform, width=cols[1] - cols[0],
                        height=rows[1] - rows[0], **options)  # fmt: skip
        return vrt, cols[0], rows[0]

    def _data_bounds(self, crs: CRS) -> tuple[float, float, float, float] | None:
        """The file's bounds in ``crs``, as ItemReader works out the item's."""
        return reprojected_bounds(self.dataset.crs, tuple(self.dataset.bounds), crs)

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
            values, outside = _read_window(vrt, [*indexes, alpha], window, 0)
            values, alpha_mask = values[:-1], values[-1]
            _, opaque = dtype_ranges[str(values.dtype)]
            real_alpha = ColorInterp.alpha in dataset.colorinterp
            if not real_alpha and alpha_mask.max() == 255:
                opaque = 255  # rio-tiler's: GDAL's alpha of a mask is 0-255 whatever the type
            mask = alpha_mask != opaque
            if not real_alpha:
                alpha_mask = None
        else:
            values, outside = _read_window(vrt, indexes, window, 0 if nodata is None else nodata)
            if nodata is None:
                mask = numpy.zeros(values.shape, bool)
            elif numpy.isnan(nodata):
                mask = numpy.isnan(values)
            else:
                mask = values == nodata
        if outside is not None:
            mask = mask | outside  # beyond the grid: no data
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


def _read_window(
    vrt: WarpedVRT, indexes: Sequence[int], window: Window, fill: float
) -> tuple[numpy.ndarray[Any, Any], numpy.ndarray[Any, Any] | None]:
    """Bands ``indexes`` in ``window``, ``fill`` where the window reaches past the VRT, and
    where it does (None when it does not)."""
    col, row, width, height = (int(v) for v in window.flatten())
    col0, row0 = max(col, 0), max(row, 0)
    col1, row1 = min(col + width, vrt.width), min(row + height, vrt.height)
    values = vrt.read(indexes, window=Window(col0, row0, col1 - col0, row1 - row0))
    if (col0, row0, col1, row1) == (col, row, col + width, row + height):
        return values, None
    outside = numpy.ones((height, width), bool)
    outside[row0 - row : row1 - row, col0 - col : col1 - col] = False
    padded = numpy.full((len(indexes), height, width), fill, values.dtype)
    padded[:, ~outside] = values.reshape(len(indexes), -1)
    return padded, outside


def _span(low: float, high: float, count: int, size: int) -> tuple[int, int] | None:
    """The matrix pixels ``[first, end)`` a grid spans on one axis, the data being at ``low``
    to ``high`` (matrix pixels) on a matrix ``count`` tiles of ``size`` px long.

    The tiles over the data, while the data fills at least half of them: a grid starting at a
    tile's corner keeps a tile's reads on as few of the VRT's blocks as can be. Where the tiles
    are much larger than the data (zoomed out), the data's pixels and a margin only: a warped
    VRT reaching far from the data puts the file's pixels where they are not. A 2.5 km UTM 33N
    scene drew as a band along the equator from 90 degrees west of the zone's meridian to 180
    (where transverse Mercator runs off to infinity) in its zoom 0 tile, though GDAL maps each
    of those pixels, and warps the same grid with ``rasterio.warp.reproject``, rightly. The
    margin (2 px and 2% of the data) covers edges the bounds' densified reprojection cuts short.
    """
    first = max(0, math.floor(low / size)) * size
    end = (min(count - 1, math.floor(high / size)) + 1) * size
    margin = 2 + 0.02 * (high - low)
    tight = max(first, math.floor(low - margin)), min(end, math.ceil(high + margin))
    if 2 * (tight[1] - tight[0]) <= end - first:
        first, end = tight
    return (first, end) if 0 < end - first < 2**31 else None


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
