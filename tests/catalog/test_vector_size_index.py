"""The n-D size index of feature tables (migration 0018): low-zoom tiles find the features over
their size floor through it, and hold exactly what the 2-D index gives; layer tables made
before the migration get it."""

import random
from collections.abc import AsyncIterator
from typing import Any

import mapbox_vector_tile
import morecantile
import psycopg
import pytest
import shapely
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import create_engine, downgrade, migrate
from catalog.maps.tiles import PSYCOPG, TileBounds
from catalog.settings import DatabaseSettings
from catalog.stac.repository import CatalogRepository
from catalog.stac.serializers import collection_row
from catalog.vector.query import FeatureQuery
from catalog.vector.repository import copy_features, create_layer, refresh_extent
from catalog.vector.schema import Layer, PropertyType
from catalog.vector.tiles import FeatureTileRepository
from tests.factories import collection

from .test_migrations import scratch_url  # noqa: F401  (the fixture)

WEB = morecantile.tms.get("WebMercatorQuad")
CRS84 = morecantile.tms.get("WorldCRS84Quad")


def _shapes(seed: int = 3) -> list[shapely.Geometry]:
    """Polygons and lines from ~10 m to ~300 km over Europe, a point, and a polygon on each
    side of a size floor's edge (z2, z4) and of the antimeridian."""
    rng = random.Random(seed)
    shapes: list[shapely.Geometry] = []
    for i in range(1500):
        lon, lat = rng.uniform(-10, 30), rng.uniform(36, 60)
        size = 10 ** rng.uniform(-4, 0.5)
        if i % 5 == 0:
            shapes.append(shapely.LineString([(lon, lat), (lon + size, lat + size / 3)]))
        else:
            shapes.append(shapely.box(lon, lat, lon + size, lat + size * rng.uniform(0.2, 1)))
    shapes.append(shapely.Point(12.5, 41.9))
    for z in (2, 4):
        floor = 360 / 2**z * 4 / (4096 + 128)
        for side in (floor * 0.999, floor * 1.001):
            shapes.append(shapely.box(5.0, 50.0, 5.0 + side, 50.0 + side / 10))
    shapes += [shapely.box(179.5, 10, 180, 10.2), shapely.box(-180, 10, -179.9, 10.1)]
    return shapes


@pytest.fixture
async def layer(database_url: str) -> AsyncIterator[tuple[AsyncEngine, Layer]]:
    engine = create_engine(database_url, DatabaseSettings())
    await CatalogRepository(engine).create_collection(collection_row(collection("mixed")))
    async with engine.begin() as conn:
        found = await create_layer(conn, "mixed", [("n", PropertyType.INTEGER)], "Geometry")
        rows = [(shapely.to_wkb(g), i) for i, g in enumerate(_shapes())]
        await copy_features(conn, found, ["n"], rows)
        found = await refresh_extent(conn, found)
    async with engine.connect() as conn:
        await conn.execute(text(f"ANALYZE {found.qualified_name}"))
    yield engine, found
    await engine.dispose()


def _bounds(tms: morecantile.TileMatrixSet, tile: morecantile.Tile) -> TileBounds:
    box, limits = tms.xy_bounds(tile), tms.xy_bbox
    zxy = (tile.z, tile.x, tile.y) if tms is WEB else None
    srid = 3857 if tms is WEB else 4326
    return TileBounds(box.left, box.bottom, box.right, box.top, srid, zxy,
                      (limits.left, limits.bottom, limits.right, limits.top))  # fmt: skip


async def _tile(engine: AsyncEngine, repo: FeatureTileRepository, layer: Layer,
                bounds: TileBounds, sized: bool) -> list[dict[str, Any]]:  # fmt: skip
    """The decoded features of the tile, found through the size index or not."""
    statement = repo.statement(layer, bounds, FeatureQuery(), [], sized=sized)
    async with engine.connect() as conn:
        row = (await conn.execute(statement, repo.values(bounds, "mixed", 100_000))).one()
    if not row.features:
        return []
    return list(mapbox_vector_tile.decode(bytes(row.tile))["mixed"]["features"])


