"""Vector tiles of a vector collection's features, rendered by PostGIS (ST_AsMVT).

Features are chosen with ``query.where`` (bbox, datetime, CQL2: the same rows as the items
routes) among those meeting the tile widened by its buffer. At most ``limit`` features go into
a tile (in table order: no sort, which would cost as much as the tile at low zooms); ``capped``
says more met it. Geometries are cut to the padded tile in lon/lat (a pole never reaches Web
Mercator), projected, simplified at the tile's resolution (``simplify`` tile units) when they
have more than a few points, and snapped to the tile grid by ST_AsMVTGeom. Lines and polygons
whose bbox is under ``min_size`` tile units on both sides are left out: they would draw less
than a pixel, and at low zooms they are most of a tile's bytes.

The MVT feature id is the feature's ``fid``; attributes are the chosen properties, dates and
timestamps as RFC 3339 text, JSON values as JSON text.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, case, cast, func, literal_column, or_, select, true
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Text

from catalog.db.engine import connect
from catalog.maps.tiles import WGS84, TileBounds, VectorTile

from .query import FeatureQuery, where
from .schema import FID, GEOM, Layer, Property, PropertyType

POINT_TYPES = frozenset({"Point", "MultiPoint", "Point25D", "MultiPoint25D"})
# Geometries with at most this many points are not simplified (a rectangle has 5).
SIMPLIFY_ABOVE = 16


@dataclass(frozen=True)
class FeatureTileParams:
    """How tiles are cut: MVT extent and buffer, simplification and size floor in tile units."""

    extent: int = 4096
    buffer: int = 64
    simplify: float = 8.0
    min_size: float = 4.0


def attribute(layer: Layer, prop: Property) -> ColumnElement[Any]:
    """The MVT attribute of ``prop``: its column, as text where MVT has no such type."""
    column = layer.table.c[prop.column]
    if prop.type is PropertyType.DATETIME:
        utc = func.timezone("UTC", column)
        whole = func.date_trunc("second", utc) == utc
        value: ColumnElement[Any] = case(
            (whole, func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
            else_=func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        )
    elif prop.type is PropertyType.DATE:
        value = func.to_char(column, "YYYY-MM-DD")
    elif prop.type is PropertyType.JSON:
        value = cast(column, Text)
    else:
        value = column
    return value.label(prop.name)


def _free_name(base: str, taken: set[str]) -> str:
    name = base
    while name in taken:
        name = "_" + name
    return name


class FeatureTileRepository:
    """Encodes the features of vector collections as Mapbox Vector Tiles."""

    def __init__(self, engine: AsyncEngine, params: FeatureTileParams | None = None) -> None:
        self.engine = engine
        self.params = params or FeatureTileParams()

    async def tile(
        self,
        layer: Layer,
        bounds: TileBounds,
        query: FeatureQuery,
        properties: Sequence[Property],
        *,
        name: str,
        limit: int,
    ) -> VectorTile:
        """The tile of ``layer``'s features selected by ``query`` inside ``bounds``, with the
        attributes ``properties``, as MVT layer ``name``."""
        statement = self.statement(layer, bounds, query, properties, name=name, limit=limit)
        async with connect(self.engine) as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            row = (await conn.execute(statement)).one()
        content = bytes(row.tile) if row.features else b""
        return VectorTile(content, int(row.features), int(row.matched) > limit)

    def statement(
        self,
        layer: Layer,
        bounds: TileBounds,
        query: FeatureQuery,
        properties: Sequence[Property],
        *,
        name: str,
        limit: int,
    ) -> Select[Any]:
        """One row: ``matched`` (features meeting the tile, up to limit + 1), ``features``
        (those drawn) and ``tile`` (the MVT)."""
        p = self.params
        table = layer.table
        taken = {prop.name for prop in properties}
        fid_name, geom_name = _free_name(FID, taken), _free_name("geom", taken | {FID})
        area = select(func.ST_Transform(self._envelope(bounds), WGS84).label("g")).cte("area")
        geom = table.c[GEOM]
        conditions = [func.ST_Intersects(geom, area.c.g), *where(layer, query)]
        if p.min_size > 0 and layer.geometry_type not in POINT_TYPES:
            conditions.append(self._visible(geom, area.c.g))
        candidates = (
            select(
                table.c[FID].label(fid_name),
                *(attribute(layer, prop) for prop in properties),
                func.ST_ClipByBox2D(geom, func.Box2D(area.c.g)).label(geom_name),
            )
            .select_from(table.join(area, true()))
            .where(and_(*conditions))
            .limit(limit + 1)
            .cte("candidates")
        )
        features = (
            select(
                candidates.c[fid_name],
                *(candidates.c[prop.name] for prop in properties),
                self._mvt_geom(layer, bounds, candidates.c[geom_name]).label(geom_name),
            )
            .limit(limit)
            .subquery("f")
        )
        matched = select(func.count()).select_from(candidates).scalar_subquery()
        drawn = features.c[geom_name].is_not(None)
        mvt = func.ST_AsMVT(literal_column("f"), name, p.extent, geom_name, fid_name)
        return select(
            matched.label("matched"),
            func.count(features.c[geom_name]).label("features"),
            mvt.filter(drawn).label("tile"),
        ).select_from(features)

    def _envelope(self, bounds: TileBounds) -> ColumnElement[Any]:
        """The tile widened by the buffer, in its CRS (cut at the matrix set's west and east:
        past the antimeridian the box would fold inside out in lon/lat)."""
        p = self.params
        pad_x = bounds.width * p.buffer / p.extent
        pad_y = bounds.height * p.buffer / p.extent
        box = [bounds.xmin - pad_x, bounds.ymin - pad_y, bounds.xmax + pad_x, bounds.ymax + pad_y]
        if bounds.limits is not None:
            box[0], box[2] = max(box[0], bounds.limits[0]), min(box[2], bounds.limits[2])
        envelope: ColumnElement[Any] = func.ST_MakeEnvelope(*box, bounds.srid)
        if bounds.srid != WGS84 and bounds.zxy is None:  # straight edges may curve in lon/lat
            envelope = func.ST_Segmentize(envelope, max(bounds.width, bounds.height) / 16)
        return envelope

    def _visible(self, geom: ColumnElement[Any], area: ColumnElement[Any]) -> ColumnElement[Any]:
        """Points, or a bbox at least ``min_size`` tile units wide or high.

        Units are the padded tile's width in degrees over its units: at high latitudes a
        unit spans fewer degrees of latitude than this, so the test keeps more, never fewer.
        """
        p = self.params
        unit = (func.ST_XMax(area) - func.ST_XMin(area)) / (p.extent + 2 * p.buffer)
        floor = unit * p.min_size
        return or_(
            func.ST_GeometryType(geom).in_(("ST_Point", "ST_MultiPoint")),
            func.ST_XMax(geom) - func.ST_XMin(geom) >= floor,
            func.ST_YMax(geom) - func.ST_YMin(geom) >= floor,
        )

    def _mvt_geom(
        self, layer: Layer, bounds: TileBounds, geom: ColumnElement[Any]
    ) -> ColumnElement[Any]:
        """The geometry projected, simplified at the tile's resolution, in tile units."""
        p = self.params
        projected: ColumnElement[Any] = func.ST_Transform(geom, bounds.srid)
        if p.simplify > 0 and layer.geometry_type not in POINT_TYPES:
            # ST_SimplifyPreserveTopology, not ST_Simplify: Douglas-Peucker flattens a polygon
            # about one unit wide to a ring ST_AsMVTGeom then drops.
            tolerance = max(bounds.width, bounds.height) * p.simplify / p.extent
            projected = case(
                (
                    func.ST_NPoints(geom) > SIMPLIFY_ABOVE,
                    func.ST_SimplifyPreserveTopology(projected, tolerance),
                ),
                else_=projected,
            )
        tile_box = (
            func.ST_TileEnvelope(*bounds.zxy)
            if bounds.zxy is not None
            else func.ST_MakeEnvelope(bounds.xmin, bounds.ymin, bounds.xmax, bounds.ymax,
                                      bounds.srid)
        )  # fmt: skip
        return func.ST_AsMVTGeom(projected, func.Box2D(tile_box), p.extent, p.buffer, True)


__all__ = ["FeatureTileParams", "FeatureTileRepository", "attribute"]
