"""Which reader reads an asset, by its media type: one entry per kind of asset.

``ItemReader`` renders the assets whose media type is a key of ``ASSET_READERS`` and reads
each with the reader class it maps to; any other asset is not a raster of the item. A new
kind of asset (Zarr, say) is a reader class and its media types here.
"""

from collections.abc import Mapping
from typing import Any

from rio_tiler.io import BaseReader

from .cog import LocalTiffReader

ASSET_READERS: Mapping[str, type[BaseReader]] = {
    "image/tiff": LocalTiffReader,
    "image/x.geotiff": LocalTiffReader,
    "image/vnd.stac.geotiff": LocalTiffReader,
}


def media_type(asset: Any) -> str | None:
    """An asset's (dict) media type without parameters, in lower case; None if it has none."""
    if not isinstance(asset, Mapping) or not isinstance(asset.get("type"), str):
        return None
    return str(asset["type"]).split(";")[0].strip().lower()
