"""Vector tiles of a vector collection's features, rendered by PostGIS (ST_AsMVT).

Features are chosen with ``query.where`` (bbox, datetime, CQL2: the same rows as the items
routes) among those meeting the tile widened by its buffer. At most ``limit`` features go into
a tile (in table order: no sort, which would cost as much as the tile at low zooms); ``capped``
says more met it. Geometries reaching out of the padded tile are cut to it in lon/lat (a pole
never reaches Web Mercator), simplified at the tile's resolution (``simplify`` tile units,
Douglas-Peucker keeping collapsed rings: in lon/lat before projecting for Web Mercator tiles,
else after projecting those of more than a few points), projected, and snapped to the tile
grid by ST_AsMVTGeom. Lines and polygons
whose bbox is under ``min_size`` tile units on both sides are left out: they would draw less
than a pixel, and at low zooms they are most of a tile's bytes. They are left out in the
layer's n-D size index, which finds the features meeting the tile and over its floor.

The MVT feature id is the feature's ``fid``; attributes are the chosen properties, dates and
timestamps as RFC 3339 text, JSON values as JSON text.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Double,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Text

from catalog.db.engine import autocommit
from catalog.db.reads import ReadPool, read_one
from catalog.maps.tiles import PSYCOPG, WGS84, TileBounds, VectorTile

from .query import FeatureQuery, inside_or_meets, meets_rectangle, where
from .schema import FID, GEOM, Layer, Property, PropertyType

POINT_TYPES = frozenset({"Point", "MultiPoint", "Point25D", "MultiPoint25D"})
SIZED_TYPES = frozenset({"Polygon", "MultiPolygon", "LineString", "MultiLineString"})
# Outside Web Mercator, geometries with at most this many points are not simplified (a
# rectangle has 5); Web Mercator tiles simplify every line and polygon, before projecting.
SIMPLIFY_ABOVE = 16
# Tiles at least 1/SIZE_INDEX_SPAN of their matrix set wide search the size index (by_size).
SIZE_INDEX_SPAN = 64
# Half the width of Web Mercator's world, in its metres (180 degrees of longitude).
_HALF_WORLD = 20037508.342789244
_COMPILED: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}
_COMPILED_SIZE = 256


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

    def __init__(
        self,
        engine: AsyncEngine,
        params: FeatureTileParams | None = None,
        reads: ReadPool | None = None,
    ) -> None:
        self.engine = engine
        self.params = params or FeatureTileParams()
        self.reads = reads

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
        attributes ``properties``, as MVT layer ``name``.

        Without a selection the statement's SQL is compiled once per layer, attribute set and
        tile shape, and only values are bound per tile: building and compiling the statement
        again cost more Python time than PostGIS took for a high-zoom tile.
        """
        values = self.values(bounds, name, limit)
        sized = self.by_size(layer, bounds)
        row: Any
        if query == FeatureQuery():
            shape = (layer, tuple(properties), bounds.srid, bounds.zxy is not None,
                     bounds.limits is not None, sized, self.params)  # fmt: skip
            sql, defaults = self._compiled(shape, PSYCOPG)
            row = await read_one(self.engine, self.reads, sql, {**defaults, **values})
        else:
            statement = self.statement(layer, bounds, query, properties, sized=sized)
            async with autocommit(self.engine) as conn:
                row = (await conn.execute(statement, values)).one()
        content = bytes(row.tile) if row.features else b""
        return VectorTile(content, int(row.features), int(row.matched) > limit)

    def _compiled(self, shape: tuple[Any, ...], dialect: Any) -> tuple[str, dict[str, Any]]:
        """The SQL text and constant parameters of a statement shape (cached)."""
        found = _COMPILED.get(shape)
        if found is None:
            layer, properties, srid, zxy, limits, sized, _ = shape
            bounds = TileBounds(0, 0, 1, 1, srid, (0, 0, 0) if zxy else None,
                                (0, 0, 1, 1) if limits else None)  # fmt: skip
            statement = self.statement(layer, bounds, FeatureQuery(), properties, sized=sized)
            compiled = statement.compile(dialect=dialect)
            if len(_COMPILED) >= _COMPILED_SIZE:
                _COMPILED.clear()
            found = _COMPILED[shape] = (str(compiled), dict(compiled.params))
        return found

    def by_size(self, layer: Layer, bounds: TileBounds) -> bool:
        """Whether the tile's features are looked up in the layer's n-D size index: for lines
        and polygons in a tile at least 1/``SIZE_INDEX_SPAN`` of its matrix set wide (z0-z6 in
        WebMercatorQuad), whose floor leaves many features out. Higher, the 2-D index is
        smaller and leaves out as many (six z12 tiles over 100,000 polygons: 0.8-1.0 against
        1.1 ms of SQL)."""
        if not self.floored(layer) or bounds.limits is None:
            return False
        return round((bounds.limits[2] - bounds.limits[0]) / bounds.width) <= SIZE_INDEX_SPAN

    def floored(self, layer: Layer) -> bool:
        """Whether ``layer``'s tiles leave out features under the size floor (``min_size``):
        lines and polygons, or a mix; never a layer of points."""
        return self.params.min_size > 0 and layer.geometry_type not in POINT_TYPES

    def values(self, bounds: TileBounds, name: str, limit: int) -> dict[str, Any]:
        """The values bound per tile."""
        p = self.params
        pad_x = bounds.width * p.buffer / p.extent
        pad_y = bounds.height * p.buffer / p.extent
        box = [bounds.xmin - pad_x, bounds.ymin - pad_y, bounds.xmax + pad_x, bounds.ymax + pad_y]
        if bounds.limits is not None:  # past the antimeridian the box would fold inside out
            box[0], box[2] = max(box[0], bounds.limits[0]), min(box[2], bounds.limits[2])
        size = max(bounds.width, bounds.height)
        z, x, y = bounds.zxy or (0, 0, 0)
        return {
            "west": box[0], "south": box[1], "east": box[2], "north": box[3],
            "step": size / 16, "tolerance": size * p.simplify / p.extent,
            # the same in degrees of longitude (Web Mercator's x is linear in longitude)
            "tolerance_deg": size * p.simplify / p.extent * 180 / _HALF_WORLD,
            "xmin": bounds.xmin, "ymin": bounds.ymin, "xmax": bounds.xmax, "ymax": bounds.ymax,
            "z": z, "x": x, "y": y, "layer_name": name, "cap": limit, "cap_plus": limit + 1,
        }  # fmt: skip

    def statement(
        self,
        layer: Layer,
        bounds: TileBounds,
        query: FeatureQuery,
        properties: Sequence[Property],
        *,
        sized: bool = False,
    ) -> Select[Any]:
        """One row: ``matched`` (features meeting the tile, up to limit + 1), ``features``
        (those drawn) and ``tile`` (the MVT); the tile's values are bound parameters
        (``values``). ``sized``: found through the size index (``by_size``)."""
        p = self.params
        table = layer.table
        taken = {prop.name for prop in properties}
        fid_name, geom_name = _free_name(FID, taken), _free_name("geom", taken | {FID})
        area = self._area(bounds)
        geom = table.c[GEOM]
        meets = (
            self._meets_sized(bounds, geom, area) if sized else self._meets(bounds, geom, area.c.g)
        )
        conditions = [meets, *where(layer, query)]
        if self.floored(layer):
            conditions.append(self._visible(layer, geom, area.c.floor))
        # Cut only what reaches out of the padded tile (a pole never reaches Web Mercator; a
        # huge polygon projects faster cut): most features lie inside.
        cut = case(
            (geom.op("@")(area.c.g), geom),
            else_=func.ST_ClipByBox2D(geom, func.Box2D(area.c.g)),
        )
        features = (
            select(
                table.c[FID].label(fid_name),
                *(attribute(layer, prop) for prop in properties),
                self._mvt_geom(layer, bounds, cut, geom, area.c.box).label(geom_name),
            )
            .select_from(table.join(area, true()))
            .where(and_(*conditions))
            .limit(bindparam("cap_plus", type_=Integer))
            .subquery("f")
        )
        # One more feature than the cap is read, to know whether more met the tile; numbered
        # outside ``f`` so that the number is no attribute of the MVT. No CTE: nothing is
        # materialized between the index scan and ST_AsMVT.
        rows = select(
            literal_column("f").label("r"), func.row_number().over().label("n")
        ).select_from(features)
        numbered = rows.subquery("q")
        kept = and_(
            numbered.c.n <= bindparam("cap", type_=Integer),
            literal_column(f'(q.r)."{geom_name}"').is_not(None),
        )
        name = bindparam("layer_name", type_=Text)
        mvt = func.ST_AsMVT(numbered.c.r, name, p.extent, geom_name, fid_name)
        return select(
            func.count().label("matched"),
            func.count().filter(kept).label("features"),
            mvt.filter(kept).label("tile"),
        ).select_from(numbered)

    @staticmethod
    def _meets(
        bounds: TileBounds, geom: ColumnElement[Any], area: ColumnElement[Any]
    ) -> ColumnElement[Any]:
        """That ``geom`` meets the padded tile ``area``: in a Web Mercator tile a lon/lat
        rectangle (most of a low-zoom tile's features lie in it: 185 -> 143 ms at z2 over
        100,000 polygons); other matrix sets' areas may be curved."""
        if bounds.zxy is None:
            return func.ST_Intersects(geom, area)
        return meets_rectangle(geom, area)

    @staticmethod
    def _meets_sized(bounds: TileBounds, geom: ColumnElement[Any], area: Any) -> ColumnElement[Any]:
        """That ``geom`` meets the padded tile and is over its size floor, found through the
        layer's n-D size index (migration 0018): the features under the floor are left out
        in the index, where through the 2-D one a z2 tile over 100,000 polygons read 28,000
        rows to keep 8,000 (its SQL 102 -> 78 ms). The index's boxes are rounded outwards,
        so ``_visible`` still applies the exact floor."""
        found = func.features.size_key(geom).op("&&&")(area.c.sized)
        if bounds.zxy is None:
            return and_(found, func.ST_Intersects(geom, area.c.g))
        return and_(found, inside_or_meets(geom, area.c.g))

    def _area(self, bounds: TileBounds) -> Any:
        """A one-row CTE: the padded tile in lon/lat (``g``), the size floor (``floor``), the
        tile's box in its CRS (``box``) and the key the size index is searched with
        (``sized``: the padded tile's bbox, from the floor up).

        The floor is the padded tile's width in degrees over its units, times ``min_size``: at
        high latitudes a unit spans fewer degrees of latitude, so it keeps more, never fewer.
        """
        p = self.params
        lonlat = func.ST_Transform(self._envelope(bounds), WGS84)
        floor = (func.ST_XMax(lonlat) - func.ST_XMin(lonlat)) * (
            p.min_size / (p.extent + 2 * p.buffer)
        )
        if bounds.zxy is not None:
            tile = func.ST_TileEnvelope(*(bindparam(k, type_=Integer) for k in "zxy"))
        else:
            corners = [bindparam(k, type_=Double) for k in ("xmin", "ymin", "xmax", "ymax")]
            tile = func.ST_MakeEnvelope(*corners, bounds.srid)
        # Materialized: computed once per tile even under a generic plan. psycopg prepares the
        # statement, and once PostgreSQL switched to the generic plan an inlined area was
        # rebuilt (ST_Transform of the envelope, ST_TileEnvelope) for every row: a z2 tile
        # over 100,000 polygons took 384 instead of 134 ms.
        high: ColumnElement[Any] = literal_column("1e30::float8")
        sized = func.ST_MakeLine(
            func.ST_MakePoint(func.ST_XMin(lonlat), func.ST_YMin(lonlat), floor),
            func.ST_MakePoint(func.ST_XMax(lonlat), func.ST_YMax(lonlat), high),
        )
        columns = (lonlat.label("g"), floor.label("floor"), func.Box2D(tile).label("box"),
                   sized.label("sized"))  # fmt: skip
        return select(*columns).cte("area").prefix_with("MATERIALIZED")

    @staticmethod
    def _visible(
        layer: Layer, geom: ColumnElement[Any], floor: ColumnElement[Any]
    ) -> ColumnElement[Any]:
        """A bbox at least ``floor`` degrees wide or high (or a point, in mixed layers).

        Read from the stored float bbox (``Box2D``): ST_XMax of a geometry casts it to a box3d
        first, which walks every point (100,000 polygons: 48 against 35 ms).
        """
        box = func.Box2D(geom)
        visible = [
            func.ST_XMax(box) - func.ST_XMin(box) >= floor,
            func.ST_YMax(box) - func.ST_YMin(box) >= floor,
        ]
        if layer.geometry_type.removesuffix("25D") not in SIZED_TYPES:  # points may be there
            kind = func.ST_GeometryType(geom)
            visible += [kind == "ST_Point", kind == "ST_MultiPoint"]
        return or_(*visible)

    def _envelope(self, bounds: TileBounds) -> ColumnElement[Any]:
        """The tile widened by the buffer, in its CRS (cut at the matrix set's west and east:
        past the antimeridian the box would fold inside out in lon/lat)."""
        box = [bindparam(k, type_=Double) for k in ("west", "south", "east", "north")]
        envelope: ColumnElement[Any] = func.ST_MakeEnvelope(*box, bounds.srid)
        if bounds.srid != WGS84 and bounds.zxy is None:  # straight edges may curve in lon/lat
            envelope = func.ST_Segmentize(envelope, bindparam("step", type_=Double))
        return envelope

    def _mvt_geom(
        self,
        layer: Layer,
        bounds: TileBounds,
        geom: ColumnElement[Any],
        whole: ColumnElement[Any],
        box: ColumnElement[Any],
    ) -> ColumnElement[Any]:
        """``geom`` (a cut of ``whole``) simplified at the tile's resolution and projected (Web
        Mercator: simplified first; other matrix sets: after, when ``whole`` has detail to
        lose), in tile units of the tile ``box``."""
        p = self.params
        simplified = p.simplify > 0 and layer.geometry_type not in POINT_TYPES
        if simplified and bounds.zxy is not None:
            # Web Mercator: simplified in lon/lat, before projecting, so that fewer points are
            # projected and cut to the tile grid (the z2 tile over 100,000 polygons of 8-24
            # points: SQL 95 -> 73 ms, 220 -> 172 kB). Mercator stretches latitude by
            # 1/cos(lat): the tolerance shrinks by cos(lat) at the feature's edge farthest
            # from the equator, so no point moves more than ``simplify`` units.
            bbox = func.Box2D(whole)
            farthest = func.greatest(func.abs(func.ST_YMin(bbox)), func.abs(func.ST_YMax(bbox)))
            degrees = bindparam("tolerance_deg", type_=Double) * func.cos(func.radians(farthest))
            lean = func.ST_Transform(func.ST_Simplify(geom, degrees, True), bounds.srid)
            return func.ST_AsMVTGeom(lean, box, p.extent, p.buffer, True)
        projected: ColumnElement[Any] = func.ST_Transform(geom, bounds.srid)
        if simplified:
            # Douglas-Peucker in liblwgeom (no GEOS round trip), keeping what would collapse:
            # without preserveCollapsed a polygon about one unit wide flattens to a ring that
            # ST_AsMVTGeom then drops.
            tolerance = bindparam("tolerance", type_=Double)
            projected = case(
                (
                    func.ST_NPoints(whole) > SIMPLIFY_ABOVE,
                    func.ST_Simplify(projected, tolerance, True),
                ),
                else_=projected,
            )
        return func.ST_AsMVTGeom(projected, box, p.extent, p.buffer, True)


__all__ = ["FeatureTileParams", "FeatureTileRepository", "attribute"]
