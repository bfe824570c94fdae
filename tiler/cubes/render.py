"""A datacube tile as a response: read (in the route's worker thread), then encoded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from morecantile import TileMatrixSet
from starlette.responses import Response
from titiler.core.resources.enums import ImageType

from ..errors import ImageTooLarge
from .reader import CubeTileRequest, OutsideCube

DATA_FORMATS = frozenset({ImageType.npy, ImageType.tif})  # the values, not a picture
MAX_TILESIZE = 4096


def render_cube_tile(
    cube: CubeTileRequest,
    tms: TileMatrixSet,
    xyz: tuple[int, int, int],
    size: int,
    fmt: ImageType,
    post_process: Any,
    colormap: Any,
    rendering: dict[str, Any],
    render_func: Callable[..., tuple[bytes, str]],
) -> Response:
    """The tile encoded as ``fmt`` (204 outside the cube). The layer's rescale and colormap
    (a preset's) apply to pictures unless the request gives its own; npy and GeoTIFF tiles
    carry the values."""
    if size > MAX_TILESIZE:
        raise ImageTooLarge(f"tilesize is at most {MAX_TILESIZE} pixels")
    try:
        image = cube.tile(tms, *xyz, tilesize=size)
    except OutsideCube:
        return Response(status_code=204)
    if fmt not in DATA_FORMATS:
        if cube.plan.rescale and not rendering.get("rescale"):
            rendering["rescale"] = list(cube.plan.rescale)
        colormap = colormap if colormap is not None else cube.plan.colormap
    if post_process:
        image = post_process(image)
    content, media_type = render_func(image, output_format=fmt, colormap=colormap, **rendering)
    return Response(content, media_type=media_type)
