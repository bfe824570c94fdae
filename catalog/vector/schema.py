"""What a vector collection holds: its typed properties, and the SQLAlchemy table over them.

A property has a stable *type* name (``string``, ``integer``, ``number``, ``boolean``, ``date``,
``datetime``, ``json``), a PostgreSQL column type, and the CQL2 kind it is compared as. Its
column is the property name when that is a plain SQL identifier, else ``p{n}``: property names
come from files and may be anything, columns must not collide with ``fid``/``geom`` or each other.
"""

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

from catalog.stac.queryables import Kind

SCHEMA = "features"
FID = "fid"
GEOM = "geom"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_RESERVED = frozenset({FID, GEOM, "oid", "ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"})


class PropertyType(StrEnum):
    """The type of a feature property, as stored and as advertised in queryables."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    JSON = "json"

    @property
    def sql(self) -> str:
        """The PostgreSQL column type (for DDL)."""
        return _SQL[self]

    @property
    def sa_type(self) -> TypeEngine[Any]:
        """The SQLAlchemy type of the column."""
        made: TypeEngine[Any] = _SA[self]()
        return made

    @property
    def kind(self) -> Kind:
        """The CQL2 kind values of this type are compared as."""
        return _KIND[self]

    @property
    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of a value (queryables)."""
        return dict(_JSON_SCHEMA[self])


_SQL = {
    PropertyType.STRING: "text",
    PropertyType.INTEGER: "bigint",
    PropertyType.NUMBER: "double precision",
    PropertyType.BOOLEAN: "boolean",
    PropertyType.DATE: "date",
    PropertyType.DATETIME: "timestamptz",
    PropertyType.JSON: "jsonb",
}
_SA: dict[PropertyType, Any] = {
    PropertyType.STRING: Text,
    PropertyType.INTEGER: BigInteger,
    PropertyType.NUMBER: Double,
    PropertyType.BOOLEAN: Boolean,
    PropertyType.DATE: Date,
    PropertyType.DATETIME: lambda: DateTime(timezone=True),
    PropertyType.JSON: JSONB,
}
_KIND = {
    PropertyType.STRING: Kind.STRING,
    PropertyType.INTEGER: Kind.NUMBER,
    PropertyType.NUMBER: Kind.NUMBER,
    PropertyType.BOOLEAN: Kind.BOOLEAN,
    PropertyType.DATE: Kind.TIMESTAMP,
    PropertyType.DATETIME: Kind.TIMESTAMP,
    PropertyType.JSON: Kind.OBJECT,
}
_JSON_SCHEMA: dict[PropertyType, dict[str, Any]] = {
    PropertyType.STRING: {"type": "string"},
    PropertyType.INTEGER: {"type": "integer"},
    PropertyType.NUMBER: {"type": "number"},
    PropertyType.BOOLEAN: {"type": "boolean"},
    PropertyType.DATE: {"type": "string", "format": "date"},
    PropertyType.DATETIME: {"type": "string", "format": "date-time"},
    PropertyType.JSON: {},
}


def fits(column: PropertyType, value: PropertyType) -> bool:
    """Whether values of type ``value`` go into a property of type ``column``: the same type,
    or integers into a number (appends and feature writes follow this one rule)."""
    return column is value or (column is PropertyType.NUMBER and value is PropertyType.INTEGER)


@dataclass(frozen=True)
class Property:
    """One property of a vector collection: its name in documents, type, and column."""

    name: str
    type: PropertyType
    column: str

    def to_json(self) -> dict[str, str]:
        """The form kept in ``vector_layers.properties``."""
        return {"name": self.name, "type": str(self.type), "column": self.column}

    @classmethod
    def from_json(cls, value: dict[str, str]) -> "Property":
        """Read the stored form."""
        return cls(value["name"], PropertyType(value["type"]), value["column"])


