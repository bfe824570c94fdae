"""A bbox on a vector collection selects what ST_Intersects selects, at the box's edges too.

A feature whose bbox lies in a rectangular bbox is taken without a GEOS test; the rest are
tested exactly. These shapes sit where the two could differ: triangles and diagonal lines
whose bbox overlaps the box's corner while they stay outside, features crossing an edge,
touching it, inside, and beyond the antimeridian (where a bbox is two rectangles whose
common bbox spans the world). Each bbox is read on both page paths: the compiled one (bbox,
sortby), the one built per request (with a filter), and counted past a page of one.
"""

from typing import Any

import pytest
import shapely
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from catalog.vector.schema import Layer, PropertyType
from tests.vector_data import vector_collection

COLLECTION = "edges"
BOX = (10.0, 40.0, 11.0, 41.0)


def _shapes() -> list[shapely.Geometry]:
    w, s, e, n = BOX
    return [
        shapely.box(w + 0.2, s + 0.2, w + 0.4, s + 0.4),  # inside
        shapely.box(e - 0.1, n - 0.1, e + 0.1, n + 0.1),  # over a corner
        shapely.box(e, s + 0.5, e + 0.2, s + 0.6),  # touching the east edge
        # bbox over the north-east corner, the triangle itself outside
        shapely.Polygon([(e - 0.1, n + 0.1), (e + 0.2, n + 0.2), (e + 0.2, n - 0.1)]),
        # the same, reaching in by a hair
        shapely.Polygon([(e - 0.1, n - 0.001), (e + 0.2, n + 0.2), (e + 0.2, n - 0.1)]),
        shapely.LineString([(w - 0.2, s + 0.1), (w + 0.1, s - 0.2)]),  # outside, diagonal
        shapely.LineString([(w - 0.2, s + 0.3), (w + 0.3, s - 0.2)]),  # crossing a corner
        shapely.Point(w + 0.5, s + 0.5),
        shapely.Point(w, n),  # on the corner
        shapely.box(w - 2, s - 2, e + 2, n + 2),  # around the box
        shapely.box(179.5, -1, 180, 1),  # by the antimeridian, east
        shapely.box(-180, -1, -179.5, 1),  # by the antimeridian, west
        shapely.Polygon([(170, 5), (179.9, 5), (170, 6)]),
        shapely.box(0, 5, 0.5, 5.5),  # between the two halves of an antimeridian bbox
    ]


BOXES = [
    BOX,
    (10.95, 40.95, 11.15, 41.05),
    (9.5, 39.5, 10.05, 40.05),
    (-180.0, -90.0, 180.0, 90.0),
    (179.0, -2.0, -179.0, 2.0),  # over the antimeridian
    (175.0, 4.0, -170.0, 7.0),
]


@pytest.fixture
def layer(database_url: str) -> Layer:
    rows = [(shape, i) for i, shape in enumerate(_shapes())]
    return vector_collection(database_url, COLLECTION, [("n", PropertyType.INTEGER)], rows)


def _expected(engine: Engine, layer: Layer, box: tuple[float, ...]) -> list[int]:
    w, s, e, n = box
    parts = [(w, e)] if w <= e else [(w, 180.0), (-180.0, e)]
    meets = " OR ".join(
        f"ST_Intersects(geom, ST_MakeEnvelope({a}, {s}, {b}, {n}, 4326))" for a, b in parts
    )
    sql = f"SELECT fid FROM {layer.qualified_name} WHERE {meets} ORDER BY fid"
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(text(sql))]


def _ids(client: TestClient, **params: Any) -> tuple[list[int], int]:
    r = client.get(f"/collections/{COLLECTION}/items", params={"limit": 100, **params})
    assert r.status_code == 200, r.text
    body = r.json()
    return sorted(f["id"] for f in body["features"]), body["numberMatched"]


@pytest.mark.parametrize("box", BOXES, ids=lambda b: ",".join(f"{v:g}" for v in b))
def test_a_bbox_selects_what_st_intersects_selects(
    client: TestClient, layer: Layer, sync_engine: Engine, box: tuple[float, ...]
) -> None:
    expected = _expected(sync_engine, layer, box)
    bbox = ",".join(str(v) for v in box)
    assert _ids(client, bbox=bbox) == (expected, len(expected))
    assert _ids(client, bbox=bbox, sortby="-n") == (expected, len(expected))
    assert _ids(client, bbox=bbox, filter="n >= 0") == (expected, len(expected))
    for params in ({}, {"sortby": "-n"}, {"filter": "n >= 0"}):  # counted past the page
        assert _ids(client, bbox=bbox, limit=1, **params)[1] == len(expected)


def test_the_edge_shapes_tell_a_bbox_test_from_an_exact_one(
    layer: Layer, sync_engine: Engine
) -> None:
    """Guards the shapes themselves: the outside triangle's and line's bboxes do overlap
    the box, so a bbox-only test would take them."""
    w, s, e, n = BOX
    sql = (
        f"SELECT count(*) FROM {layer.qualified_name} "
        f"WHERE geom && ST_MakeEnvelope({w}, {s}, {e}, {n}, 4326)"
    )
    with sync_engine.connect() as conn:
        overlapping = conn.execute(text(sql)).scalar_one()
    assert overlapping == len(_expected(sync_engine, layer, BOX)) + 2
