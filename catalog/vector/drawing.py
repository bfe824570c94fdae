"""The features a map image of a vector collection draws, as WKB in the map's CRS.

Chosen with ``query.where`` (as the items and tiles), among those meeting the map's box; cut to
the box (padded by a few pixels, so outlines do not end at the edge) while still in lon/lat,
projected, and simplified at the map's pixel size when they have detail to lose.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import connect

from .query import FeatureQuery, where
from .schema import GEOM, Layer, Property

WGS84 = 4326
WEB_MERCATOR = 3857
MAX_MERCATOR_LAT = 85.0511287798066
PAD_PIXELS = 4
SIMPLIFY_ABOVE = 16


@dataclass(frozen=True)
class MapFrame:
    """Where a map lies: a lon/lat box, the map CRS (SRID), and the size of a pixel in it."""

    box: tuple[float, float, float, float]
    srid: int
    pixel: float


class FeatureMapRepository:
    """Reads the geometries a map image draws."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def shapes(
        self,
        layer: Layer,
        query: FeatureQuery,
        frame: MapFrame,
        limit: int,
        properties: Sequence[Property] = (),
    ) -> tuple[list[tuple[bytes, dict[str, Any]]], bool]:
        """WKB of at most ``limit`` features in ``frame``'s CRS with their ``properties``;
        whether more were left out."""
        west, south, east, north = frame.box
        pad = (east - west) / 4096 * PAD_PIXELS  # a few pixels of the widest allowed map
        low, high = south - pad, north + pad
        if frame.srid == WEB_MERCATOR:  # beyond, Web Mercator has no y
            low, high = max(low, -MAX_MERCATOR_LAT), min(high, MAX_MERCATOR_LAT)
        area = select(func.ST_MakeEnvelope(west, south, east, north, WGS84).label("g")).cte()
        clip = func.Box2D(func.ST_MakeEnvelope(west - pad, low, east + pad, high, WGS84))
        geom = layer.table.c[GEOM]
        cut = func.ST_ClipByBox2D(geom, clip)
        projected: Any = cut if frame.srid == WGS84 else func.ST_Transform(cut, frame.srid)
        simplified = case(
            (
                func.ST_NPoints(geom) > SIMPLIFY_ABOVE,
                func.ST_SimplifyPreserveTopology(projected, frame.pixel / 2),
            ),
            else_=projected,
        )
        columns = [layer.table.c[prop.column] for prop in properties]
        statement = (
            select(func.ST_AsBinary(simplified), *columns)
            .select_from(layer.table.join(area, true()))
            .where(and_(func.ST_Intersects(geom, area.c.g), *where(layer, query)))
            .limit(limit + 1)
        )
        async with connect(self.engine) as conn:
            rows = (await conn.execute(statement)).all()
        found = [
            (bytes(row[0]), {p.name: row[i] for i, p in enumerate(properties, start=1)})
            for row in rows[:limit]
            if row[0] is not None
        ]
        return found, len(rows) > limit


__all__ = ["FeatureMapRepository", "MapFrame"]
