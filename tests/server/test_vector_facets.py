"""GET /collections/{id}/facets: value counts and buckets against the same counts in Python."""

import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.server.vector_stats_data import (
    EPOCH_DATE,
    Feature,
    in_bbox,
    iso,
    load,
    make_features,
    raster_collection,
    sown_between,
    touch,
)

COUNT = 3000


@pytest.fixture(params=["one statement", "shared out"])
def statements(request: pytest.FixtureRequest, settings: Any) -> str:
    """Before ``client``: the facets of every feature in one statement, or dealt out to three
    statements side by side in one snapshot (what collections of 20,000 features get)."""
    if request.param == "shared out":
        settings.vector_stats.facet_split_features = 0
        settings.vector_stats.facet_statements = 3
    return str(request.param)


@pytest.fixture
def fields(database_url: str, client: TestClient) -> Iterator[list[Feature]]:
    """The collection ``fields`` with COUNT seeded features."""
    features = make_features(COUNT)
    load(database_url, "fields", features)
    yield features


def _facets(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/collections/fields/facets", params=params)
    assert response.status_code == 200, response.text
    return response.json()


# -- what the facets should be, computed here ------------------------------------------------------
def terms(features: list[Feature], name: str, limit: int) -> dict[str, Any]:
    """A terms facet: the top ``limit`` values by count (then value), the rest as ``other``."""
    counts = Counter(f[name] for f in features if f[name] is not None)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return {
        "type": "terms",
        "buckets": [{"value": v, "count": n} for v, n in top],
        "other": sum(counts.values()) - sum(n for _, n in top),
        "distinct": len(counts),
        "missing": sum(1 for f in features if f[name] is None),
    }


def _scale(name: str, value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, dt.date):
        return (value - EPOCH_DATE).days
    return value


def histogram(features: list[Feature], name: str, n: int, whole: bool) -> dict[str, Any]:
    """Equal-width buckets over min..max: whole widths for integers and dates."""
    values = [_scale(name, f[name]) for f in features if f[name] is not None]
    missing = len(features) - len(values)
    if not values:
        return {"type": "histogram", "buckets": [], "min": None, "max": None, "missing": missing}
    lo, hi = min(values), max(values)
    if whole:
        width = (hi - lo) // n + 1
        count = Counter((v - lo) // width for v in values)
        bounds = [(lo + k * width, lo + (k + 1) * width) for k in range((hi - lo) // width + 1)]
    else:
        count = Counter(min(int((v - lo) * n / (hi - lo)), n - 1) for v in values)
        step = (hi - lo) / n
        bounds = [(lo + k * step, lo + (k + 1) * step) for k in range(n)]
        bounds[-1] = (bounds[-1][0], hi)
    return {
        "type": "histogram",
        "buckets": [
            {"from": a, "to": b, "count": count.get(k, 0)} for k, (a, b) in enumerate(bounds)
        ],
        "min": lo,
        "max": hi,
        "missing": missing,
    }


def _numeric(name: str, facet: dict[str, Any]) -> dict[str, Any]:
    """A histogram from the API with its bounds back on the number scale of ``histogram``."""

    def back(value: Any) -> Any:
        if value is None or not isinstance(value, str):
            return value
        if "T" in value:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        return (dt.date.fromisoformat(value) - EPOCH_DATE).days

    out = dict(facet)
    out["buckets"] = [
        {"from": back(b["from"]), "to": back(b["to"]), "count": b["count"]}
        for b in facet["buckets"]
    ]
    out["min"], out["max"] = back(facet["min"]), back(facet["max"])
    return out


def _same_histogram(got: dict[str, Any], expected: dict[str, Any], name: str) -> None:
    got = _numeric(name, got)
    assert [b["count"] for b in got["buckets"]] == [b["count"] for b in expected["buckets"]]
    for g, e in zip(got["buckets"], expected["buckets"], strict=True):
        assert g["from"] == pytest.approx(e["from"], rel=1e-9, abs=1e-6)
        assert g["to"] == pytest.approx(e["to"], rel=1e-9, abs=1e-6)
    assert got["min"] == pytest.approx(expected["min"])
    assert got["max"] == pytest.approx(expected["max"])
    assert got["missing"] == expected["missing"]


# -- tests -----------------------------------------------------------------------------------------
def test_terms_facets_count_every_value(
    statements: str, client: TestClient, fields: list[Feature]
) -> None:
    body = _facets(client, facetby="crop,farmer,organic", facet_limit=5)
    assert body["numberMatched"] == COUNT
    assert list(body["facets"]) == ["crop", "farmer", "organic"]
    for name in ("crop", "farmer", "organic"):
        assert body["facets"][name] == terms(fields, name, 5), name
    # the default limit (10), and every value once the limit is above their number
    body = _facets(client, facetby="crop")
    assert body["facets"]["crop"] == terms(fields, "crop", 10)
    assert body["facets"]["crop"]["other"] == 0
    links = {link["rel"]: link["href"] for link in body["links"]}
    assert links["self"].startswith("http://testserver/collections/fields/facets?facetby=crop")
    assert client.get(links["collection"].removeprefix("http://testserver")).status_code == 200


def test_numbers_and_dates_are_bucketed(
    statements: str, client: TestClient, fields: list[Feature]
) -> None:
    body = _facets(client, facetby="parcels,yield,sown,harvest")
    facets = body["facets"]
    _same_histogram(facets["parcels"], histogram(fields, "parcels", 10, whole=True), "parcels")
    _same_histogram(facets["yield"], histogram(fields, "yield", 10, whole=False), "yield")
    _same_histogram(facets["sown"], histogram(fields, "sown", 10, whole=False), "sown")
    _same_histogram(facets["harvest"], histogram(fields, "harvest", 10, whole=True), "harvest")
    assert (
        facets["harvest"]["buckets"][0]["from"]
        == min(f["harvest"] for f in fields if f["harvest"]).isoformat()
    )
    assert facets["sown"]["max"] == iso(max(f["sown"] for f in fields if f["sown"]))
    # every feature with a value is in one bucket
    for name in ("parcels", "yield", "sown", "harvest"):
        facet = facets[name]
        assert sum(b["count"] for b in facet["buckets"]) + facet["missing"] == COUNT
    body = _facets(client, facetby="yield,parcels", facet_buckets=7)
    _same_histogram(body["facets"]["yield"], histogram(fields, "yield", 7, whole=False), "yield")
    _same_histogram(
        body["facets"]["parcels"], histogram(fields, "parcels", 7, whole=True), "parcels"
    )


FILTERS: list[tuple[dict[str, Any], Callable[[Feature], bool]]] = [
    (
        {"filter": "crop IN ('wheat', 'maize') AND yield > 4.5"},
        lambda f: f["crop"] in ("wheat", "maize") and f["yield"] is not None and f["yield"] > 4.5,
    ),
    (
        {
            "filter": json.dumps({"op": "=", "args": [{"property": "organic"}, True]}),
            "filter-lang": "cql2-json",
        },
        lambda f: f["organic"] is True,
    ),
    (
        {"filter": "parcels BETWEEN 100 AND 200 OR farmer LIKE 'farmer 1%'"},
        lambda f: (
            (f["parcels"] is not None and 100 <= f["parcels"] <= 200)
            or (f["farmer"] is not None and f["farmer"].startswith("farmer 1"))
        ),
    ),
    (
        {
            "filter": "S_INTERSECTS(geometry, POLYGON((0 44, 4 44, 4 47, 0 47, 0 44))) AND "
            "harvest >= DATE('2024-01-01')"
        },
        lambda f: (
            f.geom.intersects(shapely.box(0, 44, 4, 47))
            and f["harvest"] is not None
            and f["harvest"] >= dt.date(2024, 1, 1)
        ),
    ),
]


@pytest.mark.parametrize("case", range(len(FILTERS)))
def test_facets_count_what_the_filter_selects(
    client: TestClient, fields: list[Feature], case: int
) -> None:
    params, keep = FILTERS[case]
    selected = [f for f in fields if keep(f)]
    assert 0 < len(selected) < COUNT
    body = _facets(client, facetby="crop,organic,yield,harvest", facet_limit=3, **params)
    assert body["numberMatched"] == len(selected)
    assert body["facets"]["crop"] == terms(selected, "crop", 3)
    assert body["facets"]["organic"] == terms(selected, "organic", 3)
    _same_histogram(body["facets"]["yield"], histogram(selected, "yield", 10, False), "yield")
    _same_histogram(body["facets"]["harvest"], histogram(selected, "harvest", 10, True), "harvest")


def test_facets_count_what_bbox_and_datetime_select(
    client: TestClient, fields: list[Feature]
) -> None:
    bbox = (0.0, 45.0, 3.5, 48.0)
    start, end = dt.datetime(2023, 3, 1, tzinfo=dt.UTC), dt.datetime(2023, 9, 30, tzinfo=dt.UTC)
    both = sown_between(in_bbox(fields, bbox), start, end)
    body = _facets(
        client,
        facetby="farmer,sown",
        facet_limit=4,
        bbox=",".join(map(str, bbox)),
        datetime=f"{iso(start)}/{iso(end)}",
        filter="crop <> 'wheat'",
    )
    selected = [f for f in both if f["crop"] is not None and f["crop"] != "wheat"]
    assert 0 < body["numberMatched"] == len(selected)
    assert body["facets"]["farmer"] == terms(selected, "farmer", 4)
    _same_histogram(body["facets"]["sown"], histogram(selected, "sown", 10, False), "sown")


def test_given_edges_replace_equal_widths(
    statements: str, client: TestClient, fields: list[Feature]
) -> None:
    edges = [2.0, 4.0, 8.0]
    dates = ["2023-06-01T00:00:00Z", "2024-01-01T00:00:00Z"]
    response = client.get(
        "/collections/fields/facets",
        params=[("facetby", "yield,sown,parcels,harvest"), ("facet_edges", "yield:2,4,8"),
                ("facet_edges", f"sown:{','.join(dates)}"), ("facet_edges", "parcels:100,250.5"),
                ("facet_edges", "harvest:2024-01-01")],
    )  # fmt: skip
    assert response.status_code == 200, response.text
    facets = response.json()["facets"]
    values = [f["yield"] for f in fields if f["yield"] is not None]
    expected = [
        sum(v < 2 for v in values),
        sum(2 <= v < 4 for v in values),
        sum(4 <= v < 8 for v in values),
        sum(v >= 8 for v in values),
    ]
    assert facets["yield"]["buckets"] == [
        {"from": a, "to": b, "count": n}
        for (a, b), n in zip(
            zip([None, *edges], [*edges, None], strict=True), expected, strict=True
        )
    ]
    cuts = [dt.datetime.fromisoformat(d.replace("Z", "+00:00")) for d in dates]
    sown = [f["sown"] for f in fields if f["sown"] is not None]
    assert [b["count"] for b in facets["sown"]["buckets"]] == [
        sum(s < cuts[0] for s in sown),
        sum(cuts[0] <= s < cuts[1] for s in sown),
        sum(s >= cuts[1] for s in sown),
    ]
    assert (facets["sown"]["buckets"][1]["from"], facets["sown"]["buckets"][1]["to"]) == (
        dates[0],
        dates[1],
    )
    parcels = [f["parcels"] for f in fields if f["parcels"] is not None]
    assert facets["parcels"]["buckets"] == [
        {"from": None, "to": 100.0, "count": sum(p < 100 for p in parcels)},
        {"from": 100.0, "to": 250.5, "count": sum(100 <= p < 250.5 for p in parcels)},
        {"from": 250.5, "to": None, "count": sum(p >= 250.5 for p in parcels)},
    ]
    harvest = [f["harvest"] for f in fields if f["harvest"] is not None]
    cut = dt.date(2024, 1, 1)
    assert facets["harvest"]["buckets"] == [
        {"from": None, "to": "2024-01-01", "count": sum(h < cut for h in harvest)},
        {"from": "2024-01-01", "to": None, "count": sum(h >= cut for h in harvest)},
    ]
    assert facets["harvest"]["missing"] == len(fields) - len(harvest)


def test_private_collections_are_facets_of_no_one_else(
    client: TestClient, fields: list[Feature], admin: dict[str, str]
) -> None:
    response = client.put("/collections/fields/rights", json={"visibility": "private"},
                          headers=admin)  # fmt: skip
    assert response.status_code in (200, 204), response.text
    for path in ("facets?facetby=crop", "aggregate?group_by=crop"):
        response = client.get(f"/collections/fields/{path}")
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "catalog.NotFound"
        assert client.get(f"/collections/fields/{path}", headers=admin).status_code == 200


def test_nothing_selected(client: TestClient, fields: list[Feature]) -> None:
    body = _facets(client, facetby="crop,yield,harvest", filter="parcels > 100000")
    assert body["numberMatched"] == 0
    assert body["facets"]["crop"] == {
        "type": "terms", "buckets": [], "other": 0, "distinct": 0, "missing": 0,
    }  # fmt: skip
    assert body["facets"]["yield"]["buckets"] == []
    assert body["facets"]["harvest"] == {
        "type": "histogram", "buckets": [], "min": None, "max": None, "missing": 0,
    }  # fmt: skip


def test_one_value_is_one_bucket(client: TestClient, fields: list[Feature]) -> None:
    one = next(f for f in fields if f["yield"] is not None and f["parcels"] is not None)
    body = _facets(client, facetby="yield,parcels", filter=f"yield = {one['yield']!r}")
    assert body["numberMatched"] == 1
    assert body["facets"]["yield"]["buckets"] == [
        {"from": one["yield"], "to": one["yield"], "count": 1}
    ]
    assert body["facets"]["parcels"]["buckets"] == [
        {"from": one["parcels"], "to": one["parcels"] + 1, "count": 1}
    ]


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"facetby": "crop,nope"}, 400, "features.InvalidFacet"),
        ({"facetby": "notes"}, 400, "features.InvalidFacet"),
        ({}, 400, "features.InvalidFacet"),
        ({"facetby": "crop", "facet_limit": 100_000}, 400, "features.InvalidFacet"),
        ({"facetby": "crop", "facet_limit": 0}, 400, "request.InvalidParameter"),
        ({"facetby": "yield", "facet_buckets": 10_000}, 400, "features.InvalidFacet"),
        ({"facetby": "yield", "facet_edges": "yield:3,2"}, 400, "features.InvalidFacet"),
        ({"facetby": "yield", "facet_edges": "yield:a,b"}, 400, "features.InvalidFacet"),
        ({"facetby": "crop", "facet_edges": "crop:a,b"}, 400, "features.InvalidFacet"),
        ({"facetby": "crop", "facet_edges": "nope:1,2"}, 400, "features.InvalidFacet"),
        ({"facetby": "crop", "filter": "crop ="}, 400, "search.InvalidFilter"),
        ({"facetby": "crop", "filter": "nope = 1"}, 400, "search.UnknownQueryable"),
        (
            {"facetby": "crop", "filter-lang": "cql2-json", "filter": "{"},
            400,
            "search.InvalidFilter",
        ),
        ({"facetby": "crop", "bbox": "1,2,3"}, 400, "search.InvalidBBox"),
        ({"facetby": "crop", "datetime": "yesterday"}, 400, "search.InvalidDatetime"),
    ],
)
def test_bad_requests_say_why(
    client: TestClient, fields: list[Feature], params: dict[str, Any], status: int, code: str
) -> None:
    response = client.get("/collections/fields/facets", params=params)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    if params.get("facetby") in ("crop,nope", "notes"):  # unknown or JSON: the allowed ones
        allowed = response.json()["allowed"]
        assert allowed == ["crop", "farmer", "organic", "parcels", "yield", "sown", "harvest"]


