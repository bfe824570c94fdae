"""Time series and statistics over an area of a collection of COG items (one per datetime).

The items the area and interval select (catalogue search, oldest first) are each read with
``ItemReader.part`` over the area's bounds on the item's own grid (no resampling: the window is
aligned with the file), and a pixel counts when its centre is inside the area, as for
datacubes (catalog/cubes/series.py). A layer is an index preset (``ndvi``...: the formula of
catalog/presets.py resolved against the item's band common names, as the tiler's ``preset=``)
or a band by name or common name. Only nodata masks pixels here. Items of one time step (or
day, ISO week, month with ``resolution``) are reduced together, with numpy.
"""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import shapely
from anyio import to_thread
from rasterio.features import geometry_mask
from rasterio.warp import transform_geom
from rio_tiler.constants import WGS84_CRS
from rio_tiler.errors import TileOutsideBounds
from starlette.requests import Request

from catalog.cubes.analysis import Aggregation, AreaQuery, AreaTooLarge, InvalidMask
from catalog.cubes.series import bucket_start, statistics_of
from catalog.presets import find_preset
from catalog.stac.search import SearchParams, SortBy
from catalog.stac.serializers import item_document
from catalog.storage.base import Storage
from catalog.timeparse import parse_instant
from catalog.web import base_url

from .errors import InvalidLayer
from .presets import resolve_preset
from .readers import ItemReader

LayerValues = dict[str, np.ndarray]  # layer -> the valid values of one item, float64


_REDUCERS: dict[str, Callable[[np.ndarray], Any]] = {
    "mean": np.mean, "min": np.min, "max": np.max, "median": np.median, "std": np.std,
    "sum": np.sum,
}  # fmt: skip


def aggregate_values(values: np.ndarray, aggregation: Aggregation) -> float | None:
    """``aggregation`` of 1-D valid values (None of none); numpy's defaults as xarray's."""
    if values.size == 0:
        return None
    name = aggregation.name
    if name == "count":
        return float(values.size)
    if name == "percentile":
        return float(np.percentile(values, (aggregation.q or 0) * 100))
    return float(_REDUCERS[name](values))


class CogSeries:
    """Reads a COG collection's items over an area (a service of the time-series routes)."""

    def __init__(self, storage: Storage, max_items: int, max_values: int) -> None:
        self.storage = storage
        self.max_items = max_items
        self.max_values = max_values

    async def items(self, request: Request, collection_id: str, query: AreaQuery) -> list[Any]:
        """The items the area and interval select, oldest first (stored hrefs)."""
        interval = "/".join(
            ".." if t is None else t.isoformat().replace("+00:00", "Z")
            for t in (query.start, query.end)
        )
        params = SearchParams(
            collections=[collection_id], intersects=shapely.geometry.mapping(query.area),
            datetime=None if interval == "../.." else interval, limit=self.max_items + 1,
            sortby=[SortBy("datetime")],
        )  # fmt: skip
        page = await request.app.state.repository.search(params)
        if len(page.rows) > self.max_items:
            raise AreaTooLarge(
                f"more than {self.max_items} items in the area and interval: shorten it"
            )
        base = base_url(request)
        return [item_document(row, base, assets=None) for row in page.rows]

    def read(self, item: dict[str, Any], query: AreaQuery) -> tuple[LayerValues, int]:
        """The valid values of each layer over the area in one item, and its pixels."""
        reader = ItemReader(item, storage=self.storage)
        area = shapely.geometry.mapping(query.area)
        values: LayerValues = {}
        pixels = 0
        for name in query.names:
            preset = find_preset(name)
            options: dict[str, Any] = {"bands": [name]}
            if name == "expression" and query.expression:  # band names, as the item routes'
                options = {"expression": query.expression}
            elif preset is not None:
                if not preset.is_index:
                    raise InvalidLayer(f"{name!r} is a composite: aggregate its bands instead")
                options = {"expression": resolve_preset(preset, item).expression}
            try:
                image = reader.part(
                    shapely.bounds(query.area).tolist(), bounds_crs=WGS84_CRS,
                    dst_crs=reader.crs, align_bounds_with_dataset=True, **options,
                )  # fmt: skip
            except TileOutsideBounds:
                values[name] = np.empty(0)
                continue
            shape = transform_geom(WGS84_CRS, reader.crs, area)
            inside = geometry_mask([shape], (image.height, image.width), image.transform,
                                   invert=True, all_touched=False)  # fmt: skip
            data = image.array[0]
            ok = inside & ~np.ma.getmaskarray(data)
            found = np.asarray(data.data[ok], dtype="float64")
            values[name] = found[np.isfinite(found)]
            pixels = max(pixels, int(inside.sum()))
        return values, pixels

    def read_all(
        self, items: Sequence[dict[str, Any]], query: AreaQuery
    ) -> tuple[list[tuple[Any, LayerValues]], int]:
        """(datetime, values) of each item, and the most pixels of one (blocking)."""
        if query.mask is not None and query.mask.strip().lower() != "none":
            raise InvalidMask("COG collections are masked by their nodata only: no mask")
        read, pixels, total = [], 0, 0
        for item in items:
            found, count = self.read(item, query)
            pixels, total = max(pixels, count), total + count * len(query.names)
            if total > self.max_values:
                raise AreaTooLarge(f"the area holds more than {self.max_values} values")
            when = parse_instant(item["properties"].get("datetime")
                                 or item["properties"]["start_datetime"])  # fmt: skip
            read.append((when, found))
        return read, pixels

    async def series(
        self, request: Request, collection_id: str, query: AreaQuery
    ) -> tuple[list[str], list[list[Any]], int]:
        """Columns, rows and the pixels in the area, as for a datacube."""
        items = await self.items(request, collection_id, query)
        read, pixels = await to_thread.run_sync(self.read_all, items, query)
        return (*series_table(read, query), pixels)

    async def statistics(
        self, request: Request, collection_id: str, query: AreaQuery, bins: int,
        percentiles: list[float],
    ) -> tuple[dict[str, Any], int, int]:  # fmt: skip
        """Each layer's statistics over every item, the pixels and the items read."""
        items = await self.items(request, collection_id, query)
        read, pixels = await to_thread.run_sync(self.read_all, items, query)
        stats = {
            name: statistics_of(
                np.concatenate([v[name] for _, v in read] or [np.empty(0)]), bins, percentiles
            )
            for name in query.names
        }
        return stats, pixels, len(read)


def series_table(
    read: Sequence[tuple[Any, LayerValues]], query: AreaQuery
) -> tuple[list[str], list[list[Any]]]:
    """The rows of the items' values, bucketed by time step or ``resolution``."""
    buckets: dict[Any, list[LayerValues]] = {}
    for when, values in read:
        buckets.setdefault(bucket_start(when, query.resolution), []).append(values)
    columns = ["datetime", "steps"]
    for name in query.names:
        columns += [name, f"{name}_count"]
    rows = []
    for label, members in buckets.items():
        row: list[Any] = [label.isoformat().replace("+00:00", "Z"), len(members)]
        for name in query.names:
            pooled = np.concatenate([m[name] for m in members])
            row += [aggregate_values(pooled, query.aggregation), int(pooled.size)]
        rows.append(row)
    return columns, rows


__all__ = ["CogSeries", "aggregate_values", "series_table"]
