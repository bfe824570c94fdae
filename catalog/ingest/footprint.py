"""Where a raster has data: its valid-pixel outline as GeoJSON in EPSG:4326.

The dataset mask (nodata, alpha or internal mask) is read at a decimated resolution,
vectorized and simplified in the raster's own CRS, densified, then projected. Outlines that
cross the antimeridian are split there and outlines around a pole are closed over it, by the
``antimeridian`` package, so that the result reads correctly as RFC 7946 GeoJSON.
"""

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import antimeridian
import numpy as np
import shapely
import shapely.geometry
from affine import Affine
from pyproj import CRS, Transformer
from pyproj.exceptions import ProjError
from rasterio.features import shapes

from .errors import EmptyRaster, NotGeoreferenced
from .validate import gdal_env, open_local

PRECISION = 7  # decimal places of degrees: about 1 cm
SEGMENTS_PER_SIDE = 16  # densification: edge pieces along the longer side of the raster


def footprint(path: Path, max_size: int = 1024) -> dict[str, Any]:
    """GeoJSON Polygon or MultiPolygon (EPSG:4326) around the valid pixels of a raster."""
    with gdal_env(), open_local(path) as src:
        scale = max(1.0, max(src.width, src.height) / max_size)
        shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        valid = src.dataset_mask(out_shape=shape) > 0
        transform = src.transform @ Affine.scale(src.width / shape[1], src.height / shape[0])
        crs = CRS.from_wkt(src.crs.to_wkt())
    if not valid.any():
        raise EmptyRaster("the raster has no valid pixel: every one is nodata or masked")
    outline = _outline(valid, transform)
    pixel = max(math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e))
    outline = _drop_small_holes(outline.simplify(pixel, preserve_topology=True), 4 * pixel**2)
    rows, cols = valid.shape
    side = max(cols * math.hypot(transform.a, transform.d), rows * pixel)
    outline = shapely.segmentize(outline, side / SEGMENTS_PER_SIDE)
    # After projecting, the densified edges keep only the points that bend them by more than
    # a quarter of a decimated pixel (in degrees of latitude: conservative in longitude).
    metres = 1.0 if crs.is_geographic else crs.axis_info[0].unit_conversion_factor
    tolerance = pixel * (1.0 if crs.is_geographic else metres / 111_320.0) / 4
    return _geojson(_to_lonlat(outline, crs, tolerance))


def grid_footprint(transform: Affine, width: int, height: int, crs: CRS) -> dict[str, Any]:
    """GeoJSON Polygon or MultiPolygon (EPSG:4326) around a whole grid (a datacube's, whose
    slices all cover it): its outline densified, then projected as ``footprint`` does."""
    outline = _outline(np.ones((1, 1), dtype=bool), transform @ Affine.scale(width, height))
    side = max(width * math.hypot(transform.a, transform.d),
               height * math.hypot(transform.b, transform.e))  # fmt: skip
    outline = shapely.segmentize(outline, side / SEGMENTS_PER_SIDE)
    pixel = max(math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e))
    metres = 1.0 if crs.is_geographic else crs.axis_info[0].unit_conversion_factor
    tolerance = pixel * (1.0 if crs.is_geographic else metres / 111_320.0) / 4
    return _geojson(_to_lonlat(outline, crs, tolerance))


def geometry_bbox(geometry: Mapping[str, Any] | shapely.Geometry) -> list[float]:
    """[west, south, east, north] of a footprint; west > east when it crosses the antimeridian."""
    shape = geometry if isinstance(geometry, shapely.Geometry) else shapely.geometry.shape(geometry)
    return [round(float(v), PRECISION) for v in antimeridian.bbox(shape)]


def _outline(valid: np.ndarray, transform: Affine) -> shapely.Geometry:
    if valid.all():
        rows, cols = valid.shape
        corners = [transform @ xy for xy in ((0, 0), (cols, 0), (cols, rows), (0, rows))]
        return shapely.Polygon(corners)
    pieces = [
        shapely.geometry.shape(geometry)
        for geometry, _ in shapes(valid.astype("uint8"), mask=valid, transform=transform)
    ]
    return shapely.union_all(pieces)


