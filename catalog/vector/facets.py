"""Facets: how many of the features a query selects have each value of some properties.

One statement answers every facet of a request: the selected rows are grouped by GROUPING SETS
(one set per facet; the total is the first facet's groups added up), and a window ranks each
facet's values so only the top ``limit`` come back. Strings and booleans are counted per value,
the rest in buckets:

- numbers and date-times: ``buckets`` equal-width buckets over the selected rows' min..max,
  each ``[from, to)`` but the last, which holds the max (``[from, to]``); NaN and infinities
  count as missing;
- integers and dates: the same, with a whole width (an integer, a number of days), so each
  bucket holds whole values ``[from, to)``; there may then be fewer than ``buckets``;
- or, for a property given ``edges`` (ascending), the buckets between them, plus one below
  the first edge and one from the last edge on (``from``/``to`` null), each ``[from, to)``.

Every bucket is listed, empty ones too. The min and max come from a CTE over the same rows in
the same statement (a second scan, skipped when every bucketed facet has edges), which each
row's bucket reads as InitPlan parameters. Over every feature (no bbox, datetime or filter),
the CTE reads them from the layer's row instead (``vector_layers.bounds``, kept by every
write with the feature count), in the statement's snapshot and only from the version of the
row the caller read; a newer row gives no rows and the statement runs again with the scan.
Integer buckets are bigint arithmetic: a property
spanning more than 2**63 is refused as ``request.InvalidValue`` by the database layer.
Where the time goes, and what was measured: docs/benchmarks.md, "Facets and aggregations".
"""

import asyncio
import datetime as dt
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Date,
    DateTime,
    Double,
    and_,
    case,
    cast,
    column,
    func,
    literal,
    or_,
    select,
    table,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from catalog.timeparse import parse_instant

from .analysis import NUMERIC, TEMPORAL, InvalidFacet, allowed_names, json_value
from .query import Clause, FeatureQuery, where
from .schema import Layer, Property, PropertyType

EPOCH = dt.date(1970, 1, 1)
_LAYERS = table(
    "vector_layers",
    column("collection_id"),
    column("updated", DateTime(timezone=True)),
    column("bounds", JSONB),
)
_INF = float("inf")


@dataclass
class Facet:
    """The counts of one property: ``terms`` (values) or ``histogram`` (buckets)."""

    name: str
    type: str
    buckets: list[dict[str, Any]] = field(default_factory=list)
    missing: int = 0  # features where the property is null (or NaN)
    other: int = 0  # terms: features with a value beyond the top ``limit``
    distinct: int = 0  # terms: how many different values there are
    min: Any = None  # histogram: the smallest and largest value counted
    max: Any = None

    def to_json(self) -> dict[str, Any]:
        """The facet as the API returns it."""
        out: dict[str, Any] = {"type": self.type, "buckets": self.buckets}
        if self.type == "terms":
            out.update(other=self.other, distinct=self.distinct)
        else:
            out.update(min=json_value(self.min), max=json_value(self.max))
        out["missing"] = self.missing
        return out


@dataclass
class Facets:
    """Every facet of a request, and how many features the query selected."""

    matched: int
    facets: dict[str, Facet]

    def to_json(self) -> dict[str, Any]:
        """The ``facets`` member: facet name -> facet."""
        return {name: facet.to_json() for name, facet in self.facets.items()}


def facet_properties(layer: Layer, names: Sequence[str], most: int | None = None) -> list[Property]:
    """The properties named (once each, in order); 400 for unknown or JSON ones."""
    unique = list(dict.fromkeys(n for n in names if n))
    if not unique:
        raise InvalidFacet(
            f"name the properties to count; facets: {', '.join(allowed_names(layer))}"
        )
    if most is not None and len(unique) > most:
        raise InvalidFacet(f"at most {most} facets in one request, not {len(unique)}")
    props = []
    for name in unique:
        prop = layer.prop(name)
        if prop is None or prop.type is PropertyType.JSON:
            why = "is not a property of" if prop is None else "is a JSON property of"
            allowed = allowed_names(layer)
            raise InvalidFacet(
                f"{name!r} {why} {layer.collection_id!r}; facets: {', '.join(allowed)}",
                field=name,
                allowed=allowed,
            )
        props.append(prop)
    return props