def test_only_vector_collections_have_facets(
    client: TestClient, database_url: str, admin: dict[str, str]
) -> None:
    raster_collection(database_url, "imagery")
    response = client.get("/collections/imagery/facets", params={"facetby": "crop"})
    assert response.status_code == 404
    assert response.json()["code"] == "features.NotVector"
    response = client.get("/collections/nowhere/facets", params={"facetby": "crop"})
    assert response.status_code == 404


def test_nan_counts_as_missing(client: TestClient, database_url: str) -> None:
    features = make_features(20, seed=3)
    features[0].props["yield"] = math.nan
    features[1].props["yield"] = math.inf
    load(database_url, "fields", features)
    body = _facets(client, facetby="yield")
    expected = histogram(features[2:], "yield", 10, whole=False)
    expected["missing"] += 2
    _same_histogram(body["facets"]["yield"], expected, "yield")


def test_answers_are_kept_until_the_next_write(
    client: TestClient, fields: list[Feature], database_url: str, sync_engine: Any
) -> None:
    first = _facets(client, facetby="crop", facet_limit=3)
    assert first["facets"]["crop"] == terms(fields, "crop", 3)
    # rows changed behind the writers' back (no new version): the kept answer
    table = _table(sync_engine)
    with sync_engine.begin() as conn:
        conn.execute(text(f"UPDATE {table} SET crop = 'flax' WHERE crop = 'wheat'"))
    assert _facets(client, facetby="crop", facet_limit=3)["facets"] == first["facets"]
    # another selection or limit is counted anew
    fresh = _facets(client, facetby="crop", facet_limit=4)["facets"]["crop"]
    assert fresh["buckets"][0]["value"] == "flax"
    # a write as the writers make it (refresh_extent): a new version, counted anew
    touch(database_url, "fields", "UPDATE {table} SET crop = 'rye' WHERE crop = 'flax'")
    for f in fields:
        if f["crop"] == "wheat":
            f.props["crop"] = "rye"
    assert _facets(client, facetby="crop", facet_limit=3)["facets"]["crop"] == terms(
        fields, "crop", 3
    )


