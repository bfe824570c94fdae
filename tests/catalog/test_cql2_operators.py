"""Every CQL2 operator compiled and run against PostGIS, from text and from JSON."""

from collections.abc import Iterator

import cql2 as cql2_lib
import pytest
from sqlalchemy import Engine, select, text

from catalog.cql2 import compile_filter, parse, query_to_cql2
from catalog.errors import InvalidFilter, InvalidParameter, UnknownQueryable
from catalog.models import Item
from catalog.queryables import Kind

REGISTRY = {
    "eo:cloud_cover": frozenset({Kind.NUMBER}),
    "platform": frozenset({Kind.STRING}),
    "title": frozenset({Kind.STRING}),
    "instruments": frozenset({Kind.ARRAY}),
    "x": frozenset({Kind.NUMBER, Kind.STRING}),
    "flag": frozenset({Kind.BOOLEAN}),
    "gsd": frozenset({Kind.NUMBER}),
    "updated": frozenset({Kind.TIMESTAMP}),
}

ROWS = [
    # id, wkt, start, end, properties
    ("a", "POLYGON((0 0,1 0,1 1,0 1,0 0))", "2021-01-01T10:00:00Z", "2021-01-01T10:00:00Z",
     '{"eo:cloud_cover": 5, "platform": "sentinel-2a", "title": "Café Noir", "instruments":'
     ' ["msi"], "x": 5, "flag": true, "gsd": 10, "updated": "2021-02-01T00:00:00Z"}'),
    ("b", "POLYGON((10 10,11 10,11 11,10 11,10 10))", "2021-01-01T00:00:00Z",
     "2021-03-01T00:00:00Z",
     '{"eo:cloud_cover": 50, "platform": "landsat-8", "title": "cafe blanc", "instruments":'
     ' ["oli", "tirs"], "x": "abc", "flag": false, "gsd": 30}'),
    ("c", "MULTIPOLYGON(((179.5 0,180 0,180 1,179.5 1,179.5 0)),"
     "((-180 0,-179.5 0,-179.5 1,-180 1,-180 0)))",
     "2022-06-15T00:00:00Z", "2022-06-15T00:00:00Z",
     '{"platform": "sentinel-2b", "title": "Other", "instruments": [], "eo:cloud_cover": null}'),
    ("d", None, "2020-12-31T23:59:59Z", "2020-12-31T23:59:59Z",
     '{"eo:cloud_cover": 99.5, "platform": "x\'y", "gsd": "n/a"}'),
]  # fmt: skip


@pytest.fixture
def engine(sync_engine: Engine) -> Iterator[Engine]:
    with sync_engine.begin() as conn:
        conn.execute(text("INSERT INTO collections (id, content) VALUES ('c', '{}')"))
        for item_id, wkt, start, end, props in ROWS:
            conn.execute(
                text(
                    "INSERT INTO items (collection_id, id, geometry, datetime, end_datetime, "
                    "properties, content) VALUES ('c', :id, ST_GeomFromText(:wkt, 4326), "
                    ":start, :end, CAST(:props AS jsonb), '{}')"
                ),
                {"id": item_id, "wkt": wkt, "start": start, "end": end, "props": props},
            )
    yield sync_engine


def run(engine: Engine, expr: object) -> set[str]:
    with engine.connect() as conn:
        clause = compile_filter(expr, REGISTRY)  # type: ignore[arg-type]
        return {r[0] for r in conn.execute(select(Item.id).where(clause))}


