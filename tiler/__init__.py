"""Raster rendering (TiTiler factories wired to the catalogue). Imports catalog only."""
