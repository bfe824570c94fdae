"""Feature tables of vector collections: creation, COPY with reprojection and repair, extents."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pyproj
import pytest
import shapely
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import create_engine
from catalog.errors import UnknownQueryable
from catalog.settings import DatabaseSettings
from catalog.stac import cql2
from catalog.stac.repository import CatalogRepository
from catalog.stac.serializers import collection_row
from catalog.vector.query import FeatureQuery, where
from catalog.vector.repository import (
    VectorRepository,
    add_properties,
    copy_features,
    create_layer,
    refresh_extent,
)
from catalog.vector.schema import PropertyType, column_names
from tests.factories import collection


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, DatabaseSettings())
    await CatalogRepository(engine).create_collection(collection_row(collection("fields")))
    yield engine
    await engine.dispose()


def test_columns_are_identifiers_and_never_collide() -> None:
    assert column_names(["crop", "Crop", "fid", "a b", "p3", "x" * 70]) == [
        "crop", "p1", "p2", "p3", "p4", "p5",
    ]  # fmt: skip
    assert column_names(["crop"], taken=["crop"]) == ["p1"]


async def test_load_reprojects_repairs_and_measures(engine: AsyncEngine) -> None:
    to_l93 = pyproj.Transformer.from_crs(4326, 2154, always_xy=True)
    square = shapely.box(2.30, 48.80, 2.40, 48.90)
    bowtie = shapely.Polygon([(2.0, 48.0), (2.1, 48.1), (2.1, 48.0), (2.0, 48.1), (2.0, 48.0)])
    l93 = [
        (shapely.to_wkb(_project(to_l93, geom)), name, n, when)
        for geom, name, n, when in [
            (square, "wheat", 3, datetime(2024, 5, 1, tzinfo=UTC)),
            (bowtie, "maize", 7, datetime(2024, 6, 1, tzinfo=UTC)),
        ]
    ]
    async with engine.begin() as conn:
        layer = await create_layer(
            conn,
            "fields",
            [
                ("crop", PropertyType.STRING),
                ("Parcel No", PropertyType.INTEGER),
                ("sown", PropertyType.DATETIME),
            ],  # fmt: skip
            geometry_type="Polygon",
            source_crs="EPSG:2154",
            datetime_property="sown",
        )
        added = await copy_features(conn, layer, ["crop", "Parcel No", "sown"], l93, srid=2154)
        layer = await refresh_extent(conn, layer)
    assert added == 2
    assert layer.feature_count == 2
    assert layer.prop("Parcel No") is not None and layer.prop("Parcel No").column != "Parcel No"
    assert layer.bbox == pytest.approx((2.0, 48.0, 2.4, 48.9), abs=1e-6)
    assert layer.interval == (datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC))
    async with engine.connect() as conn:
        got = (
            await conn.execute(
                text(
                    "SELECT crop, ST_IsValid(geom), ST_SRID(geom) "
                    f"FROM {layer.qualified_name} ORDER BY fid"
                )
            )
        ).all()
    assert [tuple(r) for r in got] == [("wheat", True, 4326), ("maize", True, 4326)]


async def test_append_extends_schema_and_delete_drops_table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        layer = await create_layer(conn, "fields", [("crop", PropertyType.STRING)], "Point")
        layer = await add_properties(conn, layer, [("crop", PropertyType.STRING),
                                                    ("yield", PropertyType.NUMBER)])  # fmt: skip
        point = shapely.to_wkb(shapely.Point(1, 2))
        await copy_features(conn, layer, ["crop", "yield"], [(point, "rye", 2.5)])
    assert [p.name for p in layer.properties] == ["crop", "yield"]
    layers = await VectorRepository(engine).layers()
    assert list(layers) == ["fields"]
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM collections WHERE id = 'fields'"))
        left = (
            await conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'features'"))
        ).scalar_one()
    assert left == 0


def _project(transformer: pyproj.Transformer, geom: shapely.Geometry) -> shapely.Geometry:
    coords = shapely.get_coordinates(geom)
    x, y = transformer.transform(coords[:, 0], coords[:, 1])
    return shapely.set_coordinates(geom, list(zip(x, y, strict=True)))


async def test_query_compiles_cql2_bbox_and_datetime_on_columns(engine: AsyncEngine) -> None:
    rows = [
        (shapely.to_wkb(shapely.Point(x, 0.5)), crop, x, datetime(2024, 1 + x, 1, tzinfo=UTC))
        for x, crop in enumerate(["wheat", "Wheat", "maize", "rye", "wheat"])
    ]
    async with engine.begin() as conn:
        layer = await create_layer(
            conn,
            "fields",
            [
                ("crop", PropertyType.STRING),
                ("n", PropertyType.INTEGER),
                ("sown", PropertyType.DATETIME),
            ],  # fmt: skip
            "Point",
            datetime_property="sown",
        )
        await copy_features(conn, layer, ["crop", "n", "sown"], rows)

    async def fids(query: FeatureQuery) -> list[int]:
        statement = select(layer.table.c.fid).order_by(layer.table.c.fid)
        for clause in where(layer, query):
            statement = statement.where(clause)
        async with engine.connect() as conn:
            return list((await conn.execute(statement)).scalars())

    text_filter = cql2.parse("CASEI(crop) = CASEI('WHEAT') AND n >= 1", "cql2-text")
    assert await fids(FeatureQuery(filter=text_filter)) == [2, 5]
    assert await fids(FeatureQuery(bbox=[0.5, 0, 3.5, 1])) == [2, 3, 4]
    interval = (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))
    assert await fids(FeatureQuery(datetime=interval)) == [2, 3]
    with pytest.raises(UnknownQueryable):
        where(layer, FeatureQuery(filter=cql2.parse("nope = 1", "cql2-text")))


async def test_writes_keep_the_range_of_numbers_and_dates(engine: AsyncEngine) -> None:
    props = [("crop", PropertyType.STRING), ("area", PropertyType.NUMBER),
             ("plots", PropertyType.INTEGER), ("sown", PropertyType.DATETIME)]  # fmt: skip
    when = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    rows = [(shapely.to_wkb(shapely.box(i, 0, i + 1, 1)), "wheat", area, i, when)
            for i, area in enumerate([0.1 + 0.2, float("inf"), 7.25, float("nan")])]  # fmt: skip
    async with engine.begin() as conn:
        layer = await create_layer(conn, "fields", props, "Polygon")
        await copy_features(conn, layer, [n for n, _ in props], rows)
        layer = await refresh_extent(conn, layer)
        bounds = (await conn.execute(text("SELECT bounds FROM vector_layers"))).scalar_one()
    # numbers over finite values only, exactly (0.1 + 0.2 is no round decimal); strings: none
    assert set(layer.bounded) == {"area", "plots", "sown"}
    assert bounds["area"] == [0.1 + 0.2, 7.25] and bounds["plots"] == [0, 3]
    assert [datetime.fromisoformat(v) for v in bounds["sown"]] == [when, when]
