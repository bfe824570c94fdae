"""Feature writes of vector collections (OGC API - Features Part 4): create, replace, update,
delete. Each write is one transaction that also refreshes the layer's extent and count.

Bodies are GeoJSON in CRS84. A property the layer lacks extends its schema, as a file appended
by the ingest does (``add_properties``: a typed column, named by the same rules), typed from its
JSON values (integer, number, string, boolean, JSON for objects and arrays; a property that is
null in every feature adds nothing). Values of known properties are checked against their type:
another JSON type is a ``features.TypeConflict`` (409, the twin of ``ingest.TypeConflict``, by
the same rule: integers fit a number property). Geometries are repaired like uploaded ones
(catalog/vector/reader.py) and refused when they cannot be.
"""

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import shapely
import shapely.geometry
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.db.engine import connect
from catalog.db.models import Collection
from catalog.errors import InvalidDatetime, NotFound
from catalog.geometry import as_sql
from catalog.timeparse import parse_instant

from .errors import FeatureTypeConflict, InvalidFeature
from .load import sync_document
from .repository import add_properties, get_layer, refresh_extent
from .schema import FID, GEOM, Layer, PropertyType, fits

MAX_PROPERTIES = 1000  # PostgreSQL allows 1600 columns a table; a schema grows within this
MAX_NAME = 256


def _geometry(value: Any) -> shapely.Geometry:
    try:
        shape = shapely.geometry.shape(value)
    except Exception as exc:  # shapely says what is wrong with the GeoJSON
        raise InvalidFeature(f"the geometry is not GeoJSON: {exc}") from exc
    if not shape.is_valid:
        shape = shapely.make_valid(shape, method="structure", keep_collapsed=False)
    if shape.is_empty or not shape.is_valid:
        raise InvalidFeature("the geometry is empty, or invalid beyond repair")
    return shape


def _value(layer: Layer, name: str, kind: PropertyType, value: Any) -> Any:
    if value is None:
        return None
    ok = {
        PropertyType.STRING: isinstance(value, str),
        PropertyType.INTEGER: isinstance(value, int) and not isinstance(value, bool),
        PropertyType.NUMBER: isinstance(value, int | float) and not isinstance(value, bool),
        PropertyType.BOOLEAN: isinstance(value, bool),
        PropertyType.DATE: isinstance(value, str),
        PropertyType.DATETIME: isinstance(value, str),
        PropertyType.JSON: True,
    }[kind]
    if not ok:
        raise FeatureTypeConflict(
            f"property {name!r} of {layer.collection_id!r} is {kind.value}: {value!r} is "
            f"{_JSON_NAMES.get(type(value), 'JSON')}"
        )
    try:
        if kind is PropertyType.DATE:
            return dt.date.fromisoformat(value)
        if kind is PropertyType.DATETIME:
            return parse_instant(value)
        if kind is PropertyType.JSON:
            return json.loads(json.dumps(value))
        if kind is PropertyType.STRING and "\x00" in value:
            raise ValueError("a NUL character")
        return value
    except (ValueError, TypeError, InvalidDatetime) as exc:
        raise InvalidFeature(
            f"property {name!r} of {layer.collection_id!r} is {kind.value}: {value!r} is not "
            f"({exc})"
        ) from None


_JSON_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               dict: "an object", list: "an array"}  # fmt: skip