def parse_edges(prop: Property, values: Sequence[str], most: int) -> list[Any]:
    """Bucket edges for ``prop`` from their text (numbers, dates or RFC 3339 date-times)."""
    if prop.type not in NUMERIC | TEMPORAL:
        raise InvalidFacet(f"{prop.name!r} is a {prop.type} property: only numbers and dates "
                           "are bucketed", field=prop.name)  # fmt: skip
    if not 1 <= len(values) <= most:
        raise InvalidFacet(f"{prop.name!r}: give 1 to {most} bucket edges", field=prop.name)
    try:
        edges: list[Any] = [_edge(prop.type, v.strip()) for v in values]
    except (ValueError, OverflowError) as exc:
        raise InvalidFacet(f"{prop.name!r}: bad bucket edge ({exc})", field=prop.name) from exc
    if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise InvalidFacet(f"{prop.name!r}: bucket edges must increase", field=prop.name)
    return edges


def _edge(kind: PropertyType, text: str) -> Any:
    if kind is PropertyType.DATE:
        return dt.date.fromisoformat(text)
    if kind is PropertyType.DATETIME:
        return parse_instant(text)
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


async def facet_counts(
    conn: AsyncConnection,
    layer: Layer,
    query: FeatureQuery,
    names: Sequence[str],
    limit_per_facet: int,
    buckets: int,
    edges: Mapping[str, Sequence[Any]] | None = None,
    clauses: Sequence[Clause] | None = None,
) -> Facets:
    """Count the values of ``names`` over the features ``query`` selects, in one statement.

    ``edges`` (property name -> parsed edges, ``parse_edges``) replaces the equal-width
    buckets of those properties; ``clauses`` are ``where(layer, query)`` when the caller
    compiled them already (off the event loop).
    """
    props = facet_properties(layer, names)
    if limit_per_facet < 1 or buckets < 1:
        raise InvalidFacet("facet_limit and facet_buckets are at least 1")
    found = where(layer, query) if clauses is None else list(clauses)
    given = tuple((name, tuple(values)) for name, values in (edges or {}).items())
    shape = (layer, tuple(p.name for p in props), limit_per_facet, buckets, given)
    plan, statement = _planned(*shape, stored=not found)
    rows = (await conn.execute(statement if not found else plan.statement(found))).all()
    if not rows and plan.stored:  # the layer's row is no longer the one read: scan instead
        plan, statement = _planned(*shape, stored=False)
        rows = (await conn.execute(statement if not found else plan.statement(found))).all()
    return plan.read(rows)


async def facet_counts_shared(
    conns: Sequence[AsyncConnection],
    layer: Layer,
    query: FeatureQuery,
    names: Sequence[str],
    limit_per_facet: int,
    buckets: int,
    edges: Mapping[str, Sequence[Any]] | None = None,
    clauses: Sequence[Clause] | None = None,
) -> Facets:
    """``facet_counts`` with the facets dealt out over ``conns``, one statement on each, run
    side by side; the same answer, in the request's order.

    GROUPING SETS never run on parallel workers, so one statement's hashing of every row for
    every facet is one core's work: split, each statement reads the rows again and hashes
    them for its share. ``conns`` must see one snapshot (catalog.db.engine.one_snapshot), so
    that every share counts the same rows.
    """
    props = facet_properties(layer, names)
    shares = _deal(props, len(conns))
    try:
        async with asyncio.TaskGroup() as group:  # one failing cancels the others
            tasks = [
                group.create_task(
                    facet_counts(
                        conn, layer, query, share, limit_per_facet, buckets, edges, clauses
                    )
                )
                for conn, share in zip(conns, shares, strict=False)
                if share
            ]
    except BaseExceptionGroup as failed:  # the error itself, as one statement would raise it
        raise failed.exceptions[0]  # noqa: B904
    found = [task.result() for task in tasks]
    merged = {name: facet for part in found for name, facet in part.facets.items()}
    return Facets(found[0].matched, {p.name: merged[p.name] for p in props})


# About what one facet adds to a statement over every row, by the property's type; only the
# ratios matter. Measured alone over bench.vector_facets' 100,000 rows (2026-12-06, ms above a
# 4.7 ms scan): a boolean 4.3, an integer histogram 6.3, text 6 (12 values) to 9.8 (2,000),
# a number histogram 8.4 (its finite test), a date-time histogram 13.7 (date_part per row).
_FACET_COST = {
    PropertyType.BOOLEAN: 2,
    PropertyType.INTEGER: 4,
    PropertyType.DATE: 4,
    PropertyType.STRING: 7,
    PropertyType.NUMBER: 7,
    PropertyType.DATETIME: 12,
}


