"""Time series and summary statistics of a datacube's layers over an area (blocking: threads).

The area (lon/lat) is taken to the cube's CRS; only the window of its bounds is read, for the
time steps of the interval, and a pixel counts when its centre is inside the area
(``rasterio.features.geometry_mask``, ``all_touched=False``). Layers are computed by
catalog/cubes/layers.py, invalid pixels set to NaN, and xarray reduces: over the pixels of each
time step, or with a ``resolution`` over every valid value of the steps of each day, ISO week
(Monday to Sunday, UTC) or calendar month together.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
import shapely
import xarray as xr
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.features import geometry_mask
from rio_tiler.utils import get_array_statistics

from .analysis import (
    Aggregation,
    AreaOutside,
    AreaQuery,
    AreaTooLarge,
    Resolution,
)
from .layers import LayerPlan, MaskPlan, evaluate_plan, layer_array, plan_layers, plan_mask
from .model import Cube, CubeLayer

DEFAULT_MAX_VALUES = 50_000_000  # pixels x time steps x bands read by one request


@dataclass(frozen=True)
class Window:
    """The rows and columns of the area's bounds, and which of their pixels are inside."""

    rows: slice
    cols: slice
    inside: np.ndarray  # bool (rows, cols): the pixel's centre is inside the area

    @property
    def pixels(self) -> int:
        """How many pixels count."""
        return int(self.inside.sum())


_transformers = threading.local()  # pyproj's Transformer is not to be shared between threads


def to_cube_crs(crs: str) -> Transformer:
    """lon/lat -> ``crs``, made once per thread and CRS (making one takes milliseconds)."""
    made: dict[str, Transformer] = _transformers.__dict__.setdefault("made", {})
    if crs not in made:
        made[crs] = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_user_input(crs),
                                         always_xy=True)  # fmt: skip
    return made[crs]


def area_window(cube: Cube, area: shapely.Geometry) -> Window:
    """The window of ``area`` (lon/lat) on the cube's grid; AreaOutside when it misses it."""
    to_cube = to_cube_crs(cube.crs)
    projected = shapely.transform(area.segmentize(0.01), lambda xy: np.column_stack(
        to_cube.transform(xy[:, 0], xy[:, 1])))  # fmt: skip
    transform = Affine.from_gdal(*cube.transform)
    west, south, east, north = projected.bounds
    corners = [~transform @ (x, y) for x in (west, east) for y in (south, north)]
    col0 = max(0, math.floor(min(c[0] for c in corners)))
    col1 = min(cube.width, math.ceil(max(c[0] for c in corners)))
    row0 = max(0, math.floor(min(c[1] for c in corners)))
    row1 = min(cube.height, math.ceil(max(c[1] for c in corners)))
    if not (np.isfinite(projected.bounds).all() and col0 < col1 and row0 < row1):
        raise AreaOutside("the area does not touch the cube")
    inside = geometry_mask(
        [projected], out_shape=(row1 - row0, col1 - col0),
        transform=transform @ Affine.translation(col0, row0), invert=True, all_touched=False,
    )  # fmt: skip
    return Window(slice(row0, row1), slice(col0, col1), inside)


def point_window(cube: Cube, lon: float, lat: float) -> Window:
    """The one pixel holding the point (lon/lat); AreaOutside when no pixel does."""
    to_cube = to_cube_crs(cube.crs)
    x, y = to_cube.transform(lon, lat)
    col, row = ~Affine.from_gdal(*cube.transform) @ (x, y)
    if not (math.isfinite(col) and math.isfinite(row)):
        raise AreaOutside(f"the point ({lon}, {lat}) is outside the cube's CRS")
    col, row = math.floor(col), math.floor(row)
    if not (0 <= col < cube.width and 0 <= row < cube.height):
        raise AreaOutside(f"the point ({lon}, {lat}) is outside the cube")
    return Window(slice(row, row + 1), slice(col, col + 1), np.ones((1, 1), dtype=bool))


def time_steps(cube: Cube, start: datetime | None, end: datetime | None) -> list[int]:
    """The indices of the cube's time steps within ``start``..``end`` (inclusive)."""
    return [
        i
        for i, t in enumerate(cube.times)
        if (start is None or t >= start) and (end is None or t <= end)
    ]


