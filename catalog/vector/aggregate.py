"""Aggregations: metrics of the features a query selects, per group, in one GROUP BY.

``group_by`` keys are property names, or a time bucket of the collection's datetime property:
``P1D``, ``P1W`` (weeks from Monday), ``P1M``, ``P1Y`` (``date_trunc`` in UTC; the key is named
after the datetime property, its value the bucket's start). ``metrics``:

- ``count`` (features), ``count(p)`` (features where ``p`` is not null);
- ``sum(p)``, ``mean(p)``, ``stddev(p)`` (the sample standard deviation) of a number or
  integer property; ``min(p)``, ``max(p)`` of a number, integer, date or date-time property;
- ``area``, ``length``, ``perimeter``: the sums of the geometries' geodesic areas (m²),
  lengths (m; lines) and perimeters (m; polygons) on the WGS 84 ellipsoid (PostGIS geography).

Groups come sorted by their keys (nulls last); more than ``max_groups`` is an error rather
than a silently cut answer.
"""

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from geoalchemy2 import Geography
from sqlalchemy import Date, Double, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from .analysis import (
    NUMERIC,
    TEMPORAL,
    InvalidGroupBy,
    InvalidMetric,
    TooManyGroups,
    allowed_names,
    json_value,
)
from .query import Clause, FeatureQuery, NoDatetimeProperty, where
from .schema import GEOM, Layer, Property, PropertyType

INTERVALS = {"P1D": "day", "P1W": "week", "P1M": "month", "P1Y": "year"}
MEASURES: dict[str, Callable[[Clause], Clause]] = {
    "area": func.ST_Area,
    "length": func.ST_Length,
    "perimeter": func.ST_Perimeter,
}
_FUNCTIONS: dict[str, Callable[[Clause], Clause]] = {
    "count": func.count,
    "sum": func.sum,
    "mean": func.avg,
    "min": func.min,
    "max": func.max,
    "stddev": func.stddev_samp,
}
_NUMERIC_ONLY = frozenset({"sum", "mean", "stddev"})
_CALL = re.compile(r"(\w+)\((.+)\)")


@dataclass(frozen=True)
class GroupKey:
    """One ``group_by`` key: a property, or a time bucket (``interval``) of one."""

    name: str
    prop: Property
    interval: str | None = None


@dataclass(frozen=True)
class Metric:
    """One metric: its name in the answer, function, and property or geometry measure."""

    name: str
    function: str
    prop: Property | None = None
    measure: str | None = None