def _drop_small_holes(shape: shapely.Geometry, min_area: float) -> shapely.Geometry:
    """Holes of a few pixels (scattered nodata) only make the footprint heavy."""
    polygons = [
        shapely.Polygon(p.exterior, [r for r in p.interiors if shapely.Polygon(r).area >= min_area])
        for p in getattr(shape, "geoms", [shape])
        if isinstance(p, shapely.Polygon) and not p.is_empty
    ]
    return polygons[0] if len(polygons) == 1 else shapely.MultiPolygon(polygons)


def _to_lonlat(shape: shapely.Geometry, crs: CRS, tolerance: float = 0.0) -> shapely.Geometry:
    """Project ring by ring: each exterior and each hole becomes a lon/lat polygon of its own
    (split at the antimeridian, closed over a pole it surrounds), holes are then subtracted.
    ``antimeridian`` fixes single rings reliably, not a hole around a pole inside a ring."""
    forward = Transformer.from_crs(crs, 4326, always_xy=True)
    backward = Transformer.from_crs(4326, crs, always_xy=True)
    poles: list[tuple[str, shapely.Point]] = []
    for name, latitude in (("north", 90.0), ("south", -90.0)):
        x, y = backward.transform(0.0, latitude, errcheck=False)
        if math.isfinite(x) and math.isfinite(y):
            poles.append((name, shapely.Point(x, y)))

    def project(coords: np.ndarray) -> np.ndarray:
        try:
            lon, lat = forward.transform(coords[:, 0], coords[:, 1], errcheck=True)
        except ProjError as exc:
            raise NotGeoreferenced(
                f"the raster reaches beyond where its CRS is defined: {exc}"
            ) from exc
        return np.column_stack([lon, lat])

    def ring(coords: Any) -> shapely.Geometry:
        polygon = shapely.geometry.polygon.orient(shapely.Polygon(coords), 1.0)
        around = {name for name, pole in poles if polygon.contains(pole)}
        return antimeridian.fix_polygon(
            shapely.transform(polygon, project),
            force_north_pole="north" in around,
            force_south_pole="south" in around,
            fix_winding=True,
            great_circle=False,
        )

    parts = []
    for polygon in shapely.get_parts(shape):
        lonlat = ring(polygon.exterior)
        if polygon.interiors:
            lonlat = lonlat.difference(shapely.union_all([ring(r) for r in polygon.interiors]))
        parts.append(lonlat)
    result = shapely.union_all(parts)
    if tolerance > 0:
        result = result.simplify(tolerance, preserve_topology=True)
    result = shapely.transform(result, lambda c: np.round(c, PRECISION))
    if not result.is_valid:
        result = shapely.make_valid(result)
    return result


def _geojson(shape: shapely.Geometry) -> dict[str, Any]:
    def polygon(p: shapely.Polygon) -> list[list[list[float]]]:
        # A ring closed over a pole runs along the pole at +-180: keep its longitude steps
        # below 180 degrees so that no reader takes it for an antimeridian crossing.
        rings = [shapely.segmentize(shapely.LinearRing(p.exterior), 90.0)]
        rings += [shapely.LinearRing(r) for r in p.interiors]
        return [[[float(x), float(y)] for x, y in ring.coords] for ring in rings]

    if shape.geom_type == "Polygon":
        return {"type": "Polygon", "coordinates": polygon(shape)}
    polygons = [
        g
        for part in shapely.get_parts(shape)
        for g in shapely.get_parts(part)
        if g.geom_type == "Polygon" and not g.is_empty
    ]
    if not polygons:
        raise EmptyRaster("the raster's valid area has no surface")
    if len(polygons) == 1:
        return {"type": "Polygon", "coordinates": polygon(polygons[0])}
    return {"type": "MultiPolygon", "coordinates": [polygon(p) for p in polygons]}
