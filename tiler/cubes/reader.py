"""Reading a datacube tile: the tile's window of the store, warped by GDAL onto the tile.

For one tile: the coarsest overview of the cube still finer than the tile's pixels (or the
full resolution), the window of that store around the tile (from the cube's transform), the
selected time slices of each layer the plan reads (a preset's bands), loaded once with xarray;
``warp.warp_nearest`` puts them on the tile (nearest, as GDAL's warp would), the preset's
formula runs per time slice, then the slices are reduced per pixel. Blocking (xarray, numpy,
pyproj): callers run it in a worker thread.

rio-tiler's ``XarrayReader`` does the same warp (``rio.clip_box`` then ``rio.reproject``), but
its rioxarray bookkeeping (coordinates rebuilt, bounds and resolution recomputed, CRS written
on every intermediate array) took 20 of the 25 ms of a tile in a profile of the benchmark's
cube (bench/cube_tiles.py), and GDAL's warp itself a fixed ~1.6 ms a call (warp.py).
"""

from __future__ import annotations

import functools
import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import morecantile
import numpy
import xarray
from affine import Affine
from morecantile import TileMatrixSet
from rasterio.crs import CRS
from rasterio.transform import from_bounds
from rasterio.warp import transform_bounds
from rio_tiler.models import ImageData

from catalog.cubes.model import Cube, CubeLayer
from catalog.cubes.store import CubeStoreError, open_cube
from catalog.storage.base import Storage

from ..errors import AssetNotReadable
from ..presets import evaluate
from .errors import TooManySlices
from .layers import LayerPlan
from .times import TimeSelection
from .warp import warp_nearest

if TYPE_CHECKING:  # xarray is loaded on first use (catalog/lazy_imports.py on main)
    Opener = Callable[[Cube, int | None], xarray.Dataset]
MAX_READ_BYTES = 256 * 1024 * 1024  # one tile's window of every slice and band, as float32


class OutsideCube(Exception):
    """The tile does not meet the cube (a collection tile answers 204, as an empty mosaic)."""


class StoreOpener:
    """Opens a cube's store or overview with ``catalog.cubes.store.open_cube`` (lazy, CRS
    and transform written; it keeps recently opened stores); a store that cannot be read is
    ``tiler.AssetNotReadable``, as a COG that cannot be."""

    def __init__(self, storage: Storage, size: int = 64) -> None:
        self.storage = storage
        self.size = size
        # open_cube writes the CRS and transform anew on each call (7 ms a tile): the result
        # is kept per store and overview (a store is never rewritten under its href)
        self._open: OrderedDict[tuple[str, str, int | None], xarray.Dataset] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, cube: Cube, overview: int | None = None) -> xarray.Dataset:
        """The dataset of ``cube`` (overview ``overview``: its factor)."""
        key = (cube.href, cube.crs, overview)
        with self._lock:
            found = self._open.get(key)
            if found is not None:
                self._open.move_to_end(key)
                return found
        try:
            ds = open_cube(cube, self.storage, overview=overview)
        except (OSError, CubeStoreError, ValueError, KeyError) as exc:
            raise AssetNotReadable(
                f"the store of datacube {cube.collection_id!r} cannot be read: {exc}"
            ) from exc
        with self._lock:
            self._open[key] = ds
            while len(self._open) > self.size:
                self._open.popitem(last=False)
        return ds


class ChunkCache:
    """Decoded chunks of cube stores (float32, no data as NaN), least recently used first out,
    at most ``max_bytes``: neighbouring tiles and zooms share a store's chunks as COG tiles share
    GDAL's block cache, and a chunk is read and decompressed once instead of once per tile."""

    def __init__(self, max_bytes: int = 128 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._chunks: OrderedDict[tuple[object, ...], numpy.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...], load: Callable[[], numpy.ndarray]) -> numpy.ndarray:
        """The chunk of ``key``, loaded by ``load`` when it is not kept."""
        with self._lock:
            found = self._chunks.get(key)
            if found is not None:
                self._chunks.move_to_end(key)
                return found
        chunk = load()
        with self._lock:
            if key not in self._chunks:
                self._chunks[key] = chunk
                self._bytes += chunk.nbytes
            while self._bytes > self.max_bytes and self._chunks:
                self._bytes -= self._chunks.popitem(last=False)[1].nbytes
        return chunk