@dataclass
class Aggregation:
    """The groups: column names (keys, then metrics) and one row of JSON values per group."""

    columns: list[str]
    rows: list[list[Any]]

    def records(self) -> list[dict[str, Any]]:
        """Each group as an object."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def parse_group_by(layer: Layer, specs: Sequence[str], most: int) -> list[GroupKey]:
    """The group keys named in ``specs`` (properties or P1D/P1W/P1M/P1Y); 400 otherwise."""
    specs = [s.strip() for s in specs if s.strip()]
    if len(specs) > most:
        raise InvalidGroupBy(f"at most {most} group_by keys, not {len(specs)}")
    keys: list[GroupKey] = []
    for spec in specs:
        if spec.upper() in INTERVALS:
            name = layer.datetime_property
            prop = layer.prop(name) if name else None
            if prop is None:
                raise NoDatetimeProperty(
                    f"collection {layer.collection_id!r} has no datetime property to group "
                    f"by {spec}"
                )
            key = GroupKey(prop.name, prop, spec.upper())
        else:
            found = layer.prop(spec)
            if found is None or found.type is PropertyType.JSON:
                allowed = [*allowed_names(layer), *INTERVALS]
                raise InvalidGroupBy(
                    f"cannot group by {spec!r}: group_by takes {', '.join(allowed)}",
                    field=spec,
                    allowed=allowed,
                )
            key = GroupKey(found.name, found)
        if any(k.name == key.name for k in keys):
            raise InvalidGroupBy(f"{key.name!r} is grouped by twice", field=spec)
        keys.append(key)
    return keys


def parse_metrics(layer: Layer, specs: Sequence[str], most: int) -> list[Metric]:
    """The metrics named in ``specs`` (``count`` when none); 400 for any we cannot compute."""
    specs = list(dict.fromkeys(s.strip() for s in specs if s.strip())) or ["count"]
    if len(specs) > most:
        raise InvalidMetric(f"at most {most} metrics, not {len(specs)}")
    return [_metric(layer, spec) for spec in specs]


def _metric(layer: Layer, spec: str) -> Metric:
    if spec == "count":
        return Metric(spec, "count")
    if spec in MEASURES:
        return Metric(spec, "sum", measure=spec)
    call = _CALL.fullmatch(spec)
    if call is None or call.group(1) not in _FUNCTIONS:
        raise InvalidMetric(
            f"unknown metric {spec!r}: use count, area, length, perimeter or "
            f"{'(p), '.join(_FUNCTIONS)}(p) of a property p",
            field=spec,
        )
    function, name = call.group(1), call.group(2).strip()
    prop = layer.prop(name)
    if prop is None:
        raise InvalidMetric(
            f"{name!r} is not a property of {layer.collection_id!r}; properties: "
            f"{', '.join(p.name for p in layer.properties)}",
            field=spec,
        )
    kinds = (
        NUMERIC if function in _NUMERIC_ONLY
        else NUMERIC | TEMPORAL if function in ("min", "max")
        else frozenset(PropertyType)
    )  # fmt: skip
    if prop.type not in kinds:
        raise InvalidMetric(
            f"{function} of {name!r} (a {prop.type} property): {function} takes "
            f"{' or '.join(sorted(kinds))} properties",
            field=spec,
        )
    return Metric(spec, function, prop=prop)


def _key_sql(layer: Layer, key: GroupKey) -> ColumnElement[Any]:
    column = layer.table.c[key.prop.column]
    if key.interval is None:
        return column
    unit = INTERVALS[key.interval]
    if key.prop.type is PropertyType.DATE:
        return cast(func.date_trunc(unit, column), Date)
    # On the UTC wall time (a timestamp without zone; made aware again in Python): twice as
    # fast as date_trunc(unit, column, 'UTC'), which converts time zones on every row.
    return func.date_trunc(unit, func.timezone("UTC", column))


def _metric_sql(layer: Layer, metric: Metric) -> ColumnElement[Any]:
    if metric.measure is not None:
        geography = cast(layer.table.c[GEOM], Geography)
        return func.sum(MEASURES[metric.measure](geography))
    if metric.prop is None:
        return func.count()
    column = layer.table.c[metric.prop.column]
    value = _FUNCTIONS[metric.function](column)
    if metric.function in ("mean", "stddev"):
        return cast(value, Double)  # numeric for integer properties
    return value


async def aggregate(
    conn: AsyncConnection,
    layer: Layer,
    query: FeatureQuery,
    group_by: Sequence[GroupKey],
    metrics: Sequence[Metric],
    max_groups: int,
    clauses: Sequence[Clause] | None = None,
) -> Aggregation:
    """The metrics per group over the features ``query`` selects (one statement).

    ``clauses`` are ``where(layer, query)`` when the caller compiled them already.
    """
    names = [k.name for k in group_by] + [m.name for m in metrics]
    if len(set(names)) < len(names):
        raise InvalidGroupBy(f"a group_by key and a metric share a name: {names}")
    keys = [_key_sql(layer, k).label(f"g{i}") for i, k in enumerate(group_by)]
    values = [_metric_sql(layer, m).label(f"m{i}") for i, m in enumerate(metrics)]
    statement = (
        select(*keys, *values)
        .select_from(layer.table)
        .where(*(where(layer, query) if clauses is None else clauses))
        .group_by(*keys)
        .order_by(*(k.asc().nulls_last() for k in keys))
        .limit(max_groups + 1)
    )
    rows = (await conn.execute(statement)).all()
    if len(rows) > max_groups:
        raise TooManyGroups(
            f"more than {max_groups} groups: narrow the selection (bbox, datetime, filter) "
            "or group by fewer or coarser keys"
        )
    return Aggregation(names, [[json_value(_aware(v)) for v in row] for row in rows])


def _aware(value: Any) -> Any:
    """A UTC wall time (the time buckets') as an aware date-time; anything else as it is."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


__all__ = [
    "INTERVALS",
    "Aggregation",
    "GroupKey",
    "Metric",
    "aggregate",
    "parse_group_by",
    "parse_metrics",
]
