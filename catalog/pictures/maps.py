"""Maps of pictures: vector tiles of sequence lines, and the pictures nearest a point.

Pictures themselves are point items: the footprint tiles of their collection
(catalog/maps/tiles.py) draw them, with ``view:azimuth`` and ``terracat:sequence`` as
attributes. Sequences are drawn from ``picture_sequences``, simplified to about a pixel of the
tile (``ST_Simplify`` in Web Mercator metres) and capped per tile, newest first.
"""

import uuid
from typing import Any

from sqlalchemy import exists, func, select, text, true
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import connect
from catalog.db.models import Collection, PictureSequence
from catalog.errors import NotFound
from catalog.maps.tiles import VectorTile

# Half the Web Mercator world's width, metres.
_HALF_WORLD = 20037508.342789244

_SEQUENCE_TILE = text("""
WITH a AS MATERIALIZED (SELECT ST_TileEnvelope(:z, :x, :y) AS env)
SELECT count(*) AS matched,
  count(*) FILTER (WHERE q.n <= :limit AND q.geom IS NOT NULL) AS features,
  ST_AsMVT(q.*, 'sequences', :extent, 'geom')
    FILTER (WHERE q.n <= :limit AND q.geom IS NOT NULL) AS tile,
  EXISTS (SELECT FROM collections WHERE id = :collection) AS known
FROM (
  SELECT s.id::text AS id, s.collection_id AS collection, s.picture_count,
    to_char(s.start_datetime AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS start_datetime,
    ST_AsMVTGeom(ST_Simplify(ST_Transform(s.geom, 3857), :tolerance, true), a.env,
                 :extent, :buffer, true) AS geom,
    row_number() OVER (ORDER BY s.created DESC, s.id) AS n
  FROM picture_sequences AS s, a
  WHERE s.collection_id = :collection AND s.geom && ST_Transform(a.env, 4326)
  ORDER BY s.created DESC, s.id
  LIMIT :limit + 1
) AS q
""")

# Candidates by the index's planar distance (degrees), then ranked by metres on the sphere.
_NEAREST = text("""
SELECT id, datetime, properties->'view:azimuth' AS azimuth,
  properties->>'terracat:sequence' AS sequence, ST_X(geometry) AS lon, ST_Y(geometry) AS lat,
  ST_Distance(geometry::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography)
    AS distance
FROM (
  SELECT id, datetime, properties, geometry FROM items
  WHERE collection_id = :collection AND GeometryType(geometry) = 'POINT'
  ORDER BY geometry <-> ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)
  LIMIT :candidates
) AS c
ORDER BY distance, id
""")


class PictureMapRepository:
    """Sequence tiles and nearest pictures of one collection."""

    def __init__(self, engine: AsyncEngine, extent: int = 4096, buffer: int = 64) -> None:
        self.engine = engine
        self.extent = extent
        self.buffer = buffer

    async def sequence_tile(
        self, collection_id: str, z: int, x: int, y: int, limit: int, simplify: float = 8.0
    ) -> VectorTile:
        """The Web Mercator tile z/x/y of the collection's sequences; NotFound if no such
        collection."""
        tile_metres = 2 * _HALF_WORLD / (1 << z)
        params: dict[str, Any] = {
            "collection": collection_id, "z": z, "x": x, "y": y, "limit": limit,
            "extent": self.extent, "buffer": self.buffer,
            "tolerance": tile_metres * simplify / self.extent,
        }  # fmt: skip
        async with connect(self.engine, write=False) as conn:
            row = (await conn.execute(_SEQUENCE_TILE, params)).one()
        if not row.known:
            raise NotFound(f"collection {collection_id!r} does not exist")
        content = bytes(row.tile) if row.features else b""
        return VectorTile(content, int(row.features), int(row.matched) > limit)

    async def nearest(
        self, collection_id: str, lon: float, lat: float, limit: int, max_distance: float | None
    ) -> list[dict[str, Any]]:
        """The collection's pictures nearest ``lon``, ``lat``, nearest first (distances in
        metres, within ``max_distance`` when given)."""
        params = {"collection": collection_id, "lon": lon, "lat": lat, "candidates": limit * 4}
        async with connect(self.engine, write=False) as conn:
            await self._check(conn, collection_id)
            rows = [dict(r._mapping) for r in await conn.execute(_NEAREST, params)]
        if max_distance is not None:
            rows = [r for r in rows if r["distance"] <= max_distance]
        return rows[:limit]

    async def check(self, collection_id: str) -> None:
        """NotFound unless the collection exists."""
        async with connect(self.engine, write=False) as conn:
            await self._check(conn, collection_id)

    async def _check(self, conn: Any, collection_id: str) -> None:
        known = await conn.scalar(select(exists().where(Collection.id == collection_id)))
        if not known:
            raise NotFound(f"collection {collection_id!r} does not exist")

    async def sequences(
        self, collection_id: str, limit: int, sequence_id: uuid.UUID | None = None
    ) -> list[dict[str, Any]]:
        """The collection's sequences, newest first (line as GeoJSON text), or the one
        ``sequence_id``."""
        query = (
            select(
                PictureSequence.id, PictureSequence.collection_id,
                func.ST_AsGeoJSON(PictureSequence.geom, 9).label("geojson"),
                PictureSequence.start_datetime, PictureSequence.end_datetime,
                PictureSequence.picture_count, PictureSequence.item_ids,
            )
            .where(
                PictureSequence.collection_id == collection_id,
                PictureSequence.id == sequence_id if sequence_id else true(),
            )
            .order_by(PictureSequence.created.desc(), PictureSequence.id)
            .limit(limit)
        )  # fmt: skip
        async with connect(self.engine, write=False) as conn:
            await self._check(conn, collection_id)
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def has_sequences(self, collection_id: str) -> bool:
        """Whether the collection holds pictures published in sequences."""
        async with connect(self.engine, write=False) as conn:
            found = await conn.scalar(
                select(exists().where(PictureSequence.collection_id == collection_id))
            )
        return bool(found)
