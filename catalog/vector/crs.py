"""Coordinate reference systems of feature responses (OGC API - Features Part 2).

Features are stored in EPSG:4326 with longitude first (CRS84's order). A response may ask for
another CRS with ``crs`` and give its bbox in one with ``bbox-crs``; PostGIS reprojects
(ST_Transform). EPSG:4326 itself is latitude first, as its definition says: responses and bboxes
in it have their axes swapped (ST_FlipCoordinates), while CRS84 keeps longitude first.

Accepted: CRS84, EPSG:4326, EPSG:3857, EPSG:2154 (Lambert-93) and every WGS 84 UTM zone
(EPSG:32601-32660 north, 32701-32760 south); a collection document lists CRS84, 4326, 3857 and
the UTM zones its extent touches, but any accepted code may be asked for.

The geometry literals of a CQL2 filter may be in any of them too (Part 3 ``filter-crs``):
``filter_in_crs84`` rewrites them to CRS84 before the filter is compiled. A projected literal is
densified first (its edges are straight in its own CRS, not in lon/lat) and reprojected with
pyproj; a projected bbox literal becomes the polygon it is in lon/lat.
"""

import math
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy
import pyproj
import shapely
import shapely.geometry

from catalog.errors import InvalidFilter, InvalidParameter
from catalog.geometry import GEOMETRY_TYPES

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/"
_CRS84_NAMES = frozenset(
    {CRS84, "https://www.opengis.net/def/crs/OGC/1.3/CRS84", "OGC:CRS84", "CRS84",
     "[OGC:CRS84]"}
)  # fmt: skip
_EPSG = re.compile(
    r"(?:https?://www\.opengis\.net/def/crs/EPSG/0/|\[?EPSG:)(?P<code>\d{4,5})\]?", re.IGNORECASE
)
_FIXED = frozenset({4326, 3857, 2154})
LISTED_UTM_ZONES = 8  # a collection document lists at most this many UTM zones


class UnsupportedCrs(InvalidParameter):
    """A ``crs`` or ``bbox-crs`` this server does not reproject to."""

    code = "features.UnsupportedCrs"


@dataclass(frozen=True)
class Crs:
    """A CRS of a response or bbox: its URI, EPSG code, and whether its axes are lat/lon."""

    uri: str
    srid: int
    flip: bool = False  # EPSG:4326: latitude first

    @property
    def stored(self) -> bool:
        """Whether coordinates need no reprojection (CRS84 or EPSG:4326)."""
        return self.srid == 4326


CRS84_CRS = Crs(CRS84, 4326)


def supported(srid: int) -> bool:
    """Whether responses may be reprojected to EPSG:``srid``."""
    return srid in _FIXED or 32601 <= srid <= 32660 or 32701 <= srid <= 32760


def parse_crs(value: str | None, name: str = "crs") -> Crs:
    """The CRS a ``crs`` or ``bbox-crs`` parameter names (CRS84 when absent)."""
    if value is None or not value.strip():
        return CRS84_CRS
    text = value.strip()
    if text in _CRS84_NAMES:
        return CRS84_CRS
    match = _EPSG.fullmatch(text)
    if match is None or not supported(int(match["code"])):
        raise UnsupportedCrs(
            f"{name} {value!r} is not supported: use CRS84, EPSG:4326, EPSG:3857, EPSG:2154 or a "
            f"WGS 84 UTM zone (EPSG:326xx/327xx), as {EPSG_URI}<code>",
            parameter=name,
        )
    srid = int(match["code"])
    return Crs(EPSG_URI + str(srid), srid, flip=srid == 4326)


@cache
def area_of_use(srid: int) -> tuple[float, float, float, float]:
    """The bounds of EPSG:``srid``'s area of use, in its own coordinates (x/y order)."""
    crs = pyproj.CRS.from_epsg(srid)
    area = crs.area_of_use
    west, south, east, north = area.bounds if area else (-180.0, -90.0, 180.0, 90.0)
    to_crs = pyproj.Transformer.from_crs(4326, crs, always_xy=True)
    bounds: tuple[float, float, float, float] = to_crs.transform_bounds(
        west, south, east, north, densify_pts=21
    )
    return bounds


def clamp_bbox(bbox: list[float], srid: int) -> list[float] | None:
    """A projected 2D bbox cut to EPSG:``srid``'s area of use (PostGIS cannot reproject
    coordinates far outside it); None when they do not meet."""
    x0, y0, x1, y1 = area_of_use(srid)
    west, south, east, north = bbox
    cut = [max(west, x0), max(south, y0), min(east, x1), min(north, y1)]
    return cut if cut[0] <= cut[2] and cut[1] <= cut[3] else None


