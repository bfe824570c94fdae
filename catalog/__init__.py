"""Terracat catalogue: STAC domain, persistence and search. Imports nothing else of ours."""

from .lazy_imports import defer

# Before anything imports rio-tiler, which imports xarray (and through it pandas and pyarrow)
# when installed: API workers that serve no datacube do not carry them (catalog/lazy_imports).
defer()
