"""CQL2 (text or JSON) compiled to a parameterized SQLAlchemy clause.

Parsing and validation are the ``cql2`` library's (Rust, follows the OGC 21-065 grammar and JSON
schema); it hands us canonical CQL2-JSON. The translation to SQL is ours because no maintained
library emits bound parameters for typed JSONB properties: pygeofilter gets bbox literals,
``between`` and array operators wrong (NOTES.md), and ``cql2.to_sql`` inlines values as text.

Every user value becomes a bound parameter; property names resolve through the queryables
registry (or another resolver, for collection search) to typed SQL expressions.
"""

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import cql2 as cql2_lib
import orjson
from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Text,
    and_,
    bindparam,
    exists,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from . import queryables
from .errors import InvalidFilter, InvalidGeometry, InvalidParameter, UnknownQueryable
from .geometry import GEOMETRY_TYPES, as_sql, bbox_shape, geojson_shape
from .queryables import Field, Kind
from .timeparse import parse_instant

Resolver = Callable[[str], Field]
Clause = ColumnElement[Any]
MAX_DEPTH = 100

_COMPARISONS = {"=", "<>", "<", "<=", ">", ">="}
_SPATIAL = {
    "s_intersects": func.ST_Intersects,
    "s_equals": func.ST_Equals,
    "s_disjoint": func.ST_Disjoint,
    "s_touches": func.ST_Touches,
    "s_within": func.ST_Within,
    "s_overlaps": func.ST_Overlaps,
    "s_crosses": func.ST_Crosses,
    "s_contains": func.ST_Contains,
}
_NEG_INF = literal_column("'-infinity'::timestamptz")
_POS_INF = literal_column("'infinity'::timestamptz")


# -- parsing -----------------------------------------------------------------------------------
def parse(value: str | dict[str, Any], lang: str | None = None) -> dict[str, Any] | bool:
    """Parse and validate CQL2 text or JSON; return canonical CQL2-JSON."""
    if isinstance(value, bool):
        return value
    try:
        if isinstance(value, dict) or lang == "cql2-json":
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            expr = cql2_lib.parse_json(text)
        elif lang in (None, "cql2-text"):
            if not isinstance(value, str):
                raise InvalidFilter("a cql2-text filter must be a string")
            stripped = value.lstrip()
            expr = (
                cql2_lib.parse_json(value)
                if lang is None and stripped.startswith("{")
                else cql2_lib.parse_text(value)
            )
        else:
            raise InvalidFilter(f"unknown filter-lang {lang!r}: use cql2-text or cql2-json")
        expr.validate()
        parsed = expr.to_json()
    except (cql2_lib.ParseError, cql2_lib.ValidationError, ValueError) as exc:
        message = "\n".join(str(exc).strip().splitlines()[:6])
        raise InvalidFilter(f"invalid CQL2 filter: {message}") from exc
    if not isinstance(parsed, dict | bool):
        raise InvalidFilter("a CQL2 filter must be a boolean expression")
    return parsed


# -- operands ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Operand:
    """A compiled argument: a field, or a literal value, maybe wrapped in casei/accenti."""

    field: Field | None = None
    value: Any = None
    kind: Kind | None = None
    fold: tuple[str, ...] = ()  # "lower" / "unaccent", innermost first

    @property
    def is_field(self) -> bool:
        return self.field is not None


def _literal_kind(value: Any) -> Kind | None:
    if isinstance(value, bool):
        return Kind.BOOLEAN
    if isinstance(value, int | float):
        return Kind.NUMBER
    if isinstance(value, str):
        return Kind.STRING
    if isinstance(value, list):
        return Kind.ARRAY
    if isinstance(value, dict) and ("timestamp" in value or "date" in value):
        return Kind.TIMESTAMP
    if isinstance(value, dict) and ("bbox" in value or value.get("type") in GEOMETRY_TYPES):
        return Kind.GEOMETRY
    return None


def _timestamp(value: Any) -> datetime:
    if isinstance(value, dict) and "timestamp" in value:
        return parse_instant(str(value["timestamp"]))
    if isinstance(value, dict) and "date" in value:
        return _day(value["date"])
    if isinstance(value, str):
        return parse_instant(value)
    raise InvalidFilter(f"not a timestamp: {value!r}")


