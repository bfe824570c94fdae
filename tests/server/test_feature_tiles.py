"""Vector tiles of vector collections' features (issue 18): what each tile holds at every zoom
against PostGIS itself, chosen attributes, CQL2 filters and datetime, edges and the
antimeridian, the feature cap, and small low-zoom tiles."""

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import mapbox_vector_tile
import morecantile
import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from catalog.vector.schema import PropertyType as T
from tests.factories import collection

from .tiles_data import load

WEB = morecantile.tms.get("WebMercatorQuad")
CRS84 = morecantile.tms.get("WorldCRS84Quad")
PATH = "/collections/{c}/items/tiles/{tms}/{z}/{x}/{y}"
PROPS = [
    ("crop", T.STRING),
    ("area ha", T.NUMBER),
    ("farmer", T.INTEGER),
    ("organic", T.BOOLEAN),
    ("sown", T.DATETIME),
    ("harvest", T.DATE),
]
START = datetime(2024, 3, 1, tzinfo=UTC)
CROPS = ("wheat", "maize", "barley", "rye")
# Edges of tiles at every zoom (0 and the equator), and both sides of the antimeridian.
EDGE = shapely.box(-0.3, -0.2, 0.4, 0.3)
EAST = shapely.box(179.2, 10.0, 180.0, 10.6)
WEST = shapely.box(-180.0, 10.0, -179.3, 10.6)


def _rows(n: int, seed: int = 7) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        lon, lat, size = rng.uniform(-20, 40), rng.uniform(30, 60), rng.uniform(0.02, 1.5)
        rows.append(_row(shapely.box(lon, lat, lon + size, lat + size * 0.7), i))
    return rows + [_row(EDGE, n), _row(EAST, n + 1), _row(WEST, n + 2)]


def _row(geom: shapely.Geometry, i: int) -> tuple[Any, ...]:
    sown = START + timedelta(days=i % 90, hours=i % 24)
    return (geom, CROPS[i % 4], round(1.5 * (i % 40), 1), i % 7, i % 3 == 0, sown,
            (sown + timedelta(days=120)).date())  # fmt: skip


@pytest.fixture
def fields(client: TestClient, database_url: str) -> list[tuple[Any, ...]]:
    rows = _rows(300)
    load(database_url, "fields", PROPS, "Polygon", rows, datetime_property="sown")
    return rows


def decode(content: bytes) -> list[dict[str, Any]]:
    """The features of the tile's one layer."""
    if not content:
        return []
    layers = mapbox_vector_tile.decode(content)
    assert list(layers) == ["fields"]
    return list(layers["fields"]["features"])


def get(client: TestClient, z: int, x: int, y: int, tms: str = "WebMercatorQuad",
        c: str = "fields", **params: Any) -> Any:  # fmt: skip
    r = client.get(PATH.format(c=c, tms=tms, z=z, x=x, y=y), params=params)
    assert r.status_code in (200, 204), r.text
    return r


def fids_meeting(engine: Engine, box: tuple[float, ...], extra: str = "") -> set[int]:
    """Features meeting a lon/lat box, by PostGIS (brute force, no index needed)."""
    with engine.connect() as conn:
        table = conn.execute(
            text("SELECT table_name FROM vector_layers WHERE collection_id = 'fields'")
        ).scalar_one()
        sql = (f"SELECT fid FROM features.{table} WHERE ST_Intersects(geom, "
               "ST_MakeEnvelope(:w, :s, :e, :n, 4326))" + extra)  # fmt: skip
        rows = conn.execute(text(sql), {"w": box[0], "s": box[1], "e": box[2], "n": box[3]})
        return {row[0] for row in rows}


def _padded(tms: morecantile.TileMatrixSet, tile: morecantile.Tile) -> tuple[float, ...]:
    """The tile widened by the 64-unit buffer, in lon/lat, cut at the antimeridian."""
    b = tms.xy_bounds(tile)
    pad_x, pad_y = (b.right - b.left) * 64 / 4096, (b.top - b.bottom) * 64 / 4096
    left = max(b.left - pad_x, tms.xy_bbox.left)
    right = min(b.right + pad_x, tms.xy_bbox.right)
    bottom = max(b.bottom - pad_y, tms.xy_bbox.bottom)
    top = min(b.top + pad_y, tms.xy_bbox.top)
    w, s = tms.lnglat(left, bottom)
    e, n = tms.lnglat(right, top)
    return (w, s, e, n)


