"""Vector tiles of item footprints, rendered by PostGIS (ST_AsMVT).

The caller (ogc/vector_tiles.py) turns a tile of a tile matrix set into a ``TileBounds``; this
module knows nothing of tile matrix sets beyond that, so the catalogue keeps no dependency on
morecantile.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import CTE, Select, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from catalog.db.engine import connect
from catalog.db.models import Collection, Item
from catalog.errors import NotFound
from catalog.stac.queryables import Kind, typed_property
from catalog.stac.search import datetime_filter

WGS84 = 4326
# Item properties copied into each feature when the item has them with this JSON type.
FEATURE_PROPERTIES: dict[str, Kind] = {
    "title": Kind.STRING,
    "platform": Kind.STRING,
    "gsd": Kind.NUMBER,
    "eo:cloud_cover": Kind.NUMBER,
}


@dataclass(frozen=True)
class TileBounds:
    """Where a tile lies: its bounds in the CRS of its tile matrix set (x = easting, y = northing).

    ``zxy`` is set for WebMercatorQuad, whose envelope PostGIS builds itself (ST_TileEnvelope).
    ``limits`` is the extent of the tile matrix set in the same CRS (west, south, east, north):
    in Web Mercator, x past its west or east edge stands for the other side of the antimeridian.
    """

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    srid: int
    zxy: tuple[int, int, int] | None = None
    limits: tuple[float, float, float, float] | None = None

    @property
    def width(self) -> float:
        """Width of the tile in CRS units."""
        return self.xmax - self.xmin

    @property
    def height(self) -> float:
        """Height of the tile in CRS units."""
        return self.ymax - self.ymin


@dataclass(frozen=True)
class VectorTile:
    """An encoded MVT tile (empty bytes when no feature falls in it)."""

    content: bytes
    features: int
    capped: bool


class VectorTileRepository:
    """Encodes item footprints of one collection as Mapbox Vector Tiles.

    ``extent`` and ``buffer`` are in tile units (MVT defaults 4096 and 64). ``simplify`` is the
    tolerance of ST_SimplifyPreserveTopology in the same units (8 of 4096 is one pixel of a
    tile drawn 512 pixels wide, as MapLibre does); 0 leaves geometries as they are apart from
    the snapping to the tile grid that ST_AsMVTGeom always does.
    """

    def __init__(
        self, engine: AsyncEngine, extent: int = 4096, buffer: int = 64, simplify: float = 8.0
    ) -> None:
        self.engine = engine
        self.extent = extent
        self.buffer = buffer
        self.simplify = simplify

    async def footprints(
        self,
        collection_id: str,
        bounds: TileBounds,
        *,
        layer: str,
        limit: int,
        interval: str | None = None,
    ) -> VectorTile:
        """The tile of the items of ``collection_id`` inside ``bounds``; NotFound if no such
        collection.

        At most ``limit`` features, newest first; ``capped`` says that more items touch the
        tile. ``interval`` is an RFC 3339 instant or interval the items' time spans must meet.
        """
        statement = self._statement(collection_id, bounds, layer, limit, interval)
        async with connect(self.engine) as conn:
            row = (await conn.execute(statement)).one()
            if not row.features:
                found = await conn.scalar(
                    select(Collection.id).where(Collection.id == collection_id)
                )
                if found is None:
                    raise NotFound(f"collection {collection_id!r} does not exist")
        content = bytes(row.tile) if row.features else b""
        return VectorTile(content, int(row.features), int(row.matched) > limit)

    def _statement(
        self,
        collection_id: str,
        bounds: TileBounds,
        layer: str,
        limit: int,
        interval: str | None,
    ) -> Select[Any]:
        """One row: how many items touch the tile, how many features it got, the MVT."""
        envelope = _envelope(bounds)
        search_area = self._search_area(bounds)
        candidates = _candidates(collection_id, search_area, limit, interval)
        shaped = (
            select(
                candidates.c.id,
                candidates.c.collection_id.label("collection"),
                _rfc3339(candidates.c.datetime).label("datetime"),
                *(candidates.c[name] for name, _ in _PROPERTIES),
                func.ST_AsMVTGeom(
                    self._projected(candidates.c.footprint, bounds),
                    func.Box2D(envelope),
                    self.extent,
                    self.buffer,
                    True,
                ).label("geom"),
            )
            .order_by(candidates.c.datetime.desc(), candidates.c.id)
            .limit(limit)
            .subquery("shaped")
        )
        features = select(shaped).where(shaped.c.geom.is_not(None)).subquery("features")
        matched = select(func.count()).select_from(candidates).scalar_subquery()
        return select(
            matched.label("matched"),
            func.count().label("features"),
            func.ST_AsMVT(features.table_valued(), layer, self.extent, literal("geom")).label(
                "tile"
            ),
        ).select_from(features)

    def _search_area(self, bounds: TileBounds) -> ColumnElement[Any]:
        """The tile widened by the buffer, within the tile matrix set, in lon/lat."""
        # Features reaching into the buffer belong to the tile too (they are drawn across the
        # edge), so items are looked up over the tile widened by the buffer.
        pad_x = bounds.width * self.buffer / self.extent
        pad_y = bounds.height * self.buffer / self.extent
        box = [bounds.xmin - pad_x, bounds.ymin - pad_y, bounds.xmax + pad_x, bounds.ymax + pad_y]
        if bounds.limits is not None:
            # A buffer past the matrix set's west or east edge wraps across the antimeridian
            # in lon/lat (x past 20037508 m is a longitude past 180 degrees, folded to -180):
            # the box of a tile on the edge turned inside out and missed the tile's own items.
            west, _, east, _ = bounds.limits
            box[0], box[2] = max(box[0], west), min(box[2], east)
        padded = func.ST_MakeEnvelope(*box, bounds.srid)
        if bounds.srid != WGS84 and bounds.zxy is None:
            # Densify before reprojecting: a straight tile edge can be a curve in lon/lat (not
            # in Web Mercator, whose rectangles stay rectangles).
            padded = func.ST_Segmentize(padded, max(bounds.width, bounds.height) / 16)
        return func.ST_Transform(padded, WGS84)

    def _projected(self, footprint: ColumnElement[Any], bounds: TileBounds) -> ColumnElement[Any]:
        """A footprint in the tile's CRS, simplified to what a tile can show."""
        projected: ColumnElement[Any] = func.ST_Transform(footprint, bounds.srid)
        if self.simplify > 0:
            tolerance = max(bounds.width, bounds.height) * self.simplify / self.extent
            projected = func.ST_SimplifyPreserveTopology(projected, tolerance)
        return projected


