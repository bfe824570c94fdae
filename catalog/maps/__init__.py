"""The SQL side of maps: saved mosaic searches and the items of a tile, footprint vector tiles."""
