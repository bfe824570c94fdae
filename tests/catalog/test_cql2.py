"""The CQL2 compiler against PostGIS: every operator from CQL2-text and CQL2-JSON, the STAC
query extension, typing rules, and hostile input (injection, deep nesting)."""

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import cql2 as cql2_lib
import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.dialects import postgresql

from catalog import errors
from catalog.db.models import Item
from catalog.stac.cql2 import compile_filter, parse, query_to_cql2
from catalog.stac.queryables import Kind

# Built like the app builds it: {name: frozenset(kinds)} over the searched collections.
REGISTRY = {
    "eo:cloud_cover": frozenset({Kind.NUMBER}),
    "platform": frozenset({Kind.STRING}),
    "title": frozenset({Kind.STRING}),
    "instruments": frozenset({Kind.ARRAY}),
    "x": frozenset({Kind.STRING, Kind.NUMBER}),  # a number on one item, a string on others
    "flag": frozenset({Kind.BOOLEAN}),
    "gsd": frozenset({Kind.NUMBER}),
    "updated": frozenset({Kind.TIMESTAMP}),
}
EVIL = "x'y; DROP TABLE items; --"

# a: instant 2021-01-01T10:00; b: interval 2021-01-01..2021-03-01; c: across the antimeridian;
# d: no geometry; e: a point just east of the antimeridian, no properties at all.
ROWS: list[tuple[str, str, str | None, str, str, dict[str, Any]]] = [
    ("c1", "a", "POLYGON((0 0,1 0,1 1,0 1,0 0))", "2021-01-01T10:00:00Z", "2021-01-01T10:00:00Z",
     {"eo:cloud_cover": 5, "platform": "sentinel-2a", "title": "Café Noir", "instruments": ["msi"],
      "x": 5, "flag": True, "gsd": 10, "updated": "2021-02-01T00:00:00Z"}),
    ("c1", "b", "POLYGON((10 10,11 10,11 11,10 11,10 10))", "2021-01-01T00:00:00Z",
     "2021-03-01T00:00:00Z",
     {"eo:cloud_cover": 50, "platform": "landsat-8", "title": "CAFE blanc",
      "instruments": ["oli", "tirs"], "x": "abc", "flag": False, "gsd": 30}),
    ("c1", "c", "MULTIPOLYGON(((179.5 0,180 0,180 1,179.5 1,179.5 0)),"
     "((-180 0,-179.5 0,-179.5 1,-180 1,-180 0)))", "2022-06-15T00:00:00Z", "2022-06-15T00:00:00Z",
     {"eo:cloud_cover": None, "platform": "sentinel-2b", "title": "Other", "instruments": []}),
    ("c1", "d", None, "2020-12-31T23:59:59Z", "2020-12-31T23:59:59Z",
     {"eo:cloud_cover": 99.5, "platform": EVIL, "title": "100% cloud_free", "gsd": "n/a",
      "instruments": ["tirs", "oli"], "x": "3"}),
    ("c2", "e", "POINT(-179.8 0.5)", "2023-01-01T00:00:00Z", "2023-01-01T00:00:00Z", {}),
]  # fmt: skip
ALL = {"a", "b", "c", "d", "e"}


@pytest.fixture
def engine(sync_engine: Engine) -> Iterator[Engine]:
    with sync_engine.begin() as conn:
        collections = "INSERT INTO collections (id, content) VALUES ('c1', '{}'), ('c2', '{}')"
        conn.execute(text(collections))
        for collection, item_id, wkt, start, end, props in ROWS:
            conn.execute(
                text(
                    "INSERT INTO items (collection_id, id, geometry, datetime, end_datetime, "
                    "properties, content) VALUES (:collection, :id, ST_GeomFromText(:wkt, 4326), "
                    ":start, :end, CAST(:props AS jsonb), '{}')"
                ),
                {"collection": collection, "id": item_id, "wkt": wkt, "start": start}
                | {"end": end, "props": json.dumps(props)},
            )
    yield sync_engine


def run(engine: Engine, expr: Any, **options: Any) -> set[str]:
    clause = compile_filter(expr, REGISTRY, **options)
    with engine.connect() as conn:
        return {row[0] for row in conn.execute(select(Item.id).where(clause))}


