"""Geotagged pictures: read, derived, dispatched into sequences, published as point items."""