def utm_zones(bbox: tuple[float, float, float, float] | None) -> list[int]:
    """The EPSG codes of the WGS 84 UTM zones ``bbox`` (CRS84) touches, if at most a few."""
    if bbox is None:
        return []
    west, south, east, north = bbox
    first = min(60, max(1, math.floor((west + 180) / 6) + 1))
    last = min(60, max(1, math.floor((east + 180) / 6) + 1))
    if west > east or last - first + 1 > LISTED_UTM_ZONES:
        return []
    zones = range(first, last + 1)
    codes = [32600 + z for z in zones] if north >= 0 else []
    return codes + ([32700 + z for z in zones] if south < 0 else [])


def crs_list(bbox: tuple[float, float, float, float] | None) -> list[str]:
    """The ``crs`` member of a collection document (Part 2)."""
    return [CRS84, *(EPSG_URI + str(c) for c in (4326, 3857, *utm_zones(bbox)))]


DENSIFY = 64  # segments across a projected literal's extent, at least


@cache
def _to_lonlat(srid: int) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(srid, 4326, always_xy=True)


def _reprojected(shape: shapely.Geometry, srid: int) -> dict[str, Any]:
    west, south, east, north = shape.bounds
    step = max(east - west, north - south) / DENSIFY
    if step > 0:
        shape = shapely.segmentize(shape, step)
    to_lonlat = _to_lonlat(srid)

    def lonlat(xy: numpy.ndarray) -> numpy.ndarray:
        lon, lat = to_lonlat.transform(xy[:, 0], xy[:, 1])
        return numpy.column_stack([lon, lat])

    moved = shapely.transform(shape, lonlat)
    if not numpy.isfinite(shapely.get_coordinates(moved)).all():
        raise InvalidFilter(f"a geometry of the filter lies outside EPSG:{srid}'s area of use")
    mapped: dict[str, Any] = shapely.geometry.mapping(moved)
    return mapped


def _literal(node: dict[str, Any], crs: Crs) -> dict[str, Any]:
    """One geometry or bbox literal, from ``crs`` to CRS84."""
    if "bbox" in node:
        box = node["bbox"]
        if not isinstance(box, list) or len(box) not in (4, 6):
            return node  # the compiler says what is wrong
        x0, y0, x1, y1 = (box[0], box[1], box[3], box[4]) if len(box) == 6 else box
        if crs.flip:
            return {**node, "bbox": [y0, x0, y1, x1]}
        try:
            return _reprojected(shapely.box(x0, y0, x1, y1), crs.srid)
        except (TypeError, ValueError) as exc:
            raise InvalidFilter(f"invalid bbox literal {box!r}: {exc}") from None
    try:
        shape = shapely.geometry.shape(node)
    except Exception as exc:  # shapely says what is wrong with the GeoJSON
        raise InvalidFilter(f"invalid spatial literal: {exc}") from None
    if crs.flip:
        swapped: dict[str, Any] = shapely.geometry.mapping(
            shapely.transform(shape, lambda xy: xy[:, ::-1])
        )
        return swapped
    return _reprojected(shape, crs.srid)


def filter_in_crs84(expr: Any, crs: Crs) -> Any:
    """CQL2-JSON ``expr`` with its geometry literals, given in ``crs``, in CRS84 (Part 3
    ``filter-crs``; EPSG:4326 literals are latitude first)."""
    if crs.stored and not crs.flip:
        return expr
    if isinstance(expr, list):
        return [filter_in_crs84(item, crs) for item in expr]
    if not isinstance(expr, dict):
        return expr
    if "bbox" in expr or expr.get("type") in GEOMETRY_TYPES:
        return _literal(expr, crs)
    return {key: filter_in_crs84(value, crs) for key, value in expr.items()}


def parse_filter_crs(value: str | None) -> Crs:
    """The CRS a ``filter-crs`` parameter names (CRS84 when absent); an unsupported one is the
    ``search.InvalidFilter`` that filter-crs always answered."""
    try:
        return parse_crs(value, "filter-crs")
    except UnsupportedCrs as exc:
        raise InvalidFilter(exc.description) from None


__all__ = [
    "CRS84", "Crs", "UnsupportedCrs", "area_of_use", "clamp_bbox", "crs_list", "filter_in_crs84",
    "parse_crs", "parse_filter_crs", "supported", "utm_zones",
]  # fmt: skip
