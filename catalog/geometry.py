"""Geometry input: bboxes and GeoJSON turned into PostGIS values, antimeridian-aware."""

import math
from collections.abc import Sequence
from typing import Any

import antimeridian
import numpy as np
import orjson
import shapely
import shapely.geometry
from sqlalchemy import LargeBinary, bindparam, func
from sqlalchemy.sql.elements import ColumnElement

from .errors import InvalidBBox, InvalidGeometry

GEOMETRY_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
     "GeometryCollection"}
)  # fmt: skip


def normalize_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """Validate a 2D or 3D bbox and return its 2D part (west, south, east, north).

    ``west > east`` is allowed: the box crosses the antimeridian.
    """
    if len(bbox) not in (4, 6):
        raise InvalidBBox(f"bbox must have 4 or 6 numbers, got {len(bbox)}")
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError) as exc:
        raise InvalidBBox(f"bbox must be numbers: {list(bbox)}") from exc
    if not all(math.isfinite(v) for v in values):
        raise InvalidBBox("bbox must be finite numbers")
    if len(values) == 6:
        west, south, low, east, north, high = values
        if low > high:
            raise InvalidBBox("bbox minimum elevation is above its maximum")
    else:
        west, south, east, north = values
    if not (-180 <= west <= 180 and -180 <= east <= 180):
        raise InvalidBBox("bbox longitudes must be within [-180, 180]")
    if not (-90 <= south <= 90 and -90 <= north <= 90):
        raise InvalidBBox("bbox latitudes must be within [-90, 90]")
    if south > north:
        raise InvalidBBox("bbox south is above its north")
    return west, south, east, north


def bbox_shape(bbox: Sequence[float]) -> shapely.Geometry:
    """The bbox as a (multi)polygon in EPSG:4326, split in two if it crosses the antimeridian."""
    west, south, east, north = normalize_bbox(bbox)
    if west <= east:
        return shapely.box(west, south, east, north)
    return shapely.MultiPolygon(
        [shapely.box(west, south, 180.0, north), shapely.box(-180.0, south, east, north)]
    )


def geojson_shape(geometry: Any) -> shapely.Geometry:
    """Read a GeoJSON geometry (dict or JSON text), fixing antimeridian crossings and validity."""
    return fix_shape(parse_geojson(geometry))


def parse_geojson(geometry: Any) -> shapely.Geometry:
    """Read a GeoJSON geometry (dict or JSON text) as it is."""
    if isinstance(geometry, str | bytes):
        try:
            geometry = orjson.loads(geometry)
        except orjson.JSONDecodeError as exc:
            raise InvalidGeometry(f"intersects is not JSON: {exc}") from exc
    if not isinstance(geometry, dict) or geometry.get("type") not in GEOMETRY_TYPES:
        raise InvalidGeometry("expected a GeoJSON geometry object")
    try:
        shape = shapely.geometry.shape(geometry)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise InvalidGeometry(f"invalid GeoJSON {geometry.get('type')}: {exc}") from exc
    if shape.is_empty:
        raise InvalidGeometry("geometry is empty")
    if not np.isfinite(shapely.get_coordinates(shape, include_z=bool(shape.has_z))).all():
        raise InvalidGeometry("coordinates must be finite numbers (no NaN or Infinity)")
    return shape


def crosses_antimeridian(shape: shapely.Geometry) -> bool:
    """Whether a polygon ring jumps more than 180 degrees of longitude (a naive crossing)."""
    if shape.geom_type not in ("Polygon", "MultiPolygon"):
        return False
    for polygon in getattr(shape, "geoms", [shape]):
        xs = [x for x, *_ in polygon.exterior.coords]
        if any(abs(b - a) > 180 for a, b in zip(xs, xs[1:], strict=False)):
            return True
    return False


def fix_shape(shape: shapely.Geometry) -> shapely.Geometry:
    """Split antimeridian-crossing polygons (``antimeridian`` library), then make valid.

    Returns ``shape`` itself when nothing needed fixing.
    """
    if crosses_antimeridian(shape):
        # RFC 7946 edges are straight in lon/lat, so the crossing latitude is interpolated linearly.
        fixed = antimeridian.fix_shape(shape, great_circle=False)
        shape = fixed if isinstance(fixed, shapely.Geometry) else shapely.geometry.shape(fixed)
    if not shape.is_valid:
        shape = shapely.make_valid(shape)
    return shape


def as_sql(shape: shapely.Geometry) -> ColumnElement[Any]:
    """A bound PostGIS geometry (EPSG:4326) for ``shape``, sent as WKB so no precision is lost."""
    return func.ST_GeomFromWKB(bindparam(None, shapely.to_wkb(shape), type_=LargeBinary), 4326)