async def _ids(engine: AsyncEngine, repo: FeatureTileRepository, layer: Layer,
               bounds: TileBounds, sized: bool) -> set[int]:  # fmt: skip
    return {f["id"] for f in await _tile(engine, repo, layer, bounds, sized)}


async def test_low_zoom_tiles_hold_what_the_2d_index_gives(
    layer: tuple[AsyncEngine, Layer],
) -> None:
    engine, found = layer
    repo = FeatureTileRepository(engine)
    compared = 0
    for tms in (WEB, CRS84):
        for z in range(7):
            tiles = {tms.tile(lon, lat, z) for lon, lat in [(5, 50), (12.5, 41.9), (179.7, 10),
                                                             (-179.95, 10), (25, 58)]}  # fmt: skip
            for tile in tiles:
                bounds = _bounds(tms, tile)
                assert repo.by_size(found, bounds) == (tms is WEB or z < 6), (tms, tile)
                by_size = await _ids(engine, repo, found, bounds, sized=True)
                assert by_size == await _ids(engine, repo, found, bounds, sized=False), (tms, tile)
                compared += len(by_size)
    assert compared > 1000
    # The point is in every tile over it, whatever the floor.
    point = WEB.tile(12.5, 41.9, 0)
    features = await _tile(engine, repo, found, _bounds(WEB, point), sized=True)
    assert [f["geometry"]["type"] for f in features].count("Point") == 1
    # From z7 on, the 2-D index.
    assert not repo.by_size(found, _bounds(WEB, WEB.tile(5, 50, 7)))


async def test_a_low_zoom_tile_is_found_through_the_size_index(
    layer: tuple[AsyncEngine, Layer], database_url: str
) -> None:
    engine, found = layer
    repo = FeatureTileRepository(engine)
    bounds = _bounds(WEB, WEB.tile(5, 50, 2))
    compiled = repo.statement(found, bounds, FeatureQuery(), [], sized=True).compile(
        dialect=PSYCOPG
    )
    values = {**compiled.params, **repo.values(bounds, "mixed", 8000)}
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Were the tile's key not the index's expression, only a sequential scan could run.
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN {compiled}", values))
    assert f"{found.table_name}_size" in plan, plan
    assert "Seq Scan" not in plan.split("CTE Scan")[-1], plan


def test_tables_made_before_the_migration_get_the_index(scratch_url: str) -> None:  # noqa: F811
    migrate(scratch_url, "0017_vector_bounds")
    with psycopg.connect(scratch_url) as conn:
        conn.execute("INSERT INTO collections (id, content) VALUES ('c', '{}')")
        conn.execute("INSERT INTO vector_layers (collection_id, table_name, geometry_type) "
                     "VALUES ('c', 'l7', 'Polygon')")  # fmt: skip
        conn.execute("CREATE TABLE features.l7 (fid bigint PRIMARY KEY, geom geometry)")
        conn.execute("INSERT INTO features.l7 VALUES (1, ST_MakeEnvelope(1, 2, 4, 3, 4326)), "
                     "(2, ST_MakePoint(5, 6))")  # fmt: skip
    migrate(scratch_url)
    with psycopg.connect(scratch_url) as conn:
        names = {
            r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'l7'")
        }
        keys = conn.execute("SELECT fid, ST_AsText(features.size_key(geom)) FROM features.l7 "
                            "ORDER BY fid").fetchall()  # fmt: skip
    assert "l7_size" in names
    assert keys == [(1, "LINESTRING Z (1 2 3,4 3 3)"), (2, "LINESTRING Z (5 6 1e+30,5 6 1e+30)")]
    downgrade(scratch_url, "0017_vector_bounds")
    with psycopg.connect(scratch_url) as conn:
        names = {
            r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'l7'")
        }
    assert "l7_size" not in names