CASES: list[tuple[str, set[str]]] = [
    # logical and comparison operators; SQL NULL semantics: a missing value matches nothing
    ("eo:cloud_cover < 10", {"a"}),
    ("eo:cloud_cover <= 50", {"a", "b"}),
    ("eo:cloud_cover > 50", {"d"}),
    ("eo:cloud_cover >= 50", {"b", "d"}),
    ("eo:cloud_cover = 99.5", {"d"}),
    ("eo:cloud_cover <> 5", {"b", "d"}),
    ("10 > eo:cloud_cover", {"a"}),
    ("platform = 'sentinel-2a' OR platform = 'landsat-8'", {"a", "b"}),
    ("platform = 'landsat-8' AND eo:cloud_cover = 50", {"b"}),
    ("NOT platform = 'landsat-8'", {"a", "c", "d"}),
    ("id = 'a' AND collection = 'c1'", {"a"}),
    ("collection = 'c2'", {"e"}),
    ("flag = true", {"a"}),
    ("flag <> true", {"b"}),
    ("TRUE", ALL),
    ("FALSE", set()),
    ("NOT FALSE", ALL),
    # a property holding numbers and strings: each comparison sees only values of its type
    ("x < 10", {"a"}),
    ("x = 'abc'", {"b"}),
    ("x = '3'", {"d"}),
    ("x > 1 OR x = 'abc'", {"a", "b"}),
    ("x IN (5, 'abc')", {"a", "b"}),
    # isNull: JSON null, a missing property, a NULL column
    ("eo:cloud_cover IS NULL", {"c", "e"}),
    ("eo:cloud_cover IS NOT NULL", {"a", "b", "d"}),
    ("flag IS NULL", {"c", "d", "e"}),
    ("geometry IS NULL", {"d"}),
    # like, between, in
    ("platform LIKE 'sentinel%'", {"a", "c"}),
    ("platform LIKE 'sentinel-2_'", {"a", "c"}),
    ("platform NOT LIKE 'sentinel%'", {"b", "d"}),
    ("title LIKE '%\\%%'", {"d"}),
    ("title LIKE '%\\_%'", {"d"}),
    ("eo:cloud_cover BETWEEN 5 AND 50", {"a", "b"}),
    ("eo:cloud_cover NOT BETWEEN 5 AND 50", {"d"}),
    ("eo:cloud_cover BETWEEN 5.5 AND 99.5", {"b", "d"}),
    ("platform IN ('landsat-8', 'sentinel-2b')", {"b", "c"}),
    ("platform NOT IN ('landsat-8', 'sentinel-2b')", {"a", "d"}),
    ("eo:cloud_cover IN (5, 50)", {"a", "b"}),
    # case- and accent-insensitive comparison
    ("CASEI(title) = CASEI('CAFÉ NOIR')", {"a"}),
    ("CASEI(title) <> CASEI('other')", {"a", "b", "d"}),
    ("ACCENTI(title) = ACCENTI('Cafe Noir')", {"a"}),
    ("ACCENTI(CASEI(title)) LIKE ACCENTI(CASEI('cafe%'))", {"a", "b"}),
    ("CASEI(ACCENTI(title)) = CASEI(ACCENTI('café BLANC'))", {"b"}),
    ("CASEI(platform) IN (CASEI('LANDSAT-8'), CASEI('Sentinel-2B'))", {"b", "c"}),
    # timestamps and dates in comparisons (a date compared with a timestamp is its whole day)
    ("datetime > TIMESTAMP('2021-01-01T05:00:00Z')", {"a", "c", "e"}),
    (
        "datetime BETWEEN TIMESTAMP('2021-01-01T00:00:00Z') AND TIMESTAMP('2022-12-31T00:00:00Z')",
        {"a", "b", "c"},
    ),  # fmt: skip
    ("datetime = DATE('2021-01-01')", {"a", "b"}),
    ("DATE('2021-01-01') = datetime", {"a", "b"}),
    ("datetime <> DATE('2021-01-01')", {"c", "d", "e"}),
    ("datetime < DATE('2021-01-01')", {"d"}),
    ("datetime <= DATE('2021-01-01')", {"a", "b", "d"}),
    ("datetime > DATE('2021-01-01')", {"c", "e"}),
    ("datetime >= DATE('2022-06-15')", {"c", "e"}),
    ("updated > TIMESTAMP('2021-01-15T00:00:00Z')", {"a"}),
    ("updated = TIMESTAMP('2021-02-01T01:00:00+01:00')", {"a"}),
    ("updated > '2021-01-15T00:00:00Z'", {"a"}),
    ("updated = '2021-02-01'", {"a"}),
    # spatial
    ("S_INTERSECTS(geometry, BBOX(0.5, 0.5, 10.5, 10.5))", {"a", "b"}),
    ("S_INTERSECTS(geometry, BBOX(0.5, 0.5, 0, 10.5, 10.5, 100))", {"a", "b"}),
    ("S_INTERSECTS(geometry, BBOX(179, 0, -179, 1))", {"c", "e"}),
    ("S_INTERSECTS(geometry, BBOX(-180, -90, 180, 90))", {"a", "b", "c", "e"}),
    ("S_INTERSECTS(geometry, POLYGON((179 0, -179 0, -179 1, 179 1, 179 0)))", {"c", "e"}),
    ("S_INTERSECTS(geometry, POINT(0.5 0.5))", {"a"}),
    ("S_DISJOINT(geometry, POINT(0.5 0.5))", {"b", "c", "e"}),
    ("S_CONTAINS(geometry, POINT(10.5 10.5))", {"b"}),
    ("S_WITHIN(geometry, POLYGON((-1 -1, 2 -1, 2 2, -1 2, -1 -1)))", {"a"}),
    ("S_EQUALS(geometry, POLYGON((0 0, 1 0, 1 1, 0 1, 0 0)))", {"a"}),
    ("S_TOUCHES(geometry, POLYGON((1 0, 2 0, 2 1, 1 1, 1 0)))", {"a"}),
    ("S_OVERLAPS(geometry, POLYGON((0.5 0.5, 2 0.5, 2 2, 0.5 2, 0.5 0.5)))", {"a"}),
    ("S_CROSSES(geometry, LINESTRING(-1 0.5, 2 0.5))", {"a"}),
    ("S_INTERSECTS(POINT(0 0), BBOX(-1, -1, 1, 1))", ALL),
    # temporal: OGC 21-065 semantics, closed intervals, instants as [t, t]
    ("T_AFTER(datetime, TIMESTAMP('2021-01-01T10:00:00Z'))", {"c", "e"}),  # strictly after
    ("T_AFTER(datetime, INTERVAL('..', '2021-01-01'))", {"c", "e"}),  # the date ends its day
    ("T_BEFORE(datetime, TIMESTAMP('2021-03-01T00:00:00Z'))", {"a", "d"}),  # strictly before
    ("T_BEFORE(datetime, INTERVAL('2021-01-01', '..'))", {"d"}),
    ("T_CONTAINS(datetime, TIMESTAMP('2021-01-01T10:00:00Z'))", {"b"}),
    ("T_CONTAINS(datetime, INTERVAL('2021-01-15T00:00:00Z', '2021-02-01T00:00:00Z'))", {"b"}),
    (
        "T_DISJOINT(datetime, INTERVAL('2021-01-01T00:00:00Z', '2021-01-01T10:00:00Z'))",
        {"c", "d", "e"},
    ),  # fmt: skip
    ("T_DURING(datetime, INTERVAL('2021-01-01T00:00:00Z', '2021-03-01T00:00:00Z'))", {"a"}),
    ("T_DURING(datetime, INTERVAL('..', '..'))", ALL),
    ("T_DURING(datetime, DATE('2021-01-01'))", {"a"}),
    ("T_EQUALS(datetime, INTERVAL('2021-01-01T00:00:00Z', '2021-03-01T00:00:00Z'))", {"b"}),
    ("T_EQUALS(datetime, TIMESTAMP('2021-01-01T10:00:00Z'))", {"a"}),
    ("T_EQUALS(INTERVAL(start_datetime, end_datetime), datetime)", ALL),
    ("T_FINISHEDBY(datetime, INTERVAL('2021-02-01T00:00:00Z', '2021-03-01T00:00:00Z'))", {"b"}),
    ("T_FINISHEDBY(datetime, TIMESTAMP('2021-03-01T00:00:00Z'))", {"b"}),
    ("T_FINISHES(datetime, INTERVAL('2020-12-01T00:00:00Z', '2021-03-01T00:00:00Z'))", {"b"}),
    ("T_INTERSECTS(datetime, INTERVAL('2021-03-01T00:00:00Z', '2021-04-01T00:00:00Z'))", {"b"}),
    ("T_INTERSECTS(datetime, INTERVAL('2022-01-01', '..'))", {"c", "e"}),
    ("T_INTERSECTS(datetime, DATE('2021-01-01'))", {"a", "b"}),
    ("T_MEETS(datetime, INTERVAL('2021-03-01T00:00:00Z', '2021-04-01T00:00:00Z'))", {"b"}),
    ("T_METBY(datetime, INTERVAL('2020-12-01T00:00:00Z', '2021-01-01T00:00:00Z'))", {"b"}),
    (
        "T_OVERLAPPEDBY(datetime, INTERVAL('2020-12-01T00:00:00Z', '2021-02-01T00:00:00Z'))",
        {"b"},
    ),  # fmt: skip
    ("T_OVERLAPS(datetime, INTERVAL('2021-02-01T00:00:00Z', '2021-04-01T00:00:00Z'))", {"b"}),
    ("T_STARTEDBY(datetime, INTERVAL('2021-01-01T00:00:00Z', '2021-02-01T00:00:00Z'))", {"b"}),
    ("T_STARTEDBY(datetime, TIMESTAMP('2021-01-01T00:00:00Z'))", {"b"}),
    ("T_STARTS(datetime, INTERVAL('2021-01-01T00:00:00Z', '2021-04-01T00:00:00Z'))", {"b"}),
    ("T_STARTS(datetime, INTERVAL('2021-01-01T10:00:00Z', '2021-01-02T00:00:00Z'))", {"a"}),
    ("T_AFTER(updated, datetime)", {"a"}),
    # arrays are compared as sets
    ("A_CONTAINS(instruments, ('oli'))", {"b", "d"}),
    ("A_CONTAINS(instruments, ('oli', 'tirs'))", {"b", "d"}),
    ("A_CONTAINEDBY(instruments, ('msi', 'oli'))", {"a", "c"}),
    ("A_OVERLAPS(instruments, ('msi', 'tirs'))", {"a", "b", "d"}),
    ("A_EQUALS(instruments, ('tirs', 'oli'))", {"b", "d"}),
    ("A_EQUALS(instruments, ('msi'))", {"a"}),
    # property-property
    ("eo:cloud_cover < gsd", {"a"}),
    ("platform <> title", {"a", "b", "c", "d"}),
    ("x = eo:cloud_cover", {"a"}),
    ("CASEI(platform) = CASEI(title)", set()),
]


