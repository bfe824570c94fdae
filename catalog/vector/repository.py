"""SQL of vector collections: layer rows, feature tables, bulk loads and extents.

Writes take the caller's connection (a job's success transaction, a feature transaction), so a
file loads wholly or not at all. DDL names are ours (``l{n}``, columns from ``column_names``);
values are always bound or COPYed.
"""

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.db.engine import connect

from .schema import (
    FID,
    GEOM,
    Layer,
    Property,
    PropertyType,
    column_names,
    create_table_sql,
)

_LAYER_COLUMNS = (
    "collection_id, table_name, geometry_type, source_crs, properties, datetime_property, "
    "annotates, feature_count, west, south, east, north, start_datetime, end_datetime, updated, "
    "bounds"
)


def _layer(row: Any) -> Layer:
    bbox = None if row.west is None else (row.west, row.south, row.east, row.north)
    return Layer(
        collection_id=row.collection_id,
        table_name=row.table_name,
        geometry_type=row.geometry_type,
        source_crs=row.source_crs,
        properties=tuple(Property.from_json(p) for p in row.properties),
        datetime_property=row.datetime_property,
        annotates=row.annotates,
        feature_count=row.feature_count,
        bbox=bbox,
        interval=(row.start_datetime, row.end_datetime),
        updated=row.updated,
        bounded=tuple(row.bounds or ()),
    )


async def get_layer(conn: AsyncConnection, collection_id: str) -> Layer | None:
    """The layer of a collection, or None when it holds no vector features."""
    row = (
        await conn.execute(
            text(f"SELECT {_LAYER_COLUMNS} FROM vector_layers WHERE collection_id = :c"),
            {"c": collection_id},
        )
    ).first()
    return None if row is None else _layer(row)


async def get_layer_version(conn: AsyncConnection, collection_id: str) -> tuple[Layer, str] | None:
    """The layer of a collection and its row version (``xmin``, the transaction that last
    wrote the row: any change of the layer changes it), or None."""
    row = (
        await conn.execute(
            text(
                f"SELECT {_LAYER_COLUMNS}, xmin::text AS version FROM vector_layers "
                "WHERE collection_id = :c"
            ),
            {"c": collection_id},
        )
    ).first()
    return None if row is None else (_layer(row), row.version)


async def _reread(conn: AsyncConnection, collection_id: str) -> Layer:
    layer = await get_layer(conn, collection_id)
    if layer is None:
        raise RuntimeError(f"the layer of {collection_id!r} was just written, yet is not there")
    return layer


async def create_layer(
    conn: AsyncConnection,
    collection_id: str,
    properties: Sequence[tuple[str, PropertyType]],
    geometry_type: str,
    source_crs: str | None = None,
    datetime_property: str | None = None,
    annotates: str | None = None,
) -> Layer:
    """Make the feature table of ``collection_id`` (which must exist) and describe it."""
    number = (await conn.execute(text("SELECT nextval('vector_layer_seq')"))).scalar_one()
    table_name = f"l{number}"
    columns = column_names([name for name, _ in properties])
    props = tuple(
        Property(name, kind, column)
        for (name, kind), column in zip(properties, columns, strict=True)
    )
    for statement in create_table_sql(table_name, props):
        await conn.execute(text(statement))
    await conn.execute(
        text(
            "INSERT INTO vector_layers (collection_id, table_name, geometry_type, source_crs, "
            "properties, datetime_property, annotates) "
            "VALUES (:c, :t, :g, :crs, CAST(:p AS jsonb), :d, :a)"
        ),
        {
            "c": collection_id,
            "t": table_name,
            "g": geometry_type,
            "crs": source_crs,
            "p": _dumps([p.to_json() for p in props]),
            "d": datetime_property,
            "a": annotates,
        },
    )
    return await _reread(conn, collection_id)


