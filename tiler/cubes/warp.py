"""Nearest-neighbour warp of a window of a datacube onto (part of) a tile, in numpy.

Written by hand because ``rasterio.warp.reproject`` (GDAL's warper) costs about 1.6 ms a
call whatever the size, measured here: a MEM dataset around each array, a PROJ pipeline built
anew and rasterio's environment, for a destination of 2 pixels as of 15 000. That fixed cost
was most of what a datacube tile took over a COG tile (docs/benchmarks.md). This does what
GDAL does for nearest with its approximate transformer: the destination's pixel centres are
projected exactly on a lattice every ``step`` pixels and linearly in between, the lattice is
refined where the linear guess at a cell's centre is off by more than 0.125 source pixels
(GDAL's default error threshold), and each destination pixel takes the source pixel its
centre falls in. The pyproj transformer is made once per pair of CRSs.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy
from affine import Affine
from pyproj import Transformer

STEP = 16  # lattice spacing in destination pixels, as GDAL's approximate transformer starts
TOLERANCE = 0.125  # source pixels


@functools.lru_cache(maxsize=64)
def transformer(dst_crs: Any, src_crs: Any) -> Transformer:
    """From the destination's CRS to the source's (hashable: text pyproj reads, or a rasterio
    CRS), x/y order."""
    return Transformer.from_crs(dst_crs, src_crs, always_xy=True)


def _nodes(n: int, step: int) -> numpy.ndarray:
    """Lattice positions 0, step, 2 step... and the last pixel."""
    nodes = numpy.arange(0, n, step)
    return nodes if nodes[-1] == n - 1 else numpy.append(nodes, n - 1)


def _expand(values: numpy.ndarray, rows: numpy.ndarray, cols: numpy.ndarray,
            at_rows: numpy.ndarray, at_cols: numpy.ndarray) -> numpy.ndarray:  # fmt: skip
    """Bilinear interpolation of lattice ``values`` (at ``rows`` x ``cols``) at the lattice
    ``at_rows`` x ``at_cols``."""
    out = values
    for axis, nodes, at in ((1, cols, at_cols), (0, rows, at_rows)):
        if len(nodes) == 1:  # one pixel across
            lo = hi = numpy.zeros(len(at), dtype=numpy.intp)
            t = numpy.zeros(len(at))
        else:
            hi = numpy.clip(numpy.searchsorted(nodes, at, side="right"), 1, len(nodes) - 1)
            lo = hi - 1
            t = (at - nodes[lo]) / (nodes[hi] - nodes[lo])
        a, b = numpy.take(out, lo, axis=axis), numpy.take(out, hi, axis=axis)
        shape = (1, len(at)) if axis == 1 else (len(at), 1)
        out = a + (b - a) * t.reshape(shape)
    return out


def source_positions(
    dst_transform: Affine, height: int, width: int, to_source: Transformer, src_inverse: Affine
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Fractional (row, col) in the source of every destination pixel centre (NaN where the
    projection fails).

    The lattice every ``step`` pixels is checked against the exact positions on the lattice
    every ``step / 2`` (cell centres and edge midpoints); when they agree within the
    tolerance, the finer lattice is interpolated to every pixel, else the step shrinks, down
    to every pixel projected."""
    step = STEP
    every_r, every_c = numpy.arange(height), numpy.arange(width)
    while step > 1:
        rows, cols = _nodes(height, step), _nodes(width, step)
        sr, sc = _lattice(dst_transform, rows, cols, to_source, src_inverse)
        fine_r, fine_c = _nodes(height, step // 2), _nodes(width, step // 2)
        fr, fc = _lattice(dst_transform, fine_r, fine_c, to_source, src_inverse)
        with numpy.errstate(invalid="ignore"):
            error = numpy.maximum(
                numpy.abs(_expand(sr, rows, cols, fine_r, fine_c) - fr),
                numpy.abs(_expand(sc, rows, cols, fine_r, fine_c) - fc),
            )
        if bool(numpy.isfinite(error).all()) and float(error.max()) <= TOLERANCE:
            return (_expand(fr, fine_r, fine_c, every_r, every_c),
                    _expand(fc, fine_r, fine_c, every_r, every_c))  # fmt: skip
        step //= 4
    return _lattice(dst_transform, every_r, every_c, to_source, src_inverse)


def _lattice(
    dst_transform: Affine, rows: numpy.ndarray, cols: numpy.ndarray, to_source: Transformer,
    src_inverse: Affine,
) -> tuple[numpy.ndarray, numpy.ndarray]:  # fmt: skip
    """Exact source (row, col) of the destination pixel centres ``rows`` x ``cols``."""
    gx, gy = numpy.meshgrid(cols + 0.5, rows + 0.5)
    sc, sr = _to_source(dst_transform, gx, gy, to_source, src_inverse)
    return sr, sc


def _to_source(
    dst_transform: Affine, px: numpy.ndarray, py: numpy.ndarray, to_source: Transformer,
    src_inverse: Affine,
) -> tuple[numpy.ndarray, numpy.ndarray]:  # fmt: skip
    x, y = _apply(dst_transform, px, py)
    sx, sy = to_source.transform(x, y, errcheck=False)
    sx = numpy.where(numpy.isfinite(sx), sx, numpy.nan)
    sy = numpy.where(numpy.isfinite(sy), sy, numpy.nan)
    return _apply(src_inverse, sx, sy)


def _apply(t: Affine, x: numpy.ndarray, y: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray]:
    return t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f


def warp_nearest(
    source: numpy.ndarray, src_transform: Affine, src_crs: Any, destination: numpy.ndarray,
    dst_transform: Affine, dst_crs: Any,
) -> None:  # fmt: skip
    """Fill ``destination`` (bands, rows, cols) from ``source`` (bands, rows, cols), nearest;
    destination pixels whose centre falls outside the source are left as they are."""
    _, height, width = destination.shape
    _, src_h, src_w = source.shape
    to_source = transformer(dst_crs, src_crs)
    rows, cols = source_positions(dst_transform, height, width, to_source, ~src_transform)
    with numpy.errstate(invalid="ignore"):
        inside = (rows >= 0) & (rows < src_h) & (cols >= 0) & (cols < src_w)
    r = numpy.floor(rows[inside]).astype(numpy.intp)
    c = numpy.floor(cols[inside]).astype(numpy.intp)
    destination[:, inside] = source[:, r, c]