def bucket_start(when: datetime, resolution: Resolution | None) -> datetime:
    """The start of the day, ISO week or month (UTC) ``when`` falls in (itself without one)."""
    moment = when.astimezone(UTC)
    if resolution is None:
        return moment
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if resolution == "P1W":
        return day - timedelta(days=day.weekday())
    if resolution == "P1M":
        return day.replace(day=1)
    return day


@dataclass
class Selection:
    """The area's layers read and masked: NaN where a value does not count.

    Layers are (time, pixel): the pixels inside the area only, in row-major order; or, with
    ``grid``, (time, y, x) over the whole window, NaN outside the area (EDR ``area``).
    """

    layers: dict[str, xr.DataArray]  # name -> float64
    times: list[datetime]
    window: Window
    time_dim: str
    grid: bool = False

    @property
    def inside(self) -> np.ndarray:
        """(y, x): the pixels of the window that count."""
        return self.window.inside

    @property
    def pixels(self) -> int:
        """How many pixels of the window count."""
        return self.window.pixels

    def values(self, name: str) -> np.ndarray:
        """The layer's values inside the area, (time, pixel)."""
        data: np.ndarray = self.layers[name].values
        return data[:, self.inside] if self.grid else data


def _plans(
    cube: Cube, query: AreaQuery
) -> tuple[list[LayerPlan], MaskPlan | None, dict[str, CubeLayer]]:
    """The layers' plans, the mask's, and every layer they read by name."""
    plans = plan_layers(cube, query.layers, query.expression)
    mask = plan_mask(cube, query.mask)
    inputs = {layer.name: layer for plan in plans for layer in plan.inputs.values()}
    if mask is not None:
        inputs[mask.layer.name] = mask.layer
    return plans, mask, inputs


def select(
    ds: xr.Dataset, cube: Cube, query: AreaQuery, max_values: int = DEFAULT_MAX_VALUES,
    window: Window | None = None, grid: bool = False,
) -> Selection:  # fmt: skip
    """Read the area's window (or ``window``) for the interval's steps and compute the layers
    (blocking); see ``Selection`` for ``grid``."""
    plans, mask, inputs = _plans(cube, query)
    window = window or area_window(cube, query.area)
    if cube.time_dim is None:
        raise AreaOutside("this cube has no time dimension: no time series")
    steps = time_steps(cube, query.start, query.end)
    total = len(steps) * window.inside.size * len(inputs)
    if total > max_values:
        raise AreaTooLarge(
            f"the area and interval hold {total} values to read, more than {max_values}: "
            "choose a smaller area or a shorter interval"
        )
    index = {cube.time_dim: steps, cube.y_dim: window.rows, cube.x_dim: window.cols}
    read = {
        name: layer_array(ds, cube, layer).isel(index).transpose(cube.time_dim, cube.y_dim,
                                                                cube.x_dim).load()
        for name, layer in inputs.items()
    }  # fmt: skip
    valid: xr.DataArray | None = None
    if grid:
        valid = xr.DataArray(window.inside, dims=(cube.y_dim, cube.x_dim))
    else:  # keep the pixels inside only, before any arithmetic: less of everything after
        rows, cols = np.nonzero(window.inside)
        pick = {cube.y_dim: xr.DataArray(rows, dims="pixel"),
                cube.x_dim: xr.DataArray(cols, dims="pixel")}  # fmt: skip
        read = {name: array.isel(pick) for name, array in read.items()}
    if mask is not None:
        clear = ~read[mask.layer.name].isin(mask.values)
        valid = clear if valid is None else valid & clear
    layers = {
        plan.name: evaluate_plan(
            plan, {k: read[layer.name] for k, layer in plan.inputs.items()}, valid
        )
        for plan in plans
    }
    return Selection(layers, [cube.times[i] for i in steps], window, cube.time_dim, grid)


