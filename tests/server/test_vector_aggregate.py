"""GET /collections/{id}/aggregate: metrics per group against the same sums in Python and pyproj."""

import csv
import datetime as dt
import io
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pyproj
import pytest
import shapely
from fastapi.testclient import TestClient

from server.settings import Settings
from tests.apps import AppPool
from tests.server.vector_stats_data import (
    Feature,
    in_bbox,
    iso,
    load,
    make_features,
    raster_collection,
    sown_between,
)

COUNT = 2000
GEOD = pyproj.Geod(ellps="WGS84")
ALL = (
    "count,count(yield),sum(yield),mean(yield),min(yield),max(yield),stddev(yield),"
    "sum(parcels),mean(parcels),min(sown),max(harvest),area,length,perimeter"
)


@pytest.fixture
def fields(database_url: str, client: TestClient) -> Iterator[list[Feature]]:
    """The collection ``fields`` with COUNT seeded features."""
    features = make_features(COUNT, seed=7)
    load(database_url, "fields", features)
    yield features


def _aggregate(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/collections/fields/aggregate", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


# -- what the metrics should be, computed here -----------------------------------------------------
def area(geom: shapely.Geometry) -> float:
    """Geodesic area in m² (0 for lines)."""
    return abs(GEOD.geometry_area_perimeter(geom)[0]) if geom.geom_type == "Polygon" else 0.0


def length(geom: shapely.Geometry) -> float:
    """Geodesic length in m of a line (0 for polygons)."""
    return GEOD.geometry_length(geom) if geom.geom_type == "LineString" else 0.0


def perimeter(geom: shapely.Geometry) -> float:
    """Geodesic perimeter in m of a polygon (0 for lines)."""
    return GEOD.geometry_area_perimeter(geom)[1] if geom.geom_type == "Polygon" else 0.0


def metrics(features: list[Feature]) -> dict[str, Any]:
    """Every metric of ALL over ``features``."""
    yields = [f["yield"] for f in features if f["yield"] is not None]
    parcels = [f["parcels"] for f in features if f["parcels"] is not None]
    sown = [f["sown"] for f in features if f["sown"] is not None]
    harvest = [f["harvest"] for f in features if f["harvest"] is not None]
    return {
        "count": len(features),
        "count(yield)": len(yields),
        "sum(yield)": sum(yields) if yields else None,
        "mean(yield)": statistics.fmean(yields) if yields else None,
        "min(yield)": min(yields, default=None),
        "max(yield)": max(yields, default=None),
        "stddev(yield)": statistics.stdev(yields) if len(yields) > 1 else None,
        "sum(parcels)": sum(parcels) if parcels else None,
        "mean(parcels)": statistics.fmean(parcels) if parcels else None,
        "min(sown)": iso(min(sown)) if sown else None,
        "max(harvest)": max(harvest).isoformat() if harvest else None,
        "area": sum(area(f.geom) for f in features),
        "length": sum(length(f.geom) for f in features),
        "perimeter": sum(perimeter(f.geom) for f in features),
    }


def groups(
    features: list[Feature], *keys: Callable[[Feature], Any]
) -> dict[tuple[Any, ...], list[Feature]]:
    """Features by the values of ``keys``."""
    found: dict[tuple[Any, ...], list[Feature]] = defaultdict(list)
    for f in features:
        found[tuple(key(f) for key in keys)].append(f)
    return found


def _same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    for name, value in expected.items():
        if isinstance(value, float):
            assert got[name] == pytest.approx(value, rel=1e-7), name
        else:
            assert got[name] == value, name


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, v if v is not None else 0) for v in key)


# -- tests -----------------------------------------------------------------------------------------
def test_every_metric_without_groups(client: TestClient, fields: list[Feature]) -> None:
    body = _aggregate(client, metrics=ALL)
    assert body["group_by"] == []
    assert body["metrics"] == ALL.split(",")
    assert len(body["groups"]) == 1
    _same(body["groups"][0], metrics(fields))
    assert body["groups"][0]["area"] > 1e8  # ~1700 fields of up to 2 km x 2 km
    assert isinstance(body["groups"][0]["sum(parcels)"], int)
    # count is the default metric
    assert _aggregate(client)["groups"] == [{"count": COUNT}]


