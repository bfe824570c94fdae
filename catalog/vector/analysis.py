"""What facets and aggregations share: their errors, and property values as JSON.

Facets (facets.py) and aggregations (aggregate.py) read the same rows as every other reader of
features (``query.where``); their answers are plain data, turned into JSON or CSV by ogc/.
"""

import datetime as dt
import math
from decimal import Decimal
from typing import Any

from catalog.errors import InvalidParameter, NotFound

from .schema import Layer, Property, PropertyType

NUMERIC = frozenset({PropertyType.INTEGER, PropertyType.NUMBER})
TEMPORAL = frozenset({PropertyType.DATE, PropertyType.DATETIME})


class NotVector(NotFound):
    """A vector-only route (facets, aggregate) on a collection that holds no features."""

    code = "features.NotVector"


class InvalidFacet(InvalidParameter):
    """A facet on a property the collection lacks or cannot count (JSON), or bad bucket edges."""

    code = "features.InvalidFacet"


class InvalidMetric(InvalidParameter):
    """An aggregate metric that is not one of ours, or on a property of the wrong type."""

    code = "features.InvalidMetric"


class InvalidGroupBy(InvalidParameter):
    """A group_by key the collection lacks, a JSON property, or an unknown time bucket."""

    code = "features.InvalidGroupBy"


class TooManyGroups(InvalidParameter):
    """An aggregation with more groups than TERRACAT_VECTOR_AGGREGATE_MAX_GROUPS."""

    code = "features.TooManyGroups"


def plain_properties(layer: Layer) -> list[Property]:
    """The properties values can be counted and grouped by (every one but JSON)."""
    return [p for p in layer.properties if p.type is not PropertyType.JSON]


def allowed_names(layer: Layer) -> list[str]:
    """The names of ``plain_properties``, for error messages."""
    return [p.name for p in plain_properties(layer)]


def json_value(value: Any) -> Any:
    """A value read from the database as JSON: ISO dates, numbers (NaN and infinities: null)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
            return value.isoformat().replace("+00:00", "Z")
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = [
    "InvalidFacet",
    "InvalidGroupBy",
    "InvalidMetric",
    "NotVector",
    "TooManyGroups",
    "allowed_names",
    "json_value",
    "plain_properties",
]
