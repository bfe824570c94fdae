"""What a datacube is, read from the opened store (xarray + rioxarray), and why one is refused.

``describe`` finds the spatial dimensions (rioxarray's rules: x/y, longitude/latitude, lon/lat,
or CF ``axis`` attributes), the CRS (grid mapping, ``spatial_ref``, ``crs_wkt``; coordinates
named longitude/latitude in range without one are taken as EPSG:4326), the affine transform
from evenly spaced coordinates, the time dimension (a datetime coordinate) and at most one
band dimension, the layers (one per variable, or per band value), and the largest chunk.
Every refusal carries its stable code (catalog/cubes/errors.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from pyproj import CRS
from rioxarray.exceptions import MissingSpatialDimensionError

from catalog.cubes.errors import (
    IrregularGrid,
    NoSpatialDims,
    NoTimeCoordinate,
    TooManyTimes,
    UnknownCrs,
    UnsupportedDimensions,
    UnsupportedDtype,
)
from catalog.cubes.model import CubeLayer
from catalog.presets import common_name_of

# The pixel types tiles carry (as the COG ingest: no complex, no float16, no bool or text).
SUPPORTED_DTYPES = frozenset(
    ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32",
     "float64")
)  # fmt: skip
_TIME_NAMES = ("time", "t", "date", "datetime", "valid_time")
_LONLAT = ({"lon", "longitude"}, {"lat", "latitude"})


@dataclass(frozen=True)
class CubeShape:
    """A store's grid, dimensions, layers and time coordinate, as ``describe`` read them."""

    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    x_dim: str
    y_dim: str
    time_dim: str | None
    band_dim: str | None
    variables: tuple[str, ...]
    layers: tuple[CubeLayer, ...]
    times: tuple[datetime, ...]
    max_chunk_bytes: int  # the largest chunk of any layer variable, uncompressed
    skipped: tuple[str, ...] = field(default=())  # spatial variables of other dimensions