@pytest.mark.parametrize("form", ["text", "json"])
@pytest.mark.parametrize(("expression", "expected"), CASES, ids=[c[0] for c in CASES])
def test_operator(engine: Engine, form: str, expression: str, expected: set[str]) -> None:
    value: Any = expression if form == "text" else cql2_lib.parse_text(expression).to_json()
    assert run(engine, parse(value)) == expected


JSON_CASES: list[tuple[dict[str, Any], set[str]]] = [
    # hand-written CQL2-JSON: 1.0 between form, bbox literals, both spellings of camelCase ops
    ({"op": "between", "args": [{"property": "eo:cloud_cover"}, 5, 50]}, {"a", "b"}),
    ({"op": "between", "args": [{"property": "eo:cloud_cover"}, [5, 50]]}, {"a", "b"}),  # draft
    ({"op": "s_intersects", "args": [{"property": "geometry"}, {"bbox": [179, 0, -179, 1]}]},
     {"c", "e"}),  # fmt: skip
    ({"op": "s_intersects",
      "args": [{"property": "geometry"}, {"bbox": [0.5, 0.5, -10, 10.5, 10.5, 10]}]}, {"a", "b"}),
    ({"op": "s_within", "args": [{"property": "geometry"}, {"type": "Polygon",
      "coordinates": [[[-1, -1], [2, -1], [2, 2], [-1, 2], [-1, -1]]]}]}, {"a"}),
    ({"op": "t_finishedBy", "args": [{"property": "datetime"},
      {"interval": ["2021-02-01T00:00:00Z", "2021-03-01T00:00:00Z"]}]}, {"b"}),
    ({"op": "t_finishedby", "args": [{"property": "datetime"},
      {"timestamp": "2021-03-01T00:00:00Z"}]}, {"b"}),
    ({"op": "a_containedBy", "args": [{"property": "instruments"}, ["msi", "oli"]]}, {"a", "c"}),
    ({"op": "a_containedby", "args": [{"property": "instruments"}, ["msi", "oli"]]}, {"a", "c"}),
    ({"op": "isNull", "args": [{"property": "geometry"}]}, {"d"}),
    ({"op": "not", "args": [{"op": "isnull", "args": [{"property": "flag"}]}]}, {"a", "b"}),
    ({"op": "=", "args": [{"property": "updated"}, {"date": "2021-02-01"}]}, {"a"}),
    ({"op": "t_metBy", "args": [{"property": "datetime"},
      {"interval": [{"date": "2020-12-01"}, {"timestamp": "2021-01-01T00:00:00Z"}]}]}, {"b"}),
]  # fmt: skip