async def add_properties(
    conn: AsyncConnection, layer: Layer, new: Sequence[tuple[str, PropertyType]]
) -> Layer:
    """Extend the layer's schema with properties it does not have yet (appends)."""
    fresh = [(name, kind) for name, kind in new if layer.prop(name) is None]
    if not fresh:
        return layer
    columns = column_names([n for n, _ in fresh], taken=[p.column for p in layer.properties])
    added = [Property(n, k, c) for (n, k), c in zip(fresh, columns, strict=True)]
    for prop in added:
        await conn.execute(
            text(f'ALTER TABLE {layer.qualified_name} ADD COLUMN "{prop.column}" {prop.type.sql}')
        )
    props = [p.to_json() for p in (*layer.properties, *added)]
    await conn.execute(
        text(
            "UPDATE vector_layers SET properties = CAST(:p AS jsonb), updated = now() "
            "WHERE collection_id = :c"
        ),
        {"p": _dumps(props), "c": layer.collection_id},
    )
    return await _reread(conn, layer.collection_id)


async def copy_features(
    conn: AsyncConnection,
    layer: Layer,
    names: Sequence[str],
    rows: Iterable[Sequence[Any]],
    srid: int = 4326,
) -> int:
    """COPY features into the layer; return how many were added.

    Each row is ``(wkb, value of names[0], value of names[1], ...)`` with the geometry in
    ``srid``. (Ingest does not come here: its job child reprojects and repairs, and its
    commit COPYs straight into the table, catalog/vector/load.py.) Rows go
    into a temporary table first, then one INSERT ... SELECT reprojects to EPSG:4326 and repairs
    invalid geometries with ST_MakeValid, so the whole load is one statement's work in PostGIS.
    """
    props = [layer.prop(name) for name in names]
    missing = [name for name, p in zip(names, props, strict=True) if p is None]
    if missing:
        raise ValueError(f"not properties of {layer.collection_id!r}: {missing}")
    known = [p for p in props if p is not None]
    temp = "_vector_load"
    await conn.execute(text(f"DROP TABLE IF EXISTS pg_temp.{temp}"))
    columns = "".join(f', "{p.column}" {p.type.sql}' for p in known)
    await conn.execute(text(f"CREATE TEMP TABLE {temp} (wkb bytea{columns}) ON COMMIT DROP"))
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if driver is None:
        raise RuntimeError("the connection was closed during the load")
    column_list = ", ".join(["wkb", *(f'"{p.column}"' for p in known)])
    async with driver.cursor() as cursor:
        async with cursor.copy(f"COPY {temp} ({column_list}) FROM STDIN") as copy:
            for row in rows:
                await copy.write_row(row)
    geom = "ST_GeomFromWKB(wkb)"
    if srid != 4326:
        geom = f"ST_Transform(ST_SetSRID({geom}, :srid), 4326)"
    else:
        geom = f"ST_SetSRID({geom}, 4326)"
    targets = ", ".join([GEOM, *(f'"{p.column}"' for p in known)])
    sources = ", ".join(
        [
            "CASE WHEN ST_IsValid(g) THEN g ELSE ST_MakeValid(g) END",
            *(f'"{p.column}"' for p in known),
        ]
    )
    result = await conn.execute(
        text(
            f"INSERT INTO {layer.qualified_name} ({targets}) "
            f"SELECT {sources} FROM (SELECT {geom} AS g, * FROM {temp}) s"
        ),
        {"srid": srid},
    )
    await conn.execute(text(f"DROP TABLE pg_temp.{temp}"))
    return int(result.rowcount or 0)