CASES = [
    # basic CQL2
    ("eo:cloud_cover < 10", {"a"}),
    ("eo:cloud_cover >= 50", {"b", "d"}),
    ("eo:cloud_cover <> 5", {"b", "d"}),
    ("eo:cloud_cover = 99.5", {"d"}),
    ("platform = 'sentinel-2a' OR platform = 'landsat-8'", {"a", "b"}),
    ("NOT platform = 'landsat-8'", {"a", "c", "d"}),
    ("platform = 'x''y'", {"d"}),
    ("id = 'a' AND collection = 'c'", {"a"}),
    ("flag = true", {"a"}),
    ("eo:cloud_cover IS NULL", {"c"}),
    ("eo:cloud_cover IS NOT NULL", {"a", "b", "d"}),
    ("flag IS NULL", {"c", "d"}),
    ("TRUE", {"a", "b", "c", "d"}),
    # a property holding numbers and strings: each comparison only sees its own type
    ("x < 10", {"a"}),
    ("x = 'abc'", {"b"}),
    ("gsd > 5", {"a", "b"}),
    # advanced comparison
    ("platform LIKE 'sentinel%'", {"a", "c"}),
    ("platform LIKE 'sentinel-2_'", {"a", "c"}),
    ("platform NOT LIKE 'sentinel%'", {"b", "d"}),
    ("eo:cloud_cover BETWEEN 5 AND 50", {"a", "b"}),
    ("eo:cloud_cover NOT BETWEEN 5 AND 50", {"d"}),
    ("platform IN ('landsat-8', 'sentinel-2b')", {"b", "c"}),
    ("platform NOT IN ('landsat-8', 'sentinel-2b')", {"a", "d"}),
    ("eo:cloud_cover IN (5, 50)", {"a", "b"}),
    # case and accent insensitive
    ("CASEI(title) = CASEI('CAFÉ NOIR')", {"a"}),
    ("ACCENTI(CASEI(title)) LIKE ACCENTI(CASEI('CAFE%'))", {"a", "b"}),
    ("ACCENTI(title) = ACCENTI('Cafe Noir')", {"a"}),
    ("CASEI(platform) IN (CASEI('LANDSAT-8'), CASEI('X''Y'))", {"b", "d"}),
    # spatial
    ("S_INTERSECTS(geometry, BBOX(0.5, 0.5, 10.5, 10.5))", {"a", "b"}),
    ("S_INTERSECTS(geometry, BBOX(179, 0, -179, 1))", {"c"}),
    ("S_INTERSECTS(geometry, BBOX(0.5, 0.5, 0, 10.5, 10.5, 100))", {"a", "b"}),
    ("S_INTERSECTS(geometry, POINT(0.5 0.5))", {"a"}),
    ("S_DISJOINT(geometry, POINT(0.5 0.5))", {"b", "c"}),
    ("S_CONTAINS(geometry, POINT(10.5 10.5))", {"b"}),
    ("S_WITHIN(geometry, POLYGON((-1 -1, 2 -1, 2 2, -1 2, -1 -1)))", {"a"}),
    ("S_EQUALS(geometry, POLYGON((0 0, 1 0, 1 1, 0 1, 0 0)))", {"a"}),
    ("S_TOUCHES(geometry, POLYGON((1 0, 2 0, 2 1, 1 1, 1 0)))", {"a"}),
    ("S_OVERLAPS(geometry, POLYGON((0.5 0.5, 2 0.5, 2 2, 0.5 2, 0.5 0.5)))", {"a"}),
    ("S_CROSSES(geometry, LINESTRING(-1 0.5, 2 0.5))", {"a"}),
    # temporal: a is an instant 2021-01-01T10:00, b spans 2021-01-01..2021-03-01
    ("T_AFTER(datetime, TIMESTAMP('2021-01-01T10:00:00Z'))", {"c"}),
    ("T_BEFORE(datetime, TIMESTAMP('2021-01-01T00:00:00Z'))", {"d"}),
    ("T_INTERSECTS(datetime, TIMESTAMP('2021-02-01T00:00:00Z'))", {"b"}),
    (
        "T_INTERSECTS(datetime, INTERVAL('2021-01-01T00:00:00Z', '2021-01-02T00:00:00Z'))",
        {"a", "b"},
    ),  # fmt: skip
    ("T_INTERSECTS(datetime, INTERVAL('2022-01-01', '..'))", {"c"}),
    ("T_DISJOINT(datetime, INTERVAL('..', '2021-06-01'))", {"c"}),
    ("T_DURING(datetime, INTERVAL('2021-01-01T00:00:00Z', '2021-03-01T00:00:00Z'))", {"a"}),
    ("T_CONTAINS(datetime, TIMESTAMP('2021-01-01T10:00:00Z'))", {"b"}),
    ("T_EQUALS(datetime, TIMESTAMP('2021-01-01T10:00:00Z'))", {"a"}),
    ("T_STARTS(datetime, INTERVAL('2021-01-01T00:00:00Z', '2021-04-01T00:00:00Z'))", {"b"}),
    ("T_STARTEDBY(datetime, INTERVAL('2021-01-01T00:00:00Z', '2021-02-01T00:00:00Z'))", {"b"}),
    ("T_FINISHES(datetime, INTERVAL('2020-12-01T00:00:00Z', '2021-03-01T00:00:00Z'))", {"b"}),
    ("T_FINISHEDBY(datetime, INTERVAL('2021-02-01T00:00:00Z', '2021-03-01T00:00:00Z'))", {"b"}),
    ("T_MEETS(datetime, INTERVAL('2021-03-01T00:00:00Z', '2021-04-01T00:00:00Z'))", {"b"}),
    ("T_METBY(datetime, INTERVAL('2020-12-01T00:00:00Z', '2021-01-01T00:00:00Z'))", {"b"}),
    ("T_OVERLAPS(datetime, INTERVAL('2021-02-01T00:00:00Z', '2021-04-01T00:00:00Z'))", {"b"}),
    (
        "T_OVERLAPPEDBY(datetime, INTERVAL('2020-12-01T00:00:00Z', '2021-02-01T00:00:00Z'))",
        {"b"},
    ),  # fmt: skip
    ("datetime > TIMESTAMP('2021-01-01T05:00:00Z')", {"a", "c"}),
    ("datetime = DATE('2021-01-01')", {"a", "b"}),
    ("datetime < DATE('2021-01-01')", {"d"}),
    ("datetime >= DATE('2022-06-15')", {"c"}),
    ("updated > TIMESTAMP('2021-01-15T00:00:00Z')", {"a"}),
    ("updated > '2021-01-15T00:00:00Z'", {"a"}),
    # arrays
    ("A_CONTAINS(instruments, ('oli'))", {"b"}),
    ("A_CONTAINS(instruments, ('oli', 'tirs'))", {"b"}),
    ("A_CONTAINEDBY(instruments, ('msi', 'oli'))", {"a", "c"}),
    ("A_OVERLAPS(instruments, ('msi', 'tirs'))", {"a", "b"}),
    ("A_EQUALS(instruments, ('oli', 'tirs'))", {"b"}),
    # property-property
    ("eo:cloud_cover < gsd", {"a"}),
    ("platform <> title", {"a", "b", "c"}),
]