@pytest.mark.parametrize(("expr", "expected"), JSON_CASES, ids=[str(c[0])[:60] for c in JSON_CASES])
def test_json_only(engine: Engine, expr: dict[str, Any], expected: set[str]) -> None:
    assert run(engine, parse(expr)) == expected
    assert run(engine, parse(json.dumps(expr), "cql2-json")) == expected


def test_lang_is_inferred_or_given(engine: Engine) -> None:
    as_json = json.dumps({"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]})
    assert run(engine, parse(as_json)) == {"a"}
    assert run(engine, parse(as_json, "cql2-json")) == {"a"}
    assert run(engine, parse("eo:cloud_cover < 10", "cql2-text")) == {"a"}
    assert parse(True) is True


def test_t_after_is_strict(engine: Engine) -> None:
    # pygeofilter emits >=, which would also match the item starting exactly at that instant
    at_end_of_b = "T_AFTER(datetime, TIMESTAMP('2021-03-01T00:00:00Z'))"
    assert run(engine, parse(at_end_of_b)) == {"c", "e"}
    assert run(engine, parse("T_AFTER(datetime, TIMESTAMP('2021-01-01T09:59:59Z'))")) == {
        "a", "c", "e"}  # fmt: skip


def test_injection_is_data(engine: Engine) -> None:
    literal = EVIL.replace("'", "''")
    assert run(engine, parse(f"platform = '{literal}'")) == {"d"}
    assert run(engine, parse({"op": "=", "args": [{"property": "platform"}, EVIL]})) == {"d"}
    assert run(engine, parse("platform = 'x'' OR ''1''=''1'")) == set()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Item)).scalar() == len(ROWS)


