"""OGC API - EDR ``position`` and ``area`` queries of datacube collections, as CoverageJSON.

- ``GET /collections/{collectionId}/position?coords=POINT(lon lat)`` (``getCollectionPosition``)
- ``GET /collections/{collectionId}/area?coords=POLYGON((...))`` (``getCollectionArea``)

with ``parameter-name`` (layers: the cube's, or indices such as ``ndvi``), ``datetime`` and
``mask`` as the time series (ogc/cube_series.py). pygeoapi's xarray EDR provider is not used
(docs/api.md, "OGC API - EDR"): it opens the data from a path itself, selects in the data's own
CRS (a lon/lat point on a UTM cube lands elsewhere), has no ``area`` query, and keeps
per-request state on the provider. The answers are built by catalog/cubes/coverage.py.
"""

from typing import Annotated, Any, Literal
from urllib.parse import quote

import shapely
import shapely.wkt
from anyio import to_thread
from fastapi import APIRouter, Query, Request
from shapely.errors import ShapelyError
from starlette.responses import Response

from catalog.cubes.analysis import AreaQuery, split_names
from catalog.cubes.coverage import COVJSON, area_coverage, position_coverage
from catalog.cubes.errors import NotACube
from catalog.cubes.model import Cube, CubeRepository
from catalog.cubes.reading import open_for_reading
from catalog.cubes.series import point_window, select
from catalog.errors import GeometryTooLarge, InvalidGeometry
from catalog.settings import LimitSettings
from catalog.storage.base import Storage
from catalog.timeparse import parse_interval
from catalog.web import base_url, json_response

from .settings import CubeSeriesSettings
from .tiles import CollectionID

CRS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
    'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433],AXIS["Longitude",EAST],'
    'AXIS["Latitude",NORTH]]'
)
EDR_CLASSES = [
    "http://www.opengis.net/spec/ogcapi-edr-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-edr-1/1.0/conf/covjson",
]
# Optional here and required by the route (after the collection is found): a missing
# collection and one the caller may not read must answer alike, 404, before any 400.
Coords = Annotated[
    str | None, Query(description="The query geometry as WKT in lon/lat (CRS84); required.")
]
ParameterName = Annotated[
    str | None,
    Query(alias="parameter-name",
          description="Comma-separated layers: the cube's, or indices (ndvi, ndmi...)."),
]  # fmt: skip
Datetime = Annotated[str | None, Query(description="An RFC 3339 instant or interval.")]
Mask = Annotated[
    str | None, Query(description="Quality mask, as for the time series (LAYER:v1,v2 or none).")
]
Format = Annotated[
    Literal["CoverageJSON", "covjson", "json"] | None,
    Query(description="Output format: CoverageJSON (the only one)."),
]


def parse_wkt(text: str | None, kinds: tuple[str, ...], limits: LimitSettings) -> shapely.Geometry:
    """A WKT geometry of one of ``kinds``; InvalidGeometry, GeometryTooLarge."""
    if not text:
        raise InvalidGeometry("coords is required: a WKT geometry in lon/lat")
    try:
        shape = shapely.wkt.loads(text)
    except (ShapelyError, ValueError, TypeError) as exc:
        raise InvalidGeometry(f"coords is not WKT: {text[:60]!r}") from exc
    if shape.is_empty or shape.geom_type not in kinds:
        raise InvalidGeometry(f"coords must be a {' or '.join(kinds)}, not {shape.geom_type}")
    if len(shapely.get_coordinates(shape)) > limits.geometry_max_vertices:
        raise GeometryTooLarge(f"coords has more than {limits.geometry_max_vertices} vertices")
    if not shapely.is_valid(shape):
        shape = shapely.make_valid(shape)
    return shape


async def datacube(request: Request, collection_id: str) -> Cube:
    """The collection's cube; NotFound for a missing collection, NotACube for others."""
    cube = await CubeRepository(request.app.state.repository.engine).get(collection_id)
    if cube is None:
        await request.app.state.repository.get_collection(collection_id)
        raise NotACube(f"collection {collection_id!r} is no datacube: no EDR queries")
    return cube


def _query(area: shapely.Geometry, parameters: str | None, interval: str | None,
           mask: str | None, cube: Cube) -> AreaQuery:  # fmt: skip
    start, end = parse_interval(interval) if interval else (None, None)
    names = split_names(parameters) or [layer.name for layer in cube.layers]
    return AreaQuery(area=area, layers=tuple(names), start=start, end=end, mask=mask)


