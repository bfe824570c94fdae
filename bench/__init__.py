"""Benchmarks: synthetic STAC data, and Terracat against stac-fastapi-pgstac side by side."""