@pytest.mark.parametrize(("expression", "expected"), CASES, ids=[c[0] for c in CASES])
def test_text(engine: Engine, expression: str, expected: set[str]) -> None:
    assert run(engine, parse(expression)) == expected


@pytest.mark.parametrize(("expression", "expected"), CASES, ids=[c[0] for c in CASES])
def test_json(engine: Engine, expression: str, expected: set[str]) -> None:
    as_json = cql2_lib.parse_text(expression).to_json()
    assert run(engine, parse(as_json)) == expected
    assert run(engine, parse(__import__("json").dumps(as_json), "cql2-json")) == expected


def test_between_in_json_1_0_form(engine: Engine) -> None:
    expr = {"op": "between", "args": [{"property": "eo:cloud_cover"}, 5, 50]}
    assert run(engine, parse(expr)) == {"a", "b"}


def test_values_are_bound_not_inlined() -> None:
    clause = compile_filter(parse("eo:cloud_cover < 10 AND platform = 'evil'' --'"), REGISTRY)
    compiled = clause.compile()
    assert 10 in compiled.params.values() and "evil' --" in compiled.params.values()
    assert "evil" not in str(compiled)


@pytest.mark.parametrize(
    "bad",
    [
        "eo:cloud_cover <",
        "eo:cloud_cover < 'cloudy'",
        "platform > 5",
        "S_INTERSECTS(platform, POINT(0 0))",
        "T_AFTER(platform, TIMESTAMP('2020-01-01T00:00:00Z'))",
        "A_CONTAINS(platform, ('a'))",
        "eo:cloud_cover + 1 > 2",
        "frobnicate(platform)",
        "CASEI(eo:cloud_cover) = 1",
        "S_INTERSECTS(geometry, BBOX(0, 0, 1))",
        "instruments < 3",
        "flag",
    ],
)
def test_invalid_filters(bad: str) -> None:
    with pytest.raises(InvalidFilter):
        compile_filter(parse(bad), REGISTRY)


def test_unknown_property() -> None:
    with pytest.raises(UnknownQueryable) as raised:
        compile_filter(parse("nothing = 1"), REGISTRY)
    assert raised.value.detail["field"] == "nothing"


def test_deep_nesting_is_refused() -> None:
    expr: object = {"op": "=", "args": [{"property": "gsd"}, 1]}
    for _ in range(150):
        expr = {"op": "not", "args": [expr]}
    with pytest.raises(InvalidFilter, match="deeper"):
        compile_filter(expr, REGISTRY)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"eo:cloud_cover": {"lt": 10}}, {"a"}),
        ({"eo:cloud_cover": {"lte": 50, "gt": 5}}, {"b"}),
        ({"eo:cloud_cover": {"gte": 50}, "platform": {"neq": "landsat-8"}}, {"d"}),
        ({"platform": {"eq": "landsat-8"}}, {"b"}),
        ({"platform": {"startsWith": "sentinel"}}, {"a", "c"}),
        ({"platform": {"endsWith": "-8"}}, {"b"}),
        ({"platform": {"contains": "'"}}, {"d"}),
        ({"platform": {"contains": "%"}}, set()),
        ({"platform": {"in": ["landsat-8", "sentinel-2a"]}}, {"a", "b"}),
    ],
)
def test_query_extension(engine: Engine, query: dict[str, object], expected: set[str]) -> None:
    assert run(engine, query_to_cql2(query)) == expected


def test_query_extension_takes_numbers_as_strings(engine: Engine) -> None:
    expr = query_to_cql2({"eo:cloud_cover": {"gte": "50", "lt": "99.5"}})
    with engine.connect() as conn:
        clause = compile_filter(expr, REGISTRY, numeric_strings=True)
        assert {r[0] for r in conn.execute(select(Item.id).where(clause))} == {"b"}
    with pytest.raises(InvalidFilter):
        compile_filter(expr, REGISTRY)  # CQL2 stays strictly typed


@pytest.mark.parametrize(
    "query", [{"x": 5}, {"x": {}}, {"x": {"almost": 1}}, {"x": {"in": []}}, [], {}]
)
def test_query_extension_errors(query: object) -> None:
    with pytest.raises(InvalidParameter):
        query_to_cql2(query)  # type: ignore[arg-type]
