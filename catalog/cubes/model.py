"""What the catalogue knows of a datacube (table ``datacubes``), and its repository.

A ``Cube`` is read once at ingest from the store (xarray + rioxarray) and kept, so that tiles,
time series and the capabilities document never open the store to learn its shape. Layers are
the cube's variables, or the values of its band dimension (one variable ``reflectance`` with
``band = B02..B12`` gives one layer per band); each carries the common name the band presets
resolve by. ``overviews`` are reduced copies of the store (factor 2, 4, ...) built at ingest
for cubes above a size threshold; the tile reader picks the coarsest one finer than a tile.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.db.engine import connect

Format = Literal["zarr", "netcdf"]


@dataclass(frozen=True)
class CubeLayer:
    """One layer: variable ``variable``, at ``band`` along the band dimension when it has one."""

    name: str  # the layer's name in the API (the band value, or the variable name)
    variable: str
    band: str | None = None
    common_name: str | None = None
    dtype: str = "float32"
    nodata: float | None = None
    unit: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class CubeOverview:
    """A reduced copy of the store: every ``factor``-th pixel's block averaged."""

    href: str
    factor: int
    width: int
    height: int


@dataclass(frozen=True)
class Cube:
    """A datacube collection's store and grid."""

    collection_id: str
    href: str  # storage:{key} of a store Terracat holds, or the URL of one registered in place
    format: Format
    crs: str  # as pyproj reads it (WKT2 or "EPSG:n")
    transform: tuple[float, float, float, float, float, float]  # GDAL order
    width: int
    height: int
    x_dim: str
    y_dim: str
    time_dim: str | None
    band_dim: str | None
    layers: tuple[CubeLayer, ...]
    times: tuple[datetime, ...] = ()
    overviews: tuple[CubeOverview, ...] = field(default=())

    def layer(self, name: str) -> CubeLayer | None:
        """The layer called ``name`` (or whose common name it is), or None."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        for layer in self.layers:
            if layer.common_name == name:
                return layer
        return None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """West, south, east, north in the cube's CRS."""
        a, b, c, d, e, f = self.transform[1], self.transform[2], self.transform[0], \
            self.transform[4], self.transform[5], self.transform[3]  # fmt: skip
        xs = (c, c + a * self.width + b * self.height)
        ys = (f, f + d * self.width + e * self.height)
        return min(xs), min(ys), max(xs), max(ys)


def _row(cube: Cube) -> dict[str, Any]:
    return {
        "c": cube.collection_id,
        "href": cube.href,
        "format": cube.format,
        "crs": cube.crs,
        "transform": list(cube.transform),
        "width": cube.width,
        "height": cube.height,
        "x_dim": cube.x_dim,
        "y_dim": cube.y_dim,
        "time_dim": cube.time_dim,
        "band_dim": cube.band_dim,
        "variables": orjson.dumps([vars(layer) for layer in cube.layers]).decode(),
        "times": list(cube.times),
        "overviews": orjson.dumps([vars(o) for o in cube.overviews]).decode(),
    }


def _cube(row: Any) -> Cube:
    return Cube(
        collection_id=row.collection_id,
        href=row.href,
        format=row.format,
        crs=row.crs,
        transform=tuple(row.transform),
        width=row.width,
        height=row.height,
        x_dim=row.x_dim,
        y_dim=row.y_dim,
        time_dim=row.time_dim,
        band_dim=row.band_dim,
        layers=tuple(CubeLayer(**v) for v in row.variables),
        times=tuple(row.times),
        overviews=tuple(CubeOverview(**o) for o in row.overviews),
    )


_COLUMNS = (
    "collection_id, href, format, crs, transform, width, height, x_dim, y_dim, time_dim, "
    "band_dim, variables, times, overviews"
)


class CubeRepository:
    """Datacube rows, by collection id."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get(self, collection_id: str) -> Cube | None:
        """The collection's cube, or None when it is no datacube collection."""
        async with connect(self.engine) as conn:
            row = (
                await conn.execute(
                    text(f"SELECT {_COLUMNS} FROM datacubes WHERE collection_id = :c"),
                    {"c": collection_id},
                )
            ).first()
        return None if row is None else _cube(row)

    async def ids(self, collection_ids: Sequence[str]) -> set[str]:
        """Which of ``collection_ids`` are datacube collections."""
        async with connect(self.engine) as conn:
            rows = await conn.execute(
                text("SELECT collection_id FROM datacubes WHERE collection_id = ANY(:ids)"),
                {"ids": list(collection_ids)},
            )
            return {row.collection_id for row in rows}


async def put_cube(conn: AsyncConnection, cube: Cube) -> None:
    """Store (or replace) ``cube`` in the caller's transaction (the ingest job's)."""
    await conn.execute(
        text(
            f"INSERT INTO datacubes ({_COLUMNS}) VALUES (:c, :href, :format, :crs, :transform, "
            ":width, :height, :x_dim, :y_dim, :time_dim, :band_dim, CAST(:variables AS jsonb), "
            ":times, CAST(:overviews AS jsonb)) ON CONFLICT (collection_id) DO UPDATE SET "
            "href = EXCLUDED.href, format = EXCLUDED.format, crs = EXCLUDED.crs, "
            "transform = EXCLUDED.transform, width = EXCLUDED.width, height = EXCLUDED.height, "
            "x_dim = EXCLUDED.x_dim, y_dim = EXCLUDED.y_dim, time_dim = EXCLUDED.time_dim, "
            "band_dim = EXCLUDED.band_dim, variables = EXCLUDED.variables, "
            "times = EXCLUDED.times, overviews = EXCLUDED.overviews, updated = now()"
        ),
        _row(cube),
    )


__all__ = ["Cube", "CubeLayer", "CubeOverview", "CubeRepository", "Format", "put_cube"]