def _reduce(
    values: xr.DataArray, aggregation: Aggregation, bucket: xr.DataArray | None
) -> tuple[xr.DataArray, xr.DataArray]:
    """(aggregate, count of valid values) of each time step over its pixels, or with
    ``bucket`` of each bucket over every value of its steps."""
    dim: Any = values.dims[1:] if bucket is None else ...
    grouped: Any = values if bucket is None else values.groupby(bucket)
    count = grouped.count(dim)
    name, q = aggregation.name, float(aggregation.q or 0.0)
    if name == "percentile":
        # numpy warns on an all-NaN slice: those (null from their count) are filled first
        if bucket is None:
            return values.where(count > 0, 0).quantile(q, dim=dim), count
        return grouped.map(lambda g: _fill_empty(g).quantile(q, dim=...)), count
    reducers: dict[str, Callable[[], Any]] = {
        "mean": lambda: grouped.mean(dim, skipna=True),
        "min": lambda: grouped.min(dim, skipna=True),
        "max": lambda: grouped.max(dim, skipna=True),
        "median": lambda: grouped.median(dim, skipna=True),
        "std": lambda: grouped.std(dim, skipna=True),
        "sum": lambda: grouped.sum(dim, skipna=True),
        "count": lambda: count,
    }
    return reducers[name](), count


def _fill_empty(group: xr.DataArray) -> xr.DataArray:
    """The group, with 0 instead of NaN when it holds no valid value (no all-NaN warning)."""
    return group.fillna(0) if int(group.count()) == 0 else group


def _number(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def series_rows(selection: Selection, query: AreaQuery) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the time series: ``datetime``, ``steps``, then per layer its
    aggregate and ``{layer}_count`` (valid values). An aggregate of no value is None."""
    starts = [bucket_start(t, query.resolution) for t in selection.times]
    labels = list(dict.fromkeys(starts))
    steps = [starts.count(label) for label in labels]
    columns = ["datetime", "steps"]
    found: list[tuple[np.ndarray, np.ndarray]] = []
    for name, values in selection.layers.items():
        columns += [name, f"{name}_count"]
        bucket = None
        if len(labels) < len(starts):  # else one step per bucket: each step over its pixels
            position = {label: i for i, label in enumerate(labels)}
            bucket = xr.DataArray(
                [position[s] for s in starts], dims=selection.time_dim, name="bucket"
            )
        reduced, counted = _reduce(values, query.aggregation, bucket)
        found.append((np.asarray(reduced, dtype="float64"), np.asarray(counted, dtype="int64")))
    rows = []
    for i, label in enumerate(labels):
        row: list[Any] = [label.isoformat().replace("+00:00", "Z"), steps[i]]
        for result, count in found:
            row += [_number(result[i]) if count[i] > 0 else None, int(count[i])]
        rows.append(row)
    return columns, rows


def statistics_of(
    values: np.ndarray, bins: int | Sequence[float] = 10, percentiles: Sequence[float] = (2, 98)
) -> dict[str, Any]:
    """rio-tiler's statistics of valid 1-D values (count, min, max, mean, std, median, sum,
    ``percentile_N``, ``histogram`` as [counts, edges]); ``{"count": 0}`` of none."""
    if values.size == 0:
        return {"count": 0}
    data = np.ma.masked_invalid(values.reshape(1, -1))
    # rio-tiler annotates percentiles as ints; numpy's percentile takes any number
    wanted = cast(list[int], list(percentiles))
    stats = get_array_statistics(data, percentiles=wanted, bins=bins)[0]
    # "unique", "majority" and "minority" are for categories; the pixel counts of the whole
    # area are the answer's, not each layer's
    skip = ("unique", "majority", "minority", "valid_pixels", "masked_pixels", "valid_percent")
    return {k: _json(v) for k, v in stats.items() if k not in skip}


def layer_statistics(
    selection: Selection, bins: int | Sequence[float] = 10, percentiles: Sequence[float] = (2, 98)
) -> dict[str, dict[str, Any]]:
    """``statistics_of`` each layer's valid values over the area and interval, pooled."""
    return {
        name: statistics_of(selection.values(name), bins, percentiles) for name in selection.layers
    }


def _json(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, float | np.floating):
        return _number(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


__all__ = [
    "DEFAULT_MAX_VALUES",
    "Selection",
    "Window",
    "area_window",
    "point_window",
    "bucket_start",
    "layer_statistics",
    "select",
    "series_rows",
    "statistics_of",
    "time_steps",
]
