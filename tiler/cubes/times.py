"""Which time slices of a datacube a ``datetime=`` selects, and how they are reduced.

- no ``datetime``: the cube's last time slice;
- an instant: with ``datetime_match=nearest`` (the default) the nearest time slice, with
  ``exact`` only a time of the cube (else ``cube.DatetimeNotInCube``);
- an interval (``start/end``, either end open with ``..``): every slice inside, reduced per
  pixel by ``temporal_aggregation`` (``mean``, the default, ``max``, ``min``, ``median``, or
  ``last``: the latest slice with data at that pixel).

An instant or interval that meets none of the cube's times is ``cube.DatetimeOutsideCube``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from catalog.cubes.model import Cube
from catalog.timeparse import parse_interval

from .errors import DatetimeNotInCube, DatetimeOutsideCube, InvalidAggregation

Aggregation = Literal["mean", "max", "min", "median", "last"]
AGGREGATIONS: tuple[Aggregation, ...] = ("mean", "max", "min", "median", "last")
MATCHES = ("nearest", "exact")


@dataclass(frozen=True)
class TimeSelection:
    """Positions along the cube's time dimension (empty: a cube without one), and the
    reduction of several."""

    indexes: tuple[int, ...]
    aggregation: Aggregation = "mean"


def _span(cube: Cube) -> str:
    return f"{cube.times[0].isoformat()} to {cube.times[-1].isoformat()}"


def select_times(
    cube: Cube,
    value: str | None,
    match: str | None = None,
    aggregation: str | None = None,
) -> TimeSelection:
    """The slices ``value`` selects; 400s with ``cube.*`` codes (see the module docstring)."""
    if aggregation is not None and aggregation not in AGGREGATIONS:
        raise InvalidAggregation(
            f"temporal_aggregation {aggregation[:32]!r} is not one of {list(AGGREGATIONS)}"
        )
    if match is not None and match not in MATCHES:
        raise InvalidAggregation(f"datetime_match {match[:32]!r} is not one of {list(MATCHES)}")
    reduce: Aggregation = aggregation or "mean"  # checked above
    times = cube.times
    if cube.time_dim is None or not times:
        if value:
            raise DatetimeOutsideCube("this datacube has no time dimension: drop datetime")
        return TimeSelection((), reduce)
    if not value:
        return TimeSelection((len(times) - 1,), reduce)
    start, end = parse_interval(value)
    if "/" not in value and start is not None:
        return TimeSelection((_instant(cube, start, match or "nearest"),), reduce)
    inside = tuple(
        i
        for i, t in enumerate(times)
        if (start is None or t >= start) and (end is None or t <= end)
    )
    if not inside:
        raise DatetimeOutsideCube(f"no time of the cube in {value[:80]!r}: it has {_span(cube)}")
    return TimeSelection(inside, reduce)


def _instant(cube: Cube, at: datetime, match: str) -> int:
    times = cube.times
    if match == "exact":
        for i, t in enumerate(times):
            if t == at:
                return i
        raise DatetimeNotInCube(
            f"{at.isoformat()} is not a time of the cube (datetime_match=exact); it has "
            f"{len(times)} times from {_span(cube)}"
        )
    if not times[0] <= at <= times[-1]:
        raise DatetimeOutsideCube(f"{at.isoformat()} is outside the cube's times ({_span(cube)})")
    return min(range(len(times)), key=lambda i: abs((times[i] - at).total_seconds()))