def describe(
    ds: xr.Dataset,
    *,
    max_times: int,
    fallback_datetime: datetime | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> CubeShape:
    """The shape of ``ds``, or the refusal of the first thing wrong with it."""
    x_dim, y_dim = _spatial_dims(ds)
    spatial = [str(n) for n, v in ds.data_vars.items() if x_dim in v.dims and y_dim in v.dims]
    if not spatial:
        raise NoSpatialDims(f"no data variable has both spatial dimensions {x_dim!r}, {y_dim!r}")
    dims = _common_dims(ds, spatial)
    chosen = [n for n in spatial if set(ds[n].dims) == set(dims)]
    skipped = tuple(n for n in spatial if n not in chosen)
    if skipped:
        log(f"variables not on the cube's dimensions {dims}, left out: {', '.join(skipped)}")
    time_dim, band_dim = _extra_dims(ds, [d for d in dims if d not in (x_dim, y_dim)])
    for name in chosen:
        _check_dtype(name, ds[name])
    times = _times(ds, time_dim, max_times)
    if time_dim is None and fallback_datetime is None:
        raise NoTimeCoordinate(
            "the cube has no time dimension: give the upload set a 'datetime' for its one slice"
        )
    return CubeShape(
        crs=_crs(ds, x_dim, y_dim),
        transform=_transform(ds, x_dim, y_dim),
        width=int(ds.sizes[x_dim]),
        height=int(ds.sizes[y_dim]),
        x_dim=x_dim,
        y_dim=y_dim,
        time_dim=time_dim,
        band_dim=band_dim,
        variables=tuple(chosen),
        layers=_layers(ds, chosen, band_dim),
        times=times if time_dim else (_aware(fallback_datetime),),
        max_chunk_bytes=max(chunk_bytes(ds[n]) for n in chosen),
        skipped=skipped,
    )


def _spatial_dims(ds: xr.Dataset) -> tuple[str, str]:
    try:
        return str(ds.rio.x_dim), str(ds.rio.y_dim)
    except MissingSpatialDimensionError:
        pass
    # rioxarray looks at the dataset's own dimensions only: try each variable's
    for var in ds.data_vars.values():
        try:
            return str(var.rio.x_dim), str(var.rio.y_dim)
        except MissingSpatialDimensionError:
            continue
    raise NoSpatialDims(
        f"no spatial dimensions among {', '.join(map(str, ds.dims)) or 'none'}: name them x/y, "
        "longitude/latitude or lon/lat, or mark their coordinates with CF axis X and Y"
    )


def _common_dims(ds: xr.Dataset, names: Sequence[str]) -> tuple[str, ...]:
    """The dimensions of the variables with the most of them (the cube's layers)."""
    widest = max(names, key=lambda n: len(ds[n].dims))
    return tuple(str(d) for d in ds[widest].dims)


def _is_time(ds: xr.Dataset, dim: str) -> bool:
    if dim not in ds.coords:
        return False
    values = ds[dim]
    if np.issubdtype(values.dtype, np.datetime64):
        return True
    # cftime dates (non-standard units or calendars) decode to objects with a calendar
    return values.dtype == object and values.size > 0 and hasattr(values.values.flat[0], "calendar")


def _looks_like_time(ds: xr.Dataset, dim: str) -> bool:
    attrs = ds[dim].attrs if dim in ds.variables else {}
    return (
        dim.lower() in _TIME_NAMES
        or attrs.get("standard_name") == "time"
        or attrs.get("axis") == "T"
        or "since" in str(attrs.get("units", ""))
    )


def _extra_dims(ds: xr.Dataset, extra: list[str]) -> tuple[str | None, str | None]:
    """The time and band dimensions among the non-spatial ones."""
    time_dims = [d for d in extra if _is_time(ds, d)]
    rest = [d for d in extra if d not in time_dims]
    if len(time_dims) > 1:
        raise UnsupportedDimensions(f"more than one time dimension: {', '.join(time_dims)}")
    for dim in rest:
        if _looks_like_time(ds, dim):
            raise NoTimeCoordinate(
                f"dimension {dim!r} looks like time but its coordinate holds no dates (a CF "
                "'units' of '<unit> since <date>' makes it one)"
            )
    if len(rest) > 1:
        raise UnsupportedDimensions(
            f"dimensions {', '.join(rest)} besides time, y and x: a cube has at most one band "
            "dimension"
        )
    band_dim = rest[0] if rest else None
    if band_dim is not None:
        labels = _band_labels(ds, band_dim)
        if len(set(labels)) != len(labels):
            raise UnsupportedDimensions(f"the values of band dimension {band_dim!r} repeat")
    return (time_dims[0] if time_dims else None), band_dim


def _band_labels(ds: xr.Dataset, band_dim: str) -> list[str]:
    if band_dim in ds.coords:
        return [str(v) for v in ds[band_dim].values.tolist()]
    return [str(i) for i in range(ds.sizes[band_dim])]


def _check_dtype(name: str, var: xr.DataArray) -> None:
    dtype = np.dtype(var.dtype)
    if dtype.name not in SUPPORTED_DTYPES:
        raise UnsupportedDtype(
            f"variable {name!r} is of type {dtype.name}: layers are (u)int8-64, float32 or float64"
        )


def _times(ds: xr.Dataset, time_dim: str | None, max_times: int) -> tuple[datetime, ...]:
    if time_dim is None:
        return ()
    count = int(ds.sizes[time_dim])
    if count > max_times:
        raise TooManyTimes(f"{count} time steps, more than the limit of {max_times}")
    index = ds.indexes[time_dim]
    if not isinstance(index, pd.DatetimeIndex):
        try:  # cftime dates of a standard calendar
            index = index.to_datetimeindex(time_unit="us")
        except (AttributeError, ValueError) as exc:
            message = f"time coordinate {time_dim!r} is not a calendar: {exc}"
            raise NoTimeCoordinate(message) from exc
    if index.hasnans:
        raise NoTimeCoordinate(f"time coordinate {time_dim!r} has missing values")
    return tuple(_aware(t.to_pydatetime()) for t in index)


def _aware(value: datetime | None) -> datetime:
    if value is None:
        raise ValueError("no datetime")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _crs(ds: xr.Dataset, x_dim: str, y_dim: str) -> str:
    try:
        found = ds.rio.crs
        if found is None:
            for var in ds.data_vars.values():
                found = var.rio.crs
                if found is not None:
                    break
    except Exception as exc:  # a grid mapping rasterio cannot read
        raise UnknownCrs(f"the cube's CRS cannot be read: {exc}") from exc
    if found is None:
        found = _grid_mapping_variable(ds)
    if found is None:
        if _is_lonlat(ds, x_dim, y_dim):
            return "EPSG:4326"
        raise UnknownCrs(
            "the cube has no CRS (no grid mapping, spatial_ref or crs_wkt) and its coordinates "
            f"{x_dim!r}, {y_dim!r} are not longitude/latitude"
        )
    try:
        crs = CRS.from_user_input(found.to_wkt())
    except Exception as exc:
        raise UnknownCrs(f"the cube's CRS cannot be read: {exc}") from exc
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg is not None else crs.to_wkt()


def _grid_mapping_variable(ds: xr.Dataset) -> Any:
    """The CRS of a CF grid mapping variable no data variable points at (a ``spatial_ref``
    or ``crs`` written beside the data without the ``grid_mapping`` attributes)."""
    for var in ds.variables.values():
        wkt = var.attrs.get("crs_wkt") or var.attrs.get("spatial_ref")
        if var.ndim == 0 and isinstance(wkt, str) and wkt:
            try:
                return CRS.from_wkt(wkt)
            except Exception as exc:
                raise UnknownCrs(f"the cube's CRS cannot be read: {exc}") from exc
    return None


def _is_lonlat(ds: xr.Dataset, x_dim: str, y_dim: str) -> bool:
    if x_dim.lower() not in _LONLAT[0] or y_dim.lower() not in _LONLAT[1]:
        return False
    if x_dim not in ds.coords or y_dim not in ds.coords:
        return False
    xs, ys = ds[x_dim].values, ds[y_dim].values
    return bool(np.all(np.abs(ys) <= 90) and np.all(xs >= -180) and np.all(xs <= 360))


def _transform(ds: xr.Dataset, x_dim: str, y_dim: str) -> tuple[float, float, float, float,
                                                                 float, float]:  # fmt: skip
    if x_dim not in ds.coords or y_dim not in ds.coords:
        transform = ds.rio.transform()  # the GeoTransform of a grid mapping, if any
        if transform.is_identity:
            raise IrregularGrid(f"dimensions {x_dim!r}, {y_dim!r} have no coordinates")
        a, b, c, d, e, f = (float(v) for v in transform.to_gdal())
        return (a, b, c, d, e, f)
    step_x = _step(ds[x_dim].values, x_dim)
    step_y = _step(ds[y_dim].values, y_dim)
    west = float(ds[x_dim].values[0]) - step_x / 2
    north = float(ds[y_dim].values[0]) - step_y / 2
    return (west, step_x, 0.0, north, 0.0, step_y)


def _step(values: np.ndarray, dim: str) -> float:
    if values.size < 2:
        raise IrregularGrid(f"dimension {dim!r} has {values.size} value(s): no pixel size")
    steps = np.diff(values.astype("float64"))
    step = float(steps[0])
    if step == 0 or not np.allclose(steps, step, rtol=1e-6, atol=abs(step) * 1e-6):
        raise IrregularGrid(f"the {dim!r} coordinate is not evenly spaced")
    return step


def _layers(ds: xr.Dataset, names: Sequence[str], band_dim: str | None) -> tuple[CubeLayer, ...]:
    with_bands = [n for n in names if band_dim is not None and band_dim in ds[n].dims]
    layers = []
    for name in names:
        var = ds[name]
        common: dict[str, Any] = {
            "variable": name,
            "dtype": np.dtype(var.dtype).name,
            "nodata": _nodata(var),
            "unit": _text(var.attrs.get("units")),
            "description": _text(var.attrs.get("long_name") or var.attrs.get("description")),
        }
        if name not in with_bands:
            layers.append(CubeLayer(name=name, common_name=_common_name(name, var.attrs),
                                    **common))  # fmt: skip
            continue
        for label in _band_labels(ds, str(band_dim)):
            layer_name = label if len(with_bands) == 1 else f"{name}_{label}"
            layers.append(CubeLayer(name=layer_name, band=label,
                                    common_name=_common_name(label, {}),
                                    **common))  # fmt: skip
    return tuple(layers)


def _common_name(name: str, attrs: dict[Any, Any]) -> str | None:
    given = attrs.get("common_name") or attrs.get("eo:common_name")
    # Bands named by their Sentinel-2 id (B04...): the one table of the band presets.
    return common_name_of(name, given if isinstance(given, str) and given else None)


def _nodata(var: xr.DataArray) -> float | None:
    """The value that marks no data in the values xarray decodes (None for floats whose
    missing values decode to NaN)."""
    try:
        value = var.rio.nodata
    except Exception:  # an attribute rioxarray cannot read as a number
        return None
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _text(value: Any) -> str | None:
    return str(value)[:1000] if value not in (None, "") else None


def chunk_bytes(var: xr.DataArray) -> int:
    """Bytes of one (uncompressed) chunk of ``var`` as stored: Zarr chunks, HDF5 chunks, or
    the whole variable when it is stored contiguous."""
    chunks = var.encoding.get("chunks") or var.encoding.get("chunksizes")
    shape = tuple(chunks) if chunks else var.shape
    return int(np.prod(shape, dtype="int64")) * np.dtype(var.dtype).itemsize
