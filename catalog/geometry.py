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
        shape = _polygon(geometry) or shapely.geometry.shape(geometry)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise InvalidGeometry(f"invalid GeoJSON {geometry.get('type')}: {exc}") from exc
    if shape.is_empty:
        raise InvalidGeometry("geometry is empty")
    if not np.isfinite(shapely.get_coordinates(shape, include_z=bool(shape.has_z))).all():
        raise InvalidGeometry("coordinates must be finite numbers (no NaN or Infinity)")
    return shape


def _polygon(geometry: dict[str, Any]) -> shapely.Geometry | None:
    """A plain GeoJSON Polygon built from arrays in one call (about 10x faster than
    ``shapely.geometry.shape``, which builds it point by point: it was the costliest step of a
    bulk load); None for anything else, which ``shape`` then reads or explains."""
    rings = geometry.get("coordinates")
    if geometry["type"] != "Polygon" or not isinstance(rings, list) or not rings:
        return None
    try:
        arrays = [np.asarray(ring, dtype=float) for ring in rings]
    except (ValueError, TypeError):
        return None
    if any(a.ndim != 2 or a.shape[1] not in (2, 3) or len(a) < 4 for a in arrays):
        return None
    polygon: shapely.Geometry = shapely.polygons(arrays[0], holes=arrays[1:] or None)
    return polygon


def plain_polygons(geometries: Sequence[Any]) -> list[tuple[shapely.Geometry, list[float]] | None]:
    """(shape, bounds) of each GeoJSON geometry that is a closed single-ring 2D Polygon,
    finite, valid, within [-180, 180] and less than 180 degrees wide; None for the others.

    A whole batch is built and checked in a few vectorised shapely calls: one call per item
    costs about 20 us of overhead each, which made geometry the costliest part of a bulk load.
    None means "no shortcut": the item then goes through ``parse_geojson`` and ``fix_shape``.
    """
    out: list[tuple[shapely.Geometry, list[float]] | None] = [None] * len(geometries)
    picked, counts, coords = [], [], []
    for i, geometry in enumerate(geometries):
        if not isinstance(geometry, dict) or geometry.get("type") != "Polygon":
            continue
        rings = geometry.get("coordinates")
        if (
            isinstance(rings, list) and len(rings) == 1
            and isinstance(rings[0], list) and len(rings[0]) >= 4
            and all(isinstance(p, list) and len(p) == 2 for p in rings[0])
        ):  # fmt: skip
            picked.append(i)
            counts.append(len(rings[0]))
            coords.extend(rings[0])
    if not picked:
        return out
    try:
        xy = np.array(coords, dtype=float)
    except (ValueError, TypeError):
        return out
    ends = np.cumsum(counts)
    starts = ends - counts
    good = np.isfinite(xy).all(axis=1) & (np.abs(xy[:, 0]) <= 180)
    ok = np.logical_and.reduceat(good, starts) & (xy[starts] == xy[ends - 1]).all(axis=1)
    rings = shapely.linearrings(xy, indices=np.repeat(np.arange(len(picked)), counts))
    shapes = shapely.polygons(rings)
    bounds = shapely.bounds(shapes)
    ok &= shapely.is_valid(shapes) & (bounds[:, 2] - bounds[:, 0] <= 180)
    for j in np.flatnonzero(ok):
        out[picked[j]] = (shapes[j], bounds[j].tolist())
    return out


def crosses_antimeridian(shape: shapely.Geometry) -> bool:
    """Whether a polygon ring jumps more than 180 degrees of longitude (a naive crossing)."""
    if shape.geom_type not in ("Polygon", "MultiPolygon"):
        return False
    west, _, east, _ = shape.bounds
    if east - west <= 180:  # no edge can jump more than the whole width
        return False
    for polygon in getattr(shape, "geoms", [shape]):
        xs = np.asarray(polygon.exterior.coords)[:, 0]
        if (np.abs(np.diff(xs)) > 180).any():
            return True
    return False


def beyond_antimeridian(shape: shapely.Geometry) -> bool:
    """Whether some longitude of ``shape`` is beyond +-180 (a footprint drawn across 180)."""
    west, _, east, _ = shape.bounds
    return bool(west < -180 or east > 180)


def wrap_longitudes(shape: shapely.Geometry) -> shapely.Geometry:
    """``shape`` with longitudes beyond +-180 brought back into range.

    Polygons are split at the antimeridian (``antimeridian`` library), points are wrapped.
    Lines and collections are refused: the library does not split them, and wrapping their
    vertices would draw edges around the world.
    """
    west, _, east, _ = shape.bounds
    if west < -360 or east > 360:
        raise InvalidGeometry("longitudes must be within [-360, 360]")
    if shape.geom_type in ("Polygon", "MultiPolygon"):
        fixed = antimeridian.fix_shape(shape, great_circle=False)
        return fixed if isinstance(fixed, shapely.Geometry) else shapely.geometry.shape(fixed)
    if shape.geom_type in ("Point", "MultiPoint"):
        return shapely.transform(shape, _wrap_xy)
    raise InvalidGeometry(f"{shape.geom_type} longitudes must be within [-180, 180]")


def _wrap_xy(coords: Any) -> Any:
    wrapped = coords.copy()
    wrapped[:, 0] = (coords[:, 0] + 180.0) % 360.0 - 180.0
    return wrapped


def shape_bbox(shape: shapely.Geometry) -> list[float]:
    """[west, south, east, north] of a fixed shape; west > east if it crosses the antimeridian."""
    if shape.geom_type == "MultiPolygon":
        return [float(v) for v in antimeridian.bbox(shape)]
    return [float(v) for v in shape.bounds]


def fix_shape(shape: shapely.Geometry) -> shapely.Geometry:
    """Wrap longitudes beyond +-180 or split antimeridian-crossing polygons (``antimeridian``
    library), then make valid.

    Returns ``shape`` itself when nothing needed fixing.
    """
    if beyond_antimeridian(shape):
        shape = wrap_longitudes(shape)
    elif crosses_antimeridian(shape):
        # RFC 7946 edges are straight in lon/lat, so the crossing latitude is interpolated linearly.
        fixed = antimeridian.fix_shape(shape, great_circle=False)
        shape = fixed if isinstance(fixed, shapely.Geometry) else shapely.geometry.shape(fixed)
    if not shape.is_valid:
        shape = shapely.make_valid(shape)
    return shape


def as_sql(shape: shapely.Geometry) -> ColumnElement[Any]:
    """A bound PostGIS geometry (EPSG:4326) for ``shape``, sent as WKB so no precision is lost."""
    return func.ST_GeomFromWKB(bindparam(None, shapely.to_wkb(shape), type_=LargeBinary), 4326)
