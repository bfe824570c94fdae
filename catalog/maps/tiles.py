"""Vector tiles of item footprints, rendered by PostGIS (ST_AsMVT).

The caller (ogc/vector_tiles.py) turns a tile of a tile matrix set into a ``TileBounds``; this
module knows nothing of tile matrix sets beyond that, so the catalogue keeps no dependency on
morecantile.
"""

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.reads import ReadPool, read_one
from catalog.errors import NotFound
from catalog.stac.queryables import Kind
from catalog.timeparse import parse_interval

WGS84 = 4326
WEB_MERCATOR = 3857
# The dialect tile statements are compiled for once (parameters as psycopg takes them).
PSYCOPG = psycopg_dialect()  # type: ignore[no-untyped-call]
# Item properties copied into each feature when the item has them with this JSON type. Tiles
# read them, with the RFC 3339 time, from ``items.tile_properties``, which migration 0019
# computes from this list: a change here needs a migration there.
FEATURE_PROPERTIES: dict[str, Kind] = {
    "title": Kind.STRING,
    "platform": Kind.STRING,
    "gsd": Kind.NUMBER,
    "eo:cloud_cover": Kind.NUMBER,
    # Pictures (catalog/pictures): the direction each faces, the sequence it belongs to.
    "view:azimuth": Kind.NUMBER,
    "terracat:sequence": Kind.STRING,
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

    ``reads`` runs the statement on the app's psycopg read pool (catalog/db/reads.py), without
    it on the engine. ``extent`` and ``buffer`` are in tile units (MVT defaults 4096 and 64).
    ``simplify`` is the tolerance of ST_SimplifyPreserveTopology in the same units (8 of 4096
    is one pixel of a tile drawn 512 pixels wide, as MapLibre does), applied to footprints of
    more than 16 points; 0 leaves geometries as they are apart from the snapping to the tile
    grid that ST_AsMVTGeom always does.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        extent: int = 4096,
        buffer: int = 64,
        simplify: float = 8.0,
        reads: ReadPool | None = None,
    ) -> None:
        self.engine = engine
        self.extent = extent
        self.buffer = buffer
        self.simplify = simplify
        self.reads = reads

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
        start, end = parse_interval(interval) if interval else (None, None)
        shape = _Shape(
            bounds.srid,
            bounds.zxy is not None,
            start is not None,
            end is not None,
            self.extent,
            self.buffer,
            self.simplify > 0,
        )
        params = self._params(collection_id, bounds, layer, limit) | {"start": start, "end": end}
        # One statement text per shape, bound values only: compiled once and prepared by
        # psycopg, where a Core statement rebuilt per tile cost more Python time than the
        # database took for a whole low-zoom tile. Autocommit: no BEGIN / ROLLBACK round trips
        # around a single read.
        row = await read_one(self.engine, self.reads, _driver_sql(shape), params)
        if not row.known:
            raise NotFound(f"collection {collection_id!r} does not exist")
        content = bytes(row.tile) if row.features else b""
        return VectorTile(content, int(row.features), int(row.matched) > limit)

    def _params(
        self, collection_id: str, bounds: TileBounds, layer: str, limit: int
    ) -> dict[str, Any]:
        """The bound values: the tile, the search area around it, the caps."""
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
        size = max(bounds.width, bounds.height)
        z, x, y = bounds.zxy or (0, 0, 0)
        return {
            "collection": collection_id,
            "layer": layer,
            "limit": limit,
            "west": box[0],
            "south": box[1],
            "east": box[2],
            "north": box[3],
            # Densify before reprojecting: a straight tile edge can be a curve in lon/lat
            # (not in Web Mercator, whose rectangles stay rectangles).
            "step": size / 16,
            "xmin": bounds.xmin,
            "ymin": bounds.ymin,
            "xmax": bounds.xmax,
            "ymax": bounds.ymax,
            "z": z,
            "x": x,
            "y": y,
            "tolerance": size * self.simplify / self.extent,
        }


@dataclass(frozen=True)
class _Shape:
    """What changes the text of the tile statement (everything else is a bound value)."""

    srid: int
    zxy: bool
    start: bool
    end: bool
    extent: int
    buffer: int
    simplify: bool

    @property
    def mercator(self) -> bool:
        """A WebMercatorQuad tile: footprints come as the items keep them for it
        (``tile_geometry``; migration 0019)."""
        return self.zxy and self.srid == WEB_MERCATOR


# Footprints with at most this many points are not simplified (a rectangle has 5).
_SIMPLIFY_ABOVE = 16