def cube_edr_router(
    settings: CubeSeriesSettings, limits: LimitSettings, storage: Storage
) -> APIRouter:
    """The EDR position and area routes of datacube collections."""
    router = APIRouter(tags=["OGC API - EDR"])

    async def get_position(
        request: Request, collection_id: CollectionID, coords: Coords = None,
        parameter_name: ParameterName = None, datetime: Datetime = None, mask: Mask = None,
        f: Format = None,
    ) -> Response:  # fmt: skip
        """The layers' values at a point, every time step (CoverageJSON PointSeries)."""
        cube = await datacube(request, collection_id)
        point = parse_wkt(coords, ("Point",), limits)
        query = _query(point, parameter_name, datetime, mask, cube)

        def work() -> dict[str, Any]:
            window = point_window(cube, point.x, point.y)
            ds = open_for_reading(cube, storage)
            selection = select(ds, cube, query, settings.max_values, window=window)
            return position_coverage(cube, selection, point.x, point.y)

        return json_response(await to_thread.run_sync(work), media_type=COVJSON)

    async def get_area(
        request: Request, collection_id: CollectionID, coords: Coords = None,
        parameter_name: ParameterName = None, datetime: Datetime = None, mask: Mask = None,
        f: Format = None,
    ) -> Response:  # fmt: skip
        """The layers' values over an area, every time step (CoverageJSON Grid)."""
        cube = await datacube(request, collection_id)
        area = parse_wkt(coords, ("Polygon", "MultiPolygon"), limits)
        query = _query(area, parameter_name, datetime, mask, cube)

        def work() -> dict[str, Any]:
            ds = open_for_reading(cube, storage)
            selection = select(ds, cube, query, settings.edr_max_values, grid=True)
            return area_coverage(cube, selection)

        return json_response(await to_thread.run_sync(work), media_type=COVJSON)

    for suffix, endpoint, operation, summary in (
        ("position", get_position, "getCollectionPosition",
         "EDR position query of a datacube (CoverageJSON)"),
        ("area", get_area, "getCollectionArea", "EDR area query of a datacube (CoverageJSON)"),
    ):  # fmt: skip
        router.add_api_route(
            "/collections/{collectionId}/" + suffix, endpoint, methods=["GET"],
            operation_id=operation, summary=summary, response_class=Response,
            responses={200: {"content": {COVJSON: {}}}},
        )  # fmt: skip
    return router


def _data_query(kind: str, title: str, base: str, collection_id: str) -> dict[str, Any]:
    return {"link": {
        "href": f"{base}collections/{quote(collection_id, safe='')}/{kind}",
        "rel": "data", "title": title, "type": COVJSON,
        "variables": {"title": title, "query_type": kind, "output_formats": ["CoverageJSON"],
                      "default_output_format": "CoverageJSON",
                      "crs_details": [{"crs": "CRS84", "wkt": CRS84_WKT}]},
    }}  # fmt: skip


async def page_cubes(request: Request, collections: list[dict[str, Any]]) -> set[str]:
    """Which of a page's collections are datacubes: one query per request, however many
    collection hooks ask (the EDR queries here, the capabilities links in server/cubes.py)."""
    known: dict[str, bool] = getattr(request.state, "datacubes", None) or {}
    asked = [str(c["id"]) for c in collections if str(c["id"]) not in known]
    if asked:
        found = await CubeRepository(request.app.state.repository.engine).ids(asked)
        known.update({cid: cid in found for cid in asked})
        request.state.datacubes = known
    return {cid for cid, cube in known.items() if cube}


async def add_edr_queries(request: Request, collections: list[dict[str, Any]]) -> None:
    """Hook: EDR ``data_queries`` (position, area) of each datacube collection, and a link to
    its time series."""
    if not collections:
        return
    cubes = await page_cubes(request, collections)
    base = base_url(request)
    for doc in collections:
        if doc["id"] not in cubes:
            continue
        doc["data_queries"] = {
            "position": _data_query("position", "Layers at a point, every time step", base,
                               doc["id"]),
            "area": _data_query("area", "Layers over an area, every time step", base, doc["id"]),
        }  # fmt: skip
        href = f"{base}collections/{quote(doc['id'], safe='')}/aggregate/time-series"
        kept = [link for link in doc.get("links", []) if link.get("href") != href]
        doc["links"] = [*kept, {"rel": "time-series", "type": "application/json", "href": href,
                                "title": "Time series of layers over an area (bbox or "
                                "intersects, layers=...)"}]  # fmt: skip


__all__ = [
    "EDR_CLASSES",
    "add_edr_queries",
    "cube_edr_router",
    "datacube",
    "page_cubes",
    "parse_wkt",
]