def test_each_tile_holds_the_features_meeting_it_at_every_zoom(
    client: TestClient, sync_engine: Engine, fields: list[tuple[Any, ...]]
) -> None:
    rng = random.Random(1)
    probes = [EDGE.centroid, EAST.centroid, WEST.centroid] + [
        row[0].centroid for row in rng.sample(fields, 6)
    ]
    checked = 0
    for z in range(13):
        tiles = {WEB.tile(p.x, p.y, z) for p in probes}
        for tile in tiles:
            got = decode(get(client, tile.z, tile.x, tile.y).content)
            ids = {f["id"] for f in got}
            assert len(ids) == len(got)
            # Never a feature that does not meet the tile and its buffer...
            assert ids <= fids_meeting(sync_engine, _padded(WEB, tile)), (z, tile)
            # ...and every one meeting the tile itself that is over 8 px wide there.
            b = WEB.bounds(tile)
            big = 360 / 2**z / 64  # degrees of 8 px at 512 px a tile
            must = fids_meeting(sync_engine, (b.left, b.bottom, b.right, b.top),
                                f" AND ST_XMax(geom) - ST_XMin(geom) > {big}")  # fmt: skip
            assert must <= ids, (z, tile, must - ids)
            checked += len(must)
            if z >= 6:  # every attribute from z6 on
                for feature in got:
                    assert set(feature["properties"]) == {name for name, _ in PROPS}
            else:
                assert all(not f["properties"] for f in got)
    assert checked > 50  # the features that had to be there were many, at many zooms


def test_properties_choose_attributes_typed_as_stored(
    client: TestClient, fields: list[tuple[Any, ...]]
) -> None:
    tile = WEB.tile(EDGE.centroid.x, EDGE.centroid.y, 8)
    got = decode(get(client, tile.z, tile.x, tile.y, properties="crop,area ha,organic").content)
    assert got and all(set(f["properties"]) == {"crop", "area ha", "organic"} for f in got)
    full = {f["id"]: f["properties"] for f in decode(get(client, tile.z, tile.x, tile.y).content)}
    edge = next(iter(full.values()))
    row = _row(EDGE, 300)
    assert edge == {"crop": row[1], "area ha": row[2], "farmer": row[3], "organic": row[4],
                    "sown": row[5].strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "harvest": row[6].isoformat()}  # fmt: skip
    # Low zooms carry what is asked for.
    low = decode(get(client, 1, 1, 0, properties="crop").content)
    assert low and all(set(f["properties"]) == {"crop"} for f in low)
    none = decode(get(client, 8, tile.x, tile.y, properties="").content)
    assert none and all(not f["properties"] for f in none)
    r = client.get(PATH.format(c="fields", tms="WebMercatorQuad", z=1, x=1, y=0),
                   params={"properties": "crop,colour"})  # fmt: skip
    assert r.status_code == 400 and r.json()["code"] == "search.UnknownQueryable"
    assert "crop" in r.json()["description"]


@pytest.mark.parametrize(
    ("params", "sql"),
    [
        ({"filter": "crop = 'maize' AND \"area ha\" > 20"}, "crop = 'maize' AND p1 > 20"),
        ({"filter": '{"op": "in", "args": [{"property": "farmer"}, [1, 2]]}',
          "filter-lang": "cql2-json"}, "farmer IN (1, 2)"),
        ({"filter": "organic = true", "datetime": "2024-04-01T00:00:00Z/.."},
         "organic AND sown >= '2024-04-01T00:00:00Z'"),
    ],
)  # fmt: skip
def test_filter_and_datetime_select_the_features_of_a_tile(
    client: TestClient, sync_engine: Engine, fields: list[tuple[Any, ...]],
    params: dict[str, str], sql: str,
) -> None:  # fmt: skip
    for z, x, y in [(1, 1, 0), (4, 8, 5), (3, 4, 2)]:
        tile = morecantile.Tile(x, y, z)
        got = {f["id"] for f in decode(get(client, z, x, y, **params).content)}
        everything = {f["id"] for f in decode(get(client, z, x, y).content)}
        wanted = fids_meeting(sync_engine, _padded(WEB, tile), " AND " + sql)
        assert got == everything & wanted, (z, x, y)
    assert got  # the filter keeps something


