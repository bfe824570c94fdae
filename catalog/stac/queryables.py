"""Queryables: what a filter, sortby or query may name, and the typed SQL expression for each.

Core fields map to columns. Item properties are stored as JSONB; each is read through a *typed*
expression that is NULL when an item's value has another JSON type, so a comparison never fails
on someone else's data and the same expression can back an index (see migration 0001).
Which properties exist, with which JSON types, is recorded per collection in ``queryables`` as
items are written.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Text,
    case,
    cast,
    func,
    literal,
    literal_column,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from catalog.db.models import Item


class Kind(StrEnum):
    """The type a queryable is compared as."""

    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    ARRAY = "array"
    OBJECT = "object"
    GEOMETRY = "geometry"


@dataclass(frozen=True)
class Field:
    """A resolved queryable: its name, the kinds its values take, and how to read it in SQL."""

    name: str
    kinds: frozenset[Kind]
    column: ColumnElement[Any] | None = None
    end_column: ColumnElement[Any] | None = None

    @property
    def is_property(self) -> bool:
        """Whether the value lives in the item's JSONB properties."""
        return self.column is None

    @property
    def kind(self) -> Kind | None:
        """The single kind of this field, or None when its values have several."""
        return next(iter(self.kinds)) if len(self.kinds) == 1 else None

    def expr(self, kind: Kind | None = None) -> ColumnElement[Any]:
        """SQL expression of this field read as ``kind`` (default: its only kind)."""
        if self.column is not None:
            return self.column
        kind = kind or self.kind or Kind.OBJECT
        return typed_property(self.name, kind)

    def span(self) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
        """Start and end of the field's time span (an instant has start == end)."""
        start = self.expr(Kind.TIMESTAMP)
        return start, (self.end_column if self.end_column is not None else start)


class RenderedOnce(ColumnElement[Any]):
    """``inner``, rendered once per statement however often it appears in it.

    A filter of N comparisons on one property holds its typed expression N times; SQLAlchemy
    renders every occurrence anew, which was most of a large filter's compile time (and that
    compile runs on the event loop, in ``execute``). Caching stays on (``inherit_cache``).
    """

    inherit_cache = True
    _traverse_internals = [("inner", InternalTraversal.dp_clauseelement)]

    def __init__(self, inner: ColumnElement[Any]) -> None:
        self.inner = inner
        self.type = inner.type


@compiles(RenderedOnce)
def _render_once(element: RenderedOnce, compiler: SQLCompiler, **kw: Any) -> str:
    done: dict[int, str] = compiler.__dict__.setdefault("_terracat_rendered", {})
    text = done.get(id(element))
    if text is None:
        text = done[id(element)] = compiler.process(element.inner, **kw)
    return text


def _key(name: str) -> ColumnElement[str]:
    # Rendered inline (quoted by SQLAlchemy) so the expression equals the indexed one.
    return literal(name, Text, literal_execute=True)


def typed_property(name: str, kind: Kind) -> ColumnElement[Any]:
    """Item property ``name`` read as ``kind``; NULL where the stored JSON has another type."""
    value = Item.properties.op("->")(_key(name))
    json_type = func.jsonb_typeof(value)

    def is_(json_name: str) -> ColumnElement[bool]:
        return json_type == literal_column(f"'{json_name}'")

    if kind is Kind.NUMBER:
        return case((is_("number"), cast(value, Float(precision=53))))
    if kind is Kind.STRING:
        return case((is_("string"), Item.properties.op("->>", return_type=Text)(_key(name))))
    if kind is Kind.BOOLEAN:
        return case((is_("boolean"), cast(value, Boolean)))
    if kind is Kind.TIMESTAMP:
        return func.terracat_to_tstz(
            Item.properties.op("->>", return_type=Text)(_key(name)),
            type_=DateTime(timezone=True),
        )
    if kind is Kind.ARRAY:
        return type_coerce(case((is_("array"), value)), JSONB)
    return value


# Mapped attributes as their column elements (``.expression``), what SQLAlchemy builds SQL from.
CORE_FIELDS: dict[str, Field] = {
    "id": Field("id", frozenset({Kind.STRING}), Item.id.expression),
    "collection": Field("collection", frozenset({Kind.STRING}), Item.collection_id.expression),
    "datetime": Field(
        "datetime",
        frozenset({Kind.TIMESTAMP}),
        Item.datetime.expression,
        Item.end_datetime.expression,
    ),
    "start_datetime": Field(
        "start_datetime", frozenset({Kind.TIMESTAMP}), Item.datetime.expression
    ),
    "end_datetime": Field(
        "end_datetime", frozenset({Kind.TIMESTAMP}), Item.end_datetime.expression
    ),
    "geometry": Field("geometry", frozenset({Kind.GEOMETRY}), Item.geometry.expression),
}

# Properties whose type is fixed by STAC common metadata or widely used extensions.
WELL_KNOWN: dict[str, Kind] = {
    "created": Kind.TIMESTAMP,
    "updated": Kind.TIMESTAMP,
    "title": Kind.STRING,
    "description": Kind.STRING,
    "platform": Kind.STRING,
    "constellation": Kind.STRING,
    "instruments": Kind.ARRAY,
    "mission": Kind.STRING,
    "gsd": Kind.NUMBER,
    "eo:cloud_cover": Kind.NUMBER,
    "eo:snow_cover": Kind.NUMBER,
    "proj:epsg": Kind.NUMBER,
    "proj:code": Kind.STRING,
    "view:off_nadir": Kind.NUMBER,
    "view:sun_azimuth": Kind.NUMBER,
    "view:sun_elevation": Kind.NUMBER,
}


def json_kind(value: Any) -> Kind | None:
    """The kind a JSON property value is recorded as (None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return Kind.BOOLEAN
    if isinstance(value, int | float):
        return Kind.NUMBER
    if isinstance(value, str):
        return Kind.TIMESTAMP if _looks_like_timestamp(value) else Kind.STRING
    if isinstance(value, list):
        return Kind.ARRAY
    return Kind.OBJECT


def _looks_like_timestamp(value: str) -> bool:
    if len(value) < 20 or value[4] != "-" or value[10] not in "Tt ":
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return False
    return True


def property_kinds(properties: Iterable[Mapping[str, Any]]) -> set[tuple[str, Kind]]:
    """Distinct (name, kind) pairs over the given item properties, for the registry."""
    seen: set[tuple[str, Kind]] = set()
    for props in properties:
        for name, value in props.items():
            if name in CORE_FIELDS:
                continue
            kind = WELL_KNOWN.get(name) or json_kind(value)
            if kind is not None:
                seen.add((name, kind))
    return seen


class UnknownQueryable(LookupError):
    """A name that is neither a core field nor a property recorded for the searched collections."""


def strip_prefix(name: str) -> str:
    """Accept ``properties.x`` (sortby/fields style) as ``x``."""
    return name[len("properties.") :] if name.startswith("properties.") else name


def resolve(name: str, registry: Mapping[str, frozenset[Kind]]) -> Field:
    """Resolve ``name`` against core fields and the property registry."""
    name = strip_prefix(name)
    if name in CORE_FIELDS:
        return CORE_FIELDS[name]
    if name in WELL_KNOWN and name in registry:
        return Field(name, frozenset({WELL_KNOWN[name]}))
    kinds = registry.get(name)
    if not kinds:
        raise UnknownQueryable(name)
    return Field(name, kinds)