def _candidates(
    collection_id: str, search_area: ColumnElement[Any], limit: int, interval: str | None
) -> CTE:
    """The newest items of the collection in the search area, one more than ``limit``."""
    clauses: list[ColumnElement[bool]] = [
        Item.collection_id == collection_id,
        func.ST_Intersects(Item.geometry, search_area),
    ]
    if (when := datetime_filter(interval)) is not None:
        clauses.append(when)
    return (
        select(
            Item.id,
            Item.collection_id,
            Item.datetime,
            # Cut to the padded tile while still in lon/lat: a pole projects to Web Mercator
            # far off the map (or fails, by PROJ version), and a huge footprint is cheaper to
            # project cut.
            func.ST_ClipByBox2D(Item.geometry, func.Box2D(search_area)).label("footprint"),
            *(typed_property(name, kind).label(name) for name, kind in _PROPERTIES),
        )
        .where(*clauses)
        .order_by(Item.datetime.desc(), Item.id)
        .limit(limit + 1)  # one more than the cap tells that the cap was reached
        .cte("candidates")
    )


_PROPERTIES = tuple(FEATURE_PROPERTIES.items())


def _envelope(bounds: TileBounds) -> ColumnElement[Any]:
    if bounds.zxy is not None:
        return func.ST_TileEnvelope(*bounds.zxy)
    return func.ST_MakeEnvelope(bounds.xmin, bounds.ymin, bounds.xmax, bounds.ymax, bounds.srid)


def _rfc3339(moment: ColumnElement[Any]) -> ColumnElement[str]:
    """A timestamptz as RFC 3339 text in UTC, with fractional seconds only when there are any."""
    utc = func.timezone("UTC", moment)
    return case(
        (
            func.date_trunc("second", utc) == utc,
            func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        ),
        else_=func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    )