def column_names(names: Sequence[str], taken: Sequence[str] = ()) -> list[str]:
    """Columns for new properties ``names``, given the columns already ``taken``.

    A name that is a plain identifier keeps it; any other gets ``p{position}`` (its place in
    the layer's property list, from 0), with a suffix should even that be taken.
    """
    used = set(taken) | _RESERVED
    columns: list[str] = []
    for position, name in enumerate(names, start=len(taken)):
        column = name
        if not _IDENTIFIER.fullmatch(name) or name in used:
            column, k = f"p{position}", 0
            while column in used:
                k += 1
                column = f"p{position}_{k}"
        used.add(column)
        columns.append(column)
    return columns


@dataclass(frozen=True)
class Layer:
    """A vector collection's table and what it holds (a ``vector_layers`` row)."""

    collection_id: str
    table_name: str
    geometry_type: str
    source_crs: str | None
    properties: tuple[Property, ...]
    datetime_property: str | None = None
    annotates: str | None = None  # the raster collection these features describe
    feature_count: int = 0
    bbox: tuple[float, float, float, float] | None = None
    interval: tuple[datetime | None, datetime | None] = (None, None)
    updated: datetime | None = None  # set by every write (refresh_extent): a version of the data
    # columns whose [min, max] the row keeps (``bounds``, set by every write with the extent)
    bounded: tuple[str, ...] = ()
    table: Table = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "table", feature_table(self.table_name, self.properties))

    def prop(self, name: str) -> Property | None:
        """The property called ``name``, if any."""
        return next((p for p in self.properties if p.name == name), None)

    @property
    def qualified_name(self) -> str:
        """``features."l12"``, quoted for SQL text."""
        return f'{SCHEMA}."{self.table_name}"'


def feature_table(table_name: str, properties: Sequence[Property]) -> Table:
    """The SQLAlchemy Table of a layer (own MetaData: tables come and go at run time).

    One object per table and schema, kept: statements over the same Table object hit
    SQLAlchemy's compiled cache, where a Table made anew for every request was compiled
    anew with every statement (4-5 ms a page of features, profiled).
    """
    return _feature_table(table_name, tuple(properties))


@functools.lru_cache(maxsize=1024)
def _feature_table(table_name: str, properties: tuple[Property, ...]) -> Table:
    return Table(
        table_name,
        MetaData(),
        Column(FID, BigInteger, primary_key=True),
        Column(GEOM, Geometry(srid=4326, spatial_index=False)),
        *(Column(p.column, p.type.sa_type, key=p.column) for p in properties),
        schema=SCHEMA,
    )


# A feature table's spatial indexes, by name suffix: its geometries (2-D), and their bboxes
# lifted to their size (n-D, ``features.size_key``, migration 0018), which low-zoom tiles search.
_SPATIAL_INDEXES = {
    "geom": f"gist ({GEOM})",
    "size": f"gist ({SCHEMA}.size_key({GEOM}) gist_geometry_ops_nd)",
}


def index_sql(table_name: str) -> list[str]:
    """DDL of a feature table's spatial indexes."""
    table = f'{SCHEMA}."{table_name}"'
    return [f'CREATE INDEX "{table_name}_{suffix}" ON {table} USING {method}'
            for suffix, method in _SPATIAL_INDEXES.items()]  # fmt: skip


def drop_index_sql(table_name: str) -> list[str]:
    """DDL dropping what ``index_sql`` makes (a bulk load builds them again after it)."""
    return [f'DROP INDEX {SCHEMA}."{table_name}_{suffix}"' for suffix in _SPATIAL_INDEXES]


def create_table_sql(table_name: str, properties: Sequence[Property]) -> list[str]:
    """DDL of a new feature table and its spatial indexes (names are ours, never a client's)."""
    columns = "".join(f', "{p.column}" {p.type.sql}' for p in properties)
    return [
        f'CREATE TABLE {SCHEMA}."{table_name}" ('
        f"{FID} bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
        f"{GEOM} geometry NOT NULL CHECK (ST_SRID({GEOM}) = 4326){columns})",
        *index_sql(table_name),
    ]
