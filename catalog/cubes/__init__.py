"""Datacube collections: Zarr and NetCDF stores, their layers, time slices and overviews."""
