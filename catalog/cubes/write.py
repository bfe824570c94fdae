"""Write a cube as the store Terracat serves, and its overviews, one time slab at a time.

The copy is a Zarr v2 store with consolidated metadata (one read opens it, and every Zarr
reader, GDAL's included, knows v2), sorted by time. Its chunks are the source's when none
exceeds ``cube_max_chunk_bytes``; otherwise (or from NetCDF files stored contiguous) one time
step and band by ``cube_chunk_px`` square pixels, so a tile reads a few small chunks.

Overviews (factor 2, 4, ... until a level fits ``cube_overview_tile_px``) are block means of
the level before, each a Zarr store of its own, built in the same pass over the slabs. Memory
holds one slab (whole source time chunks, up to 256 MiB) at a time, whatever the cube's
length: no dask.
"""

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from catalog.cubes.describe import CubeShape, chunk_bytes
from catalog.cubes.errors import ChunksTooLarge
from catalog.settings import IngestSettings

SLAB_BYTES = 256 * 1024**2  # values in memory at once (decoded), overviews apart
_KEPT_ENCODING = ("dtype", "_FillValue", "scale_factor", "add_offset")
_TIME_ENCODING = {"units": "milliseconds since 1970-01-01T00:00:00", "dtype": "int64"}


def target_chunks(
    ds: xr.Dataset, shape: CubeShape, settings: IngestSettings, *, can_rechunk: bool
) -> dict[str, tuple[int, ...]]:
    """The chunks of each layer variable in the copy; ChunksTooLarge when a source chunk is
    over the limit and rechunking is off (or impossible: ``can_rechunk`` False)."""
    limit = settings.cube_max_chunk_bytes
    if shape.max_chunk_bytes > limit and not (can_rechunk and settings.cube_rechunk):
        why = (
            "rechunking is turned off here: rechunk it before uploading"
            if can_rechunk
            else "a cube registered in place is served as it is stored: copy it instead"
        )
        raise ChunksTooLarge(
            f"a chunk of {shape.max_chunk_bytes} bytes is larger than the limit of {limit} ({why})"
        )
    out = {}
    for name in shape.variables:
        var = ds[name]
        source = var.encoding.get("chunks") or var.encoding.get("chunksizes")
        if source and chunk_bytes(var) <= limit:
            out[name] = tuple(int(c) for c in source)
        else:
            out[name] = _small_chunks(var, shape, settings)
    return out


def _small_chunks(var: xr.DataArray, shape: CubeShape, settings: IngestSettings) -> tuple[int, ...]:
    side = settings.cube_chunk_px
    itemsize = np.dtype(var.dtype).itemsize
    while side > 64 and side * side * itemsize > settings.cube_max_chunk_bytes:
        side //= 2
    sizes = {shape.x_dim: side, shape.y_dim: side}
    return tuple(min(sizes.get(str(d), 1), n) for d, n in zip(var.dims, var.shape, strict=True))


def overview_factors(width: int, height: int, settings: IngestSettings) -> tuple[int, ...]:
    """Factors 2, 4, ... of a cube above ``cube_overview_min_px``, down to the first level
    no larger than ``cube_overview_tile_px``; none for smaller cubes."""
    if max(width, height) <= settings.cube_overview_min_px:
        return ()
    factors, factor = [], 2
    while True:
        factors.append(factor)
        if max(math.ceil(width / factor), math.ceil(height / factor)) <= (
            settings.cube_overview_tile_px
        ):
            return tuple(factors)
        factor *= 2


def prepared(ds: xr.Dataset, shape: CubeShape, *, sort: bool = True) -> xr.Dataset:
    """The layer variables of ``ds`` (sorted by time unless ``sort`` is False: a cube
    registered in place keeps its order), with only the encodings the copy keeps and the CRS
    written as a CF grid mapping."""
    keep = set(shape.variables)
    ds = ds.copy(deep=False)  # encodings are changed below: never the caller's variables
    ds = ds.drop_vars([n for n in ds.data_vars if n not in keep])
    dims = {shape.x_dim, shape.y_dim, shape.time_dim, shape.band_dim} - {None}
    ds = ds.drop_vars([n for n, c in ds.coords.items() if c.dims and not set(c.dims) <= dims])
    if sort and shape.time_dim and not ds.indexes[shape.time_dim].is_monotonic_increasing:
        ds = ds.sortby(shape.time_dim)
    for var in ds.variables.values():
        var.encoding = {k: v for k, v in var.encoding.items() if k in _KEPT_ENCODING}
    if shape.time_dim is not None:
        ds[shape.time_dim].encoding = dict(_TIME_ENCODING)
    written: xr.Dataset = ds.rio.write_crs(shape.crs)
    return written