async def refresh_extent(conn: AsyncConnection, layer: Layer) -> Layer:
    """Recount the layer's features and recompute its extent and the range of each number and
    date property (after every write).

    The layer's row is locked first: the recount, a statement of its own, then sees every
    write committed before it, where an UPDATE racing another one would keep the figures of
    its own snapshot (a count or range missing the other's rows).
    """
    await conn.execute(
        text("SELECT 1 FROM vector_layers WHERE collection_id = :c FOR UPDATE"),
        {"c": layer.collection_id},
    )
    dt = layer.prop(layer.datetime_property) if layer.datetime_property else None
    # Typed: a bare NULL is text, which timestamptz columns refuse.
    t0, t1 = (
        (f'min("{dt.column}")::timestamptz', f'max("{dt.column}")::timestamptz')
        if dt
        else ("NULL::timestamptz", "NULL::timestamptz")
    )
    await conn.execute(
        text(
            "UPDATE vector_layers v SET feature_count = s.n, west = ST_XMin(s.e), "
            "south = ST_YMin(s.e), east = ST_XMax(s.e), north = ST_YMax(s.e), "
            "start_datetime = s.t0, end_datetime = s.t1, bounds = s.b, updated = now() "
            f"FROM (SELECT count(*) AS n, ST_Extent({GEOM}) AS e, {t0} AS t0, {t1} AS t1, "
            f"{_bounds_sql(layer)} AS b FROM {layer.qualified_name}) s "
            "WHERE v.collection_id = :c"
        ),
        {"c": layer.collection_id},
    )
    return await _reread(conn, layer.collection_id)


_RANGED = (PropertyType.NUMBER, PropertyType.INTEGER, PropertyType.DATE, PropertyType.DATETIME)
_PAIRS = 50  # jsonb_build_object takes at most 100 arguments


def _bounds_sql(layer: Layer) -> str:
    """``{column: [min, max]}`` of the layer's number and date properties, as SQL over its
    table (numbers: finite values only; column names are ours, safe in SQL text)."""
    pairs = []
    for prop in layer.properties:
        if prop.type not in _RANGED:
            continue
        column = f'"{prop.column}"'
        where = (
            f" FILTER (WHERE {column} > '-Infinity' AND {column} < 'Infinity')"
            if prop.type is PropertyType.NUMBER
            else ""
        )
        pairs.append(
            f"'{prop.column}', jsonb_build_array(min({column}){where}, max({column}){where})"
        )
    if not pairs:
        return "'{}'::jsonb"
    chunks = [pairs[i : i + _PAIRS] for i in range(0, len(pairs), _PAIRS)]
    return " || ".join(f"jsonb_build_object({', '.join(chunk)})" for chunk in chunks)


class VectorRepository:
    """Read access to layers for the API (writes go through the functions above)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def layer(self, collection_id: str) -> Layer | None:
        """The layer of ``collection_id``, or None."""
        async with connect(self.engine) as conn:
            return await get_layer(conn, collection_id)

    async def layers(self, collection_ids: Iterable[str] | None = None) -> dict[str, Layer]:
        """Every layer (or those of ``collection_ids``), by collection id."""
        query = f"SELECT {_LAYER_COLUMNS} FROM vector_layers"
        params: dict[str, Any] = {}
        if collection_ids is not None:
            query += " WHERE collection_id = ANY(:ids)"
            params["ids"] = list(collection_ids)
        async with connect(self.engine) as conn:
            rows = (await conn.execute(text(query), params)).all()
        return {row.collection_id: _layer(row) for row in rows}

    async def related(self, collection_ids: Sequence[str]) -> list[Layer]:
        """The layers of ``collection_ids`` and those annotating any of them (documents)."""
        query = (
            f"SELECT {_LAYER_COLUMNS} FROM vector_layers "
            "WHERE collection_id = ANY(:ids) OR annotates = ANY(:ids) ORDER BY collection_id"
        )
        async with connect(self.engine) as conn:
            rows = (await conn.execute(text(query), {"ids": list(collection_ids)})).all()
        return [_layer(row) for row in rows]


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


__all__ = [
    "FID",
    "GEOM",
    "VectorRepository",
    "add_properties",
    "copy_features",
    "create_layer",
    "get_layer",
    "get_layer_version",
    "refresh_extent",
]
