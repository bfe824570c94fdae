"""OGC API - Features on a vector collection: CQL2, paging, sorting, selection and CRSs.

Every filter is checked against what PostGIS selects from the same table with hand-written
SQL; paging against the whole table; coordinates in other CRSs against pyproj.
"""

from typing import Any

import pyproj
import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from catalog.vector.schema import Layer, PropertyType
from tests.server.vector_fields import COLLECTION, FIELDS, fids, load, parcel, rows
from tests.vector_data import vector_collection

ITEMS = f"/collections/{COLLECTION}/items"
AREA = "p2"  # the column of "area ha"
SQUARE = "POLYGON((2.05 48.49, 2.13 48.49, 2.13 48.545, 2.05 48.545, 2.05 48.49))"


@pytest.fixture
def layer(database_url: str) -> Layer:
    made = load(database_url)
    assert made.prop("area ha") is not None and made.prop("area ha").column == AREA
    return made


def _all(client: TestClient, **params: Any) -> dict[str, Any]:
    r = client.get(ITEMS, params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return r.json()


def _ids(client: TestClient, **params: Any) -> list[int]:
    body = _all(client, **params)
    ids = sorted(f["id"] for f in body["features"])
    assert body["numberMatched"] == body["numberReturned"] == len(ids)
    return ids


# (CQL2 text, the same selection in SQL on the table's columns)
FILTERS = [
    # comparison
    ("plots = 4", "plots = 4"),
    ("plots <> 4", "plots <> 4"),
    ('"area ha" < 5.5', f"{AREA} < 5.5"),
    ('"area ha" >= 8', f"{AREA} >= 8"),
    ("crop > 'orge'", "crop > 'orge'"),
    ("organic = true", "organic"),
    ("NOT organic = true", "NOT organic"),
    ("plots > 2 AND farmer = 'Ana'", "plots > 2 AND farmer = 'Ana'"),
    ("plots < 2 OR crop = 'orge'", "plots < 2 OR crop = 'orge'"),
    ("id > 50", "fid > 50"),
    ("id IN (1, 2, 3) OR plots = 8", "fid IN (1, 2, 3) OR plots = 8"),
    ("farmer = crop", "farmer = crop"),  # property-property (none equal)
    ("plots > farmer_count", None),  # unknown property: see test below
    # LIKE, case- and accent-insensitive
    ("crop LIKE 'w%'", "crop LIKE 'w%'"),
    ("crop NOT LIKE '%e%'", "crop NOT LIKE '%e%'"),
    ("CASEI(crop) = casei('WHEAT')", "lower(crop) = 'wheat'"),
    ("CASEI(crop) LIKE casei('W%')", "lower(crop) LIKE 'w%'"),
    ("ACCENTI(crop) = accenti('Ble')", "crop = 'Blé'"),
    ("ACCENTI(farmer) LIKE accenti('chlo%')", "false"),  # accents only, case kept
    ("CASEI(ACCENTI(farmer)) LIKE casei(accenti('CHLOE'))", "farmer = 'Chloé'"),
    # IN, BETWEEN, isNull
    ("farmer IN ('Ana', 'Chloé')", "farmer IN ('Ana', 'Chloé')"),
    ("plots NOT IN (1, 2, 3)", "plots NOT IN (1, 2, 3)"),
    ("plots BETWEEN 2 AND 5", "plots BETWEEN 2 AND 5"),
    ('"area ha" NOT BETWEEN 3 AND 9', f"{AREA} NOT BETWEEN 3 AND 9"),
    ("crop IS NULL", "crop IS NULL"),
    ('"area ha" IS NOT NULL', f"{AREA} IS NOT NULL"),
    # spatial
    (f"S_INTERSECTS(geometry, {SQUARE})", f"ST_Intersects(geom, 'SRID=4326;{SQUARE}')"),
    (f"S_WITHIN(geometry, {SQUARE})", f"ST_Within(geom, 'SRID=4326;{SQUARE}')"),
    (f"S_DISJOINT(geometry, {SQUARE})", f"ST_Disjoint(geom, 'SRID=4326;{SQUARE}')"),
    ("S_INTERSECTS(geometry, BBOX(2.05, 48.49, 2.13, 48.545))",
     "ST_Intersects(geom, ST_MakeEnvelope(2.05, 48.49, 2.13, 48.545, 4326))"),
    ("S_CONTAINS(geometry, POINT(2.025 48.505))",
     "ST_Contains(geom, 'SRID=4326;POINT(2.025 48.505)')"),
    # temporal (a datetime and a date property)
    ("T_AFTER(sown, TIMESTAMP('2024-04-01T00:00:00Z'))", "sown > '2024-04-01T00:00:00Z'"),
    ("T_BEFORE(sown, TIMESTAMP('2024-03-09T00:00:00Z'))", "sown < '2024-03-09T00:00:00Z'"),
    (
        "T_DURING(sown, INTERVAL('2024-03-10T00:00:00Z', '2024-03-20T00:00:00Z'))",
        "sown > '2024-03-10T00:00:00Z' AND sown < '2024-03-20T00:00:00Z'",
    ),
    ("sown >= TIMESTAMP('2024-04-15T00:00:00Z')", "sown >= '2024-04-15T00:00:00Z'"),
    ("harvest = DATE('2024-08-10')", "harvest = '2024-08-10'"),
    ("T_AFTER(harvest, DATE('2024-09-20'))", "harvest > '2024-09-20'"),
]  # fmt: skip


@pytest.mark.parametrize(("cql2", "sql"), [f for f in FILTERS if f[1] is not None])
def test_cql2_text_selects_what_postgis_selects(
    client: TestClient, layer: Layer, sync_engine: Engine, cql2: str, sql: str
) -> None:
    expected = fids(sync_engine, layer, sql)
    assert _ids(client, filter=cql2, **{"filter-lang": "cql2-text"}) == expected
    # every filter splits the parcels, but for two that match none on purpose
    assert 0 < len(expected) < FIELDS or sql in ("false", "farmer = crop")


def test_cql2_json_and_bbox_and_datetime(
    client: TestClient, layer: Layer, sync_engine: Engine
) -> None:
    body = '{"op": "and", "args": [{"op": "in", "args": [{"property": "farmer"}, ["Bruno", "Dmitri"]]}, {"op": ">", "args": [{"property": "area ha"}, 4]}]}'  # noqa: E501
    expected = fids(sync_engine, layer, f"farmer IN ('Bruno', 'Dmitri') AND {AREA} > 4")
    assert _ids(client, filter=body, **{"filter-lang": "cql2-json"}) == expected
    box = "2.05,48.49,2.13,48.545"
    assert _ids(client, bbox=box) == fids(
        sync_engine, layer, "ST_Intersects(geom, ST_MakeEnvelope(2.05, 48.49, 2.13, 48.545, 4326))"
    )
    interval = "2024-03-10T00:00:00Z/2024-03-20T00:00:00Z"
    assert _ids(client, datetime=interval) == fids(
        sync_engine, layer, "sown BETWEEN '2024-03-10T00:00:00Z' AND '2024-03-20T00:00:00Z'"
    )
    assert _ids(client, datetime="../2024-03-05T10:00:00Z") == fids(
        sync_engine, layer, "sown <= '2024-03-05T10:00:00Z'"
    )


def test_unknown_names_are_400_with_the_allowed_names(client: TestClient, layer: Layer) -> None:
    for params in ({"filter": "plots > farmer_count"}, {"sortby": "-nope"},
                   {"properties": "crop,nope"}):  # fmt: skip
        r = client.get(ITEMS, params=params)
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "search.UnknownQueryable"
        assert "crop, farmer, area ha, plots" in r.json()["description"]
    r = client.get(ITEMS, params={"sortby": "extra"})
    assert r.status_code == 400 and r.json()["code"] == "search.InvalidSortBy"
    r = client.get(ITEMS, params={"filter": "crop = "})
    assert r.status_code == 400 and r.json()["code"] == "search.InvalidFilter"


def _walk(client: TestClient, url: str, rel: str) -> list[dict[str, Any]]:
    pages = []
    for _ in range(100):  # bounded
        r = client.get(url)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        link = next((k for k in pages[-1]["links"] if k["rel"] == rel), None)
        if link is None:
            return pages
        url = link["href"]
    raise AssertionError("paging did not end")


@pytest.mark.parametrize(
    ("params", "sql"),
    [("", "true"), ("&filter=plots%20%3E%3D%203", "plots >= 3"),
     ("&bbox=2.0,48.5,2.1,48.56",
      "ST_Intersects(geom, ST_MakeEnvelope(2.0, 48.5, 2.1, 48.56, 4326))")],
)  # fmt: skip
def test_paging_to_the_last_page_and_back(
    client: TestClient, layer: Layer, sync_engine: Engine, params: str, sql: str
) -> None:
    expected = fids(sync_engine, layer, sql)
    pages = _walk(client, f"{ITEMS}?limit=7{params}", "next")
    ids = [f["id"] for page in pages for f in page["features"]]
    assert ids == expected  # fid order, each once
    assert len(pages) == -(-len(expected) // 7)
    assert {page["numberMatched"] for page in pages} == {len(expected)}
    assert [page["numberReturned"] for page in pages][:-1] == [7] * (len(pages) - 1)
    assert all(page["timeStamp"].endswith("Z") for page in pages)
    assert not any(k["rel"] == "prev" for k in pages[0]["links"])
    last = next(k for k in pages[-1]["links"] if k["rel"] == "self")["href"]
    back = _walk(client, last, "prev")
    assert [[f["id"] for f in p["features"]] for p in reversed(back)] == [
        [f["id"] for f in p["features"]] for p in pages
    ]


def test_offset_pages_as_owslib_does(client: TestClient, layer: Layer) -> None:
    seen = []
    for offset in range(0, FIELDS + 20, 20):
        body = _all(client, limit=20, offset=offset)
        seen += [f["id"] for f in body["features"]]
    assert sorted(seen) == list(range(1, FIELDS + 1)) and len(seen) == FIELDS


def _sorted_fids(key: Any, reverse: bool = False) -> list[int]:
    values = [(key(row), i + 1) for i, row in enumerate(rows())]
    present = sorted((v for v in values if v[0] is not None), reverse=reverse)
    missing = [v for v in values if v[0] is None]
    if reverse:  # the fid tie-breaker follows the last key's direction
        return [f for _, f in present] + sorted((f for _, f in missing), reverse=True)
    return [f for _, f in present] + [f for _, f in missing]


def test_sortby_orders_and_pages_on_the_sort_keys(client: TestClient, layer: Layer) -> None:
    got = [f["id"] for f in _all(client, sortby="-area ha")["features"]]
    assert got == _sorted_fids(lambda row: row[3], reverse=True)
    got = [f["id"] for f in _all(client, sortby="+sown")["features"]]
    assert got == _sorted_fids(lambda row: row[6])
    paged = [f["id"] for p in _walk(client, f"{ITEMS}?limit=6&sortby=farmer,-plots", "next")
             for f in p["features"]]  # fmt: skip
    expected = sorted(range(FIELDS), key=lambda i: (rows()[i][2], -rows()[i][4], -(i + 1)))
    assert paged == [i + 1 for i in expected]


def test_properties_and_skip_geometry(client: TestClient, layer: Layer) -> None:
    body = _all(client, properties="plots,crop", skipGeometry="true", limit=3)
    for feature in body["features"]:
        assert list(feature["properties"]) == ["plots", "crop"]
        assert feature["geometry"] is None
    full = client.get(f"{ITEMS}/6").json()
    assert full["properties"]["area ha"] is None and full["properties"]["extra"] == {"n": 5}
    assert full["properties"]["sown"] == "2024-03-11T08:00:00+00:00"
    assert full["properties"]["harvest"] == "2024-08-06"
    assert full["properties"]["organic"] is False and full["properties"]["plots"] == 5
    assert shapely.geometry.shape(full["geometry"]).equals(parcel(5))
    one = client.get(f"{ITEMS}/6", params={"properties": "farmer"}).json()
    assert one["properties"] == {"farmer": "Bruno"} and one["id"] == 6


@pytest.mark.parametrize("code", [3857, 32631, 2154])
def test_projected_crs_matches_pyproj(client: TestClient, layer: Layer, code: int) -> None:
    r = client.get(ITEMS, params={"crs": f"http://www.opengis.net/def/crs/EPSG/0/{code}",
                                  "limit": 5})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["content-crs"] == f"<http://www.opengis.net/def/crs/EPSG/0/{code}>"
    to = pyproj.Transformer.from_crs(4326, code, always_xy=True)
    for feature in r.json()["features"]:
        source = parcel(feature["id"] - 1)
        got = feature["geometry"]["coordinates"][0]
        expected = shapely.transform(
            source, lambda xy: list(zip(*to.transform(*xy.T), strict=True))
        )
        assert shapely.Polygon(got).normalize().equals_exact(expected.normalize(), 1e-3)


def test_epsg4326_is_latitude_first(client: TestClient, layer: Layer) -> None:
    r = client.get(f"{ITEMS}/1", params={"crs": "EPSG:4326"})
    assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/4326>"
    lats, lons = zip(*r.json()["geometry"]["coordinates"][0], strict=True)
    assert set(lats) == {48.5, 48.51} and set(lons) == {2.0, 2.01}
    crs84 = client.get(f"{ITEMS}/1").json()["geometry"]["coordinates"][0]
    assert {tuple(c) for c in crs84} == {(lon, lat) for lat, lon in zip(lats, lons, strict=True)}
    assert client.get(f"{ITEMS}/1").headers["content-crs"].endswith("/OGC/1.3/CRS84>")
    # bbox-crs: the same box, given latitude first or in metres, selects the same parcels
    plain = _ids(client, bbox="2.05,48.49,2.13,48.545")
    assert _ids(client, bbox="48.49,2.05,48.545,2.13", **{"bbox-crs": "EPSG:4326"}) == plain
    to = pyproj.Transformer.from_crs(4326, 3857, always_xy=True)
    (x0, x1), (y0, y1) = to.transform([2.05, 2.13], [48.49, 48.545])
    metres = f"{x0},{y0},{x1},{y1}"
    crs = "http://www.opengis.net/def/crs/EPSG/0/3857"
    assert _ids(client, bbox=metres, **{"bbox-crs": crs}) == plain


def test_unsupported_crs_and_bad_ids(client: TestClient, layer: Layer) -> None:
    for params in ({"crs": "EPSG:27700"}, {"bbox-crs": "urn:nope", "bbox": "1,2,3,4"}):
        r = client.get(ITEMS, params=params)
        assert r.status_code == 400 and r.json()["code"] == "features.UnsupportedCrs", r.text
    for fid in ("999999", "abc", "1.5", "99999999999999999999"):
        r = client.get(f"{ITEMS}/{fid}")
        assert r.status_code == 404 and r.json()["code"] == "features.FeatureNotFound", r.text
    r = client.get(ITEMS, params={"query": '{"plots": {"eq": 1}}'})
    assert r.status_code == 400 and r.json()["code"] == "request.InvalidParameter"
    r = client.get(ITEMS, params={"token": "garbage"})
    assert r.status_code == 400 and r.json()["code"] == "search.InvalidToken"


def test_number_matched_beyond_the_count_limit_is_an_estimate(
    settings: Any, apps: Any, database_url: str, sync_engine: Engine
) -> None:
    settings.catalog.count_stale_limit = 5
    layer = load(database_url)
    with apps.client(settings) as client:
        few = _all(client, filter="plots = 4")
        assert few["numberMatched"] == len(fids(sync_engine, layer, "plots = 4")) <= 7
        many = client.get(ITEMS, params={"filter": "plots >= 1", "limit": 3}).json()
        assert many["numberMatched"] >= 3 and many["numberReturned"] == 3  # the planner's
        assert _all(client)["numberMatched"] == FIELDS  # unfiltered: the layer's own count


def test_number_matched_past_the_stale_count_is_the_planners_estimate(
    settings: Any, apps: Any, database_url: str, sync_engine: Engine
) -> None:
    # Fresh from its load the layer's statistics are stale, so matches past the exact limit
    # (2) are counted up to the stale limit (5); past that, features publish the estimate
    # already planned rather than leave numberMatched out as STAC items do.
    settings.catalog.count_limit = 2
    settings.catalog.count_stale_limit = 5
    layer = load(database_url)
    matching = len(fids(sync_engine, layer, "plots >= 1"))
    assert matching > 5
    with apps.client(settings) as client:
        page = client.get(ITEMS, params={"filter": "plots >= 1", "limit": 3}).json()
    assert page["numberReturned"] == 3
    assert page["numberMatched"] >= 4  # an estimate, never below what the page proved


def test_number_matched_of_a_bbox_page_past_the_count_limit(
    settings: Any, apps: Any, database_url: str, sync_engine: Engine
) -> None:
    # A bbox page without a filter runs on the read pool; past the exact limit (2) its
    # matches are counted afterwards on a connection of the engine (stale statistics: up to
    # the stale limit, so exactly here).
    settings.catalog.count_limit = 2
    settings.catalog.count_stale_limit = 1000
    layer = load(database_url)
    box = "2.0,48.5,2.1,48.56"
    exact = fids(sync_engine, layer, f"ST_Intersects(geom, ST_MakeEnvelope({box}, 4326))")
    assert len(exact) > 3
    with apps.client(settings) as client:
        page = client.get(ITEMS, params={"bbox": box, "limit": 3}).json()
    assert page["numberReturned"] == 3
    assert page["numberMatched"] == len(exact)


def test_more_than_fifty_properties(client: TestClient, database_url: str) -> None:
    names = [(f"v{i}", PropertyType.INTEGER) for i in range(60)]
    vector_collection(database_url, "wide", names, [(parcel(0), *range(60))])
    feature = client.get("/collections/wide/items/1").json()
    assert feature["properties"] == {f"v{i}": i for i in range(60)}
    some = client.get("/collections/wide/items/1", params={"properties": "v59,v3"}).json()
    assert some["properties"] == {"v59": 59, "v3": 3}


def test_projected_boxes_are_cut_to_their_crs_area_of_use(client: TestClient, layer: Layer) -> None:
    huge = "-1e12,-1e12,1e12,1e12"
    crs = "http://www.opengis.net/def/crs/EPSG/0/"
    assert len(_ids(client, bbox=huge, **{"bbox-crs": crs + "32631"})) == FIELDS  # 0-6 E
    assert _ids(client, bbox=huge, **{"bbox-crs": crs + "32660"}) == []  # 174-180 E, split
    assert len(_ids(client, bbox="-1e30,-1e30,1e30,1e30", **{"bbox-crs": crs + "3857"})) == FIELDS
    assert _ids(client, bbox="-9e6,-9e6,-8e6,-8e6", **{"bbox-crs": crs + "3857"}) == []
    for bad in ("nan,0,1,1", "3,0,1,1", "1,2,3"):
        r = client.get(ITEMS, params={"bbox": bad, "bbox-crs": crs + "3857"})
        assert r.status_code == 400 and r.json()["code"] == "search.InvalidBBox", r.text
    far = client.get(ITEMS, params={"crs": crs + "32601", "limit": 1})  # 179 degrees away
    assert far.status_code == 200 and far.json()["numberReturned"] == 1


@pytest.mark.parametrize("sortby", ["harvest", "-sown", "organic,-id", "-crop", "-id"])
def test_paged_sorts_match_one_page_of_all(client: TestClient, layer: Layer, sortby: str) -> None:
    whole = [f["id"] for f in _all(client, sortby=sortby)["features"]]
    paged = [f["id"] for p in _walk(client, f"{ITEMS}?limit=8&sortby={sortby}", "next")
             for f in p["features"]]  # fmt: skip
    assert paged == whole and sorted(whole) == list(range(1, FIELDS + 1))
