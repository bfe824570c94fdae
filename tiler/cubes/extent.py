"""Where a datacube has data and how fine it is, as the mosaics' ``Coverage`` says it."""

from __future__ import annotations

import math

from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from catalog.cubes.model import Cube
from catalog.maps.mosaic import Coverage

METRES_PER_DEGREE = 2 * math.pi * 6_378_137 / 360


def cube_coverage(cube: Cube) -> Coverage:
    """Lon/lat bounds, pixel size (metres) and ground length of the longest side of ``cube``."""
    crs = CRS.from_user_input(cube.crs)
    west, south, east, north = transform_bounds(crs, "EPSG:4326", *cube.bounds, densify_pts=21)
    unit = METRES_PER_DEGREE if crs.is_geographic else float(crs.linear_units_factor[1])
    gsd = abs(cube.transform[1]) * unit
    return Coverage(
        (west, south, east, north), gsd, gsd * max(cube.width, cube.height), max(1, len(cube.times))
    )
