"""Reading a datacube tile: rio-tiler's ``XarrayReader`` on the window of the tile.

For one tile: the coarsest overview of the cube still finer than the tile's pixels (or the
full resolution), the window of that store around the tile, the selected time slices of each
layer the plan reads (a preset's bands), loaded once; ``XarrayReader`` reprojects them onto the
tile (nearest), the preset's formula runs per time slice, then the slices are reduced per pixel.
Blocking (xarray, numpy, GDAL): callers run it in a worker thread.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import morecantile
import numpy
import rioxarray  # noqa: F401 - the .rio accessor
import xarray
from morecantile import TileMatrixSet
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from rio_tiler.io.xarray import XarrayReader
from rio_tiler.models import ImageData

from catalog.cubes.model import Cube, CubeLayer
from catalog.cubes.store import CubeStoreError, open_cube
from catalog.storage.base import Storage

from ..errors import AssetNotReadable
from ..presets import evaluate
from .errors import TooManySlices
from .layers import LayerPlan
from .times import TimeSelection

Opener = Callable[[Cube, int | None], xarray.Dataset]
MAX_READ_BYTES = 256 * 1024 * 1024  # one tile's window of every slice and band, as float32


class OutsideCube(Exception):
    """The tile does not meet the cube (a collection tile answers 204, as an empty mosaic)."""


class StoreOpener:
    """Opens a cube's store or overview with ``catalog.cubes.store.open_cube`` (lazy, CRS
    and transform written; it keeps recently opened stores); a store that cannot be read is
    ``tiler.AssetNotReadable``, as a COG that cannot be."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def __call__(self, cube: Cube, overview: int | None = None) -> xarray.Dataset:
        """The dataset of ``cube`` (overview ``overview``: its factor)."""
        try:
            return open_cube(cube, self.storage, overview=overview)
        except (OSError, CubeStoreError, ValueError, KeyError) as exc:
            raise AssetNotReadable(
                f"the store of datacube {cube.collection_id!r} cannot be read: {exc}"
            ) from exc


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

    def tile(
        self, tms: TileMatrixSet, x: int, y: int, z: int, tilesize: int | None = None
    ) -> ImageData:
        """The tile as float32 bands (masked where there is no data); OutsideCube."""
        return read_tile(self, tms, x, y, z, tilesize)


def _window(
    tms: TileMatrixSet, cube: Cube, x: int, y: int, z: int, size: int
) -> tuple[tuple[float, float, float, float], float]:
    """The tile's part of the cube in the cube's CRS, and the tile's pixel size there."""
    crs = CRS.from_user_input(cube.crs)
    box = tms.xy_bounds(morecantile.Tile(x, y, z))
    # the cube's extent in the tile's CRS (a world-wide tile has no extent in UTM)
    cw, cs, ce, cn = transform_bounds(crs, tms.rasterio_crs, *cube.bounds, densify_pts=21)
    w, s, e, n = max(box.left, cw), max(box.bottom, cs), min(box.right, ce), min(box.top, cn)
    if w >= e or s >= n:
        raise OutsideCube(f"tile {z}/{x}/{y} does not meet the cube")
    part = transform_bounds(tms.rasterio_crs, crs, w, s, e, n, densify_pts=21)
    tile_res = (box.right - box.left) / size
    # the tile's pixel in cube units: the same share of the part in both CRSs
    resolution = tile_res * (part[2] - part[0]) / (e - w)
    return part, resolution


def _indexes(coords: numpy.ndarray, low: float, high: float, pad: float) -> slice:
    inside = numpy.nonzero((coords >= low - pad) & (coords <= high + pad))[0]
    if inside.size == 0:
        raise OutsideCube("the tile does not meet the cube's pixels")
    start, stop = int(inside[0]), int(inside[-1]) + 1
    if stop - start < 2:  # rioxarray needs two coordinates to know the resolution
        start, stop = max(0, start - 1), min(coords.size, stop + 1)
    return slice(start, stop)


def read_tile(
    request: CubeTileRequest, tms: TileMatrixSet, x: int, y: int, z: int, tilesize: int | None
) -> ImageData:
    """See ``CubeTileRequest.tile``."""
    cube, plan, times = request.cube, request.plan, request.times
    size = tilesize or tms.matrix(z).tileWidth
    (west, south, east, north), resolution = _window(tms, cube, x, y, z, size)
    ds = request.opener(cube, pick_overview(cube, resolution))
    xs, ys = ds[cube.x_dim].values, ds[cube.y_dim].values
    pad = 2 * max(abs(float(xs[1] - xs[0])), abs(float(ys[1] - ys[0])))
    window = {
        cube.x_dim: _indexes(xs, west, east, pad),
        cube.y_dim: _indexes(ys, south, north, pad),
    }
    count = max(1, len(times.indexes))
    height = window[cube.y_dim].stop - window[cube.y_dim].start
    width = window[cube.x_dim].stop - window[cube.x_dim].start
    if len(plan.sources) * count * height * width * 4 > request.max_bytes:
        raise TooManySlices(
            f"{count} time slices of {len(plan.sources)} bands are too many for one tile: "
            "choose a shorter interval"
        )
    stack = numpy.stack([_load(ds, cube, layer, times, window) for layer in plan.sources])
    sub = ds.isel(window)
    flat = xarray.DataArray(
        stack.reshape(-1, height, width),
        dims=("band", cube.y_dim, cube.x_dim),
        coords={cube.y_dim: sub[cube.y_dim].values, cube.x_dim: sub[cube.x_dim].values},
    )
    flat = flat.rio.set_spatial_dims(x_dim=cube.x_dim, y_dim=cube.y_dim)
    flat = flat.rio.write_crs(cube.crs).rio.write_nodata(numpy.nan)
    with XarrayReader(flat, tms=tms) as src:
        image = src.tile(x, y, z, tilesize=size, nodata=numpy.nan)
    pixels = numpy.ma.filled(image.array.astype("float32"), numpy.nan)
    pixels = pixels.reshape(len(plan.sources), count, size, size)
    if plan.preset is not None:
        pixels = evaluate(plan.preset, dict(zip(plan.keys, pixels, strict=True)))
    out = reduce_times(pixels, times.aggregation)
    mask = numpy.isnan(out)
    return ImageData(
        numpy.ma.MaskedArray(numpy.where(mask, 0, out).astype("float32"), mask=mask),
        bounds=image.bounds,
        crs=image.crs,
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
) -> numpy.ndarray:
    """One layer's window at the selected times, (time, y, x) float32, no data as NaN."""
    da = ds[layer.variable]
    if layer.band is not None and cube.band_dim is not None:
        da = da.sel({cube.band_dim: layer.band})
    if cube.time_dim is not None and cube.time_dim in da.dims:
        da = da.isel({cube.time_dim: list(times.indexes)})
    else:
        da = da.expand_dims("_time")
    da = da.isel(window)
    time = cube.time_dim if cube.time_dim in da.dims else "_time"
    values = da.transpose(time, cube.y_dim, cube.x_dim).values.astype("float32")
    nodata = layer.nodata if layer.nodata is not None else da.attrs.get("_FillValue")
    if nodata is not None and not numpy.isnan(nodata):
        values[values == numpy.float32(nodata)] = numpy.nan
    return values


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
