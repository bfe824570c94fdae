"""Features drawn into an RGBA image with a style's colours (rasterio's rasterize, GDAL's).

``paint_of`` reads what a MapLibre style says of one source: fill colour and opacity, outline
and line colours and widths, circle colour, radius and stroke. Colours may be data-driven
(ogc/expressions.py: ``match``, ``case``, ``interpolate``... as ``color_by`` makes them), and are
then worked out per feature from the properties ``Paint.properties`` names; an expression the
evaluator does not know draws the collection's own colour. Widths and opacities are plain
numbers (else their defaults). ``draw`` burns polygons, their outlines, lines and circles, in
that order, over a transparent (or given) image, each blended over what is below.
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy
import shapely
from rasterio.features import rasterize
from rasterio.transform import from_bounds

from .expressions import Unsupported, evaluate, names

RGB = tuple[int, int, int]
Colour = tuple[RGB, float]
# A colour, or how a feature's properties give one; None: not drawn.
Spec = Colour | Callable[[dict[str, Any]], Colour] | None
Feature = tuple[shapely.Geometry, dict[str, Any]]
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
    """How features are drawn (colours as RGB with an opacity, or per feature; None: not
    drawn); ``properties``: those the colours read."""

    fill: Spec = None
    outline: Spec = None
    outline_width: float = 1.0
    line: Spec = None
    line_width: float = 2.0
    circle: Spec = None
    radius: float = 4.0
    stroke: Spec = None
    stroke_width: float = 1.0
    properties: frozenset[str] = field(default_factory=frozenset)


def blend(a: Any, b: Any, t: float) -> str:
    """Two colours of an ``interpolate`` mixed at ``t`` (as an ``rgba()`` colour)."""
    first, second = colour(a), colour(b)
    if first is None or second is None:
        raise Unsupported("interpolate between values that are not colours")
    (r0, g0, b0), a0 = first
    (r1, g1, b1), a1 = second
    mixed = [x0 + (x1 - x0) * t for x0, x1 in ((r0, r1), (g0, g1), (b0, b1), (a0, a1))]
    return f"rgba({mixed[0]},{mixed[1]},{mixed[2]},{mixed[3]})"


def spec(value: Any, default: Colour, opacity: float = 1.0) -> Spec:
    """The colour ``value`` of a style (plain or an expression) times ``opacity``."""
    if isinstance(value, list):

        def per_feature(props: dict[str, Any]) -> Colour:
            try:
                found = colour(evaluate(value, props, blend))
            except (Unsupported, TypeError, ValueError, IndexError, KeyError):
                found = None
            rgb, alpha = found or default
            return rgb, alpha * opacity

        return per_feature
    rgb, alpha = colour(value) or default
    return rgb, alpha * opacity


def paint_of(style: dict[str, Any], source: str, fallback: str) -> Paint:
    """The paint of ``source``'s layers in ``style`` (``fallback`` for colours not given)."""
    default = colour(fallback) or ((136, 136, 136), 1.0)
    found: dict[str, Any] = {}
    read: set[str] = set()
    for layer in style.get("layers", []):
        hidden = (layer.get("layout") or {}).get("visibility") == "none"
        if layer.get("source") != source or hidden:
            continue
        paint = layer.get("paint") or {}
        kind = layer.get("type")
        for key in ("fill-color", "line-color", "circle-color", "circle-stroke-color"):
            read |= names(paint.get(key))
        if kind == "fill" and "fill" not in found:
            opacity = _number(paint.get("fill-opacity"), 1.0)
            found["fill"] = spec(paint.get("fill-color", fallback), default, opacity)
        elif kind == "line":
            opacity = _number(paint.get("line-opacity"), 1.0)
            # Next to a fill (the same filter), a line layer is the polygons' outline.
            key = "outline" if "fill" in found and "outline" not in found else "line"
            found.setdefault(key, spec(paint.get("line-color", fallback), default, opacity))
            found.setdefault(key + "_width", _number(paint.get("line-width"), 1.0))
        elif kind == "circle" and "circle" not in found:
            opacity = _number(paint.get("circle-opacity"), 1.0)
            found["circle"] = spec(paint.get("circle-color", fallback), default, opacity)
            found["radius"] = _number(paint.get("circle-radius"), 5.0)
            if _number(paint.get("circle-stroke-width"), 0.0) > 0:
                stroke = paint.get("circle-stroke-color", "#000000")
                found["stroke"] = spec(stroke, ((0, 0, 0), 1.0))
                found["stroke_width"] = _number(paint.get("circle-stroke-width"), 0.0)
    if not found:  # a style that does not draw this source: draw it plainly
        found = {"fill": (default[0], 0.5), "outline": default, "line": default,
                 "circle": default}  # fmt: skip
    return Paint(**found, properties=frozenset(read))


