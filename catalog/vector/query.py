"""Which features a request means: bbox, datetime and CQL2 over a layer's typed columns.

One builder for every reader of features (the items routes, facets, aggregations, vector tiles,
map images), so that a filter means the same rows everywhere. Property names resolve to the
layer's columns; CQL2 compiles through the catalogue's own compiler (catalog/stac/cql2.py).
"""

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pyproj
import shapely
from sqlalchemy import and_, case, func, true
from sqlalchemy.sql.elements import ColumnElement

from catalog.errors import InvalidBBox, InvalidParameter, UnknownQueryable
from catalog.geometry import as_sql, bbox_shape, fix_shape
from catalog.stac.cql2 import Resolver, compile_filter
from catalog.stac.queryables import Field, Kind

from .schema import FID, GEOM, Layer

Clause = ColumnElement[Any]
GEOMETRY_NAMES = ("geometry", GEOM)  # how a filter may name the geometry
ID_NAMES = ("id", FID)


class NoDatetimeProperty(InvalidParameter):
    """A temporal query on a collection that has no datetime property."""

    code = "features.NoDatetimeProperty"


@dataclass(frozen=True)
class FeatureQuery:
    """The selection parameters shared by every feature reader (bbox in CRS84, or in the
    projected EPSG:``bbox_srid`` when that is not 4326)."""

    bbox: Sequence[float] | None = None
    datetime: tuple[dt.datetime | None, dt.datetime | None] | None = None
    filter: dict[str, Any] | bool | None = None  # canonical CQL2-JSON (cql2.parse)
    bbox_srid: int = 4326


def field(layer: Layer, name: str) -> Field:
    """The queryable ``name`` of ``layer``: a property, the geometry or the feature id."""
    table = layer.table
    if name in GEOMETRY_NAMES:
        return Field(name, frozenset({Kind.GEOMETRY}), column=table.c[GEOM])
    if name in ID_NAMES:
        return Field(name, frozenset({Kind.NUMBER}), column=table.c[FID])
    prop = layer.prop(name)
    if prop is None:
        allowed = ", ".join(p.name for p in layer.properties)
        raise UnknownQueryable(
            f"{name!r} is not a property of {layer.collection_id!r}; queryables: {allowed}",
            field=name,
        )
    return Field(name, frozenset({prop.type.kind}), column=table.c[prop.column])


def resolver(layer: Layer) -> Resolver:
    """A CQL2 name resolver over the layer's columns."""
    return lambda name: field(layer, name)


def datetime_column(layer: Layer) -> Clause:
    """The column of the layer's datetime property; 400 when it has none."""
    if layer.datetime_property is None:
        raise NoDatetimeProperty(
            f"collection {layer.collection_id!r} has no datetime property: datetime cannot "
            "select its features"
        )
    return field(layer, layer.datetime_property).expr()


def projected_box(bbox: Sequence[float], srid: int) -> Clause:
    """A box in the projected EPSG:``srid`` as a polygon in EPSG:4326.

    Its edges are densified (they curve once reprojected) and reprojected by pyproj, the
    longitudes made continuous, then the catalogue's antimeridian fix splits a box of a zone
    next to 180 degrees (keep the box within the CRS's area of use: ``crs.clamp_bbox``).
    """
    if len(bbox) not in (4, 6):
        raise InvalidBBox(f"bbox must have 4 or 6 numbers, got {len(bbox)}")
    west, south, east, north = (bbox[0], bbox[1], bbox[3], bbox[4]) if len(bbox) == 6 else bbox
    if (
        not all(math.isfinite(v) for v in (west, south, east, north))
        or west > east
        or south > north
    ):
        raise InvalidBBox("a projected bbox is finite, with west <= east and south <= north")
    t = np.linspace(0.0, 1.0, 33)[:-1]
    xs = np.concatenate([west + (east - west) * t, np.full(32, east),
                         east - (east - west) * t, np.full(32, west)])  # fmt: skip
    ys = np.concatenate([np.full(32, south), south + (north - south) * t,
                         np.full(32, north), north - (north - south) * t])  # fmt: skip
    lon, lat = _to_lonlat(srid).transform(xs, ys)
    lon = np.degrees(np.unwrap(np.radians(lon)))
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise InvalidBBox(f"the bbox cannot be reprojected from EPSG:{srid}")
    return as_sql(fix_shape(shapely.Polygon(np.column_stack([lon, lat]))))


@cache
def _to_lonlat(srid: int) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(srid, 4326, always_xy=True)


def bbox_clause(layer: Layer, box: Clause, rectangle: bool = False) -> Clause:
    """Features meeting ``box`` (a geometry in EPSG:4326); ``rectangle``: ``box`` is one
    lon/lat rectangle (``meets_rectangle``)."""
    geom = layer.table.c[GEOM]
    return meets_rectangle(geom, box) if rectangle else func.ST_Intersects(geom, box)


def meets_rectangle(geom: Clause, box: Clause) -> Clause:
    """That ``geom`` meets ``box``, a rectangle in its CRS: a geometry whose bbox lies in it
    meets it without a GEOS call, and at most a few features of a page or tile reach over
    its edge (a 2 x 1.5 degree bbox over 100,000 polygons: 1.2 against 0.8 ms a scan).

    The stored bbox is rounded outwards, so inside it means inside. A CASE, not an OR,
    which the planner would turn into a BitmapOr of two index scans; ``&&`` keeps the index.
    """
    return and_(geom.op("&&")(box), inside_or_meets(geom, box))


def inside_or_meets(geom: Clause, box: Clause) -> Clause:
    """``meets_rectangle`` without its index condition, for a caller that finds the rows
    through another index (vector tiles, through the size index)."""
    return case((geom.op("@")(box), true()), else_=func.ST_Intersects(geom, box))


def is_rectangle(shape: shapely.Geometry) -> bool:
    """Whether a bbox's shape (``bbox_shape``) is one rectangle (not split at 180 degrees)."""
    return isinstance(shape, shapely.Polygon)


def where(layer: Layer, query: FeatureQuery) -> list[Clause]:
    """The conditions of ``query`` (an empty list selects every feature)."""
    clauses: list[Clause] = []
    if query.bbox is not None and query.bbox_srid != 4326:
        clauses.append(bbox_clause(layer, projected_box(query.bbox, query.bbox_srid)))
    elif query.bbox is not None:
        shape = bbox_shape(query.bbox)
        clauses.append(bbox_clause(layer, as_sql(shape), is_rectangle(shape)))
    if query.datetime is not None:
        column = datetime_column(layer)
        start, end = query.datetime
        if start is not None:
            clauses.append(column >= start)
        if end is not None:
            clauses.append(column <= end)
    if query.filter is not None:
        clauses.append(compile_filter(query.filter, {}, resolver(layer)))
    return clauses


__all__ = [
    "FeatureQuery",
    "bbox_clause",
    "datetime_column",
    "field",
    "is_rectangle",
    "meets_rectangle",
    "projected_box",
    "resolver",
    "where",
]
