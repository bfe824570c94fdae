"""OGC API parts stac-fastapi does not provide. Imports catalog and tiler only."""