def _deal(props: Sequence[Property], count: int) -> list[list[str]]:
    """The facets' names dealt out to ``count`` statements so that each has about the same
    work: the costliest first, each to the statement with the least so far (the answer waits
    for the slowest statement; every one also reads every row, whatever its share)."""
    shares: list[list[str]] = [[] for _ in range(count)]
    loads = [0] * count
    for prop in sorted(props, key=lambda p: -_FACET_COST.get(p.type, 7)):
        least = loads.index(min(loads))
        shares[least].append(prop.name)
        loads[least] += _FACET_COST.get(prop.type, 7)
    return shares


@functools.lru_cache(maxsize=256)
def _planned(
    layer: Layer,
    names: tuple[str, ...],
    limit: int,
    buckets: int,
    edges: tuple[tuple[str, tuple[Any, ...]], ...],
    stored: bool,
) -> tuple["_Plan", Any]:
    """The plan of a request shape and its statement over every feature, built once.

    Building the statement (a few dozen SQLAlchemy constructs) took longer than reading its
    rows back; the statement holds no result, so every request still runs it on the data.
    """
    props = [p for name in names if (p := layer.prop(name)) is not None]
    plan = _Plan(layer, props, limit, buckets, dict(edges), stored=stored)
    return plan, plan.statement([])


def _is_terms(prop: Property) -> bool:
    return prop.type not in NUMERIC | TEMPORAL


def _whole(prop: Property) -> bool:
    return prop.type in (PropertyType.INTEGER, PropertyType.DATE)


