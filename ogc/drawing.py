"""Features drawn into an RGBA image with a style's colours (rasterio's rasterize, GDAL's).

``paint_of`` reads what a MapLibre style says of one source: fill colour and opacity, outline
and line colours and widths, circle colour, radius and stroke, where they are plain values
(an expression, as ``color_by`` makes, falls back to the collection's own colour: the image
shows where features are, the tiles and style show their classes). ``draw`` burns polygons,
their outlines, lines and circles, in that order, over a transparent (or given) image, each
layer blended over what is below with its opacity.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy
import shapely
from rasterio.features import rasterize
from rasterio.transform import from_bounds

RGB = tuple[int, int, int]
_HEX = re.compile(r"#([0-9a-fA-F]{3,8})")
_RGBA = re.compile(r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(?:,\s*([\d.]+)\s*)?\)")


def colour(value: Any) -> tuple[RGB, float] | None:
    """A CSS colour (``#rgb``, ``#rrggbb``, ``#rrggbbaa``, ``rgb()``, ``rgba()``) and its alpha;
    None for anything else (names, expressions)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if (found := _HEX.fullmatch(text)) is not None:
        digits = found.group(1)
        if len(digits) in (3, 4):
            digits = "".join(d * 2 for d in digits)
        if len(digits) not in (6, 8):
            return None
        alpha = int(digits[6:8], 16) / 255 if len(digits) == 8 else 1.0
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)), alpha
    if (found := _RGBA.fullmatch(text)) is not None:
        r, g, b = (min(255, int(float(found.group(i)))) for i in (1, 2, 3))
        return (r, g, b), float(found.group(4)) if found.group(4) else 1.0
    return None


def _number(value: Any, default: float) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
    )


@dataclass(frozen=True)
class Paint:
    """How features are drawn (colours as RGB with an opacity; None: not drawn)."""

    fill: tuple[RGB, float] | None = None
    outline: tuple[RGB, float] | None = None
    outline_width: float = 1.0
    line: tuple[RGB, float] | None = None
    line_width: float = 2.0
    circle: tuple[RGB, float] | None = None
    radius: float = 4.0
    stroke: tuple[RGB, float] | None = None
    stroke_width: float = 1.0


def paint_of(style: dict[str, Any], source: str, fallback: str) -> Paint:
    """The paint of ``source``'s layers in ``style`` (``fallback`` for colours not plain)."""
    default = colour(fallback) or ((136, 136, 136), 1.0)
    found: dict[str, Any] = {}
    for layer in style.get("layers", []):
        if layer.get("source") != source or (layer.get("layout") or {}).get("visibility") == (
            "none"
        ):
            continue
        paint = layer.get("paint") or {}
        kind = layer.get("type")
        if kind == "fill" and "fill" not in found:
            rgb = colour(paint.get("fill-color")) or default
            opacity = _number(paint.get("fill-opacity"), 1.0)
            found["fill"] = (rgb[0], rgb[1] * opacity)
        elif kind == "line":
            rgb = colour(paint.get("line-color")) or default
            rgb = (rgb[0], rgb[1] * _number(paint.get("line-opacity"), 1.0))
            width = _number(paint.get("line-width"), 1.0)
            # Next to a fill (the same filter), a line layer is the polygons' outline.
            key = "outline" if "fill" in found and "outline" not in found else "line"
            found.setdefault(key, rgb)
            found.setdefault(key + "_width", width)
        elif kind == "circle" and "circle" not in found:
            rgb = colour(paint.get("circle-color")) or default
            found["circle"] = (rgb[0], rgb[1] * _number(paint.get("circle-opacity"), 1.0))
            found["radius"] = _number(paint.get("circle-radius"), 5.0)
            if _number(paint.get("circle-stroke-width"), 0.0) > 0:
                found["stroke"] = colour(paint.get("circle-stroke-color")) or ((0, 0, 0), 1.0)
                found["stroke_width"] = _number(paint.get("circle-stroke-width"), 0.0)
    if not found:  # a style that does not draw this source: draw it plainly
        found = {"fill": (default[0], 0.5), "outline": default, "line": default,
                 "circle": default}  # fmt: skip
    return Paint(**found)