def _footprint_sql(shape: _Shape) -> tuple[str, str]:
    """The tile statement's test that a footprint meets the padded tile, and its MVT geometry
    before ST_AsMVTGeom (cut, projected, simplified)."""
    # In a Web Mercator tile the padded area is a lon/lat rectangle: a footprint whose bbox
    # lies in it meets it, without GEOS. Other matrix sets' areas may be curved. A CASE, not
    # an OR, which the planner would turn into a BitmapOr of two index scans.
    meets = (
        "CASE WHEN i.geometry @ a.geom THEN true ELSE ST_Intersects(i.geometry, a.geom) END"
        if shape.zxy
        else "ST_Intersects(i.geometry, a.geom)"
    )
    if shape.mercator:
        return meets, _mercator_sql(shape)
    # Cut to the padded tile while still in lon/lat, and only what reaches out of it: a pole
    # projects to Web Mercator far off the map (or fails, by PROJ version), and a huge
    # footprint is cheaper to project cut; most footprints lie inside.
    cut = (
        "CASE WHEN i.geometry @ a.geom THEN i.geometry "
        "ELSE ST_ClipByBox2D(i.geometry, Box2D(a.geom)) END"
    )
    projected = f"ST_Transform({cut}, {shape.srid})"
    if shape.simplify:
        # Only footprints with detail to lose: a plain quadrilateral gains nothing from the
        # GEOS call. ST_SimplifyPreserveTopology, not ST_Simplify: Douglas-Peucker collapses
        # a footprint about one tile unit wide to a flat ring that ST_AsMVTGeom then drops.
        projected = (
            f"CASE WHEN ST_NPoints(i.geometry) > {_SIMPLIFY_ABOVE} THEN "
            f"ST_SimplifyPreserveTopology({projected}, :tolerance) ELSE {projected} END"
        )
    return meets, projected


def _mercator_sql(shape: _Shape) -> str:
    """The MVT geometry before ST_AsMVTGeom of a WebMercatorQuad tile: the footprint kept in
    Web Mercator (``items.tile_geometry``), cut to the padded tile and simplified when it has
    detail to lose; as it is otherwise (ST_AsMVTGeom clips it)."""
    if not shape.simplify:
        return "i.tile_geometry"
    cut = (
        "CASE WHEN i.tile_geometry @ a.pad THEN i.tile_geometry "
        "ELSE ST_ClipByBox2D(i.tile_geometry, Box2D(a.pad)) END"
    )
    return (
        f"CASE WHEN ST_NPoints(i.tile_geometry) > {_SIMPLIFY_ABOVE} THEN "
        f"ST_SimplifyPreserveTopology({cut}, :tolerance) ELSE i.tile_geometry END"
    )


@functools.cache
def _driver_sql(shape: _Shape) -> str:
    """The tile statement in psycopg's parameter style (SQLAlchemy's per-execution work on a
    text(), cache key and bind processing, is skipped: nothing here needs it)."""
    return str(_tile_sql(shape).compile(dialect=PSYCOPG))


@functools.cache
def _tile_sql(shape: _Shape) -> TextClause:
    """One row: how many items touch the tile (``matched``, up to limit + 1), how many
    features the tile got, the MVT, and whether the collection exists (``known``).

    One pass, nothing materialized: the items meeting the padded tile, newest first, one more
    than the cap (to know whether more met it); the projection, simplification and MVT
    geometry are computed above the sort, for the kept rows only. The rows are numbered outside
    the subquery ``f`` so that the number is no attribute of the MVT; the subquery's order is
    the order they are numbered and encoded in (newest first).

    A tile reads what the items keep for it (migration 0019): the feature properties as one
    JSONB object, which ST_AsMVT encodes key by key, and for WebMercatorQuad the footprint in
    Web Mercator. Reading the properties out of the item's JSONB with their type guards and
    projecting each footprint on every request were a quarter of a z2 tile's SQL.
    """
    envelope = f"ST_MakeEnvelope(:west, :south, :east, :north, {shape.srid})"
    if shape.srid != WGS84 and not shape.zxy:
        envelope = f"ST_Segmentize({envelope}, :step)"
    when = (" AND i.datetime <= :end" if shape.end else "") + (
        " AND i.end_datetime >= :start" if shape.start else ""
    )
    tile = (
        "ST_TileEnvelope(:z, :x, :y)"
        if shape.zxy
        else f"ST_MakeEnvelope(:xmin, :ymin, :xmax, :ymax, {shape.srid})"
    )
    meets, projected = _footprint_sql(shape)
    pad = f", {envelope} AS pad" if shape.mercator else ""
    # The area, with the tile's box, is computed once per tile even under a generic plan
    # (psycopg prepares the statement; in a generic plan ST_TileEnvelope of parameters would be
    # evaluated per row).
    return text(f"""
WITH area AS MATERIALIZED (
  SELECT ST_Transform({envelope}, {WGS84}) AS geom, Box2D({tile}) AS box{pad}
)
SELECT count(*) AS matched,
  count(*) FILTER (WHERE q.n <= :limit AND (q.f).geom IS NOT NULL) AS features,
  ST_AsMVT(q.f, :layer, {shape.extent}, 'geom')
    FILTER (WHERE q.n <= :limit AND (q.f).geom IS NOT NULL) AS tile,
  EXISTS (SELECT FROM collections WHERE id = :collection) AS known
FROM (
  SELECT f, row_number() OVER () AS n FROM (
    SELECT i.id, i.collection_id AS collection, i.tile_properties,
      ST_AsMVTGeom({projected}, a.box, {shape.extent}, {shape.buffer}, true) AS geom
    FROM area AS a JOIN items AS i ON i.geometry && a.geom AND {meets}
    WHERE i.collection_id = :collection{when}
    ORDER BY i.datetime DESC, i.id
    LIMIT :limit + 1
  ) AS f
) AS q
""")
