"""Item rows written with COPY into a session temp table, then one INSERT ... SELECT.

Sending a batch as one JSON parameter (``jsonb_to_recordset``) made PostgreSQL parse the
whole batch as one document, copy each member out again, and parse every geometry as GeoJSON.
COPY streams the rows with JSON texts parsed once into their ``jsonb`` columns and geometries
as EWKB, made for the whole batch in one vectorised shapely call. The final INSERT is
still one statement, so the statement-level triggers of migration 0005 (collection extents)
see the batch as before, and ``ON CONFLICT`` still decides insert or upsert per row.

The COPY is binary: PostgreSQL reads timestamps as integers and geometries as EWKB without
parsing text or hex, which took 12 of its microseconds a row against 10 (measured over 5,000
rows), and the server skips formatting them. Each value is sent in the binary form of its
column's type, which psycopg's dumper for the declared type writes: ``bytea`` writes bytes
as they are, so a geometry goes as its EWKB and a ``jsonb`` as its format version (1)
followed by the JSON text.
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import psycopg
import shapely
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.errors import InvalidValue
from catalog.geometry import geojson_shape

# A JSON \u0000 escape (not an escaped backslash followed by "u0000"): jsonb cannot hold it.
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")

_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS items_stage (id text, geometry geometry, "
    "datetime timestamptz, end_datetime timestamptz, properties jsonb, content jsonb) "
    "ON COMMIT DELETE ROWS"
)
_COPY = (
    "COPY items_stage (id, geometry, datetime, end_datetime, properties, content) "
    "FROM STDIN (FORMAT BINARY)"
)
# What psycopg dumps each COPY value as (see the module's docstring).
_COPY_TYPES = ("text", "bytea", "timestamptz", "timestamptz", "bytea", "bytea")
_JSONB_VERSION = b"\x01"
_CONFLICT = {
    True: "DO UPDATE SET geometry = EXCLUDED.geometry, datetime = EXCLUDED.datetime, "
    "end_datetime = EXCLUDED.end_datetime, properties = EXCLUDED.properties, "
    "content = EXCLUDED.content, updated = now()",
    False: "DO NOTHING",
}


def encode_row(row: dict[str, Any]) -> None:
    """Add the row's ``jsonb`` values in binary form (``encoded``); InvalidValue if
    PostgreSQL cannot store them."""
    try:
        properties = orjson.dumps(row["properties"])
        content = orjson.dumps(row["content"])
    except orjson.JSONEncodeError as exc:  # integers beyond 64 bits
        raise InvalidValue(f"item {row['id']!r}: {exc}") from exc
    if (b"\\u0000" in properties and _NUL.search(properties)) or (
        b"\\u0000" in content and _NUL.search(content)
    ):
        raise InvalidValue(f"item {row['id']!r}: text cannot hold the NUL character (\\u0000)")
    row["encoded"] = (_JSONB_VERSION + properties, _JSONB_VERSION + content)


def copy_values(rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """The COPY values of item rows (made before the transaction opens, to keep it short)."""
    shapes = shapely.set_srid([_shape(r) for r in rows], 4326)
    wkb = shapely.to_wkb(shapes, include_srid=True)
    out = []
    for row, geometry in zip(rows, wkb, strict=True):
        properties, content = row.get("encoded") or _encoded(row)
        out.append((row["id"], geometry, row["datetime"], row["end_datetime"], properties, content))
    return out


def _shape(row: Mapping[str, Any]) -> shapely.Geometry | None:
    if "shape" in row:  # rows of serializers.item_row
        shape: shapely.Geometry | None = row["shape"]
        return shape
    return None if row["geometry"] is None else geojson_shape(row["geometry"])


def _encoded(row: Mapping[str, Any]) -> tuple[bytes, bytes]:
    copy = dict(row)
    encode_row(copy)
    encoded: tuple[bytes, bytes] = copy["encoded"]
    return encoded


async def copy_insert(
    conn: AsyncConnection, collection_id: str, values: Sequence[tuple[Any, ...]], upsert: bool
) -> set[str]:
    """Insert (or upsert) ``copy_values`` rows (sorted by id) through COPY; the ids written."""
    raw = await conn.get_raw_connection()
    driver: psycopg.AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
    statement = _COPY
    try:
        async with driver.cursor() as cursor:
            await cursor.execute(_STAGE)
            async with cursor.copy(_COPY) as copy:
                copy.set_types(list(_COPY_TYPES))
                for value in values:
                    await copy.write_row(value)
            statement = "INSERT INTO items ... SELECT FROM items_stage"
            await cursor.execute(
                "INSERT INTO items (collection_id, id, geometry, datetime, end_datetime, "
                "properties, content) SELECT %s, id, geometry, datetime, end_datetime, "
                "properties, content FROM items_stage ORDER BY id "
                f"ON CONFLICT (collection_id, id) {_CONFLICT[upsert]} RETURNING id",
                (collection_id,),
            )
            written = {r[0] for r in await cursor.fetchall()}
    except psycopg.Error as exc:
        # The same translation as statements run through SQLAlchemy (catalog.db.engine).
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
    return written
