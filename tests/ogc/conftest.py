"""Fixtures of the OGC API tests: the tiler's real COG items (tests/tiler/conftest.py)."""

from tests.tiler.conftest import make_item, rgb_item

__all__ = ["make_item", "rgb_item"]
