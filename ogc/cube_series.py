"""Time series and summary statistics over an area, of datacube and COG collections.

- ``GET|POST /collections/{collectionId}/aggregate/time-series``: one row per time step (or
  per day, ISO week or month with ``resolution``) of each layer's aggregate over the area, as
  JSON or CSV (``getCollectionTimeSeries``, ``postCollectionTimeSeries``);
- ``GET|POST /collections/{collectionId}/aggregate/statistics``: count, min, max, mean, std,
  median, percentiles and a histogram of each layer's values over the area and interval
  (``getCollectionAreaStatistics``, ``postCollectionAreaStatistics``).

Both sit below ``/aggregate``, whose own route (no suffix) stays the vector collections'
metrics per group (ogc/vector_stats.py): routes match whole paths, so neither shadows the
other. A datacube is computed by catalog/cubes/series.py, a collection of COG items by
tiler/series.py; the reading and reducing run in a worker thread.
"""

from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote

import orjson
from anyio import to_thread
from fastapi import APIRouter, Body, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from catalog.cubes.analysis import (
    PIXEL_RULE,
    AreaQuery,
    InvalidAggregation,
    NotRaster,
    UnknownLayer,
    parse_aggregation,
    parse_area,
    parse_resolution,
    split_names,
)
from catalog.cubes.model import Cube, CubeRepository
from catalog.cubes.reading import open_for_reading
from catalog.cubes.series import Selection, layer_statistics, select, series_rows
from catalog.errors import InvalidGeometry
from catalog.settings import LimitSettings
from catalog.stac.bounds import check_vertices
from catalog.stac.requests import parse_bbox
from catalog.storage.base import Storage
from catalog.timeparse import parse_interval
from catalog.vector.repository import VectorRepository
from catalog.web import JSON, json_response, subresource_links
from tiler.series import CogSeries

from .settings import CubeSeriesSettings
from .tiles import CollectionID
from .vector_stats import CSV, csv_body, wants_csv

Accept = Annotated[str | None, Header(include_in_schema=False)]
Format = Annotated[Literal["json", "csv"] | None, Query(description="Output format.")]


@dataclass
class AreaParams:
    """The area, layers, interval and reduction of a GET request."""

    bbox: Annotated[str | None, Query(description="The area: west,south,east,north (lon/lat).")] = (
        None
    )
    intersects: Annotated[
        str | None,
        Query(description="The area: a GeoJSON Polygon or MultiPolygon in lon/lat (POST it "
              "in the body when long)."),
    ] = None  # fmt: skip
    layers: Annotated[
        str | None,
        Query(description="Comma-separated: the collection's layers (bands) or indices "
              "(ndvi, ndmi, ndre, gndvi, evi)."),
    ] = None  # fmt: skip
    aggregation: Annotated[
        str | None,
        Query(description="mean (default), min, max, median, std, sum, count or percentile_N."),
    ] = None
    resolution: Annotated[
        str | None,
        Query(description="P1D, P1W (ISO weeks) or P1M, UTC; none: every time step."),
    ] = None
    datetime: Annotated[
        str | None, Query(description="An RFC 3339 instant or interval (start/end, ../end).")
    ] = None
    expression: Annotated[
        str | None,
        Query(description="Arithmetic (+ - * /, numbers, parentheses) of layer or band names, "
              "e.g. (B08-B04)/(B08+B04): one more column, `expression`."),
    ] = None  # fmt: skip
    mask: Annotated[
        str | None,
        Query(description="Quality mask: LAYER:v1,v2 leaves out pixels where LAYER takes one "
              "of the values; none turns the default (SCL:3,8,9,10 when there is SCL) off."),
    ] = None  # fmt: skip


class AreaBody(BaseModel):
    """The same as a JSON body (``intersects`` as a GeoJSON object, ``layers`` a list)."""

    model_config = ConfigDict(extra="forbid")

    bbox: list[float] | None = None
    intersects: dict[str, Any] | None = None
    layers: list[str] | str | None = None
    aggregation: str | None = None
    resolution: str | None = None
    datetime: str | None = None
    mask: str | None = None
    expression: str | None = None
    bins: int | None = Field(default=None, ge=1)
    percentiles: list[float] | None = None


def area_query(
    limits: LimitSettings,
    bbox: list[float] | None,
    intersects: Any,
    layers: list[str],
    aggregation: str | None = None,
    resolution: str | None = None,
    interval: str | None = None,
    mask: str | None = None,
    expression: str | None = None,
) -> AreaQuery:
    """The parsed query; the request's own codes for each bad parameter."""
    if isinstance(intersects, str):
        try:
            intersects = orjson.loads(intersects)
        except orjson.JSONDecodeError as exc:
            raise InvalidGeometry(f"intersects is not JSON: {exc}") from exc
    if intersects is not None:
        check_vertices(intersects, limits)
    start, end = parse_interval(interval) if interval else (None, None)
    area = parse_area(bbox, intersects)
    if not layers and not expression:
        raise UnknownLayer("name the layers to aggregate: layers=ndvi,B04,... (or expression=)")
    return AreaQuery(
        area=area, layers=tuple(layers),
        start=start, end=end, aggregation=parse_aggregation(aggregation),
        resolution=parse_resolution(resolution), mask=mask, expression=expression or None,
    )  # fmt: skip