def _encoding(ds: xr.Dataset, chunks: dict[str, tuple[int, ...]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, var in ds.data_vars.items():
        wanted = chunks[str(name)]
        fitted = tuple(min(c, n) for c, n in zip(wanted, var.shape, strict=True))
        out[str(name)] = {**var.encoding, "chunks": fitted}
    return out


def _halve(part: xr.Dataset, shape: CubeShape, factor: int) -> xr.Dataset:
    """The block means of ``part`` over 2 x 2 pixels: the level of ``factor`` from the
    level of ``factor / 2``, with the coordinates of the level's pixel centres."""
    x, y = shape.x_dim, shape.y_dim
    out = part.coarsen({x: 2, y: 2}, boundary="pad").mean(keep_attrs=True)
    west, step_x, _, north, _, step_y = shape.transform
    out = out.assign_coords(
        {x: west + step_x * factor * (np.arange(out.sizes[x]) + 0.5),
         y: north + step_y * factor * (np.arange(out.sizes[y]) + 0.5)}
    )  # fmt: skip
    for name, var in part.data_vars.items():
        out[name].attrs = dict(var.attrs)
        out[name].encoding = dict(var.encoding)
        if np.issubdtype(var.dtype, np.integer):
            out[name] = out[name].round().astype(var.dtype)
            out[name].encoding = dict(var.encoding)
    for coord in (x, y):
        out[coord].attrs = dict(part[coord].attrs)
    return out


def write_cube(
    ds: xr.Dataset,
    shape: CubeShape,
    folder: Path,
    chunks: dict[str, tuple[int, ...]],
    factors: tuple[int, ...],
    *,
    write_full: bool = True,
    progress: Callable[[int, str], None] = lambda _p, _m: None,
) -> dict[int, tuple[int, int]]:
    """Write ``folder/cube.zarr`` (unless ``write_full`` is False: a cube registered in
    place) and ``folder/overview-{factor}.zarr``; the width and height of each overview."""
    time = shape.time_dim
    step = _slab_steps(ds, shape, chunks) if time else 1
    count = int(ds.sizes[time]) if time else 1
    sizes: dict[int, tuple[int, int]] = {}
    for start in range(0, count, step):
        part = ds.isel({time: slice(start, start + step)}) if time else ds
        part = part.load()
        first = start == 0
        if write_full:
            _write(part, folder / "cube.zarr", chunks, time, first)
        level = part
        for factor in factors:
            level = _halve(level, shape, factor)
            _write(level, folder / f"overview-{factor}.zarr", chunks, time, first)
            sizes[factor] = (int(level.sizes[shape.x_dim]), int(level.sizes[shape.y_dim]))
        done = min(start + step, count)
        progress(10 + 80 * done // count, f"written {done} of {count} time steps")
    names = (["cube.zarr"] if write_full else []) + [f"overview-{f}.zarr" for f in factors]
    for name in names:
        zarr.consolidate_metadata(str(folder / name))
    return sizes


def _slab_steps(ds: xr.Dataset, shape: CubeShape, chunks: dict[str, tuple[int, ...]]) -> int:
    """Time steps per slab: whole time chunks, as many as fit in ``SLAB_BYTES`` (each write
    of a slab costs ~0.1 s of xarray and zarr bookkeeping, whatever its size)."""
    time = str(shape.time_dim)
    depth = max(c[ds[n].dims.index(time)] for n, c in chunks.items())
    per_step = sum(ds[n].nbytes // max(1, ds.sizes[time]) for n in chunks)
    fitting = max(1, SLAB_BYTES // max(1, per_step * depth))
    return int(depth * fitting)


def _write(
    part: xr.Dataset,
    path: Path,
    chunks: dict[str, tuple[int, ...]],
    time: str | None,
    first: bool,
) -> None:
    if first:
        part.to_zarr(path, mode="w", zarr_format=2, consolidated=False,
                     encoding=_encoding(part, chunks))  # fmt: skip
    else:
        part.to_zarr(path, mode="a", append_dim=time, zarr_format=2, consolidated=False)
