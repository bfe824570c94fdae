"""Readers of the catalogue's items, by kind of asset.

- ``item.py``: ``ItemReader``, an item's assets as one multi-asset dataset (rio-tiler).
- ``kinds.py``: the table from an asset's media type to the reader class that reads it.
- ``cog.py``: ``LocalTiffReader``, GeoTIFF (COG) assets of our storage.
- ``grids.py``: ``TileGrids``, a GeoTIFF's tiles as windows of one warped VRT per zoom.
- ``pool.py``: ``DatasetPool``, files kept open between reads.
- ``stac.py``: what the readers take from the item (assets, bands, projection).
"""

from .cog import LocalTiffReader
from .grids import TileGrids, grid_readable
from .item import ItemReader
from .kinds import ASSET_READERS
from .pool import DatasetPool

__all__ = [
    "ASSET_READERS",
    "DatasetPool",
    "ItemReader",
    "LocalTiffReader",
    "TileGrids",
    "grid_readable",
]