def pick_overview(cube: Cube, tile_resolution: float) -> int | None:
    """The factor of the coarsest overview whose pixels are still at most ``tile_resolution``
    (in the cube's CRS units), or None: the full resolution."""
    native = abs(cube.transform[1])
    fits = [o.factor for o in cube.overviews if native * o.factor <= tile_resolution * 1.000001]
    return max(fits) if fits else None


@dataclass(frozen=True)
class CubeTileRequest:
    """A datacube tile to draw: the cube, its layers and time slices, and how to open it."""

    cube: Cube
    plan: LayerPlan
    times: TimeSelection
    opener: Opener
    max_bytes: int = MAX_READ_BYTES
    chunks: ChunkCache | None = None

    def tile(
        self, tms: TileMatrixSet, x: int, y: int, z: int, tilesize: int | None = None
    ) -> ImageData:
        """The tile as float32 bands (masked where there is no data); OutsideCube."""
        return read_tile(self, tms, x, y, z, tilesize)


def _window(
    tms: TileMatrixSet, cube: Cube, x: int, y: int, z: int, size: int
) -> tuple[tuple[float, float, float, float], float]:
    """The tile's part of the cube in the cube's CRS, and the tile's pixel size there."""
    crs = _crs(cube.crs)
    box = tms.xy_bounds(morecantile.Tile(x, y, z))
    # the cube's extent in the tile's CRS (a world-wide tile has no extent in UTM)
    cw, cs, ce, cn = _extent_in(cube.crs, cube.bounds, tms.rasterio_crs)
    w, s, e, n = max(box.left, cw), max(box.bottom, cs), min(box.right, ce), min(box.top, cn)
    if w >= e or s >= n:
        raise OutsideCube(f"tile {z}/{x}/{y} does not meet the cube")
    part = transform_bounds(tms.rasterio_crs, crs, w, s, e, n, densify_pts=21)
    tile_res = (box.right - box.left) / size
    # the tile's pixel in cube units: the same share of the part in both CRSs
    resolution = tile_res * (part[2] - part[0]) / (e - w)
    return part, resolution


def _meeting(
    grid: Affine, extent: tuple[float, float, float, float], size: int
) -> tuple[int, int, int, int]:
    """Rows and columns (start, stop) of a tile grid that meet ``extent`` (the grid's CRS),
    one pixel of margin, within the tile."""
    west, south, east, north = extent
    cols, rows = zip(*(~grid * (px, py) for px in (west, east) for py in (south, north)),
                     strict=True)  # fmt: skip
    c0 = min(size - 1, max(0, math.floor(min(cols)) - 1))
    r0 = min(size - 1, max(0, math.floor(min(rows)) - 1))
    c1, r1 = min(size, math.ceil(max(cols)) + 1), min(size, math.ceil(max(rows)) + 1)
    return r0, max(r0 + 1, r1), c0, max(c0 + 1, c1)


def _pixel_window(
    cube: Cube, factor: int, shape: tuple[int, int], part: tuple[float, float, float, float]
) -> tuple[slice, slice, Affine]:
    """Rows and columns of the store (overview ``factor``) holding ``part`` (cube CRS), with a
    margin of two pixels, and the window's transform. OutsideCube when it holds none."""
    grid = Affine.from_gdal(*cube.transform) * Affine.scale(factor)
    west, south, east, north = part
    cols, rows = zip(*(~grid * (px, py) for px in (west, east) for py in (south, north)),
                     strict=True)  # fmt: skip
    height, width = shape
    col0, col1 = max(0, math.floor(min(cols)) - 2), min(width, math.ceil(max(cols)) + 2)
    row0, row1 = max(0, math.floor(min(rows)) - 2), min(height, math.ceil(max(rows)) + 2)
    if col0 >= col1 or row0 >= row1:
        raise OutsideCube("the tile does not meet the cube's pixels")
    return slice(row0, row1), slice(col0, col1), grid * Affine.translation(col0, row0)


