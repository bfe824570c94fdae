"""Every footprint tile of z0-z3 holds the items a brute-force count puts there (issue 12 #1).

Items spread over the whole world, next to the antimeridian and near the poles; each tile's
decoded features are checked against shapely: every item whose footprint meets the tile is in
it, and nothing from further than the tile's buffer.
"""

from typing import Any

import mapbox_vector_tile
import morecantile
import pytest
import shapely
from fastapi.testclient import TestClient
from pyproj import Transformer

from tests.factories import collection, item

EXTENT, BUFFER = 4096, 64  # TileSettings' defaults: the buffer the server pads tiles by
WEB = morecantile.tms.get("WebMercatorQuad")
CRS84 = morecantile.tms.get("WorldCRS84Quad")
LONS = (-179.5, -178.0, -121.0, -62.0, -3.0, 1.0, 44.0, 91.0, 133.0, 176.5, 178.2)
LATS = (-79.0, -52.0, -21.0, -1.5, 0.5, 33.0, 61.0, 78.0)
SIZE = 1.2
TO_LONLAT = Transformer.from_crs(3857, 4326, always_xy=True)


def _items() -> list[dict[str, Any]]:
    return [
        item(f"i{i:02d}-{j}", lon, lat, size=SIZE)
        for i, lon in enumerate(LONS)
        for j, lat in enumerate(LATS)
    ]


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    """The items' footprints by id, as shapely geometries."""
    return {doc["id"]: shapely.geometry.shape(doc["geometry"]) for doc in _items()}


@pytest.fixture
def loaded(client: TestClient, admin: dict[str, str]) -> TestClient:
    r = client.post("/collections", json=collection("w"), headers=admin)
    assert r.status_code == 201, r.text
    body = {"items": {doc["id"]: doc for doc in _items()}, "method": "insert"}
    r = client.post("/collections/w/bulk_items", json=body, headers=admin)
    assert r.status_code == 200, r.text
    return client


def _lonlat_box(tms: morecantile.TileMatrixSet, tile: morecantile.Tile, pad: float) -> Any:
    """The tile widened by ``pad`` of its size, not past the antimeridian, in lon/lat."""
    b = tms.xy_bounds(tile)
    dx, dy = (b.right - b.left) * pad, (b.top - b.bottom) * pad
    limits = tms.xy_bbox
    box = (max(b.left - dx, limits.left), b.bottom - dy,
           min(b.right + dx, limits.right), b.top + dy)  # fmt: skip
    if tms is WEB:
        (west, east), (south, north) = TO_LONLAT.transform(box[::2], box[1::2])
        return shapely.box(west, south, east, north)
    return shapely.box(*box)


@pytest.mark.parametrize("tms", [WEB, CRS84], ids=["WebMercatorQuad", "WorldCRS84Quad"])
def test_every_tile_of_z0_to_z3_holds_the_items_that_meet_it(
    loaded: TestClient, world: dict[str, Any], tms: morecantile.TileMatrixSet
) -> None:
    checked = 0
    for z in range(4):
        matrix = tms.matrix(z)
        for x in range(matrix.matrixWidth):
            for y in range(matrix.matrixHeight):
                tile = morecantile.Tile(x, y, z)
                r = loaded.get(f"/collections/w/items/tiles/{tms.id}/{z}/{x}/{y}.mvt")
                assert r.status_code in (200, 204), r.text
                layers = mapbox_vector_tile.decode(r.content) if r.status_code == 200 else {}
                got = {f["properties"]["id"] for f in layers.get("w", {}).get("features", [])}
                inside = _lonlat_box(tms, tile, 0)
                padded = _lonlat_box(tms, tile, BUFFER / EXTENT)
                # shapely's intersects counts a shared edge; the tile's own items must meet
                # its interior
                must = {i for i, g in world.items() if g.intersection(inside).area > 0}
                may = {i for i, g in world.items() if g.intersects(padded)}
                assert must <= got, (tms.id, z, x, y, sorted(must - got))
                assert got <= may, (tms.id, z, x, y, sorted(got - may))
                checked += 1
    assert checked == sum(tms.matrix(z).matrixWidth * tms.matrix(z).matrixHeight for z in range(4))
