"""WebMercatorQuad tile sets of an export: counting, and walking them in PMTiles tile-id order.

A tile is in an export when its interior meets the export's region (the data's footprints
within the requested bbox), so tiles that merely touch the region along an edge are not. The
walk goes zoom by zoom in Hilbert (PMTiles tile id) order, which clusters a PMTiles archive
and keeps neighbouring tiles together for the readers' block caches. It holds at most one block
of ``4**BLOCK_LEVELS`` candidate tiles in memory, whatever the extent, and skips a whole block
when its ancestor tile misses the region.
"""

import math
from collections.abc import Iterator, Sequence

import numpy as np
import shapely
from numpy.typing import NDArray

MAX_LAT = 85.0511287798066  # the WebMercatorQuad's edge
EPSILON = 1e-11  # as morecantile's: a bbox equal to a tile's bounds gives that tile only
BLOCK_LEVELS = 6  # candidate tiles are tested 4**6 = 4,096 at a time

Bounds = tuple[float, float, float, float]
TileRange = tuple[int, int, int, int]  # xmin, ymin, xmax, ymax (inclusive)


def clamp_bounds(bounds: Sequence[float]) -> Bounds:
    """A west, south, east, north bbox limited to the WebMercatorQuad's extent."""
    west, south, east, north = (float(v) for v in bounds[:4])
    return (max(west, -180.0), max(south, -MAX_LAT), min(east, 180.0), min(north, MAX_LAT))


def tile_range(bounds: Bounds, z: int) -> TileRange | None:
    """The columns and rows of zoom ``z`` whose tiles meet ``bounds`` (None if empty)."""
    west, south, east, north = clamp_bounds(bounds)
    if not (west < east and south < north):
        return None
    n = 1 << z

    def column(lon: float) -> int:
        return min(n - 1, max(0, math.floor((lon + 180.0) / 360.0 * n)))

    def row(lat: float) -> int:
        y = (1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0
        return min(n - 1, max(0, math.floor(y * n)))

    return (column(west + EPSILON), row(north - EPSILON),
            column(east - EPSILON), row(south + EPSILON))  # fmt: skip


def count_tiles(bounds: Bounds, minzoom: int, maxzoom: int) -> int:
    """How many tiles of zooms ``minzoom``..``maxzoom`` meet ``bounds``."""
    total = 0
    for z in range(minzoom, maxzoom + 1):
        found = tile_range(bounds, z)
        if found is not None:
            total += (found[2] - found[0] + 1) * (found[3] - found[1] + 1)
    return total


def tile_ids(z: int, x: NDArray[np.int64], y: NDArray[np.int64]) -> NDArray[np.int64]:
    """PMTiles v3 tile ids (zoom base + Hilbert index), vectorized ``zxy_to_tileid``."""
    x, y = x.astype(np.int64).copy(), y.astype(np.int64).copy()
    acc = np.full(x.shape, ((1 << (2 * z)) - 1) // 3, dtype=np.int64)
    for a in range(z - 1, -1, -1):
        s = 1 << a
        rx, ry = x & s, y & s
        acc += ((3 * rx) ^ ry) << a
        flip = (ry == 0) & (rx != 0)
        x = np.where(flip, s - 1 - x, x)
        y = np.where(flip, s - 1 - y, y)
        swap = ry == 0
        x, y = np.where(swap, y, x), np.where(swap, x, y)
    return acc


def tile_boxes(z: int, x: NDArray[np.int64], y: NDArray[np.int64]) -> NDArray[np.object_]:
    """The lon/lat rectangles of tiles (WebMercatorQuad tiles are rectangles in lon/lat too)."""
    n = float(1 << z)

    def lat(row: NDArray[np.int64]) -> NDArray[np.float64]:
        return np.degrees(np.arctan(np.sinh(np.pi * (1.0 - 2.0 * row / n))))

    west, east = x / n * 360.0 - 180.0, (x + 1) / n * 360.0 - 180.0
    boxes: NDArray[np.object_] = shapely.box(west, lat(y + 1), east, lat(y))
    return boxes


def _inside(region: shapely.Geometry, boxes: NDArray[np.object_]) -> NDArray[np.bool_]:
    """Tiles whose interior meets the region's (touching along an edge is not enough)."""
    inside: NDArray[np.bool_] = shapely.intersects(region, boxes) & ~shapely.touches(region, boxes)
    return inside


def _ordered_block(
    region: shapely.Geometry, z: int, found: TileRange
) -> Iterator[tuple[int, int, int]]:
    grid = np.meshgrid(
        np.arange(found[0], found[2] + 1, dtype=np.int64),
        np.arange(found[1], found[3] + 1, dtype=np.int64),
    )
    xs, ys = grid[0].ravel(), grid[1].ravel()
    keep = _inside(region, tile_boxes(z, xs, ys))
    xs, ys = xs[keep], ys[keep]
    order = np.argsort(tile_ids(z, xs, ys), kind="stable")
    for i in order:
        yield z, int(xs[i]), int(ys[i])


def _walk(region: shapely.Geometry, z: int, found: TileRange) -> Iterator[tuple[int, int, int]]:
    """Tiles of zoom ``z`` in ``found`` that meet ``region``, in tile-id order."""
    if (found[2] - found[0] + 1) * (found[3] - found[1] + 1) <= 4**BLOCK_LEVELS:
        yield from _ordered_block(region, z, found)
        return
    # A Hilbert curve visits every descendant of a tile before leaving it: walk ancestors
    # BLOCK_LEVELS up in order, then each one's descendants in the range.
    k = BLOCK_LEVELS
    parents = (found[0] >> k, found[1] >> k, found[2] >> k, found[3] >> k)
    for _, px, py in _walk(region, z - k, parents):
        block = (
            max(found[0], px << k),
            max(found[1], py << k),
            min(found[2], ((px + 1) << k) - 1),
            min(found[3], ((py + 1) << k) - 1),
        )
        yield from _ordered_block(region, z, block)


def iter_tiles(
    region: shapely.Geometry, minzoom: int, maxzoom: int
) -> Iterator[tuple[int, int, int]]:
    """(z, x, y) of each tile meeting ``region`` (lon/lat), zoom by zoom in tile-id order."""
    shapely.prepare(region)
    for z in range(minzoom, maxzoom + 1):
        found = tile_range(region.bounds, z)
        if found is not None:
            yield from _walk(region, z, found)