def test_values_are_bound_parameters() -> None:
    compiled = compile_filter(parse("eo:cloud_cover < 10"), REGISTRY).compile(
        dialect=postgresql.dialect()
    )
    assert 10.0 in compiled.params.values()
    assert "10" not in str(compiled)
    evil = compile_filter(parse(f"platform = '{EVIL.replace("'", "''")}'"), REGISTRY).compile(
        dialect=postgresql.dialect()
    )
    assert EVIL in evil.params.values()
    assert "DROP" not in str(evil)


def test_unknown_property() -> None:
    with pytest.raises(errors.UnknownQueryable) as raised:
        compile_filter(parse("nothing = 1"), REGISTRY)
    assert raised.value.code == "search.UnknownQueryable"
    assert raised.value.detail["field"] == "nothing"
    assert "nothing" in raised.value.description
    with pytest.raises(errors.UnknownQueryable):
        compile_filter(parse("S_INTERSECTS(footprint, POINT(0 0))"), REGISTRY)


@pytest.mark.parametrize(
    ("value", "lang"),
    [
        ("eo:cloud_cover <", None),
        ("", None),
        ("platform = 'unterminated", None),
        ("{not json", None),
        ("eo:cloud_cover < 10", "cql2-json"),
        ("eo:cloud_cover < 10", "sql"),
        ("5", None),
        ("'just a string'", None),
        ({"op": "=", "args": "x"}, None),
        ({"filter": "x"}, None),
    ],
)
def test_parse_errors(value: Any, lang: str | None) -> None:
    with pytest.raises(errors.InvalidFilter) as raised:
        parse(value, lang)
    assert raised.value.code == "search.InvalidFilter"


@pytest.mark.parametrize(
    "bad",
    [
        "eo:cloud_cover < 'cloudy'",  # number property, string literal
        "platform > 5",
        "flag = 1",
        "updated > 'yesterday'",
        "updated = DATE('2021-13-01')",
        "'a' = 1",
        "eo:cloud_cover = platform",  # no type in common
        "instruments < 3",
        "instruments = ('a')",
        "geometry = POINT(0 0)",
        "CASEI(eo:cloud_cover) = 1",
        "eo:cloud_cover LIKE '5%'",
        "platform IN (1, 2)",
        "S_INTERSECTS(platform, POINT(0 0))",
        "S_INTERSECTS(geometry, BBOX(0, 0, 1))",
        "S_INTERSECTS(geometry, BBOX(10, 0, 20, -1))",
        "T_AFTER(platform, TIMESTAMP('2020-01-01T00:00:00Z'))",
        "T_INTERSECTS(datetime, INTERVAL('2021-02-01', '2021-01-01'))",
        "A_CONTAINS(platform, ('a'))",
        "eo:cloud_cover + 1 > 2",
        "eo:cloud_cover > 1 * 2",
        "frobnicate(platform)",
        "frobnicate(platform) = 1",
        "flag",
        "platform = 'a' AND 5",
    ],
)
def test_invalid_filters(bad: str) -> None:
    with pytest.raises(errors.InvalidFilter):
        compile_filter(parse(bad), REGISTRY)


@pytest.mark.parametrize(
    "bad",
    [
        {"op": "=", "args": [{"property": "platform"}, None]},
        {"op": "=", "args": [{"property": "platform"}]},
        {"op": "t_after", "args": [{"property": "datetime"}, {"timestamp": "bad"}]},
        {"op": "a_contains", "args": [{"property": "instruments"}, [{"bbox": [0, 0, 1, 1]}]]},
        {"op": "like", "args": [{"property": "platform"}, {"property": "eo:cloud_cover"}]},
        {"op": "a_contains", "args": [{"property": "instruments"}, "msi"]},
        {"op": ">", "args": [{"property": "datetime"}, "2021-01-01T00:00:00"]},  # no zone
        {"op": "t_after", "args": [{"property": "datetime"}, {"interval": ["2021-01-01"]}]},
        {"op": "and", "args": []},
    ],
)
def test_invalid_json_filters(bad: dict[str, Any]) -> None:
    with pytest.raises(errors.InvalidFilter):
        compile_filter(parse(bad), REGISTRY)


def test_type_errors_say_why() -> None:
    with pytest.raises(errors.InvalidFilter, match="'eo:cloud_cover' holds number values"):
        compile_filter(parse("eo:cloud_cover < 'cloudy'"), REGISTRY)
    with pytest.raises(errors.InvalidFilter, match="not supported"):
        compile_filter(parse("eo:cloud_cover + 1 > 2"), REGISTRY)


def test_deep_json_is_refused() -> None:
    expr: Any = {"op": "=", "args": [{"property": "gsd"}, 1]}
    for _ in range(101):
        expr = {"op": "not", "args": [expr]}
    with pytest.raises(errors.InvalidFilter, match="deeper"):
        compile_filter(expr, REGISTRY)
    for _ in range(400):
        expr = {"op": "not", "args": [expr]}
    with pytest.raises(errors.InvalidFilter):
        parse(expr)
    with pytest.raises(errors.InvalidFilter):
        parse(json.dumps(expr))


def test_moderate_nesting_compiles(engine: Engine) -> None:
    expr = "NOT " * 40 + "eo:cloud_cover < 10"
    assert run(engine, parse(expr)) == {"a"}
    assert run(engine, parse("(" * 60 + "eo:cloud_cover < 10" + ")" * 60)) == {"a"}


# Run in a child process: if a guard regresses, cql2 overflows its stack and the process dies.
_HOSTILE = """
import sys
from catalog.stac.cql2 import parse
from catalog.errors import InvalidFilter
hostile = [
    "NOT " * 20000 + "x = 1",
    "(" * 20000 + "x = 1" + ")" * 20000,
    "CASEI(" * 20000 + "x" + ")" * 20000 + " = 'a'",
    "x" + " = 1" * 20000,
    "x = " + " - 1" * 20000,
    "x = 1" + " AND x = 1" * 60000,
    "S_INTERSECTS(geometry, POINT(" + " -1" * 30000 + "))",
    "S_INTERSECTS(geometry, BBOX(1" + " -1" * 30000 + ", 2, 3, 4))",
]
for value in hostile:
    try:
        parse(value)
        sys.exit("accepted: " + value[:40])
    except InvalidFilter:
        pass
legit = [
    " OR ".join(f"id = 'item-{i}'" for i in range(2000)),
    "S_INTERSECTS(geometry, POLYGON(("
    + ", ".join(f"-{i % 90} -{i % 80}.5" for i in range(20000)) + ")))",
    "x IN (" + ", ".join(str(i) for i in range(20000)) + ")",
]
for value in legit:
    parse(value)
print("ok")
"""


def test_hostile_text_is_refused_without_crashing() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _HOSTILE], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:] or done.stdout
    assert done.stdout.strip() == "ok"


