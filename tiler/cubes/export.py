"""Exports of a datacube layer (MBTiles, PMTiles): the plan of the export's child, and its
tile renderer, drawing each tile as the collection tile endpoint does (``render_cube_tile``).

The child process has no database: the plan carries the cube's row as JSON, and the layers,
``datetime``, ``datetime_match`` and ``temporal_aggregation`` inputs, resolved when the job is
prepared (their 400s fail it there) and again in the child.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

import morecantile
import numpy
import shapely
from rio_tiler.colormap import cmap as default_cmap
from titiler.core.resources.enums import ImageType

from catalog.cubes.model import Cube, CubeLayer, CubeOverview

from ..encoders import render
from ..mosaic import zoom_range
from ..readers.shared import ReaderResources
from .extent import cube_coverage
from .layers import resolve_layers
from .params import cube_opener
from .reader import CubeTileRequest, OutsideCube
from .render import DATA_FORMATS
from .times import select_times

WEB_MERCATOR = "WebMercatorQuad"


def cube_json(cube: Cube) -> dict[str, Any]:
    """The cube's row as JSON (a plan's; the shape of cube-ingest's job result)."""
    doc = asdict(cube)
    doc["times"] = [t.isoformat() for t in cube.times]
    return doc


def cube_from_json(doc: Mapping[str, Any]) -> Cube:
    """The cube of ``cube_json`` (or of an ingest job's result)."""
    return Cube(
        **{**doc, "transform": tuple(doc["transform"]),
           "layers": tuple(CubeLayer(**layer) for layer in doc["layers"]),
           "times": tuple(datetime.fromisoformat(t) for t in doc["times"]),
           "overviews": tuple(CubeOverview(**o) for o in doc["overviews"])},
    )  # fmt: skip


def cube_request(plan: Mapping[str, Any], resources: ReaderResources) -> CubeTileRequest:
    """The tile request a cube plan stands for (400s for bad layers or times)."""
    cube = cube_from_json(plan["cube"])
    layers = [plan["layers"]] if plan.get("layers") else None
    times = select_times(cube, plan.get("datetime"), plan.get("datetime_match"),
                         plan.get("temporal_aggregation"))  # fmt: skip
    return CubeTileRequest(cube, resolve_layers(cube, layers), times, cube_opener(resources))


def cube_plan(
    cube: Cube, request: Any, png_level: int, resources: ReaderResources
) -> dict[str, Any]:
    """A JSON plan rendering the cube layer of ``request`` (checked now, to fail early)."""
    plan = {
        "kind": "cube",
        "cube": cube_json(cube),
        "layers": request.layers,
        "datetime": request.datetime,
        "datetime_match": request.datetime_match,
        "temporal_aggregation": request.temporal_aggregation,
        "rescale": request.rescale,
        "colormap_name": request.colormap_name,
        "color_formula": request.color_formula,
        "format": request.format,
        "encode": {"png_level": png_level, "quality": request.quality},
        "tile_size": request.tile_size,
    }
    cube_request(plan, resources)
    return plan


def cube_extent(cube: Cube, tile_size: int) -> tuple[shapely.Geometry, int]:
    """The cube's lon/lat footprint and the native zoom of its tiles."""
    coverage = cube_coverage(cube)
    maxzoom = zoom_range(morecantile.tms.get(WEB_MERCATOR), coverage)[1]
    bounds = coverage.bounds or (-180.0, -90.0, 180.0, 90.0)
    return shapely.box(*bounds), max(0, maxzoom - 1) if tile_size == 512 else maxzoom


def cube_renderer(
    plan: Mapping[str, Any], resources: ReaderResources
) -> Callable[[int, int, int], bytes | None]:
    """The export's tile renderer: a tile's bytes, None where the cube has no pixel."""
    request = cube_request(plan, resources)
    tms = morecantile.tms.get(WEB_MERCATOR)
    fmt = ImageType(plan["format"])
    rendering: dict[str, Any] = {**plan["encode"]}
    if plan.get("color_formula"):
        rendering["color_formula"] = plan["color_formula"]
    rescale = plan.get("rescale")
    if rescale:
        rendering["rescale"] = [tuple(float(v) for v in r.split(",")) for r in rescale]
    elif request.plan.rescale and fmt not in DATA_FORMATS:
        rendering["rescale"] = list(request.plan.rescale)
    colormap = default_cmap.get(plan["colormap_name"]) if plan.get("colormap_name") else None
    if colormap is None and fmt not in DATA_FORMATS:
        colormap = request.plan.colormap

    def render_tile(z: int, x: int, y: int) -> bytes | None:
        try:
            image = request.tile(tms, x, y, z, tilesize=plan["tile_size"])
        except OutsideCube:
            return None
        if numpy.ma.getmaskarray(image.array).all():
            return None
        content, _ = render(image, output_format=fmt, colormap=colormap, **rendering)
        return content

    return render_tile