def _burn_each(
    image: numpy.ndarray,
    features: Sequence[Feature],
    paint: Spec,
    transform: Any,
    all_touched: bool = False,
) -> None:
    """``_burn`` with a colour per feature (features of one colour burnt together)."""
    if paint is None or not features:
        return
    if not callable(paint):
        _burn(image, [shape for shape, _ in features], paint, transform, all_touched)
        return
    groups: dict[Colour, list[shapely.Geometry]] = {}
    for shape, props in features:
        groups.setdefault(paint(props), []).append(shape)
    for found, shapes in groups.items():
        _burn(image, shapes, found, transform, all_touched)


def _burn(
    image: numpy.ndarray,
    shapes: Sequence[shapely.Geometry],
    paint: Colour | None,
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
    features: Sequence[Feature],
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    paint: Paint,
    image: numpy.ndarray | None = None,
) -> numpy.ndarray:
    """``features`` (geometries in ``box``'s CRS, with their properties) drawn over ``image``
    (H x W x 4 float, RGB 0-255 and alpha 0-1; transparent when None) of ``size`` pixels."""
    width, height = size
    if image is None:
        image = numpy.zeros((height, width, 4), "float64")
    transform = from_bounds(*box, width, height)
    pixel = (box[2] - box[0]) / width
    polygons: list[Feature] = []
    lines: list[Feature] = []
    points: list[Feature] = []
    for geom, props in features:
        for part in shapely.get_parts(geom):
            inside = shapely.get_parts(part) if part.geom_type == "GeometryCollection" else [part]
            for leaf in inside:
                if leaf.is_empty:
                    continue
                if leaf.geom_type == "Polygon":
                    polygons.append((leaf, props))
                elif leaf.geom_type in ("LineString", "LinearRing"):
                    lines.append((leaf, props))
                elif leaf.geom_type == "Point":
                    points.append((leaf, props))
    _burn_each(image, polygons, paint.fill, transform)
    outlines = [(polygon.boundary, props) for polygon, props in polygons]
    _stroke(image, outlines, paint.outline, paint.outline_width, pixel, transform)
    _stroke(image, lines, paint.line, paint.line_width, pixel, transform)
    if paint.stroke is not None:
        ring = (paint.radius + paint.stroke_width) * pixel
        _burn_each(image, [(p.buffer(ring, 8), props) for p, props in points], paint.stroke,
                   transform)  # fmt: skip
    disc = max(paint.radius, 0.5) * pixel
    _burn_each(image, [(p.buffer(disc, 8), props) for p, props in points], paint.circle,
               transform, all_touched=paint.radius < 1.5)  # fmt: skip
    return image


def _stroke(
    image: numpy.ndarray,
    lines: Sequence[Feature],
    paint: Spec,
    width: float,
    pixel: float,
    transform: Any,
) -> None:
    """Lines ``width`` pixels wide (one-pixel lines burn every pixel they touch)."""
    if width <= 1.5:
        _burn_each(image, lines, paint, transform, all_touched=True)
    else:
        wide = [(line.buffer(width * pixel / 2, 4), props) for line, props in lines]
        _burn_each(image, wide, paint, transform)


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


__all__ = ["Paint", "blend", "colour", "draw", "from_bytes", "paint_of", "to_bytes"]
