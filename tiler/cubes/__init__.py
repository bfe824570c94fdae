"""Tiles of datacube collections: layers (bands and presets), time selection, the reader."""