# -- STAC query extension ----------------------------------------------------------------------
QUERIES: list[tuple[dict[str, Any], set[str]]] = [
    ({"eo:cloud_cover": {"eq": 50}}, {"b"}),
    ({"eo:cloud_cover": {"neq": 50}}, {"a", "d"}),
    ({"eo:cloud_cover": {"lt": 50}}, {"a"}),
    ({"eo:cloud_cover": {"lte": 50}}, {"a", "b"}),
    ({"eo:cloud_cover": {"gt": 50}}, {"d"}),
    ({"eo:cloud_cover": {"gte": 50}}, {"b", "d"}),
    ({"eo:cloud_cover": {"gt": 5, "lte": 50}}, {"b"}),
    ({"eo:cloud_cover": {"gte": 50}, "platform": {"neq": "landsat-8"}}, {"d"}),
    ({"platform": {"startsWith": "sentinel"}}, {"a", "c"}),
    ({"platform": {"endsWith": "-8"}}, {"b"}),
    ({"platform": {"contains": "DROP"}}, {"d"}),
    ({"platform": {"contains": "'"}}, {"d"}),
    ({"title": {"contains": "%"}}, {"d"}),
    ({"platform": {"contains": "%"}}, set()),
    ({"platform": {"startsWith": "sentinel_"}}, set()),
    ({"platform": {"in": ["landsat-8", "sentinel-2a"]}}, {"a", "b"}),
    ({"flag": {"eq": True}}, {"a"}),
    ({"updated": {"gte": "2021-02-01T00:00:00Z"}}, {"a"}),
    ({"properties.gsd": {"lt": 20}}, {"a"}),
]