def _table(sync_engine: Any) -> str:
    with sync_engine.connect() as conn:
        name = conn.execute(
            text("SELECT table_name FROM vector_layers WHERE collection_id = 'fields'")
        ).scalar_one()
    return f'features."{name}"'


def test_integers_beyond_64_bits_of_span_are_refused(
    statements: str, client: TestClient, database_url: str
) -> None:
    features = make_features(3, seed=5)
    features[0].props["parcels"] = -(2**62) - 2**61
    features[1].props["parcels"] = 2**62 + 2**61
    features[2].props["parcels"] = 7
    load(database_url, "fields", features)
    response = client.get("/collections/fields/facets", params={"facetby": "parcels"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "request.InvalidValue"
    # the values themselves are fine with given edges
    body = _facets(client, facetby="parcels", facet_edges="parcels:0")
    assert [b["count"] for b in body["facets"]["parcels"]["buckets"]] == [1, 2]


async def test_facets_of_every_feature_are_shared_out_while_the_process_is_idle(
    fields: list[Feature], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load the cores are busy anyway: each share would only add a read of the rows."""
    from catalog.db.engine import create_engine
    from catalog.settings import DatabaseSettings
    from catalog.vector.query import FeatureQuery
    from catalog.vector.repository import VectorRepository
    from ogc import vector_stats
    from ogc.settings import VectorStatsSettings

    shared: list[int] = []
    real = vector_stats.one_snapshot

    def spy(engine: Any, count: int) -> Any:
        shared.append(count)
        return real(engine, count)

    monkeypatch.setattr(vector_stats, "one_snapshot", spy)
    settings = VectorStatsSettings(facet_split_features=0, facet_statements=2)
    params = vector_stats.FacetParams(facetby="crop,farmer,organic")
    engine = create_engine(database_url, DatabaseSettings())
    try:
        layer = await VectorRepository(engine).layer("fields")
        assert layer is not None
        alone = await vector_stats.facets_member(engine, layer, FeatureQuery(), params, settings)
        assert shared == [2]
        async with engine.connect():  # another request's statement
            busy = await vector_stats.facets_member(engine, layer, FeatureQuery(), params, settings)
        assert shared == [2]
        assert busy == alone
        # a selection: each share would read every row again to find it
        some = FeatureQuery(bbox=[-180.0, -90.0, 180.0, 90.0])
        assert await vector_stats.facets_member(engine, layer, some, params, settings) == alone
        assert shared == [2]
        assert alone[0] == COUNT
        assert alone[1]["crop"] == terms(fields, "crop", 10)
    finally:
        await engine.dispose()
