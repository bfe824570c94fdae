"""CQL2 (text or JSON) compiled to a parameterized SQLAlchemy clause.

The ``cql2`` library (Rust, OGC 21-065 grammar) parses text and JSON into canonical CQL2-JSON;
the translation to SQL is ours because no maintained library emits bound parameters for typed
JSONB properties: pygeofilter gets bbox literals, ``between`` and array functions wrong
(NOTES.md) and ``cql2.to_sql`` inlines values as text.

Every user value becomes a bound parameter; property names resolve through the queryables
registry (or another resolver, for collection search) to typed SQL expressions. The compiler
checks every node it meets, so it is also the validator: ``cql2.Expr.validate()`` is not called
because its memory grows by ~10 MB per nesting level (1.8 GB at depth 100).
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
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
    any_,
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
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql.elements import ColumnElement

from catalog.errors import InvalidFilter, InvalidParameter, UnknownQueryable
from catalog.geometry import GEOMETRY_TYPES, as_sql, bbox_shape, geojson_shape
from catalog.settings import LimitSettings
from catalog.stac import queryables
from catalog.stac.bounds import TEXT_PARSE_BUDGET, check_filter, text_parse_cost
from catalog.stac.queryables import Field, Kind
from catalog.timeparse import parse_instant

Resolver = Callable[[str], Field]
Clause = ColumnElement[Any]
Span = tuple[Clause, Clause]
MAX_DEPTH = 100

_TSTZ = DateTime(timezone=True)
_NEG_INF: Clause = literal_column("'-infinity'::timestamptz", _TSTZ)
_POS_INF: Clause = literal_column("'infinity'::timestamptz", _TSTZ)
_SCALARS = (Kind.NUMBER, Kind.TIMESTAMP, Kind.STRING, Kind.BOOLEAN)  # preference order
_COMPARE: dict[str, Callable[[Clause, Clause], Clause]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_FLIP = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
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
# Allen's interval relations as CQL2 defines them (OGC 21-065 temporal functions, after OWL-Time),
# on closed intervals a = [a0, a1], b = [b0, b1]. An instant is the interval [t, t].
_TEMPORAL: dict[str, Callable[[Clause, Clause, Clause, Clause], Clause]] = {
    "t_after": lambda a0, a1, b0, b1: a0 > b1,
    "t_before": lambda a0, a1, b0, b1: a1 < b0,
    "t_contains": lambda a0, a1, b0, b1: and_(a0 < b0, a1 > b1),
    "t_disjoint": lambda a0, a1, b0, b1: or_(a1 < b0, a0 > b1),
    "t_during": lambda a0, a1, b0, b1: and_(a0 > b0, a1 < b1),
    "t_equals": lambda a0, a1, b0, b1: and_(a0 == b0, a1 == b1),
    "t_finishedby": lambda a0, a1, b0, b1: and_(a0 < b0, a1 == b1),
    "t_finishes": lambda a0, a1, b0, b1: and_(a0 > b0, a1 == b1),
    "t_intersects": lambda a0, a1, b0, b1: and_(a0 <= b1, a1 >= b0),
    "t_meets": lambda a0, a1, b0, b1: a1 == b0,
    "t_metby": lambda a0, a1, b0, b1: a0 == b1,
    "t_overlappedby": lambda a0, a1, b0, b1: and_(a0 > b0, a0 < b1, a1 > b1),
    "t_overlaps": lambda a0, a1, b0, b1: and_(a0 < b0, a1 > b0, a1 < b1),
    "t_startedby": lambda a0, a1, b0, b1: and_(a0 == b0, a1 > b1),
    "t_starts": lambda a0, a1, b0, b1: and_(a0 == b0, a1 < b1),
}


# -- parsing -----------------------------------------------------------------------------------
def parse(
    value: str | dict[str, Any] | bool, lang: str | None = None, limits: LimitSettings | None = None
) -> dict[str, Any] | bool:
    """Parse CQL2 text or JSON (``lang`` None: inferred) into canonical CQL2-JSON.

    With ``limits``, JSON is checked against them before cql2 parses it, text right after.
    """
    if isinstance(value, bool):  # the CQL2-JSON literals true and false
        return value
    if lang not in (None, "cql2-text", "cql2-json"):
        raise InvalidFilter(f"unknown filter-lang {lang!r}: use cql2-text or cql2-json")
    try:
        if isinstance(value, str) and (
            lang == "cql2-json" or (lang is None and value.lstrip().startswith("{"))
        ):
            value = orjson.loads(value)  # orjson refuses JSON nested deeper than 1024
        if isinstance(value, dict):
            if limits is not None:
                check_filter(value, limits)
            expr = cql2_lib.parse_json(orjson.dumps(value).decode())
        elif not isinstance(value, str):
            raise InvalidFilter("a filter is CQL2 text or a CQL2-JSON object")
        else:
            if text_parse_cost(value) > TEXT_PARSE_BUDGET:
                raise InvalidFilter("filter is too long or too deeply nested")
            expr = cql2_lib.parse_text(value)
        parsed = expr.to_json()
    except (cql2_lib.ParseError, cql2_lib.ValidationError, orjson.JSONEncodeError,
            orjson.JSONDecodeError) as exc:  # fmt: skip
        message = "\n".join(str(exc).strip().splitlines()[:6])
        raise InvalidFilter(f"invalid CQL2 filter: {message}") from exc
    if not isinstance(parsed, dict | bool):
        raise InvalidFilter("a CQL2 filter must be a boolean expression")
    if limits is not None:
        check_filter(parsed, limits)
    return parsed


# -- literals ----------------------------------------------------------------------------------
def _show(node: Any) -> str:
    text = repr(node)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_day(value: Any) -> bool:
    """A date literal: ``{"date": ...}`` or a plain YYYY-MM-DD string."""
    return (isinstance(value, dict) and "date" in value) or (
        isinstance(value, str) and len(value) == 10
    )


def _day(value: Any) -> datetime:
    text = value["date"] if isinstance(value, dict) else value
    try:
        day = date.fromisoformat(str(text))
    except ValueError as exc:
        raise InvalidFilter(f"not a date: {_show(text)}") from exc
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _instant(value: Any, upper: bool = False) -> datetime:
    """A timestamp or date literal; a date stands for its whole day (start, or end if upper)."""
    if _is_day(value):
        start = _day(value)
        return start + timedelta(days=1, microseconds=-1) if upper else start
    text = value.get("timestamp") if isinstance(value, dict) else value
    if not isinstance(text, str):
        raise InvalidFilter(f"not a timestamp: {_show(value)}")
    try:
        return parse_instant(text)
    except InvalidParameter as exc:
        raise InvalidFilter(exc.description) from exc


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


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _json_array(value: list[Any]) -> list[Any]:
    """An array literal as stored JSON: temporal literals become their RFC 3339 text."""
    out: list[Any] = []
    for element in value:
        if isinstance(element, list):
            out.append(_json_array(element))
        elif isinstance(element, dict) and len(element) == 1 and {"timestamp", "date"} & {*element}:
            out.append(next(iter(element.values())))
        elif isinstance(element, dict):
            raise InvalidFilter(f"unsupported array element {_show(element)}")
        else:
            out.append(element)
    return out


_TYPES: dict[Kind, Any] = {
    Kind.NUMBER: Float(precision=53),
    Kind.BOOLEAN: Boolean(),
    Kind.TIMESTAMP: _TSTZ,
    Kind.ARRAY: JSONB(),
    Kind.STRING: Text(),
}


def _value(value: Any, kind: Kind) -> Any:
    if kind is Kind.NUMBER:
        return float(value)
    if kind is Kind.BOOLEAN:
        return bool(value)
    if kind is Kind.TIMESTAMP:
        return _instant(value)
    if kind is Kind.ARRAY:
        return _json_array(value)
    return str(value)


def _bind(value: Any, kind: Kind) -> Clause:
    return bindparam(None, _value(value, kind), type_=_TYPES[kind])


@dataclass(frozen=True)
class _Operand:
    """A compiled argument: a field or a literal, maybe wrapped in casei/accenti."""

    field: Field | None = None
    value: Any = None
    kind: Kind | None = None
    fold: tuple[str, ...] = ()  # "lower" / "unaccent", innermost first


# -- the compiler ------------------------------------------------------------------------------
class _Compiler:
    def __init__(self, resolver: Resolver, numeric_strings: bool) -> None:
        self.resolve = resolver
        self.numeric_strings = numeric_strings
        # A property's typed expression, built once: SQLAlchemy reuses an element anywhere.
        self.exprs: dict[tuple[str, Kind], Clause] = {}

    def clause(self, node: Any, depth: int = 0) -> Clause:
        """A boolean expression: logical operators here, predicates by family below."""
        if depth > MAX_DEPTH:
            raise InvalidFilter(f"filter is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, bool):
            return true() if node else false()
        if not isinstance(node, dict) or not isinstance(node.get("op"), str):
            raise InvalidFilter(f"expected a boolean expression, got {_show(node)}")
        op, args = node["op"].lower(), node.get("args")
        if not isinstance(args, list):
            raise InvalidFilter(f"arguments of {op!r} must be a list")
        if op in ("and", "or"):
            if not args:
                raise InvalidFilter(f"{op} takes at least one argument")
            parts = [self.clause(a, depth + 1) for a in args]
            return and_(*parts) if op == "and" else or_(*parts)
        if op == "not":
            return not_(self.clause(_arity(op, args, 1)[0], depth + 1))
        if op in _COMPARE:
            return self.compare(op, *self.operands(op, args, 2, depth))
        if op == "like":
            return self.like(*self.operands(op, args, 2, depth))
        if op == "between":
            if len(args) == 2 and isinstance(args[1], list):  # the draft form [x, [low, high]]
                args = [args[0], *args[1]]
            x, low, high = self.operands(op, args, 3, depth)
            return and_(self.compare(">=", x, low), self.compare("<=", x, high))
        if op == "in":
            x, values = _arity(op, args, 2)
            if not isinstance(values, list) or not values:
                raise InvalidFilter("IN takes a non-empty list of values")
            return self.in_(self.operand(x, depth), self.operands(op, values, 0, depth))
        if op == "isnull":
            return self.is_null(*self.operands(op, args, 1, depth))
        if op in _SPATIAL:
            return _SPATIAL[op](*(self.geometry(a) for a in _arity(op, args, 2)))
        if op in _TEMPORAL:
            a, b = (self.span(x) for x in _arity(op, args, 2))
            return _TEMPORAL[op](*a, *b)
        if op in ("a_equals", "a_contains", "a_containedby", "a_overlaps"):
            return self.array(op, *self.operands(op, args, 2, depth))
        raise InvalidFilter(f"operator or function {node['op']!r} is not supported")

    # -- operands and typing -------------------------------------------------------------------
    def field(self, name: Any) -> Field:
        if not isinstance(name, str):
            raise InvalidFilter(f"property names are strings, got {_show(name)}")
        return self.resolve(name)

    def operands(self, op: str, args: list[Any], count: int, depth: int) -> list[_Operand]:
        return [self.operand(a, depth + 1) for a in (_arity(op, args, count) if count else args)]

    def operand(self, node: Any, depth: int) -> _Operand:
        if depth > MAX_DEPTH:
            raise InvalidFilter(f"filter is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict) and "property" in node:
            return _Operand(field=self.field(node["property"]))
        op = str(node.get("op", "")).lower() if isinstance(node, dict) else ""
        if op in ("casei", "accenti"):
            inner = self.operand(_arity(op, node.get("args"), 1)[0], depth + 1)
            return replace(inner, fold=(*inner.fold, "lower" if op == "casei" else "unaccent"))
        if op:
            raise InvalidFilter(f"operator or function {node['op']!r} is not supported here")
        kind = _literal_kind(node)
        if kind is None:
            raise InvalidFilter(f"unsupported literal {_show(node)}")
        return _Operand(value=node, kind=kind)

    def kinds(self, a: _Operand, b: _Operand) -> list[Kind]:
        """The kinds ``a`` and ``b`` compare as (several only for two multi-kind properties)."""
        if a.field is not None and b.field is not None:
            allowed = (Kind.STRING,) if a.fold or b.fold else _SCALARS
            common = [k for k in allowed if k in a.field.kinds and k in b.field.kinds]
            if not common:
                raise InvalidFilter(f"{a.field.name!r} and {b.field.name!r} share no value type")
            return common
        if a.field is not None:
            return self.literal_kinds(a.field, b)
        if b.field is not None:
            return self.literal_kinds(b.field, a)
        if a.kind is not b.kind or a.kind is None:
            raise InvalidFilter(f"cannot compare {_show(a.value)} with {_show(b.value)}")
        return [a.kind]

    def literal_kinds(self, field: Field, lit: _Operand) -> list[Kind]:
        """The kind a property and a literal compare as."""
        kinds, kind = field.kinds, lit.kind
        # A string that reads as a time compares as one when the property holds timestamps.
        if kind is Kind.STRING and Kind.TIMESTAMP in kinds and not lit.fold:
            if Kind.STRING not in kinds or queryables.json_kind(lit.value) is Kind.TIMESTAMP:
                kind = Kind.TIMESTAMP
        if kind is Kind.STRING and self.numeric_strings and kinds == {Kind.NUMBER}:
            kind = Kind.NUMBER if _is_number(lit.value) else kind
        if kind is None or kind not in kinds:
            held = " or ".join(sorted(k.value for k in kinds))
            raise InvalidFilter(
                f"property {field.name!r} holds {held} values, "
                f"not comparable with {_show(lit.value)}"
            )
        return [kind]

    def sql(self, operand: _Operand, kind: Kind) -> Clause:
        if operand.fold and kind is not Kind.STRING:
            raise InvalidFilter("CASEI and ACCENTI apply to strings only")
        if operand.field is None:
            expr = _bind(operand.value, kind)
        else:
            key = (operand.field.name, kind)
            if key not in self.exprs:
                self.exprs[key] = queryables.RenderedOnce(operand.field.expr(kind))
            expr = self.exprs[key]
        for fold in operand.fold:
            expr = func.lower(expr) if fold == "lower" else func.unaccent(expr)
        return expr

    # -- comparison ----------------------------------------------------------------------------
    def compare(self, op: str, a: _Operand, b: _Operand) -> Clause:
        kinds = self.kinds(a, b)
        if any(k not in _SCALARS for k in kinds):
            raise InvalidFilter(f"{kinds[0].value} values cannot be compared with {op}")
        if kinds == [Kind.TIMESTAMP]:
            for this, other, flip in ((a, b, False), (b, a, True)):
                if this.field is not None and other.field is None and _is_day(other.value):
                    return _compare_day(_FLIP[op] if flip else op, self.sql(this, Kind.TIMESTAMP),
                                        other.value)  # fmt: skip
        return or_(*(_COMPARE[op](self.sql(a, k), self.sql(b, k)) for k in kinds))

    def like(self, a: _Operand, b: _Operand) -> Clause:
        for operand in (a, b):
            if (operand.field and Kind.STRING not in operand.field.kinds) or (
                operand.field is None and operand.kind is not Kind.STRING
            ):
                raise InvalidFilter("LIKE applies to strings only")
        # CQL2's LIKE escape character is the backslash, PostgreSQL's default.
        return self.sql(a, Kind.STRING).like(self.sql(b, Kind.STRING))

    def in_(self, x: _Operand, items: Sequence[_Operand]) -> Clause:
        """Literals go as one array parameter per kind (``= ANY``): a list costs one bound
        value, whatever its length (one per value met PostgreSQL's limit of 65,535)."""
        values: dict[Kind, list[Any]] = {}
        others: dict[Kind, list[Clause]] = {}
        for item in items:
            kind = self.kinds(x, item)[0]
            if kind not in _SCALARS:
                raise InvalidFilter(f"IN does not apply to {kind.value} values")
            if item.field is None and not item.fold:
                values.setdefault(kind, []).append(_value(item.value, kind))
            else:
                others.setdefault(kind, []).append(self.sql(item, kind))
        return or_(
            *(self.sql(x, k) == any_(bindparam(None, v, type_=ARRAY(_TYPES[k])))
              for k, v in values.items()),
            *(self.sql(x, k).in_(v) for k, v in others.items()),
        )  # fmt: skip

    @staticmethod
    def is_null(x: _Operand) -> Clause:
        if x.field is None:
            return false()
        if x.field.column is not None:
            return x.field.column.is_(None)
        raw = x.field.expr(Kind.OBJECT)
        return or_(raw.is_(None), func.jsonb_typeof(raw) == literal_column("'null'"))

    # -- spatial, temporal, arrays -------------------------------------------------------------
    def geometry(self, node: Any) -> Clause:
        if isinstance(node, dict) and "property" in node:
            field = self.field(node["property"])
            if Kind.GEOMETRY not in field.kinds or field.column is None:
                raise InvalidFilter(f"property {field.name!r} is not a geometry")
            return field.column
        try:
            if isinstance(node, dict) and "bbox" in node:
                return as_sql(bbox_shape(node["bbox"]))
            if isinstance(node, dict) and node.get("type") in GEOMETRY_TYPES:
                return as_sql(geojson_shape(node))
        except InvalidParameter as exc:
            raise InvalidFilter(f"invalid spatial literal: {exc.description}") from exc
        raise InvalidFilter(f"expected a geometry, got {_show(node)}")

    def span(self, node: Any) -> Span:
        """(start, end) of a temporal operand, both ends included.

        A date is an instant of day granularity, so it spans its whole day (OGC 21-065: "every
        instant has a duration and a start/end"); a timestamp spans [t, t]. ``datetime`` is
        the item's [start, end]; other timestamp properties are instants.
        """
        if isinstance(node, dict) and "property" in node:
            field = self.field(node["property"])
            if Kind.TIMESTAMP not in field.kinds:
                raise InvalidFilter(f"property {field.name!r} is not a timestamp")
            return field.span()
        if isinstance(node, dict) and "interval" in node:
            bounds = node["interval"]
            if not isinstance(bounds, list) or len(bounds) != 2:
                raise InvalidFilter("an interval has exactly two bounds")
            start, end = self.bound(bounds[0], upper=False), self.bound(bounds[1], upper=True)
            if isinstance(start, datetime) and isinstance(end, datetime) and start > end:
                raise InvalidFilter(f"interval starts after it ends: {_show(bounds)}")
            return _tstz(start), _tstz(end)
        if isinstance(node, dict | str) and not (isinstance(node, dict) and "op" in node):
            return _tstz(_instant(node)), _tstz(_instant(node, upper=True))
        raise InvalidFilter(f"expected a timestamp, date, interval or property, got {_show(node)}")

    def bound(self, value: Any, upper: bool) -> datetime | Clause:
        """One end of an interval: ".." is open (infinite), a date bound covers its day."""
        if value in ("..", ""):
            return _POS_INF if upper else _NEG_INF
        if isinstance(value, dict) and "property" in value:
            return self.span(value)[1 if upper else 0]
        return _instant(value, upper)

    def array(self, op: str, a: _Operand, b: _Operand) -> Clause:
        for operand in (a, b):
            if operand.fold:
                raise InvalidFilter(f"{op} does not take CASEI or ACCENTI")
            if (operand.field and Kind.ARRAY not in operand.field.kinds) or (
                operand.field is None and operand.kind is not Kind.ARRAY
            ):
                shown = operand.field.name if operand.field else _show(operand.value)
                raise InvalidFilter(f"{op} compares arrays; {shown} is not one")
        left, right = self.sql(a, Kind.ARRAY), self.sql(b, Kind.ARRAY)
        # CQL2 compares arrays as sets; jsonb containment ignores order and duplicates.
        if op == "a_contains":
            return left.op("@>")(right)
        if op == "a_containedby":
            return left.op("<@")(right)
        if op == "a_equals":
            return and_(left.op("@>")(right), left.op("<@")(right))
        mine = func.jsonb_array_elements(left).table_valued("value").alias("mine")
        theirs = func.jsonb_array_elements(right).table_valued("value").alias("theirs")
        return exists(
            select(literal_column("1"))
            .select_from(mine)
            .where(mine.c.value.in_(select(theirs.c.value)))
        )


def _arity(op: str, args: Any, count: int) -> list[Any]:
    if not isinstance(args, list) or len(args) != count:
        got = len(args) if isinstance(args, list) else "no list"
        raise InvalidFilter(f"{op} takes {count} argument(s), got {got}")
    return args


def _tstz(value: datetime | Clause) -> Clause:
    return bindparam(None, value, type_=_TSTZ) if isinstance(value, datetime) else value


def _compare_day(op: str, expr: Clause, day: Any) -> Clause:
    """A date compared with a timestamp is its whole day: ``= d`` is within it, ``< d`` before."""
    start = bindparam(None, _day(day), type_=_TSTZ)
    end = bindparam(None, _day(day) + timedelta(days=1), type_=_TSTZ)
    return {
        "=": and_(expr >= start, expr < end),
        "<>": or_(expr < start, expr >= end),
        "<": expr < start,
        "<=": expr < end,
        ">": expr >= end,
        ">=": expr >= start,
    }[op]


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
    numeric_strings: bool = False,
) -> Clause:
    """Compile canonical CQL2-JSON into a boolean SQL clause with bound parameters.

    ``numeric_strings`` lets a string that reads as a number compare with a number-only
    property (the STAC query extension sends "50"); CQL2 itself stays strictly typed.
    """
    compiler = _Compiler(resolver or registry_resolver(registry), numeric_strings)
    return compiler.clause(expr)


