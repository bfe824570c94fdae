"""The layers of vector collections as the read routes look them up, cached for a moment.

Every tile, style and map request asks whether its collection is a vector one: a lookup per
tile would be a second query per tile. Entries live ``ttl`` seconds, so a schema change
(an append with new properties) shows in tiles within that time; absent layers are cached too
(raster collections ask as often).
"""

import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import connect

from .repository import _LAYER_COLUMNS as LAYER_COLUMNS
from .repository import VectorRepository
from .repository import _layer as layer_of
from .schema import Layer


class LayerCache:
    """``get(collection_id)``: the collection's layer or None, at most ``ttl`` seconds old."""

    def __init__(self, engine: AsyncEngine, ttl: float = 5.0, size: int = 1024) -> None:
        self.repository = VectorRepository(engine)
        self.ttl = ttl
        self.size = size
        self._entries: dict[str, tuple[float, Layer | None]] = {}

    async def get(self, collection_id: str) -> Layer | None:
        """The layer of ``collection_id`` (None for a raster or unknown collection)."""
        now = time.monotonic()
        found = self._entries.get(collection_id)
        if found is not None and now - found[0] < self.ttl:
            return found[1]
        layer = await self.repository.layer(collection_id)
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[collection_id] = (now, layer)
        return layer

    async def annotations(self, collection_id: str) -> list[Layer]:
        """The layers that annotate raster collection ``collection_id`` (not cached)."""
        async with connect(self.repository.engine) as conn:
            rows = await conn.execute(
                text(f"SELECT {LAYER_COLUMNS} FROM vector_layers WHERE annotates = :c "
                     "ORDER BY collection_id"),
                {"c": collection_id},
            )  # fmt: skip
            return [layer_of(row) for row in rows]

    def forget(self, collection_id: str) -> None:
        """Drop the entry of ``collection_id`` (after this process changed it)."""
        self._entries.pop(collection_id, None)


def app_layers(state: Any, ttl: float = 5.0) -> LayerCache:
    """The layer cache of an app's ``state`` (made on first use, renewed with its engine)."""
    cache: LayerCache | None = getattr(state, "vector_layers", None)
    engine = state.repository.engine
    if cache is None or cache.repository.engine is not engine:
        cache = LayerCache(engine, ttl)
        state.vector_layers = cache
    return cache


__all__ = ["LayerCache", "app_layers"]
