"""What time series, statistics and EDR queries of datacubes share: errors and parameters.

Parameters are parsed here, once, into plain values (catalog/cubes/series.py computes with
them); ogc/cube_series.py and ogc/cube_edr.py read them from the request. Codes are stable
(docs/errors.md).
"""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import shapely

from catalog.errors import InvalidGeometry, InvalidParameter, NotFound
from catalog.geometry import bbox_shape, geojson_shape

AGGREGATIONS = ("mean", "min", "max", "median", "std", "sum", "count")
RESOLUTIONS = ("P1D", "P1W", "P1M")
PIXEL_RULE = "centre-inside"  # a pixel counts when its centre is inside the area
# Sentinel-2 scene classification values a cube's ``SCL`` layer masks by default: cloud
# shadow (3), cloud of medium (8) and high (9) probability, thin cirrus (10).
DEFAULT_MASKS = {"SCL": (3.0, 8.0, 9.0, 10.0)}
_PERCENTILE = re.compile(r"^percentile_(\d{1,2}(?:\.\d+)?|100)$")


class NotRaster(NotFound):
    """An area aggregation of a collection that is neither a datacube nor holds rasters."""

    code = "cube.NotRaster"


class UnknownLayer(InvalidParameter):
    """A layer that is neither one of the cube's nor a derived index (NDVI...)."""

    code = "cube.UnknownLayer"


class BandsMissing(InvalidParameter):
    """A derived layer (NDVI...) whose bands the cube lacks; ``bands`` lists those it needs."""

    code = "cube.BandsMissing"


class InvalidAggregation(InvalidParameter):
    """An ``aggregation`` that is not one of ours, or a ``resolution`` that is not."""

    code = "cube.InvalidAggregation"


class InvalidMask(InvalidParameter):
    """A ``mask`` that is not ``none`` or ``LAYER:v1,v2,...`` of a layer of the cube."""

    code = "cube.InvalidMask"


class InvalidExpression(InvalidParameter):
    """An ``expression`` that is not arithmetic (+ - * /, numbers) of the cube's layers."""

    code = "cube.InvalidExpression"


class AreaOutside(InvalidParameter):
    """An area (or position) that does not touch the data."""

    code = "cube.AreaOutside"


class AreaTooLarge(InvalidParameter):
    """An area and interval holding more values than ``TERRACAT_CUBES_MAX_VALUES``."""

    code = "cube.AreaTooLarge"
    status = 413


@dataclass(frozen=True)
class Aggregation:
    """A reduction: one of AGGREGATIONS, or ``percentile`` with ``q`` in 0..1."""

    name: str
    q: float | None = None

    @property
    def label(self) -> str:
        """The name the client gave (``percentile_90``)."""
        if self.q is None:
            return self.name
        return f"percentile_{self.q * 100:g}"


def parse_aggregation(value: str | None) -> Aggregation:
    """``mean`` (default), ..., ``percentile_N`` (N in 0..100)."""
    text = (value or "mean").strip().lower()
    if text in AGGREGATIONS:
        return Aggregation(text)
    match = _PERCENTILE.match(text)
    if match and 0 <= float(match[1]) <= 100:
        return Aggregation("percentile", float(match[1]) / 100)
    raise InvalidAggregation(
        f"aggregation is one of {', '.join(AGGREGATIONS)} or percentile_N (N in 0..100), "
        f"not {text[:40]!r}"
    )


Resolution = Literal["P1D", "P1W", "P1M"]


def parse_resolution(value: str | None) -> Resolution | None:
    """``P1D``, ``P1W``, ``P1M``, or None (every time step)."""
    if value is None or not value.strip():
        return None
    text = value.strip().upper()
    if text not in RESOLUTIONS:
        raise InvalidAggregation(
            f"resolution is one of {', '.join(RESOLUTIONS)} (or none), not {value[:20]!r}"
        )
    return text  # type: ignore[return-value]  # one of RESOLUTIONS


def parse_area(bbox: list[float] | None, intersects: Any) -> shapely.Geometry:
    """The area in lon/lat: ``bbox`` or ``intersects`` (a Polygon or MultiPolygon)."""
    if (bbox is None) == (intersects is None):
        raise InvalidParameter("give the area as either bbox or intersects (not both)")
    shape = bbox_shape(bbox) if bbox is not None else geojson_shape(intersects)
    if shape.geom_type not in ("Polygon", "MultiPolygon"):
        raise InvalidGeometry(f"the area must be a Polygon or MultiPolygon, not {shape.geom_type}")
    return shape


def split_names(value: str | None) -> list[str]:
    """Comma-separated names, blanks dropped."""
    return [n.strip() for n in (value or "").split(",") if n.strip()]


@dataclass(frozen=True)
class AreaQuery:
    """What to compute over an area: a time series or statistics of its layers."""

    area: shapely.Geometry  # lon/lat
    layers: tuple[str, ...]
    start: datetime | None = None
    end: datetime | None = None
    aggregation: Aggregation = Aggregation("mean")
    resolution: Resolution | None = None
    mask: str | None = None  # "none", "LAYER:v1,v2", or None: the cube's default
    expression: str | None = None  # arithmetic of layer (band) names: column "expression"

    @property
    def names(self) -> tuple[str, ...]:
        """The answer's layer names: ``layers``, then ``expression`` when there is one."""
        return (*self.layers, *(("expression",) if self.expression else ()))


__all__ = [
    "AGGREGATIONS",
    "DEFAULT_MASKS",
    "PIXEL_RULE",
    "RESOLUTIONS",
    "Aggregation",
    "AreaOutside",
    "AreaQuery",
    "AreaTooLarge",
    "BandsMissing",
    "InvalidAggregation",
    "InvalidExpression",
    "InvalidMask",
    "NotRaster",
    "Resolution",
    "UnknownLayer",
    "parse_aggregation",
    "parse_area",
    "parse_resolution",
    "split_names",
]