@functools.lru_cache(maxsize=256)
def _extent_in(
    crs: str, bounds: tuple[float, float, float, float], target: CRS
) -> tuple[float, float, float, float]:
    """A cube's bounds in a tile matrix set's CRS (the same for every tile of a cube)."""
    found = transform_bounds(_crs(crs), target, *bounds, densify_pts=21)
    return found[0], found[1], found[2], found[3]


@functools.lru_cache(maxsize=64)
def _crs(text: str) -> CRS:
    return CRS.from_user_input(text)


def read_tile(
    request: CubeTileRequest, tms: TileMatrixSet, x: int, y: int, z: int, tilesize: int | None
) -> ImageData:
    """See ``CubeTileRequest.tile``."""
    cube, plan, times = request.cube, request.plan, request.times
    size = tilesize or tms.matrix(z).tileWidth
    part, resolution = _window(tms, cube, x, y, z, size)
    factor = pick_overview(cube, resolution)
    ds = request.opener(cube, factor)
    shape = (ds.sizes[cube.y_dim], ds.sizes[cube.x_dim])
    rows, cols, window_transform = _pixel_window(cube, factor or 1, shape, part)
    count = max(1, len(times.indexes))
    height, width = rows.stop - rows.start, cols.stop - cols.start
    if len(plan.sources) * count * height * width * 4 > request.max_bytes:
        raise TooManySlices(
            f"{count} time slices of {len(plan.sources)} bands are too many for one tile: "
            "choose a shorter interval"
        )
    window = {cube.y_dim: rows, cube.x_dim: cols}
    where = (cube.href, factor, request.chunks)
    stack = numpy.stack([_load(ds, cube, layer, times, window, where) for layer in plan.sources])
    box = tms.xy_bounds(morecantile.Tile(x, y, z))
    pixels = numpy.full((stack.shape[0] * count, size, size), numpy.nan, dtype="float32")
    # only the tile's pixels that meet the cube: at low zooms a few of the 65536, and GDAL's
    # warp of a whole world tile from UTM cost 15 ms where those few cost 0.1 ms
    tile_grid = from_bounds(*box, size, size)
    r0, r1, c0, c1 = _meeting(tile_grid, _extent_in(cube.crs, cube.bounds, tms.rasterio_crs), size)
    part_pixels = numpy.full((pixels.shape[0], r1 - r0, c1 - c0), numpy.nan, dtype="float32")
    # nearest, as rio-tiler's readers (XarrayReader too) ask GDAL's warp for (warp.py: why
    # not GDAL's)
    warp_nearest(
        stack.reshape(-1, height, width), window_transform, cube.crs, part_pixels,
        tile_grid * Affine.translation(c0, r0), tms.rasterio_crs,
    )  # fmt: skip
    pixels[:, r0:r1, c0:c1] = part_pixels
    pixels = pixels.reshape(len(plan.sources), count, size, size)
    if plan.preset is not None:
        pixels = evaluate(plan.preset, dict(zip(plan.keys, pixels, strict=True)))
    out = reduce_times(pixels, times.aggregation)
    mask = numpy.isnan(out)
    return ImageData(
        numpy.ma.MaskedArray(numpy.where(mask, 0, out).astype("float32"), mask=mask),
        bounds=tuple(box),
        crs=tms.rasterio_crs,
        band_descriptions=_descriptions(plan, out.shape[0]),
    )


def _descriptions(plan: LayerPlan, count: int) -> list[str]:
    if plan.preset is None:
        return [layer.name for layer in plan.sources]
    return [plan.name] if count == 1 else [f"{plan.name}_{i + 1}" for i in range(count)]