def _burn(
    image: numpy.ndarray,
    shapes: Sequence[shapely.Geometry],
    paint: tuple[RGB, float] | None,
    transform: Any,
    all_touched: bool = False,
) -> None:
    """Blend ``paint`` over ``image`` (H x W x 4 float, straight alpha) where ``shapes`` are."""
    if paint is None or not shapes or paint[1] <= 0:
        return
    height, width = image.shape[:2]
    mask = rasterize(((shape, 1) for shape in shapes), out_shape=(height, width),
                     transform=transform, fill=0, all_touched=all_touched,
                     dtype="uint8").astype(bool)  # fmt: skip
    if not mask.any():
        return
    (r, g, b), alpha = paint
    below = image[mask]
    out_alpha = alpha + below[:, 3] * (1 - alpha)
    for band, value in enumerate((r, g, b)):
        mixed = value * alpha + below[:, band] * below[:, 3] * (1 - alpha)
        below[:, band] = numpy.divide(mixed, out_alpha, out=numpy.zeros_like(mixed),
                                      where=out_alpha > 0)  # fmt: skip
    below[:, 3] = out_alpha
    image[mask] = below


def draw(
    geometries: Sequence[shapely.Geometry],
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    paint: Paint,
    image: numpy.ndarray | None = None,
) -> numpy.ndarray:
    """``geometries`` (in ``box``'s CRS) drawn over ``image`` (H x W x 4 float, RGB 0-255 and
    alpha 0-1; transparent when None) of ``size`` (width, height) pixels."""
    width, height = size
    if image is None:
        image = numpy.zeros((height, width, 4), "float64")
    transform = from_bounds(*box, width, height)
    pixel = (box[2] - box[0]) / width
    polygons, lines, points = [], [], []
    for geom in geometries:
        for part in shapely.get_parts(geom):
            kind = part.geom_type
            if kind == "GeometryCollection":
                geometries_inside = shapely.get_parts(part)
            else:
                geometries_inside = [part]
            for leaf in geometries_inside:
                if leaf.is_empty:
                    continue
                if leaf.geom_type == "Polygon":
                    polygons.append(leaf)
                elif leaf.geom_type in ("LineString", "LinearRing"):
                    lines.append(leaf)
                elif leaf.geom_type == "Point":
                    points.append(leaf)
    _burn(image, polygons, paint.fill, transform)
    outlines = [polygon.boundary for polygon in polygons]
    _stroke(image, outlines, paint.outline, paint.outline_width, pixel, transform)
    _stroke(image, lines, paint.line, paint.line_width, pixel, transform)
    if paint.stroke is not None:
        rings = [p.buffer((paint.radius + paint.stroke_width) * pixel, 8) for p in points]
        _burn(image, rings, paint.stroke, transform)
    discs = [p.buffer(max(paint.radius, 0.5) * pixel, 8) for p in points]
    _burn(image, discs, paint.circle, transform, all_touched=paint.radius < 1.5)
    return image


def _stroke(
    image: numpy.ndarray,
    lines: Sequence[shapely.Geometry],
    paint: tuple[RGB, float] | None,
    width: float,
    pixel: float,
    transform: Any,
) -> None:
    """Lines ``width`` pixels wide (one-pixel lines burn every pixel they touch)."""
    if width <= 1.5:
        _burn(image, lines, paint, transform, all_touched=True)
    else:
        _burn(image, [line.buffer(width * pixel / 2, 4) for line in lines], paint, transform)


def to_bytes(image: numpy.ndarray) -> numpy.ndarray:
    """The float image as H x W x 4 uint8 RGBA."""
    out = numpy.empty(image.shape, "uint8")
    out[..., :3] = numpy.clip(numpy.rint(image[..., :3]), 0, 255)
    out[..., 3] = numpy.clip(numpy.rint(image[..., 3] * 255), 0, 255)
    return out


def from_bytes(pixels: numpy.ndarray) -> numpy.ndarray:
    """H x W x (1-4) uint8 (grey, grey+alpha, RGB, RGBA) as the float RGBA image ``draw`` takes."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    bands = pixels.shape[-1]
    image = numpy.zeros((*pixels.shape[:2], 4), "float64")
    colour_bands = pixels[..., :3] if bands >= 3 else numpy.repeat(pixels[..., :1], 3, axis=-1)
    image[..., :3] = colour_bands
    image[..., 3] = pixels[..., -1] / 255 if bands in (2, 4) else 1.0
    return image


__all__ = ["Paint", "colour", "draw", "from_bytes", "paint_of", "to_bytes"]