def _day(value: Any) -> datetime:
    try:
        day = date.fromisoformat(str(value))
    except ValueError as exc:
        raise InvalidFilter(f"not a date: {value!r}") from exc
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _is_date(value: Any) -> bool:
    return isinstance(value, dict) and "date" in value


def _bind(value: Any, kind: Kind) -> Clause:
    if kind is Kind.NUMBER:
        return bindparam(None, float(value), type_=Float(precision=53))
    if kind is Kind.BOOLEAN:
        return bindparam(None, bool(value), type_=Boolean)
    if kind is Kind.TIMESTAMP:
        return bindparam(None, _timestamp(value), type_=DateTime(timezone=True))
    if kind is Kind.ARRAY:
        return bindparam(None, value, type_=JSONB)
    return bindparam(None, str(value), type_=Text)


class _Compiler:
    def __init__(self, resolver: Resolver) -> None:
        self.resolve = resolver

    # -- dispatch ----------------------------------------------------------------------------
    def clause(self, node: Any, depth: int = 0) -> Clause:
        if depth > MAX_DEPTH:
            raise InvalidFilter(f"filter is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, bool):
            return true() if node else false()
        if isinstance(node, dict) and "property" in node:
            field = self._field(node["property"])
            if Kind.BOOLEAN not in field.kinds:
                raise InvalidFilter(f"property {field.name!r} is not a boolean")
            return field.expr(Kind.BOOLEAN).is_(True)
        if not isinstance(node, dict) or "op" not in node:
            raise InvalidFilter(f"expected a boolean expression, got {node!r}")
        op = str(node["op"]).lower()
        args = node.get("args", [])
        if not isinstance(args, list):
            raise InvalidFilter(f"arguments of {op!r} must be a list")
        if op in ("and", "or"):
            parts = [self.clause(a, depth + 1) for a in args]
            return and_(*parts) if op == "and" else or_(*parts)
        if op == "not":
            self._arity(op, args, 1)
            return not_(self.clause(args[0], depth + 1))
        if op in _COMPARISONS:
            self._arity(op, args, 2)
            return self.compare(op, *(self.operand(a, depth) for a in args))
        if op == "like":
            self._arity(op, args, 2)
            return self.like(*(self.operand(a, depth) for a in args))
        if op == "between":
            self._arity(op, args, 3)
            x, low, high = (self.operand(a, depth) for a in args)
            return and_(self.compare(">=", x, low), self.compare("<=", x, high))
        if op == "in":
            self._arity(op, args, 2)
            return self.in_(self.operand(args[0], depth), args[1], depth)
        if op == "isnull":
            self._arity(op, args, 1)
            return self.is_null(self.operand(args[0], depth))
        if op in _SPATIAL:
            self._arity(op, args, 2)
            return _SPATIAL[op](*(self.geometry(a) for a in args))
        if op.startswith("t_"):
            self._arity(op, args, 2)
            return self.temporal(op, *(self.span(a) for a in args))
        if op.startswith("a_"):
            self._arity(op, args, 2)
            return self.array(op, *(self.operand(a, depth) for a in args))
        raise InvalidFilter(f"operator or function {node['op']!r} is not supported")

    @staticmethod
    def _arity(op: str, args: Sequence[Any], count: int) -> None:
        if len(args) != count:
            raise InvalidFilter(f"{op} takes {count} argument(s), got {len(args)}")

    def _field(self, name: Any) -> Field:
        if not isinstance(name, str):
            raise InvalidFilter(f"property names are strings, got {name!r}")
        return self.resolve(name)

    def operand(self, node: Any, depth: int) -> _Operand:
        if depth > MAX_DEPTH:
            raise InvalidFilter(f"filter is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict) and "property" in node:
            return _Operand(field=self._field(node["property"]))
        if isinstance(node, dict) and str(node.get("op", "")).lower() in ("casei", "accenti"):
            args = node.get("args", [])
            self._arity(node["op"], args, 1)
            inner = self.operand(args[0], depth + 1)
            fold = "lower" if node["op"].lower() == "casei" else "unaccent"
            return _Operand(inner.field, inner.value, inner.kind, (*inner.fold, fold))
        if isinstance(node, dict) and "op" in node:
            raise InvalidFilter(f"{node['op']!r} cannot be used as a value here")
        kind = _literal_kind(node)
        if kind is None:
            raise InvalidFilter(f"unsupported literal {node!r}")
        return _Operand(value=node, kind=kind)

    # -- typing ------------------------------------------------------------------------------
    def _kind(self, a: _Operand, b: _Operand) -> Kind:
        """The kind two operands are compared as, or InvalidFilter."""
        if a.is_field and b.is_field:
            assert a.field is not None and b.field is not None
            common = [k for k in _PREFERENCE if k in a.field.kinds and k in b.field.kinds]
            if not common:
                raise InvalidFilter(f"{a.field.name!r} and {b.field.name!r} have no type in common")
            return common[0]
        if not a.is_field and not b.is_field:
            if a.kind != b.kind:
                raise InvalidFilter(f"cannot compare {a.value!r} with {b.value!r}")
            assert a.kind is not None
            return a.kind
        field_op, literal = (a, b) if a.is_field else (b, a)
        assert field_op.field is not None and literal.kind is not None
        kinds = field_op.field.kinds
        kind = literal.kind
        if kind is Kind.STRING and Kind.TIMESTAMP in kinds and Kind.STRING not in kinds:
            kind = Kind.TIMESTAMP  # '2021-01-01T00:00:00Z' compared with a timestamp field
        if kind not in kinds:
            described = " or ".join(sorted(k.value for k in kinds))
            raise InvalidFilter(
                f"property {field_op.field.name!r} holds {described} values; "
                f"it cannot be compared with {literal.value!r}"
            )
        return kind

    def _sql(self, operand: _Operand, kind: Kind) -> Clause:
        if operand.field is not None:
            expr = operand.field.expr(kind)
        else:
            expr = _bind(operand.value, kind)
        for fold in operand.fold:
            if kind is not Kind.STRING:
                raise InvalidFilter("CASEI and ACCENTI apply to strings only")
            expr = func.lower(expr) if fold == "lower" else func.unaccent(expr)
        return expr

    # -- operators ---------------------------------------------------------------------------
    def compare(self, op: str, a: _Operand, b: _Operand) -> Clause:
        kind = self._kind(a, b)
        if kind in (Kind.GEOMETRY, Kind.OBJECT):
            raise InvalidFilter(f"{kind.value} values cannot be compared with {op}")
        if kind is Kind.ARRAY and op not in ("=", "<>"):
            raise InvalidFilter(f"arrays cannot be compared with {op}")
        for this, other, flipped in ((a, b, False), (b, a, True)):
            if this.is_field and _is_date(other.value) and kind is Kind.TIMESTAMP:
                return self._compare_day(_FLIP[op] if flipped else op, self._sql(this, kind), other)
        left, right = self._sql(a, kind), self._sql(b, kind)
        return _OPERATORS[op](left, right)

    @staticmethod
    def _compare_day(op: str, expr: Clause, day: _Operand) -> Clause:
        """A DATE literal is the whole day: ``= d`` means within it, ``< d`` before it."""
        start = _day(day.value["date"])
        end = start + timedelta(days=1)
        start_p = bindparam(None, start, type_=DateTime(timezone=True))
        end_p = bindparam(None, end, type_=DateTime(timezone=True))
        return {
            "=": and_(expr >= start_p, expr < end_p),
            "<>": or_(expr < start_p, expr >= end_p),
            "<": expr < start_p,
            "<=": expr < end_p,
            ">": expr >= end_p,
            ">=": expr >= start_p,
        }[op]

    def like(self, a: _Operand, b: _Operand) -> Clause:
        if self._kind(a, b) is not Kind.STRING:
            raise InvalidFilter("LIKE applies to strings only")
        return self._sql(a, Kind.STRING).like(self._sql(b, Kind.STRING))

    def in_(self, x: _Operand, values: Any, depth: int) -> Clause:
        if not isinstance(values, list) or not values:
            raise InvalidFilter("IN takes a non-empty list of values")
        items = [self.operand(v, depth + 1) for v in values]
        kind = self._kind(x, items[0])
        for item in items[1:]:
            self._kind(x, item)
        if kind in (Kind.GEOMETRY, Kind.ARRAY, Kind.OBJECT):
            raise InvalidFilter(f"IN does not apply to {kind.value} values")
        left = self._sql(x, kind)
        return left.in_([self._sql(i, kind) for i in items])

    def is_null(self, x: _Operand) -> Clause:
        if x.field is None:
            return true() if x.value is None else false()
        if x.field.column is not None:
            return x.field.column.is_(None)
        raw = x.field.expr(Kind.OBJECT)
        return or_(raw.is_(None), func.jsonb_typeof(raw) == literal_column("'null'"))

    def geometry(self, node: Any) -> Clause:
        if isinstance(node, dict) and "property" in node:
            field = self._field(node["property"])
            if Kind.GEOMETRY not in field.kinds:
                raise InvalidFilter(f"property {field.name!r} is not a geometry")
            return field.expr(Kind.GEOMETRY)
        try:
            if isinstance(node, dict) and "bbox" in node:
                return as_sql(bbox_shape(node["bbox"]))
            if isinstance(node, dict) and node.get("type") in GEOMETRY_TYPES:
                return as_sql(geojson_shape(node))
        except (InvalidGeometry, InvalidParameter) as exc:
            raise InvalidFilter(f"invalid spatial literal: {exc.description}") from exc
        raise InvalidFilter(f"expected a geometry, got {node!r}")

    def span(self, node: Any) -> tuple[Clause, Clause]:
        """(start, end) of a temporal operand; an instant has start == end."""
        if isinstance(node, dict) and "property" in node:
            field = self._field(node["property"])
            if Kind.TIMESTAMP not in field.kinds:
                raise InvalidFilter(f"property {field.name!r} is not a timestamp")
            return field.span()
        if isinstance(node, dict) and "interval" in node:
            bounds = node["interval"]
            if not isinstance(bounds, list) or len(bounds) != 2:
                raise InvalidFilter("an interval has exactly two bounds")
            start = self._bound(bounds[0], upper=False)
            end = self._bound(bounds[1], upper=True)
            return start, end
        if isinstance(node, dict) and "date" in node:
            return self._bound(node["date"], upper=False), self._bound(node["date"], upper=True)
        if isinstance(node, dict) and "timestamp" in node:
            moment = bindparam(None, _timestamp(node), type_=DateTime(timezone=True))
            return moment, moment
        raise InvalidFilter(f"expected a timestamp, date, interval or property, got {node!r}")

    def _bound(self, value: Any, upper: bool) -> Clause:
        """One end of an interval. A date bound covers its whole day (closed interval)."""
        if value == "..":
            return _POS_INF if upper else _NEG_INF
        if isinstance(value, dict) and "property" in value:
            start, end = self.span(value)
            return end if upper else start
        if isinstance(value, dict) and ("timestamp" in value or "date" in value):
            value = value.get("timestamp", value.get("date"))
        if isinstance(value, str) and len(value) == 10:
            day = _day(value)
            moment = day + timedelta(days=1) - timedelta(microseconds=1) if upper else day
        else:
            moment = _timestamp(value)
        return bindparam(None, moment, type_=DateTime(timezone=True))

    @staticmethod
    def temporal(op: str, a: tuple[Clause, Clause], b: tuple[Clause, Clause]) -> Clause:
        """Allen's interval relations as defined by CQL2 (OGC 21-065, temporal functions)."""
        (a0, a1), (b0, b1) = a, b
        relations = {
            "t_after": lambda: a0 > b1,
            "t_before": lambda: a1 < b0,
            "t_contains": lambda: and_(a0 < b0, a1 > b1),
            "t_disjoint": lambda: or_(a1 < b0, a0 > b1),
            "t_during": lambda: and_(a0 > b0, a1 < b1),
            "t_equals": lambda: and_(a0 == b0, a1 == b1),
            "t_finishedby": lambda: and_(a0 < b0, a1 == b1),
            "t_finishes": lambda: and_(a0 > b0, a1 == b1),
            "t_intersects": lambda: and_(a0 <= b1, a1 >= b0),
            "t_meets": lambda: a1 == b0,
            "t_metby": lambda: a0 == b1,
            "t_overlappedby": lambda: and_(a0 > b0, a0 < b1, a1 > b1),
            "t_overlaps": lambda: and_(a0 < b0, a1 > b0, a1 < b1),
            "t_startedby": lambda: and_(a0 == b0, a1 > b1),
            "t_starts": lambda: and_(a0 == b0, a1 < b1),
        }
        if op not in relations:
            raise InvalidFilter(f"temporal function {op!r} is not supported")
        return relations[op]()

    def array(self, op: str, a: _Operand, b: _Operand) -> Clause:
        for operand in (a, b):
            if operand.field is not None and Kind.ARRAY not in operand.field.kinds:
                raise InvalidFilter(f"property {operand.field.name!r} is not an array")
            if operand.field is None and not isinstance(operand.value, list):
                raise InvalidFilter(f"{op} takes arrays, got {operand.value!r}")
        left, right = self._sql(a, Kind.ARRAY), self._sql(b, Kind.ARRAY)
        if op == "a_equals":
            return left == right
        if op == "a_contains":
            return left.op("@>")(right)
        if op == "a_containedby":
            return left.op("<@")(right)
        if op == "a_overlaps":
            mine = func.jsonb_array_elements(left).table_valued("value").alias("mine")
            theirs = func.jsonb_array_elements(right).table_valued("value").alias("theirs")
            return exists(
                select(literal_column("1"))
                .select_from(mine)
                .where(mine.c.value.in_(select(theirs.c.value)))
            )
        raise InvalidFilter(f"array function {op!r} is not supported")


_PREFERENCE = (Kind.NUMBER, Kind.TIMESTAMP, Kind.STRING, Kind.BOOLEAN, Kind.ARRAY, Kind.OBJECT,
               Kind.GEOMETRY)  # fmt: skip
_FLIP = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_OPERATORS: dict[str, Callable[[Any, Any], Clause]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def registry_resolver(registry: Mapping[str, frozenset[Kind]]) -> Resolver:
    """Resolve item queryables against a property registry."""

    def resolve(name: str) -> Field:
        try:
            return queryables.resolve(name, registry)
        except queryables.UnknownQueryable as exc:
            raise UnknownQueryable(
                f"{name!r} is not a queryable here (see /queryables)", field=name
            ) from exc

    return resolve


def compile_filter(
    expr: dict[str, Any] | bool,
    registry: Mapping[str, frozenset[Kind]],
    resolver: Resolver | None = None,
) -> Clause:
    """Compile canonical CQL2-JSON into a boolean SQL clause with bound parameters."""
    return _Compiler(resolver or registry_resolver(registry)).clause(expr)


# -- the STAC query extension ------------------------------------------------------------------
_QUERY_OPS = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def query_to_cql2(query: dict[str, Any]) -> dict[str, Any]:
    """Translate a STAC ``query`` object into CQL2-JSON (an AND of its conditions)."""
    if not isinstance(query, dict):
        raise InvalidParameter("query must be an object of {property: {operator: value}}")
    conditions: list[Any] = []
    for name, ops in query.items():
        if not isinstance(ops, dict) or not ops:
            raise InvalidParameter(f"query.{name} must be an object of operators")
        prop = {"property": name}
        for op, value in ops.items():
            if op in _QUERY_OPS:
                conditions.append({"op": _QUERY_OPS[op], "args": [prop, value]})
            elif op in ("startsWith", "endsWith", "contains"):
                if not isinstance(value, str):
                    raise InvalidParameter(f"query.{name}.{op} takes a string")
                text = _like_escape(value)
                pattern = {"startsWith": f"{text}%", "endsWith": f"%{text}",
                           "contains": f"%{text}%"}[op]  # fmt: skip
                conditions.append({"op": "like", "args": [prop, pattern]})
            elif op == "in":
                if not isinstance(value, list) or not value:
                    raise InvalidParameter(f"query.{name}.in takes a non-empty list")
                conditions.append({"op": "in", "args": [prop, value]})
            else:
                raise InvalidParameter(f"query operator {op!r} is not supported")
    if not conditions:
        raise InvalidParameter("query has no conditions")
    return {"op": "and", "args": conditions} if len(conditions) > 1 else conditions[0]
