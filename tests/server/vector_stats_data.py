"""A seeded vector collection for the facet and aggregate tests, and its features in Python.

The features are loaded with the foundation (create_layer, copy_features, refresh_extent in one
transaction); the tests compute what they expect from the same list.
"""

import asyncio
import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

import shapely
from sqlalchemy import text

from catalog.db.engine import create_engine
from catalog.settings import DatabaseSettings
from catalog.stac.repository import CatalogRepository
from catalog.stac.serializers import collection_row
from catalog.vector.repository import copy_features, create_layer, get_layer, refresh_extent
from catalog.vector.schema import PropertyType
from tests.factories import collection

CROPS = ["wheat", "maize", "barley", "rye", "oats", "rapeseed", "sunflower", "beet"]
PROPERTIES = [
    ("crop", PropertyType.STRING),
    ("farmer", PropertyType.STRING),
    ("organic", PropertyType.BOOLEAN),
    ("parcels", PropertyType.INTEGER),
    ("yield", PropertyType.NUMBER),
    ("sown", PropertyType.DATETIME),
    ("harvest", PropertyType.DATE),
    ("notes", PropertyType.JSON),
]
NAMES = [name for name, _ in PROPERTIES]
START = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
EPOCH_DATE = dt.date(1970, 1, 1)


@dataclass
class Feature:
    """One feature as loaded: its geometry and properties (None for null)."""

    geom: shapely.Geometry
    props: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.props[name]


def _maybe(rng: random.Random, value: Any, null_share: float = 0.05) -> Any:
    return None if rng.random() < null_share else value


def make_features(count: int, seed: int = 18) -> list[Feature]:
    """``count`` features around France: 85 % small polygons, 15 % lines, typed properties."""
    rng = random.Random(seed)
    features = []
    for _ in range(count):
        x, y = rng.uniform(-4.0, 7.0), rng.uniform(43.0, 50.0)
        if rng.random() < 0.85:
            w, h = rng.uniform(0.001, 0.02), rng.uniform(0.001, 0.02)
            geom = shapely.Polygon([(x, y), (x + w, y), (x + w, y + h), (x, y + h * 0.7)])
        else:
            geom = shapely.LineString(
                [(x, y), (x + rng.uniform(-0.05, 0.05), y + rng.uniform(-0.05, 0.05)),
                 (x + rng.uniform(-0.05, 0.05), y + rng.uniform(-0.05, 0.05))]
            )  # fmt: skip
        sown = START + dt.timedelta(seconds=rng.randrange(0, 2 * 365 * 86400))
        props = {
            # crops in uneven shares, so the top values are clear
            "crop": _maybe(rng, rng.choices(CROPS, weights=[30, 22, 15, 10, 8, 6, 5, 4])[0]),
            "farmer": _maybe(rng, f"farmer {rng.randrange(40):02d}"),
            "organic": _maybe(rng, rng.random() < 0.3, 0.1),
            "parcels": _maybe(rng, rng.randrange(1, 480)),
            "yield": _maybe(rng, rng.uniform(0.5, 12.0)),
            "sown": _maybe(rng, sown, 0.03),
            "harvest": _maybe(rng, (sown + dt.timedelta(days=rng.randrange(90, 200))).date()),
            "notes": {"n": rng.randrange(3)},
        }
        features.append(Feature(geom, props))
    return features


async def _load(
    database_url: str, collection_id: str, features: list[Feature], datetime_property: str | None
) -> None:
    engine = create_engine(database_url, DatabaseSettings())
    try:
        await CatalogRepository(engine).create_collection(collection_row(collection(collection_id)))
        async with engine.begin() as conn:
            layer = await create_layer(
                conn, collection_id, PROPERTIES, "Geometry", "EPSG:4326", datetime_property
            )
            rows = [
                (shapely.to_wkb(f.geom), *(_copyable(f.props[n]) for n in NAMES)) for f in features
            ]
            await copy_features(conn, layer, NAMES, rows)
            await refresh_extent(conn, layer)
    finally:
        await engine.dispose()


def _copyable(value: Any) -> Any:
    if isinstance(value, dict):
        from psycopg.types.json import Jsonb

        return Jsonb(value)
    return value


def load(
    database_url: str,
    collection_id: str,
    features: list[Feature],
    datetime_property: str | None = "sown",
) -> None:
    """Make the collection and its vector layer holding ``features``."""
    asyncio.run(_load(database_url, collection_id, features, datetime_property))


def raster_collection(database_url: str, collection_id: str) -> None:
    """A plain STAC collection without features."""

    async def make() -> None:
        engine = create_engine(database_url, DatabaseSettings())
        try:
            await CatalogRepository(engine).create_collection(
                collection_row(collection(collection_id))
            )
        finally:
            await engine.dispose()

    asyncio.run(make())


def in_bbox(features: list[Feature], bbox: tuple[float, float, float, float]) -> list[Feature]:
    """The features intersecting ``bbox``."""
    box = shapely.box(*bbox)
    return [f for f in features if f.geom.intersects(box)]


def sown_between(features: list[Feature], start: dt.datetime, end: dt.datetime) -> list[Feature]:
    """The features sown in [start, end] (those without a date are never selected)."""
    return [f for f in features if f["sown"] is not None and start <= f["sown"] <= end]


def iso(value: dt.datetime) -> str:
    """A UTC date-time as the API writes it."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def touch(database_url: str, collection_id: str, sql: str) -> None:
    """Run ``sql`` on the collection's feature table (``{table}`` in it), then refresh_extent:
    a write as the API's writers make them, giving the layer a new version."""

    async def write() -> None:
        engine = create_engine(database_url, DatabaseSettings())
        try:
            async with engine.begin() as conn:
                layer = await get_layer(conn, collection_id)
                assert layer is not None
                await conn.execute(text(sql.format(table=layer.qualified_name)))
                await refresh_extent(conn, layer)
        finally:
            await engine.dispose()

    asyncio.run(write())
