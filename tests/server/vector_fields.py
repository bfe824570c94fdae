"""A vector collection of field parcels shared by the feature tests: rows made in Python.

``FIELDS`` parcels on a grid near Paris, with every property type, some NULLs, accents and mixed
case, so that each CQL2 family has matches and non-matches. The tests compare what the API
returns with what PostGIS selects from the same table with hand-written SQL.
"""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import shapely
from sqlalchemy import Engine, text

from catalog.vector.schema import Layer, PropertyType
from tests.vector_data import vector_collection

COLLECTION = "parcels"
FIELDS = 57
CROPS = ["Blé", "maïs", "Wheat", "wheat", "orge", None]
FARMERS = ["Ana", "Bruno", "Chloé", "Dmitri"]
PROPERTIES = [
    ("crop", PropertyType.STRING),
    ("farmer", PropertyType.STRING),
    ("area ha", PropertyType.NUMBER),  # not an identifier: its column is p2
    ("plots", PropertyType.INTEGER),
    ("organic", PropertyType.BOOLEAN),
    ("sown", PropertyType.DATETIME),
    ("harvest", PropertyType.DATE),
    ("extra", PropertyType.JSON),
]


def parcel(i: int) -> shapely.Polygon:
    """Parcel ``i``: a 0.01 degree square on a 10-column grid from (2.0, 48.5)."""
    x, y = 2.0 + (i % 10) * 0.02, 48.5 + (i // 10) * 0.02
    return shapely.box(x, y, x + 0.01, y + 0.01)


def rows(count: int = FIELDS) -> list[tuple[Any, ...]]:
    """The first ``count`` parcels with their properties."""
    start = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    return [
        (
            parcel(i),
            CROPS[i % len(CROPS)],
            FARMERS[i % len(FARMERS)],
            None if i % 11 == 5 else round(1.5 + (i * 7) % 23 * 0.5, 2),
            i % 9,
            i % 3 == 0,
            start + timedelta(days=i * 2, hours=i % 5),
            date(2024, 8, 1) + timedelta(days=i),
            f'{{"n": {i}}}',
        )
        for i in range(count)
    ]


def load(
    database_url: str, collection_id: str = COLLECTION, count: int = FIELDS, **options: Any
) -> Layer:
    """Make the parcels collection (``count`` parcels) in ``database_url``."""
    return vector_collection(
        database_url, collection_id, PROPERTIES, rows(count), datetime_property="sown", **options
    )


def fids(
    engine: Engine, layer: Layer, where: str, params: dict[str, Any] | None = None
) -> list[int]:
    """The fids PostGIS selects with a hand-written ``where`` (columns by name), in fid order."""
    sql = f"SELECT fid FROM {layer.qualified_name} WHERE {where} ORDER BY fid"
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text(sql), params or {})]