@pytest.mark.parametrize(("query", "expected"), QUERIES, ids=[str(q[0]) for q in QUERIES])
def test_query_extension(engine: Engine, query: dict[str, Any], expected: set[str]) -> None:
    expr = query_to_cql2(query)
    assert run(engine, expr) == expected
    assert run(engine, parse(expr)) == expected  # valid CQL2-JSON, as cql2 reads it back


def test_query_extension_shape() -> None:
    assert query_to_cql2({"eo:cloud_cover": {"lt": 10}}) == {
        "op": "<", "args": [{"property": "eo:cloud_cover"}, 10]}  # fmt: skip
    both = query_to_cql2({"gsd": {"gte": 1, "lt": 2}})
    assert both["op"] == "and" and len(both["args"]) == 2
    assert query_to_cql2({"title": {"startsWith": "50%_"}})["args"][1] == "50\\%\\_%"


def test_query_extension_numeric_strings(engine: Engine) -> None:
    expr = query_to_cql2({"eo:cloud_cover": {"gte": "50", "lt": "99.5"}})
    assert run(engine, expr, numeric_strings=True) == {"b"}
    with pytest.raises(errors.InvalidFilter):
        run(engine, expr)  # CQL2 itself stays strictly typed
    with pytest.raises(errors.InvalidFilter):
        run(engine, query_to_cql2({"eo:cloud_cover": {"lt": "ten"}}), numeric_strings=True)


@pytest.mark.parametrize(
    "query",
    [
        [],
        {},
        {"x": 5},
        {"x": {}},
        {"x": {"almost": 1}},
        {"x": {"in": []}},
        {"x": {"in": "abc"}},
        {"x": {"in": [{"a": 1}]}},
        {"x": {"eq": None}},
        {"x": {"lt": [1]}},
        {"x": {"startsWith": 5}},
    ],
)
def test_query_extension_errors(query: Any) -> None:
    with pytest.raises(errors.InvalidParameter):
        query_to_cql2(query)