# -- the STAC query extension ------------------------------------------------------------------
_QUERY_OPS = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_QUERY_LIKE = {"startsWith": "{}%", "endsWith": "%{}", "contains": "%{}%"}


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def query_to_cql2(query: dict[str, Any]) -> dict[str, Any]:
    """Translate a STAC ``query`` object into CQL2-JSON (an AND of its conditions)."""
    if not isinstance(query, dict):
        raise InvalidParameter("query must be an object of {property: {operator: value}}")
    conditions: list[dict[str, Any]] = []
    for name, ops in query.items():
        if not isinstance(ops, dict) or not ops:
            raise InvalidParameter(f"query.{name} must be an object of operators")
        prop = {"property": name}
        for op, value in ops.items():
            scalar = isinstance(value, str | int | float)  # bool is an int
            if op in _QUERY_OPS and scalar:
                conditions.append({"op": _QUERY_OPS[op], "args": [prop, value]})
            elif op in _QUERY_LIKE and isinstance(value, str):
                pattern = _QUERY_LIKE[op].format(_like_escape(value))
                conditions.append({"op": "like", "args": [prop, pattern]})
            elif op == "in" and isinstance(value, list) and value:
                if not all(isinstance(v, str | int | float) for v in value):
                    raise InvalidParameter(f"query.{name}.in takes a list of strings or numbers")
                conditions.append({"op": "in", "args": [prop, value]})
            elif op in _QUERY_OPS or op in _QUERY_LIKE or op == "in":
                raise InvalidParameter(f"query.{name}.{op} has a value of the wrong type")
            else:
                raise InvalidParameter(f"query operator {op!r} is not supported")
    if not conditions:
        raise InvalidParameter("query has no conditions")
    return {"op": "and", "args": conditions} if len(conditions) > 1 else conditions[0]