def test_bad_filters_are_refused_with_their_codes(
    client: TestClient, fields: list[tuple[Any, ...]]
) -> None:
    path = PATH.format(c="fields", tms="WebMercatorQuad", z=2, x=2, y=1)
    for params, code in [
        ({"filter": "crop = "}, "search.InvalidFilter"),
        ({"filter": "colour = 'red'"}, "search.UnknownQueryable"),
        ({"filter": "crop = 'a'", "filter-lang": "sql"}, "search.InvalidFilter"),
        ({"datetime": "yesterday"}, "search.InvalidDatetime"),
    ]:
        r = client.get(path, params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["code"] == code, (params, r.json())


def test_both_sides_of_the_antimeridian_and_worldcrs84quad(
    client: TestClient, sync_engine: Engine, fields: list[tuple[Any, ...]]
) -> None:
    east_id, west_id = 302, 303  # fids follow the rows' order
    for z in (2, 5, 9):
        east = WEB.tile(179.6, 10.3, z)
        west = WEB.tile(-179.6, 10.3, z)
        assert east.x == 2**z - 1 and west.x == 0
        east_ids = {f["id"] for f in decode(get(client, z, east.x, east.y).content)}
        west_ids = {f["id"] for f in decode(get(client, z, west.x, west.y).content)}
        assert east_id in east_ids and west_id not in east_ids
        assert west_id in west_ids and east_id not in west_ids
    for z in (0, 3, 7):
        tile = CRS84.tile(EDGE.centroid.x, EDGE.centroid.y, z)
        got = decode(get(client, z, tile.x, tile.y, tms="WorldCRS84Quad").content)
        ids = {f["id"] for f in got}
        assert 301 in ids
        assert ids <= fids_meeting(sync_engine, _padded(CRS84, tile))


def test_the_feature_cap_says_so_in_a_header(
    client: TestClient, settings: Any, apps: Any, database_url: str,
    fields: list[tuple[Any, ...]],
) -> None:  # fmt: skip
    settings.tiles.vector_max_features = 25
    with apps.client(settings) as capped:
        r = capped.get(PATH.format(c="fields", tms="WebMercatorQuad", z=2, x=2, y=1))
        assert r.headers["x-terracat-features-capped"] == "25"
        assert len(decode(r.content)) == 25
        lone = WEB.tile(179.6, 10.3, 9)
        r = capped.get(PATH.format(c="fields", tms="WebMercatorQuad", z=9, x=lone.x, y=lone.y))
        assert "x-terracat-features-capped" not in r.headers


def test_tiles_on_the_wire_gzip_etag_and_caching(
    client: TestClient, fields: list[tuple[Any, ...]]
) -> None:
    path = PATH.format(c="fields", tms="WebMercatorQuad", z=4, x=8, y=5)
    plain = client.get(path, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert plain.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    assert plain.headers["cache-control"] == "public, max-age=60"
    zipped = client.get(path, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content
    again = client.get(path, headers={"Accept-Encoding": "gzip",
                                      "If-None-Match": zipped.headers["etag"]})  # fmt: skip
    assert again.status_code == 304 and not again.content
    empty = client.get(PATH.format(c="fields", tms="WebMercatorQuad", z=6, x=0, y=63))
    assert empty.status_code == 204
    mvt = client.get(path + ".mvt")
    assert mvt.status_code == 200 and mvt.content == plain.content


def test_a_low_zoom_tile_of_many_features_stays_small(
    client: TestClient, database_url: str
) -> None:
    rng = random.Random(5)
    rows = []
    for i in range(40_000):
        lon, lat = rng.uniform(-10, 30), rng.uniform(35, 60)
        size = rng.uniform(0.003, 0.5)  # from sub-pixel to a few pixels at z2
        ring = shapely.Point(lon, lat).buffer(size, quad_segs=8)  # 33 points
        rows.append(_row(ring, i))
    load(database_url, "fields", PROPS, "Polygon", rows, datetime_property="sown")
    for z in (1, 2):  # the bound is for z2 (z4 tiles of these rings reach ~290 kB)
        tile = WEB.tile(10, 47, z)
        r = client.get(PATH.format(c="fields", tms="WebMercatorQuad", z=z, x=tile.x, y=tile.y),
                       params={"properties": "crop"})  # fmt: skip
        assert r.status_code == 200
        assert len(r.content) <= 250_000, (z, len(r.content))
        assert len(decode(r.content)) > 5000


def test_raster_collections_keep_their_footprints(client: TestClient, admin: Any) -> None:
    assert client.post("/collections", json=collection("imagery"), headers=admin).status_code == 201
    path = PATH.format(c="imagery", tms="WebMercatorQuad", z=2, x=1, y=1)
    assert client.get(path).status_code == 204
    r = client.get(path, params={"filter": "crop = 'maize'"})
    assert r.status_code == 400 and r.json()["code"] == "request.InvalidParameter"


def test_sub_pixel_polygons_wait_for_their_zoom_and_points_never_do(
    client: TestClient, database_url: str
) -> None:
    tiny = shapely.box(10.0, 45.0, 10.001, 45.001)  # ~100 m: a pixel from about z10
    load(database_url, "mixed", [("kind", T.STRING)], "Geometry",
         [(tiny, "tiny"), (shapely.Point(10.0005, 45.0005), "point")])  # fmt: skip
    for z, kinds in [(2, {"point"}), (6, {"point"}), (12, {"point", "tiny"})]:
        tile = WEB.tile(10.0005, 45.0005, z)
        r = client.get(PATH.format(c="mixed", tms="WebMercatorQuad", z=z, x=tile.x, y=tile.y),
                       params={"properties": "kind"})  # fmt: skip
        layers = mapbox_vector_tile.decode(r.content)
        assert {f["properties"]["kind"] for f in layers["mixed"]["features"]} == kinds, z


def test_simplified_rings_stay_within_a_pixel_of_the_feature_at_every_latitude(
    client: TestClient, database_url: str
) -> None:
    """Web Mercator tiles simplify in lon/lat before projecting, where Mercator stretches
    latitude by 1/cos(lat): no decoded point may lie farther from the feature than the
    simplification (8 units of 4096) and the snap to the grid allow, nor the reverse."""
    lats = (0.0, 35.0, 60.0, 72.0, 80.0)
    rows = [
        _row(shapely.Point(20.0 + 3 * i, lat).buffer(0.6, quad_segs=16), i)  # 65 points
        for i, lat in enumerate(lats)
    ]
    load(database_url, "fields", PROPS, "Polygon", rows, datetime_property="sown")
    checked = 0
    for z in range(1, 9):
        for i, lat in enumerate(lats):
            tile = WEB.tile(20.0 + 3 * i, lat, z)
            content = get(client, z, tile.x, tile.y, properties="crop").content
            bounds = WEB.xy_bounds(tile)
            scale = 4096 / (bounds.right - bounds.left)
            points = [WEB.xy(lon, lat) for lon, lat in rows[i][0].exterior.coords]
            original = shapely.Polygon(
                [((x - bounds.left) * scale, (y - bounds.bottom) * scale) for x, y in points]
            ).intersection(shapely.box(-64, -64, 4160, 4160))
            for feature in decode(content):
                if feature["id"] != i + 1:
                    continue
                drawn = shapely.geometry.shape(feature["geometry"])
                assert drawn.is_valid, (z, lat)
                assert drawn.hausdorff_distance(original) <= 8 + 1.5, (z, lat)
                checked += 1
    assert checked >= 35  # every feature at every zoom but the few whose tile it misses