def get_query(limits: LimitSettings, params: AreaParams) -> AreaQuery:
    """The query of a GET request."""
    return area_query(limits, parse_bbox(params.bbox), params.intersects,
                      split_names(params.layers), params.aggregation, params.resolution,
                      params.datetime, params.mask, params.expression)  # fmt: skip


def body_query(limits: LimitSettings, body: AreaBody) -> AreaQuery:
    """The query of a POST request."""
    layers = split_names(body.layers) if isinstance(body.layers, str) else body.layers or []
    return area_query(limits, body.bbox, body.intersects, layers, body.aggregation,
                      body.resolution, body.datetime, body.mask, body.expression)  # fmt: skip


class SeriesService:
    """Reads the area of a datacube (or a COG collection's items) and reduces it."""

    def __init__(self, settings: CubeSeriesSettings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage
        self.cogs = CogSeries(storage, settings.max_items, settings.max_values)

    async def cube(self, request: Request, collection_id: str) -> Cube | None:
        """The collection's cube; None for a collection of COG items; NotRaster, NotFound."""
        engine = request.app.state.repository.engine
        cube = await CubeRepository(engine).get(collection_id)
        if cube is not None:
            return cube
        await request.app.state.repository.get_collection(collection_id)  # NotFound
        if await VectorRepository(engine).layer(collection_id) is not None:
            raise NotRaster(f"collection {collection_id!r} holds vector features, not rasters")
        return None

    def selection(self, cube: Cube, query: AreaQuery) -> Selection:
        """The cube's area read and masked (blocking)."""
        return select(open_for_reading(cube, self.storage), cube, query, self.settings.max_values)

    async def series(
        self, request: Request, collection_id: str, cube: Cube | None, query: AreaQuery
    ) -> tuple[list[str], list[list[Any]], int]:
        """Columns, rows and the number of pixels in the area."""
        if cube is None:
            return await self.cogs.series(request, collection_id, query)

        def work() -> tuple[list[str], list[list[Any]], int]:
            selection = self.selection(cube, query)
            return (*series_rows(selection, query), selection.pixels)

        return await to_thread.run_sync(work)

    async def statistics(
        self, request: Request, collection_id: str, cube: Cube | None, query: AreaQuery,
        bins: int, percentiles: list[float],
    ) -> tuple[dict[str, Any], int, int]:  # fmt: skip
        """Each layer's statistics, the pixels in the area and the time steps read."""
        if not 1 <= bins <= self.settings.max_bins:
            raise InvalidAggregation(f"bins is between 1 and {self.settings.max_bins}")
        if any(not 0 <= p <= 100 for p in percentiles) or len(percentiles) > 20:
            raise InvalidAggregation("percentiles are at most 20 numbers between 0 and 100")
        if cube is None:
            return await self.cogs.statistics(request, collection_id, query, bins, percentiles)

        def work() -> tuple[dict[str, Any], int, int]:
            selection = self.selection(cube, query)
            stats = layer_statistics(selection, bins, percentiles)
            return stats, selection.pixels, len(selection.times)

        return await to_thread.run_sync(work)


def _described(query: AreaQuery, pixels: int) -> dict[str, Any]:
    return {
        "layers": list(query.layers),
        "expression": query.expression,
        "aggregation": query.aggregation.label,
        "resolution": query.resolution,
        "datetime": [None if t is None else t.isoformat().replace("+00:00", "Z")
                     for t in (query.start, query.end)],
        "area": {"pixels": pixels, "pixelRule": PIXEL_RULE},
        "mask": query.mask,
    }  # fmt: skip


async def series_response(
    service: SeriesService, request: Request, collection_id: str, cube: Cube | None,
    query: AreaQuery, csv: bool,
) -> Response:  # fmt: skip
    """The time series as JSON or CSV."""
    columns, rows, pixels = await service.series(request, collection_id, cube, query)
    if csv:
        name = quote(f"{collection_id}-time-series.csv", safe="")
        return Response(csv_body(columns, rows), media_type=f"{CSV}; charset=utf-8",
                        headers={"Content-Disposition": f'inline; filename="{name}"'})  # fmt: skip
    return json_response({
        "collection": collection_id, **_described(query, pixels), "columns": columns,
        "series": [dict(zip(columns, row, strict=True)) for row in rows],
        "links": subresource_links(request, collection_id, "aggregate/time-series"),
    })  # fmt: skip


async def statistics_response(
    service: SeriesService, request: Request, collection_id: str, cube: Cube | None,
    query: AreaQuery, bins: int, percentiles: list[float],
) -> Response:  # fmt: skip
    """The statistics as JSON."""
    stats, pixels, steps = await service.statistics(request, collection_id, cube, query, bins,
                                                    percentiles)  # fmt: skip
    described = _described(query, pixels)
    del described["aggregation"], described["resolution"]
    return json_response({
        "collection": collection_id, **described, "steps": steps, "statistics": stats,
        "links": subresource_links(request, collection_id, "aggregate/statistics"),
    })  # fmt: skip


Bins = Annotated[int, Query(ge=1, description="Histogram bins (equal width, min to max).")]
Percentiles = Annotated[str, Query(description="Comma-separated percentiles to compute (0..100).")]


def _percentiles(value: str) -> list[float]:
    try:
        return [float(p) for p in split_names(value)]
    except ValueError as exc:
        raise InvalidAggregation(f"percentiles are numbers: {value[:40]!r}") from exc


def _series_endpoints(service: SeriesService, limits: LimitSettings) -> tuple[Any, Any]:
    """The GET and POST time-series endpoints."""

    async def get_series(
        request: Request, collection_id: CollectionID, params: Annotated[AreaParams, Depends()],
        f: Format = None, accept: Accept = None,
    ) -> Response:  # fmt: skip
        """A time series of each layer's aggregate over an area."""
        cube = await service.cube(request, collection_id)  # 404 before any 400
        query = get_query(limits, params)
        return await series_response(service, request, collection_id, cube, query,
                                     wants_csv(f, accept))  # fmt: skip

    async def post_series(
        request: Request, collection_id: CollectionID,
        body: Annotated[AreaBody, Body()], f: Format = None, accept: Accept = None,
    ) -> Response:  # fmt: skip
        """The same with the area and parameters in a JSON body."""
        cube = await service.cube(request, collection_id)
        query = body_query(limits, body)
        return await series_response(service, request, collection_id, cube, query,
                                     wants_csv(f, accept))  # fmt: skip

    return get_series, post_series


def _statistics_endpoints(service: SeriesService, limits: LimitSettings) -> tuple[Any, Any]:
    """The GET and POST statistics endpoints."""

    async def get_statistics(
        request: Request, collection_id: CollectionID, params: Annotated[AreaParams, Depends()],
        bins: Bins = 10, percentiles: Percentiles = "2,98",
    ) -> Response:  # fmt: skip
        """Count, min, max, mean, std, median, percentiles and histogram of each layer."""
        cube = await service.cube(request, collection_id)
        query = get_query(limits, params)
        return await statistics_response(service, request, collection_id, cube, query, bins,
                                         _percentiles(percentiles))  # fmt: skip

    async def post_statistics(
        request: Request, collection_id: CollectionID, body: Annotated[AreaBody, Body()]
    ) -> Response:
        """The same with the area and parameters in a JSON body."""
        cube = await service.cube(request, collection_id)
        query = body_query(limits, body)
        percentiles = [2.0, 98.0] if body.percentiles is None else body.percentiles
        return await statistics_response(service, request, collection_id, cube, query,
                                         body.bins or 10, percentiles)  # fmt: skip

    return get_statistics, post_statistics


def cube_series_router(
    settings: CubeSeriesSettings, limits: LimitSettings, storage: Storage
) -> APIRouter:
    """The time-series and statistics routes of raster and datacube collections."""
    service = SeriesService(settings, storage)
    router = APIRouter(tags=["Aggregation"])
    get_series, post_series = _series_endpoints(service, limits)
    get_statistics, post_statistics = _statistics_endpoints(service, limits)
    path = "/collections/{collectionId}/aggregate"
    both: dict[str, Any] = {JSON: {}, CSV: {}}
    json_only: dict[str, Any] = {JSON: {}}
    for suffix, endpoint, method, operation, summary, media in (
        ("/time-series", get_series, "GET", "getCollectionTimeSeries",
         "Time series of layers over an area (JSON or CSV)", both),
        ("/time-series", post_series, "POST", "postCollectionTimeSeries",
         "Time series of layers over an area given in the body", both),
        ("/statistics", get_statistics, "GET", "getCollectionAreaStatistics",
         "Statistics and histogram of layers over an area and interval", json_only),
        ("/statistics", post_statistics, "POST", "postCollectionAreaStatistics",
         "Statistics of layers over an area given in the body", json_only),
    ):  # fmt: skip
        router.add_api_route(
            path + suffix, endpoint, methods=[method], operation_id=operation,
            summary=summary, response_class=Response, responses={200: {"content": media}},
        )  # fmt: skip
    return router


__all__ = ["AreaBody", "AreaParams", "SeriesService", "area_query", "cube_series_router"]