def test_metrics_per_property_group(client: TestClient, fields: list[Feature]) -> None:
    body = _aggregate(client, group_by="crop,organic", metrics=ALL)
    assert body["columns"] == ["crop", "organic", *ALL.split(",")]
    expected = groups(fields, lambda f: f["crop"], lambda f: f["organic"])
    # sorted by the keys, nulls last
    assert [(g["crop"], g["organic"]) for g in body["groups"]] == sorted(expected, key=_sort_key)
    for group in body["groups"]:
        _same(group, metrics(expected[(group["crop"], group["organic"])]))


@pytest.mark.parametrize(
    ("interval", "bucket"),
    [
        ("P1M", lambda t: dt.datetime(t.year, t.month, 1, tzinfo=dt.UTC)),
        (
            "P1W",
            lambda t: dt.datetime.combine(
                t.date() - dt.timedelta(days=t.weekday()), dt.time(), dt.UTC
            ),
        ),  # fmt: skip
        ("P1D", lambda t: dt.datetime.combine(t.date(), dt.time(), dt.UTC)),
        ("P1Y", lambda t: dt.datetime(t.year, 1, 1, tzinfo=dt.UTC)),
    ],
)
def test_time_buckets_of_the_datetime_property(
    client: TestClient, fields: list[Feature], interval: str, bucket: Callable[[dt.datetime], Any]
) -> None:
    body = _aggregate(client, group_by=interval, metrics="count,sum(yield),area")
    assert body["group_by"] == [interval]
    assert body["columns"] == ["sown", "count", "sum(yield)", "area"]
    expected = groups(fields, lambda f: None if f["sown"] is None else iso(bucket(f["sown"])))
    assert [(g["sown"],) for g in body["groups"]] == sorted(expected, key=_sort_key)
    for group in body["groups"]:
        want = metrics(expected[(group["sown"],)])
        _same(group, {k: want[k] for k in ("count", "sum(yield)", "area")})


def test_groups_of_what_filter_bbox_and_datetime_select(
    client: TestClient, fields: list[Feature]
) -> None:
    bbox = (-2.0, 44.0, 4.0, 49.0)
    start, end = dt.datetime(2023, 6, 1, tzinfo=dt.UTC), dt.datetime(2024, 5, 31, tzinfo=dt.UTC)
    selected = [
        f
        for f in sown_between(in_bbox(fields, bbox), start, end)
        if f["parcels"] is not None and f["parcels"] >= 50 and f["crop"] in ("wheat", "rye", "oats")
    ]
    body = _aggregate(
        client,
        group_by="crop,P1M",
        metrics="count,mean(yield),stddev(yield),area,length",
        bbox=",".join(map(str, bbox)),
        datetime=f"{iso(start)}/{iso(end)}",
        filter="parcels >= 50 AND crop IN ('wheat', 'rye', 'oats')",
    )
    expected = groups(
        selected,
        lambda f: f["crop"],
        lambda f: iso(dt.datetime(f["sown"].year, f["sown"].month, 1, tzinfo=dt.UTC)),
    )
    assert [(g["crop"], g["sown"]) for g in body["groups"]] == sorted(expected)
    assert sum(g["count"] for g in body["groups"]) == len(selected) > 0
    for group in body["groups"]:
        want = metrics(expected[(group["crop"], group["sown"])])
        _same(group, {k: want[k] for k in body["metrics"]})