def json_type(value: Any) -> PropertyType | None:
    """The property type a JSON value gives a new property (None for null: no type)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return PropertyType.BOOLEAN
    if isinstance(value, int):
        return PropertyType.INTEGER
    if isinstance(value, float):
        return PropertyType.NUMBER
    if isinstance(value, str):
        return PropertyType.STRING
    return PropertyType.JSON


def new_properties(layer: Layer, features: list[Any]) -> list[tuple[str, PropertyType]]:
    """The properties ``features`` give that ``layer`` lacks, typed from their values (in the
    order first met); FeatureTypeConflict when two features give one of them two types."""
    found: dict[str, PropertyType] = {}
    for feature in features:
        props = feature.get("properties") if isinstance(feature, Mapping) else None
        if not isinstance(props, Mapping):
            continue  # _values says what is wrong with it
        for name, value in props.items():
            kind = json_type(value)
            if kind is None or layer.prop(name) is not None:
                continue
            seen = found.setdefault(name, kind)
            if fits(kind, seen):  # an integer, then a number: a number property
                found[name] = kind
            elif not fits(seen, kind):
                raise FeatureTypeConflict(
                    f"new property {name!r} is {seen.value} in one feature and {kind.value} in "
                    "another"
                )
    for name in found:
        if not name or len(name) > MAX_NAME or "\x00" in name:
            raise InvalidFeature(f"a property name is 1 to {MAX_NAME} characters: {name[:80]!r}")
    if found and len(layer.properties) + len(found) > MAX_PROPERTIES:
        raise InvalidFeature(
            f"{layer.collection_id!r} would have more than {MAX_PROPERTIES} properties"
        )
    return list(found.items())


def _values(layer: Layer, feature: Any, partial: bool = False) -> dict[str, Any]:
    """The columns a Feature body sets (only the members it has when ``partial``)."""
    if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
        raise InvalidFeature("the body must be a GeoJSON Feature (or a FeatureCollection)")
    props = feature.get("properties") or {}
    if not isinstance(props, Mapping):
        raise InvalidFeature("'properties' must be an object")
    # A property null in the body and unknown to the layer is as good as absent.
    unknown = [name for name in props if layer.prop(name) is None and props[name] is not None]
    if unknown:
        allowed = [p.name for p in layer.properties]
        raise InvalidFeature(f"unknown properties {unknown}; {layer.collection_id!r} has {allowed}")
    values: dict[str, Any] = {}
    if "geometry" in feature or not partial:
        if feature.get("geometry") is None:
            raise InvalidFeature("a feature of a vector collection needs a geometry")
        values[GEOM] = as_sql(_geometry(feature["geometry"]))
    for prop in layer.properties:
        if prop.name in props or not partial:
            values[prop.column] = _value(layer, prop.name, prop.type, props.get(prop.name))
    return values


def feature_id(value: str) -> int:
    """A feature id from a URL; NotFound for anything that is not one of ours."""
    if not value.isdecimal() or len(value) > 18:
        raise NotFound(f"feature {value!r} does not exist")
    return int(value)


class FeatureWriter:
    """Writes features of vector collections; each method is one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _layer(self, conn: AsyncConnection, collection_id: str) -> Layer:
        layer = await get_layer(conn, collection_id)
        if layer is None:
            raise NotFound(f"collection {collection_id!r} holds no features")
        return layer

    async def _locked_layer(self, conn: AsyncConnection, collection_id: str) -> Layer:
        """The layer as the last writer left it, with its collection's row locked first.

        Every write takes the locks in one order: the collection's row (as the ingest's loads
        do), the feature table, the layer's row (``refresh_extent``), the collection's row
        again (``sync_document``). A writer that took the layer's row without the collection's
        (no new property) deadlocked with one adding a property (which held the collection's
        row and then wanted the layer's), or with an append; writers of one collection now
        queue at its row, as they queued at the layer's row before.
        """
        await conn.execute(
            select(Collection.id).where(Collection.id == collection_id).with_for_update()
        )
        return await self._layer(conn, collection_id)

    async def _extend(self, conn: AsyncConnection, layer: Layer, features: list[Any]) -> Layer:
        """The layer with the new properties of ``features`` added (the ingest's append path:
        ``add_properties``); the caller holds the collection row's lock (``_locked_layer``)."""
        new = new_properties(layer, features)
        return await add_properties(conn, layer, new) if new else layer

    async def _done(self, conn: AsyncConnection, layer: Layer) -> None:
        await sync_document(conn, await refresh_extent(conn, layer))

    async def create(self, collection_id: str, body: Any) -> list[int]:
        """Insert one Feature or every Feature of a FeatureCollection; their new ids."""
        async with connect(self.engine, True) as conn:
            layer = await self._locked_layer(conn, collection_id)
            many = isinstance(body, Mapping) and body.get("type") == "FeatureCollection"
            features = body.get("features") if many else [body]
            if not isinstance(features, list) or not features:
                raise InvalidFeature("a FeatureCollection needs a non-empty 'features' list")
            layer = await self._extend(conn, layer, features)
            rows = [_values(layer, feature) for feature in features]
            fids = []
            for row in rows:  # one statement per feature: geometries are bound expressions
                made = await conn.execute(insert(layer.table).values(**row)
                                          .returning(layer.table.c[FID]))  # fmt: skip
                fids.append(int(made.scalar_one()))
            await self._done(conn, layer)
        return fids

    async def replace(self, collection_id: str, fid: int, body: Any) -> None:
        """PUT: every property the body does not give becomes null."""
        await self._update(collection_id, fid, body, partial=False)

    async def patch(self, collection_id: str, fid: int, body: Any) -> None:
        """PATCH (a merge patch): only the members the body gives change."""
        await self._update(collection_id, fid, body, partial=True)

    async def _update(self, collection_id: str, fid: int, body: Any, partial: bool) -> None:
        async with connect(self.engine, True) as conn:
            layer = await self._locked_layer(conn, collection_id)
            if partial and isinstance(body, Mapping):
                body = {"type": "Feature", **body}
            layer = await self._extend(conn, layer, [body])
            values = _values(layer, body, partial)
            table = layer.table
            match = table.c[FID] == fid
            if values:
                done = await conn.execute(
                    update(table).where(match).values(**values).returning(table.c[FID])
                )
            else:  # an empty merge patch changes nothing (RFC 7396)
                done = await conn.execute(select(table.c[FID]).where(match))
            if done.first() is None:
                raise NotFound(f"feature {fid} of {collection_id!r} does not exist")
            await self._done(conn, layer)

    async def delete(self, collection_id: str, fid: int) -> None:
        """Delete a feature (nothing happens for one that is not there)."""
        async with connect(self.engine, True) as conn:
            layer = await self._locked_layer(conn, collection_id)
            await conn.execute(delete(layer.table).where(layer.table.c[FID] == fid))
            await self._done(conn, layer)

    async def document(self, collection_id: str, fid: int, base: str) -> dict[str, Any]:
        """The feature as GeoJSON with its self and collection links."""
        async with connect(self.engine) as conn:
            layer = await self._layer(conn, collection_id)
            table = layer.table
            columns = [func.ST_AsGeoJSON(table.c[GEOM], 15).label("_geojson"),
                       *(table.c[p.column] for p in layer.properties)]  # fmt: skip
            row = (await conn.execute(select(*columns).where(table.c[FID] == fid))).first()
        if row is None:
            raise NotFound(f"feature {fid} of {collection_id!r} does not exist")
        props = {p.name: _json(row._mapping[p.column]) for p in layer.properties}
        url = f"{base}collections/{collection_id}"
        return {
            "type": "Feature",
            "id": fid,
            "geometry": json.loads(row._mapping["_geojson"]),
            "properties": props,
            "links": [
                {"rel": "self", "href": f"{url}/items/{fid}", "type": "application/geo+json"},
                {"rel": "collection", "href": url, "type": "application/json"},
            ],
        }


def _json(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value