def _load(
    ds: xarray.Dataset,
    cube: Cube,
    layer: CubeLayer,
    times: TimeSelection,
    window: dict[str, slice],
    where: tuple[str, int | None, ChunkCache | None],
) -> numpy.ndarray:
    """One layer's window at the selected times, (time, y, x) float32, no data as NaN; from
    the chunk cache (``where``: the store, overview and cache) when the store is chunked."""
    if layer.variable not in ds.data_vars:
        raise AssetNotReadable(
            f"the store of datacube {cube.collection_id!r} has no variable {layer.variable!r}"
        )
    da = ds[layer.variable]
    if layer.band is not None and cube.band_dim is not None:
        da = da.sel({cube.band_dim: layer.band})
    nodata = layer.nodata if layer.nodata is not None else da.attrs.get("_FillValue")
    timed = cube.time_dim is not None and cube.time_dim in da.dims
    if not timed:
        da = da.expand_dims("_time")
    time = cube.time_dim if timed else "_time"
    da = da.transpose(time, cube.y_dim, cube.x_dim)
    sizes = da.encoding.get("preferred_chunks") or {}
    href, factor, cache = where
    rows, cols = window[cube.y_dim], window[cube.x_dim]
    if cache is None or cube.y_dim not in sizes or cube.x_dim not in sizes:
        indexes = list(times.indexes) if timed else [0]
        return _clean(da.isel({time: indexes, cube.y_dim: rows, cube.x_dim: cols}).values, nodata)
    ch, cw = int(sizes[cube.y_dim]), int(sizes[cube.x_dim])
    out = numpy.empty((max(1, len(times.indexes)), rows.stop - rows.start,
                       cols.stop - cols.start), dtype="float32")  # fmt: skip
    for n, t in enumerate(times.indexes if timed else (0,)):
        for cy in range(rows.start // ch, (rows.stop - 1) // ch + 1):
            for cx in range(cols.start // cw, (cols.stop - 1) // cw + 1):
                key = (href, factor, layer.variable, layer.band, t, cy, cx)
                part = {time: t, cube.y_dim: slice(cy * ch, (cy + 1) * ch),
                        cube.x_dim: slice(cx * cw, (cx + 1) * cw)}  # fmt: skip
                chunk = cache.get(key, functools.partial(_read_chunk, da, part, nodata))
                y0, x0 = max(rows.start, cy * ch), max(cols.start, cx * cw)
                y1 = min(rows.stop, cy * ch + chunk.shape[0])
                x1 = min(cols.stop, cx * cw + chunk.shape[1])
                out[n, y0 - rows.start : y1 - rows.start, x0 - cols.start : x1 - cols.start] = (
                    chunk[y0 - cy * ch : y1 - cy * ch, x0 - cx * cw : x1 - cx * cw]
                )
    return out


def _read_chunk(da: xarray.DataArray, part: dict[Any, Any], nodata: float | None) -> numpy.ndarray:
    return _clean(da.isel(part).values, nodata)


def _clean(values: numpy.ndarray, nodata: float | None) -> numpy.ndarray:
    """float32 with no data as NaN."""
    out = numpy.asarray(values, dtype="float32").copy()
    if nodata is not None and not numpy.isnan(nodata):
        out[out == numpy.float32(nodata)] = numpy.nan
    return out


def reduce_times(pixels: numpy.ndarray, aggregation: str) -> numpy.ndarray:
    """(bands, time, y, x) -> (bands, y, x): the one slice, or the per-pixel reduction of
    the slices' valid values (NaN where none is valid)."""
    if pixels.shape[1] == 1:
        return pixels[:, 0]
    if aggregation == "last":
        out = numpy.full(pixels[:, 0].shape, numpy.nan, dtype="float32")
        for t in range(pixels.shape[1] - 1, -1, -1):
            empty = numpy.isnan(out)
            out[empty] = pixels[:, t][empty]
        return out
    reducers: dict[str, Callable[..., numpy.ndarray]] = {
        "mean": numpy.nanmean, "max": numpy.nanmax, "min": numpy.nanmin,
        "median": numpy.nanmedian,
    }  # fmt: skip
    reducer = reducers[aggregation]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        return numpy.asarray(reducer(pixels, axis=1), dtype="float32")
