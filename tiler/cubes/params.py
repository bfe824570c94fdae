"""The datacube query parameters of collection tiles, and the cube of a collection.

``cube_params`` is a dependency slot of the collection tile and TileJSON routes (tiler/
mosaic.py): None for a collection that is no datacube (the routes draw its mosaic), else the
``CubeTileRequest`` of ``layers``, ``datetime``, ``datetime_match`` and
``temporal_aggregation``, checked before the tile is read (400s with ``cube.*`` codes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

from cachetools import TTLCache
from fastapi import Depends, Path, Query
from starlette.requests import Request

from catalog.cubes.model import Cube, CubeRepository

from ..presets import Preset, PresetQuery
from ..readers.shared import ReaderResources
from ..settings import TilerSettings
from .layers import resolve_layers
from .reader import ChunkCache, CubeTileRequest, StoreOpener
from .times import AGGREGATIONS, MATCHES, select_times

if TYPE_CHECKING:
    from .reader import Opener


class CubeLookup:
    """The datacube row of a collection (None: no datacube), kept ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float = 5.0, maxsize: int = 1024) -> None:
        self.cache: TTLCache[str, Cube | None] | None = (
            TTLCache(maxsize=maxsize, ttl=ttl_s) if ttl_s > 0 else None
        )

    async def get(self, request: Request, collection_id: str) -> Cube | None:
        """The collection's cube, from the cache or the database."""
        if self.cache is not None and collection_id in self.cache:
            return self.cache[collection_id]
        cube = await CubeRepository(request.app.state.repository.engine).get(collection_id)
        if self.cache is not None:
            self.cache[collection_id] = cube
        return cube


def cube_opener(resources: ReaderResources) -> Opener:
    """The app's opener of datacube stores (one per app: it keeps stores open)."""
    opener: Opener = resources.cubes.setdefault("opener", StoreOpener(resources.storage))
    return opener


LayersQuery = Annotated[
    list[str] | None,
    Query(
        description="Datacube collections: the layer(s) to draw: a variable or band (by name, "
        "common name or Sentinel-2 id, `B04`), several comma-separated, or a derived layer "
        "(NDVI, NDMI, NDRE, GNDVI, EVI, RGB, CIR, AGRICULTURE, SWIR). Default: the first.",
    ),
]
DatetimeQuery = Annotated[
    str | None,
    Query(
        alias="datetime",
        description="Datacube collections: an instant (the nearest time slice, or exactly one "
        "with `datetime_match=exact`) or an interval `start/end` (`..` open) whose slices "
        "`temporal_aggregation` reduces. Default: the last time slice.",
    ),
]
MatchQuery = Annotated[
    str | None,
    Query(description="Datacube collections: " + " or ".join(MATCHES) + " (default nearest)."),
]
AggregationQuery = Annotated[
    str | None,
    Query(
        description="Datacube collections: per-pixel reduction of an interval's slices: "
        + ", ".join(AGGREGATIONS)
        + " (default mean; `last`: the latest slice with data).",
    ),
]


def cube_params(
    resources: ReaderResources, settings: TilerSettings, lookup: CubeLookup | None = None
) -> Callable[..., Awaitable[CubeTileRequest | None]]:
    """The ``cube_dependency`` of collection tiles (see the module docstring)."""
    lookup = lookup or CubeLookup(settings.item_cache_ttl_s, settings.item_cache_size)
    max_bytes = settings.cube_max_read_mb * 1024 * 1024
    chunk_bytes = settings.cube_chunk_cache_mb * 1024 * 1024

    async def dependency(
        request: Request,
        collection_id: Annotated[str, Path(alias="collectionId", description="A collection id.")],
        preset: Annotated[Preset | None, Depends(PresetQuery)],
        layers: LayersQuery = None,
        when: DatetimeQuery = None,
        datetime_match: MatchQuery = None,
        temporal_aggregation: AggregationQuery = None,
    ) -> CubeTileRequest | None:
        cube = await lookup.get(request, collection_id)
        if cube is None:
            return None
        chosen = layers or ([preset.name] if preset is not None else None)
        plan = resolve_layers(cube, chosen)
        times = select_times(cube, when, datetime_match, temporal_aggregation)
        chunks = resources.cubes.setdefault("chunks", ChunkCache(chunk_bytes))
        return CubeTileRequest(cube, plan, times, cube_opener(resources), max_bytes, chunks)

    return dependency


async def no_cube() -> None:
    """The ``cube_dependency`` of mosaics that are never datacubes (saved searches)."""
    return None