class _Plan:
    """The statement of one facet request, and how its rows read back."""

    def __init__(
        self,
        layer: Layer,
        props: Sequence[Property],
        limit: int,
        buckets: int,
        edges: dict[str, Sequence[Any]],
        stored: bool = False,
    ) -> None:
        self.layer = layer
        self.props = list(props)
        self.limit = limit
        self.buckets = buckets
        self.edges = edges
        n = len(props)
        # GROUPING(k0, ..., kn-1) has a 1 bit for every key a row is *not* grouped by, k0 first.
        self.all_bits = (1 << n) - 1
        self.gid = {self.all_bits & ~(1 << (n - 1 - i)): i for i in range(n)}
        self.equal_width = [
            i for i, p in enumerate(props) if not _is_terms(p) and p.name not in edges
        ]
        # Over every feature, the ranges the layer's row keeps (every write sets them) stand
        # for the scan of the bounds CTE, read in the statement's snapshot and only from the
        # very version of the row ``layer`` is (else no rows: ``facet_counts`` scans).
        self.stored = (
            stored
            and bool(self.equal_width)
            and layer.updated is not None
            and all(props[i].column in layer.bounded for i in self.equal_width)
        )

    def _bounds(self, i: int, ranges: Any) -> list[ColumnElement[Any]]:
        """The CTE columns of an equal-width facet: ``lo``/``hi`` on its scale (the number,
        days since 1970, epoch seconds) for the answer, and what each row's bucket reads:
        ``a``, the origin in the column's own type, and ``s``, the upper bound of
        width_bucket (the max, or min + 1 when they are equal) or the whole width.

        ``ranges`` holds the min and max (``_range``) once, as ``l{i}`` and ``h{i}``: the
        expressions below name them several times, and inlined they made a statement too
        long for the driver's cache of parsed queries."""
        prop = self.props[i]
        least, most = ranges.c[f"l{i}"], ranges.c[f"h{i}"]
        lo: Clause
        hi: Clause
        a: Clause
        s: Clause
        if prop.type is PropertyType.NUMBER:  # NaN and infinities are not on any scale
            lo, hi = least, most
            a, s = lo, case((hi == lo, lo + 1), else_=hi)
        elif prop.type is PropertyType.DATETIME:  # date_part is a double, extract a numeric
            lo = func.date_part("epoch", least)
            hi = func.date_part("epoch", most)
            a, s = lo, case((hi == lo, lo + 1), else_=hi)
        else:  # integers and dates: whole widths (days for dates)
            a = least
            span = most - a
            s = span // self.buckets + 1
            lo = a - literal(EPOCH, Date) if prop.type is PropertyType.DATE else a
            hi = lo + span
        return [lo.label(f"lo{i}"), hi.label(f"hi{i}"), a.label(f"a{i}"), s.label(f"s{i}")]

    def _range(self, prop: Property) -> tuple[Clause, Clause]:
        """The smallest and largest value of ``prop`` (numbers: finite ones) over the rows
        counted: aggregates of the bounds CTE's scan, or the layer row's ``bounds``."""
        column = self.layer.table.c[prop.column]
        if self.stored:
            kind = Double() if prop.type is PropertyType.NUMBER else prop.type.sa_type
            return cast(
                func.jsonb_extract_path_text(_LAYERS.c.bounds, prop.column, "0"), kind
            ), cast(func.jsonb_extract_path_text(_LAYERS.c.bounds, prop.column, "1"), kind)
        if prop.type is PropertyType.NUMBER:
            finite = and_(column > -_INF, column < _INF)
            return func.min(column).filter(finite), func.max(column).filter(finite)
        return func.min(column), func.max(column)

    def statement(self, clauses: Sequence[Clause]) -> Any:
        """The one SELECT of the request."""
        table = self.layer.table
        stats = None
        if self.equal_width:  # a CTE: computed once, read by the buckets and by the answer
            ends = [
                end.label(f"{side}{i}")
                for i in self.equal_width
                for side, end in zip("lh", self._range(self.props[i]), strict=True)
            ]
            if self.stored:
                row = (_LAYERS.c.collection_id == self.layer.collection_id) & (
                    _LAYERS.c.updated == self.layer.updated
                )
                ranges = select(*ends).select_from(_LAYERS).where(row).subquery("r")
            else:
                ranges = select(*ends).where(*clauses).subquery("r")
            bounds = [column for i in self.equal_width for column in self._bounds(i, ranges)]
            stats = select(*bounds).cte("s")
        keys = [self._key(i, prop, stats).label(f"k{i}") for i, prop in enumerate(self.props)]
        inner = select(*keys).select_from(table).where(*clauses).subquery("f")
        k = [inner.c[f"k{i}"] for i in range(len(self.props))]
        gid = func.grouping(*k)
        count = func.count()
        part = [gid, func.num_nulls(*k)]
        grouped = (
            select(
                gid.label("gid"),
                *k,
                count.label("n"),
                func.row_number().over(partition_by=part, order_by=[count.desc(), *k]).label("r"),
                func.sum(count).over(partition_by=part).label("total"),
                func.count().over(partition_by=part).label("distinct"),
            )
            # No empty set for the total: it made the hashed sets a MixedAggregate, a fifth
            # of the statement's work; the total is the first facet's groups added up (read).
            .group_by(func.grouping_sets(*(tuple_(key) for key in k)))
            .subquery("g")
        )
        histograms = [self._gid_of(i) for i, p in enumerate(self.props) if not _is_terms(p)]
        keep = grouped.c.r <= self.limit
        if histograms:
            keep = or_(keep, grouped.c.gid.in_(histograms))
        answer = grouped if stats is None else grouped.join(stats, true())
        columns = [*grouped.c]
        if stats is not None:
            columns += [stats.c[f"{b}{i}"] for i in self.equal_width for b in ("lo", "hi")]
        return select(*columns).select_from(answer).where(keep).order_by(grouped.c.gid, grouped.c.r)

    def _gid_of(self, index: int) -> int:
        return next(g for g, i in self.gid.items() if i == index)

    def _key(self, i: int, prop: Property, stats: Any) -> ColumnElement[Any]:
        """The value a facet groups by: the property, or its 0-based bucket number."""
        column = self.layer.table.c[prop.column]
        if _is_terms(prop):
            return column
        edges = self.edges.get(prop.name)
        if edges is not None:
            item = Double() if prop.type in NUMERIC else prop.type.sa_type
            array = cast(literal(list(edges), ARRAY(item)), ARRAY(item))
            return func.width_bucket(column, array)
        # Scalar subqueries (InitPlans, run once) rather than a join: each row then reads
        # parameters, where a join with the CTE made the scan several times slower. Each
        # row's work is kept to a comparison or two and one function: it is most of the cost.
        a = select(stats.c[f"a{i}"]).scalar_subquery()
        s = select(stats.c[f"s{i}"]).scalar_subquery()
        if _whole(prop):  # 0-based
            return (column - a) // s
        # 1-based as width_bucket counts; the max is in bucket n + 1, which read() merges
        # into n (LEAST here would also move nulls there: it skips them).
        if prop.type is PropertyType.DATETIME:
            return func.width_bucket(func.date_part("epoch", column), a, s, self.buckets)
        finite = and_(column > -_INF, column < _INF)
        return case((finite, func.width_bucket(column, a, s, self.buckets)))

    def read(self, rows: Sequence[Any]) -> Facets:
        """The facets from the statement's rows."""
        facets = {
            p.name: Facet(p.name, "terms" if _is_terms(p) else "histogram") for p in self.props
        }
        matched = 0
        tops: dict[int, int] = {}
        for row in rows:
            i = self.gid[row.gid]
            if i == 0 and row.r == 1:  # every feature is in one group of each facet
                matched += int(row.total)
            prop, facet = self.props[i], facets[self.props[i].name]
            value = row[1 + i]  # gid, k0, k1...
            if value is None:
                facet.missing = row.n
            elif _is_terms(prop):
                facet.buckets.append({"value": json_value(value), "count": row.n})
                tops[i] = tops.get(i, 0) + row.n
                facet.other = int(row.total) - tops[i]
                facet.distinct = row.distinct
            else:  # width_bucket counts from 1 (and given edges from 0, below the first)
                first = 0 if _whole(prop) or prop.name in self.edges else 1
                facet.buckets.append({"bucket": value - first, "count": row.n})
        for i, prop in enumerate(self.props):
            if not _is_terms(prop):
                self._fill(i, prop, facets[prop.name], rows)
        return Facets(matched, facets)

    def _fill(self, i: int, prop: Property, facet: Facet, rows: Sequence[Any]) -> None:
        """Turn bucket numbers into every bucket's bounds and count (empty ones too)."""
        edges = self.edges.get(prop.name)
        counts: dict[int, int] = {}
        for b in facet.buckets:  # the max (bucket n + 1 of width_bucket) is in the last one
            k = b["bucket"] if edges is not None else min(b["bucket"], self.buckets - 1)
            counts[k] = counts.get(k, 0) + b["count"]
        if edges is not None:
            bounds: list[tuple[Any, Any]] = list(zip([None, *edges], [*edges, None], strict=True))
            facet.buckets = [
                {"from": json_value(a), "to": json_value(b), "count": counts.get(k, 0)}
                for k, (a, b) in enumerate(bounds)
            ]
            return
        if not rows or rows[0]._mapping.get(f"lo{i}") is None:
            facet.buckets = []
            return
        lo, hi = rows[0]._mapping[f"lo{i}"], rows[0]._mapping[f"hi{i}"]
        facet.min, facet.max = _back(prop, lo), _back(prop, hi)
        if _whole(prop):
            width = (int(hi) - int(lo)) // self.buckets + 1
            bounds = [(lo + k * width, lo + (k + 1) * width) for k in range((hi - lo) // width + 1)]
        elif hi == lo:
            bounds = [(lo, hi)]
        else:
            step = (hi - lo) / self.buckets
            bounds = [(lo + k * step, lo + (k + 1) * step) for k in range(self.buckets)]
            bounds[-1] = (bounds[-1][0], hi)  # the last bucket ends at the max, exactly
        facet.buckets = [
            {
                "from": json_value(_back(prop, a)),
                "to": json_value(_back(prop, b)),
                "count": counts.get(k, 0),
            }
            for k, (a, b) in enumerate(bounds)
        ]


def _back(prop: Property, value: Any) -> Any:
    """A point of a bucket scale as a property value (a date, a date-time, a number)."""
    if prop.type is PropertyType.DATE:
        return EPOCH + dt.timedelta(days=int(value))
    if prop.type is PropertyType.DATETIME:
        return dt.datetime.fromtimestamp(float(value), dt.UTC)
    if prop.type is PropertyType.INTEGER:
        return int(value)
    return float(value)


__all__ = [
    "Facet",
    "Facets",
    "facet_counts",
    "facet_counts_shared",
    "facet_properties",
    "parse_edges",
]
