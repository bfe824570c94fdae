"""Raster rendering (TiTiler factories wired to the catalogue). Imports catalog only."""

import catalog  # noqa: F401  (defers xarray before rio-tiler imports it: catalog/lazy_imports.py)