def test_csv_by_format_or_accept(client: TestClient, fields: list[Feature]) -> None:
    params = {"group_by": "organic,crop", "metrics": "count,sum(yield),min(sown)"}
    json_groups = _aggregate(client, **params)["groups"]
    by_format = client.get("/collections/fields/aggregate", params={**params, "f": "csv"})
    by_accept = client.get(
        "/collections/fields/aggregate",
        params=params,
        headers={"Accept": "text/csv, application/json;q=0.5"},
    )
    for response in (by_format, by_accept):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows[0] == ["organic", "crop", "count", "sum(yield)", "min(sown)"]
        assert len(rows) == len(json_groups) + 1
        for row, group in zip(rows[1:], json_groups, strict=True):
            assert row[0] == {True: "true", False: "false", None: ""}[group["organic"]]
            assert row[1] == (group["crop"] or "")
            assert int(row[2]) == group["count"]
            assert float(row[3]) == pytest.approx(group["sum(yield)"])
            assert row[4] == group["min(sown)"]
    # */* and no Accept stay JSON
    response = client.get("/collections/fields/aggregate", params=params, headers={"Accept": "*/*"})
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"metrics": "median(yield)"}, "features.InvalidMetric"),
        ({"metrics": "sum(crop)"}, "features.InvalidMetric"),
        ({"metrics": "mean(sown)"}, "features.InvalidMetric"),
        ({"metrics": "max(notes)"}, "features.InvalidMetric"),
        ({"metrics": "sum(nope)"}, "features.InvalidMetric"),
        ({"metrics": "volume"}, "features.InvalidMetric"),
        ({"metrics": ",".join(f"count(yield{i})" for i in range(40))}, "features.InvalidMetric"),
        ({"group_by": "nope"}, "features.InvalidGroupBy"),
        ({"group_by": "notes"}, "features.InvalidGroupBy"),
        ({"group_by": "P2M"}, "features.InvalidGroupBy"),
        ({"group_by": "sown,P1M"}, "features.InvalidGroupBy"),
        (
            {"group_by": "crop,farmer,organic,parcels,yield,sown,harvest,crop,farmer"},
            "features.InvalidGroupBy",
        ),
        ({"group_by": "crop", "filter": "crop LIKE"}, "search.InvalidFilter"),
        ({"group_by": "crop", "filter-lang": "cql2-xml", "filter": "true"}, "search.InvalidFilter"),
        ({"group_by": "crop", "bbox": "0,50,1,40"}, "search.InvalidBBox"),
        ({"f": "xlsx"}, "request.InvalidParameter"),
    ],  # fmt: skip
)
def test_bad_requests_say_why(
    client: TestClient, fields: list[Feature], params: dict[str, Any], code: str
) -> None:
    response = client.get("/collections/fields/aggregate", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code
    if params.get("group_by") == "nope":
        assert "crop" in response.json()["allowed"] and "P1M" in response.json()["allowed"]


def test_groups_are_capped(
    settings: Settings, apps: AppPool, database_url: str, fields: list[Feature]
) -> None:
    settings.vector_stats.aggregate_max_groups = 9  # 8 crops and null: 9 groups
    with apps.client(settings) as capped:
        response = capped.get("/collections/fields/aggregate", params={"group_by": "crop"})
        assert response.status_code == 200, response.text
        assert len(response.json()["groups"]) == 9
    settings.vector_stats.aggregate_max_groups = 8
    with apps.client(settings) as capped:
        response = capped.get("/collections/fields/aggregate", params={"group_by": "crop"})
        assert response.status_code == 400
        assert response.json()["code"] == "features.TooManyGroups"
        response = capped.get("/collections/fields/aggregate", params={"group_by": "organic"})
        assert response.status_code == 200
        assert [g["organic"] for g in response.json()["groups"]] == [False, True, None]


def test_time_buckets_need_a_datetime_property(client: TestClient, database_url: str) -> None:
    load(database_url, "plain", make_features(10), datetime_property=None)
    for params in ({"group_by": "P1M"}, {"datetime": "2023-01-01T00:00:00Z/.."}):
        response = client.get("/collections/plain/aggregate", params=params)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "features.NoDatetimeProperty"
    raster_collection(database_url, "imagery")
    response = client.get("/collections/imagery/aggregate")
    assert response.status_code == 404
    assert response.json()["code"] == "features.NotVector"
