"""Ingest: staged uploads -> validated Cloud-Optimized GeoTIFF -> STAC item."""
