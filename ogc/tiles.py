"""OGC API - Tiles - Part 1: Core (1.0) metadata: tile matrix sets and each collection's tilesets.

Every collection has two tilesets per tile matrix set:

- ``vector``: the item footprints as Mapbox Vector Tiles (ogc/vector_tiles.py), described at
  ``/collections/{collectionId}/items/tiles/{tileMatrixSetId}`` with its tiles right below it;
- ``map``: the rendered raster mosaic, described at ``/collections/{collectionId}/tiles/
  {tileMatrixSetId}``, whose tiles the raster side serves below that path.

``/collections/{collectionId}/tiles`` lists both kinds. Our tile paths are XYZ (column before
row); the templated ``item`` links say so by naming the variables, which is all OGC clients go
by (20-057 /req/tileset/description E, /req/core/tc-op A).
"""

from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

import attr
import morecantile
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from morecantile import TileMatrixSet
from stac_fastapi.types.extension import ApiExtension
from starlette.responses import Response

from catalog.cubes.model import CubeRepository
from catalog.errors import CatalogError, NotFound
from catalog.maps.mosaic import Coverage, MosaicRepository
from catalog.maps.tiles import FEATURE_PROPERTIES, TileBounds
from catalog.settings import LimitSettings
from catalog.stac.queryables import Kind
from catalog.stac.repository import CatalogRepository
from catalog.vector.query import where
from catalog.vector.schema import Layer
from catalog.web import base_url, json_response
from tiler.cubes.extent import cube_coverage
from tiler.mosaic import zoom_range

from .feature_tiles import (
    TILEJSON_TYPES,
    Filter,
    FilterCrs,
    FilterLang,
    Properties,
    chosen_properties,
    feature_query,
    layer_cache,
)
from .settings import CRS84, WEB_MERCATOR, TileSettings, srid_of

CONF = "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/"
TMS_CONF = "http://www.opengis.net/spec/tms/2.0/conf/"
# geodata-tilesets also needs tilesets links on /collections/{id} (/req/geodata-tilesets/
# desc-links), which the collection serializer does not make yet: not declared.
CONFORMANCE_CLASSES = [
    CONF + "tileset",
    CONF + "tilesets-list",
    CONF + "geodata-tilesets",  # collections link their tilesets (server/features.py)
    TMS_CONF + "tilematrixset",
    TMS_CONF + "json-tilematrixset",
    TMS_CONF + "tilesetmetadata",
    TMS_CONF + "json-tilesetmetadata",
]
REL = "http://www.opengis.net/def/rel/ogc/1.0/"
JSON = "application/json"
MVT = "application/vnd.mapbox-vector-tile"
TILE_TEMPLATE = "{tileMatrix}/{tileCol}/{tileRow}"
XYZ_TEMPLATE = "{z}/{x}/{y}"
DataType = Literal["vector", "map"]
DATA_TYPES: tuple[DataType, ...] = ("vector", "map")


# -- errors -------------------------------------------------------------------------------------
class UnknownTileMatrixSet(NotFound):
    """A tile matrix set this server does not offer."""

    code = "tiles.UnknownTileMatrixSet"


class InvalidTile(CatalogError):
    """A tile outside its tile matrix set (20-057 asks for 404, /req/tileset/tc-success D)."""

    code = "tiles.InvalidTile"
    status = 404


class TileMatrixSets:
    """The tile matrix sets offered, by id, with tile lookups that check their range."""

    def __init__(self, ids: list[str]) -> None:
        self._sets = {name: morecantile.tms.get(name) for name in ids}

    def ids(self) -> list[str]:
        """The offered ids, in the configured order."""
        return list(self._sets)

    def get(self, tms_id: str) -> TileMatrixSet:
        """The tile matrix set, or UnknownTileMatrixSet."""
        try:
            return self._sets[tms_id]
        except KeyError:
            offered = ", ".join(self._sets)
            raise UnknownTileMatrixSet(
                f"tile matrix set {tms_id!r} is not offered here (offered: {offered})"
            ) from None

    def bounds(self, tms_id: str, z: int, x: int, y: int) -> TileBounds:
        """Where tile z/x/y (x = column, y = row) lies; InvalidTile outside the matrix."""
        tms = self.get(tms_id)
        if not tms.minzoom <= z <= tms.maxzoom:
            raise InvalidTile(f"{tms_id} has tile matrices {tms.minzoom} to {tms.maxzoom}, not {z}")
        matrix = tms.matrix(z)
        if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
            raise InvalidTile(
                f"tile {z}/{x}/{y} is outside {tms_id} matrix {z} "
                f"({matrix.matrixWidth} columns, {matrix.matrixHeight} rows)"
            )
        box = tms.xy_bounds(morecantile.Tile(x, y, z))
        zxy = (z, x, y) if tms_id == WEB_MERCATOR else None
        limits = tms.xy_bbox
        return TileBounds(box.left, box.bottom, box.right, box.top, srid_of(tms), zxy,
                          (limits.left, limits.bottom, limits.right, limits.top))  # fmt: skip


# -- dependency slots ---------------------------------------------------------------------------
def catalog_repository(request: Request) -> CatalogRepository:
    """The catalogue (set in the app's lifespan)."""
    repo: CatalogRepository = request.app.state.repository
    return repo


Catalog = Annotated[CatalogRepository, Depends(catalog_repository)]
CollectionID = Annotated[str, Path(alias="collectionId", description="A collection id.")]
TileMatrixSetID = Annotated[
    str, Path(alias="tileMatrixSetId", description="A tile matrix set id, e.g. WebMercatorQuad.")
]

Compat = Annotated[
    Literal["tms1"] | None,
    Query(description="`tms1`: also give the TMS 1.0 member names (for GDAL before 3.7)."),
]


# -- documents ----------------------------------------------------------------------------------
def _link(href: str, rel: str, media: str | None = JSON, **extra: Any) -> dict[str, Any]:
    link: dict[str, Any] = {"href": href, "rel": rel}
    if media:
        link["type"] = media
    return link | extra


def collection_url(base: str, collection_id: str) -> str:
    """The URL of a collection."""
    return f"{base}collections/{quote(collection_id, safe='')}"


def tileset_url(base: str, collection_id: str, data_type: DataType, tms_id: str) -> str:
    """Where a tileset is described; its tiles are right below."""
    middle = "items/tiles" if data_type == "vector" else "tiles"
    return f"{collection_url(base, collection_id)}/{middle}/{quote(tms_id, safe='')}"


def tile_template(base: str, collection_id: str, data_type: DataType, tms_id: str) -> str:
    """The templated URL of the tiles of a tileset, in OGC variable names."""
    suffix = ".mvt" if data_type == "vector" else ""
    return f"{tileset_url(base, collection_id, data_type, tms_id)}/{TILE_TEMPLATE}{suffix}"


def tms_summary(tms: TileMatrixSet, base: str) -> dict[str, Any]:
    """One entry of /tileMatrixSets."""
    href = f"{base}tileMatrixSets/{tms.id}"
    return {
        "id": tms.id,
        "title": tms.title,
        "uri": tms.uri,
        "crs": str(tms.crs.root),
        "links": [_link(href, "self", title=f"{tms.id} definition"),
                  _link(href, REL + "tiling-scheme", title=f"{tms.id} definition")],
    }  # fmt: skip


def tms_definition(tms: TileMatrixSet, tms1_names: bool = False) -> dict[str, Any]:
    """The OGC 2D TMS 2.0 JSON of a tile matrix set; with ``tms1_names``, 1.0's names too.

    GDAL before 3.7 (Debian 12's 3.6 among them) parses only TMS 1.0 JSON (17-083r2): it
    takes a definition that has ``identifier``, ``boundingBox`` and ``tileMatrices``, then reads
    ``supportedCRS`` and each matrix's ``identifier`` and ``topLeftCorner``. Strict 2.0 readers
    (morecantile) refuse a document with ``supportedCRS``, so the 1.0 names are only added
    where the tilesets' ``tiling-scheme`` links point (``?compat=tms1``), which GDAL follows;
    ``/tileMatrixSets`` links the plain 2.0 document.
    """
    doc: dict[str, Any] = tms.model_dump(exclude_none=True, mode="json")
    box = tms.xy_bbox
    corners = {"lowerLeft": [box.left, box.bottom], "upperRight": [box.right, box.top]}
    doc.setdefault("boundingBox", {**corners, "crs": doc["crs"]})
    if not tms1_names:
        return doc
    doc |= {"identifier": doc["id"], "supportedCRS": doc["crs"]}
    for matrix in doc["tileMatrices"]:
        matrix["identifier"] = matrix["id"]
        if matrix.get("cornerOfOrigin", "topLeft") == "topLeft":  # 1.0 knows no other corner
            matrix["topLeftCorner"] = matrix["pointOfOrigin"]
    return doc


def _extent(collection: dict[str, Any]) -> list[float] | None:
    """The collection's overall bbox in CRS84 (west, south, east, north), if it declares one."""
    try:
        box = collection["content"]["extent"]["spatial"]["bbox"][0]
    except (KeyError, IndexError, TypeError):
        return None
    if not isinstance(box, list) or len(box) not in (4, 6):
        return None
    half = len(box) // 2
    return [float(box[0]), float(box[1]), float(box[half]), float(box[half + 1])]


_TILEJSON_TYPES = {Kind.STRING: "String", Kind.NUMBER: "Number"}


def _layer(collection_id: str) -> dict[str, Any]:
    """The one layer of a vector tile (TMS 2.0 tileset ``layers``)."""
    schema: dict[str, Any] = {
        "id": {"type": "string"},
        "collection": {"type": "string"},
        "datetime": {"type": "string", "format": "date-time"},
    }
    for name, kind in FEATURE_PROPERTIES.items():
        schema[name] = {"type": "number" if kind is Kind.NUMBER else "string"}
    return {
        "id": collection_id,
        "title": "Item footprints",
        "dataType": "vector",
        "geometryDimension": 2,
        "featureType": "item",
        "propertiesSchema": {
            "type": "object",
            "required": ["id", "collection", "datetime"],
            "properties": schema,
        },
    }


def tileset_summary(
    collection: dict[str, Any],
    data_type: DataType,
    tms: TileMatrixSet,
    base: str,
    layer: Layer | None = None,
) -> dict[str, Any]:
    """A tileset as listed in /collections/{id}/tiles (20-057 /req/tilesets-list/tileset-links)."""
    collection_id, tms_id = collection["id"], str(tms.id)
    name = collection["content"].get("title") or collection_id
    what = "item footprints" if data_type == "vector" else "imagery"
    if layer is not None:
        what = "features"
    return {
        "title": f"{name}: {what} ({tms_id})",
        "dataType": data_type,
        "crs": str(tms.crs.root),
        "tileMatrixSetURI": tms.uri,
        "links": [
            _link(tileset_url(base, collection_id, data_type, tms_id), "self",
                  title=f"{data_type} tileset metadata"),
            _link(f"{base}tileMatrixSets/{tms_id}?compat=tms1", REL + "tiling-scheme",
                  title=f"{tms_id} definition"),
            *_tile_links(base, collection_id, data_type, tms_id),
        ],
    }  # fmt: skip


def _tile_links(base: str, collection_id: str, data_type: DataType, tms_id: str) -> list[Any]:
    """The templated ``item`` links of a tileset: MVT; or PNG, JPEG and the untyped default.

    Map tiles get one link per format, each with its ``type``:
    GDAL's OGCAPI driver follows only typed PNG or JPEG links.
    """
    template = tile_template(base, collection_id, data_type, tms_id)
    if data_type == "vector":
        return [_link(template, "item", MVT, templated=True, title="vector tiles")]
    return [
        _link(template + ".png", "item", "image/png", templated=True, title="map tiles (PNG)"),
        _link(template + ".jpg", "item", "image/jpeg", templated=True, title="map tiles (JPEG)"),
        _link(template, "item", None, templated=True, title="map tiles (PNG, the default)"),
    ]


def tileset_document(
    collection: dict[str, Any],
    data_type: DataType,
    tms: TileMatrixSet,
    base: str,
    coverage: Coverage | None = None,
    layer: Layer | None = None,
    query: str = "",
) -> dict[str, Any]:
    """Tileset metadata (TMS 2.0 tileSet.json), with TileJSON 3.0 members for WebMercatorQuad.

    With the ``coverage`` of the data, ``tileMatrixSetLimits`` say which tiles hold it. With
    the ``layer`` of a vector collection, its features and their properties; ``query`` (already
    URL-encoded) is added to the tile URLs (``properties``, ``filter``, ``datetime``).
    """
    collection_id = collection["id"]
    if layer is not None:
        return feature_tileset_document(collection, tms, base, layer, query)
    doc = tileset_summary(collection, data_type, tms, base)
    content = collection["content"]
    if content.get("description"):
        doc["description"] = content["description"]
    doc["links"].append(_link(collection_url(base, collection_id), "collection",
                              title="The collection"))  # fmt: skip
    doc["mediaTypes"] = [MVT] if data_type == "vector" else ["image/png", "image/jpeg"]
    if data_type == "vector":
        doc["layers"] = [_layer(collection_id)]
    extent = _extent(collection)
    if extent is not None:
        doc["boundingBox"] = {
            "lowerLeft": extent[:2],
            "upperRight": extent[2:],
            "crs": CRS84,
        }
    if coverage is not None:
        doc["tileMatrixSetLimits"] = tile_matrix_limits(tms, coverage)
    if tms.id == WEB_MERCATOR:
        doc.update(_tilejson(collection_id, data_type, tms, base, extent))
    return doc


def tile_matrix_limits(tms: TileMatrixSet, coverage: Coverage) -> list[dict[str, Any]]:
    """TMS 2.0 ``tileMatrixSetLimits``: the tile matrices of the data's zooms, whole.

    The zooms are the mosaic's (tiler/mosaic.py ``zoom_range``: from an item's full extent to
    the finest gsd), so clients do not zoom past the data. Each matrix is listed whole, not cut
    to the data's tiles: GDAL 3.6's OGCAPI driver reads no map tile from a tileset without
    limits, and reads the wrong tiles when limits start past column or row 0.
    """
    minzoom, maxzoom = zoom_range(tms, coverage)
    limits = []
    for z in range(minzoom, maxzoom + 1):
        matrix = tms.matrix(z)
        limits.append({"tileMatrix": str(matrix.id),
                       "minTileRow": 0, "maxTileRow": matrix.matrixHeight - 1,
                       "minTileCol": 0, "maxTileCol": matrix.matrixWidth - 1})  # fmt: skip
    return limits


def _tilejson(
    collection_id: str,
    data_type: DataType,
    tms: TileMatrixSet,
    base: str,
    extent: list[float] | None,
) -> dict[str, Any]:
    """TileJSON 3.0 members, so MapLibre can use the tileset URL as a source ``url``."""
    template = tile_template(base, collection_id, data_type, str(tms.id)).replace(
        TILE_TEMPLATE, XYZ_TEMPLATE
    )
    doc: dict[str, Any] = {
        "tilejson": "3.0.0",
        "tiles": [template],
        "minzoom": tms.minzoom,
        "maxzoom": tms.maxzoom,
    }
    if extent is not None:
        west, south, east, north = extent
        if west > east:  # across the antimeridian: TileJSON bounds cannot say so
            west, east = -180.0, 180.0
        doc["bounds"] = [west, max(south, -85.0511287798), east, min(north, 85.0511287798)]
    if data_type == "vector":
        fields = {"id": "String", "collection": "String", "datetime": "String"}
        fields |= {name: _TILEJSON_TYPES[kind] for name, kind in FEATURE_PROPERTIES.items()}
        doc["vector_layers"] = [{"id": collection_id, "description": "Item footprints",
                                 "fields": fields}]  # fmt: skip
    return doc


def _feature_layer(layer: Layer) -> dict[str, Any]:
    """The one layer of a vector collection's tiles (TMS 2.0 tileset ``layers``)."""
    schema = {p.name: p.type.json_schema for p in layer.properties}
    return {
        "id": layer.collection_id,
        "title": "Features",
        "dataType": "vector",
        "geometryDimension": _dimension(layer.geometry_type),
        "featureType": "feature",
        "propertiesSchema": {"type": "object", "properties": schema},
    }


def _dimension(geometry_type: str) -> int | None:
    kind = geometry_type.removeprefix("Multi").removesuffix("25D")
    return {"Point": 0, "LineString": 1, "Polygon": 2}.get(kind)


def feature_tileset_document(
    collection: dict[str, Any], tms: TileMatrixSet, base: str, layer: Layer, query: str = ""
) -> dict[str, Any]:
    """The vector tileset of a vector collection's features (TMS 2.0 + TileJSON 3.0 members)."""
    collection_id = collection["id"]
    suffix = f"?{query}" if query else ""
    doc = tileset_summary(collection, "vector", tms, base, layer)
    for link in doc["links"]:
        if link["rel"] == "item":
            link["href"] += suffix
    content = collection["content"]
    if content.get("description"):
        doc["description"] = content["description"]
    doc["links"].append(_link(collection_url(base, collection_id), "collection",
                              title="The collection"))  # fmt: skip
    doc["mediaTypes"] = [MVT]
    layer_doc = _feature_layer(layer)
    if layer_doc["geometryDimension"] is None:
        del layer_doc["geometryDimension"]
    doc["layers"] = [layer_doc]
    extent = list(layer.bbox) if layer.bbox is not None else _extent(collection)
    if extent is not None:
        doc["boundingBox"] = {"lowerLeft": extent[:2], "upperRight": extent[2:], "crs": CRS84}
    if tms.id == WEB_MERCATOR:
        doc.update(_tilejson(collection_id, "vector", tms, base, extent))
        doc["tiles"] = [doc["tiles"][0] + suffix]
        fields = {p.name: TILEJSON_TYPES[p.type] for p in layer.properties}
        doc["vector_layers"] = [{"id": collection_id, "description": "Features",
                                 "minzoom": tms.minzoom, "maxzoom": tms.maxzoom,
                                 "fields": fields}]  # fmt: skip
        if extent is not None:
            doc["center"] = [(doc["bounds"][0] + doc["bounds"][2]) / 2,
                             (doc["bounds"][1] + doc["bounds"][3]) / 2, tms.minzoom]  # fmt: skip
    return doc


# -- routes -------------------------------------------------------------------------------------
def _vector_tileset_endpoint(
    sets: TileMatrixSets, settings: TileSettings, limits: LimitSettings | None
) -> Callable[..., Any]:
    async def get_vector_tileset(
        request: Request,
        collection_id: CollectionID,
        tms_id: TileMatrixSetID,
        catalog: Catalog,
        properties: Properties = None,
        filter_: Filter = None,
        filter_lang: FilterLang = None,
        filter_crs: FilterCrs = None,
        datetime: Annotated[str | None, Query(description="Features of this time.")] = None,
    ) -> Response:
        """Metadata of the vector tileset of a collection in one TMS (TileJSON 3.0 as well for
        WebMercatorQuad); ``properties``, ``filter`` and ``datetime`` carry to its tiles."""
        tms = sets.get(tms_id)
        collection = await catalog.get_collection(collection_id)
        layer = await layer_cache(request, settings).get(collection_id)
        if layer is None:
            return json_response(tileset_document(collection, "vector", tms, base_url(request)))
        # 400 now, not per tile
        where(layer, feature_query(filter_, filter_lang, datetime, limits, filter_crs))
        chosen_properties(layer, properties)
        names = ("properties", "filter", "filter-lang", "filter-crs", "datetime")
        carried = [(k, v) for k, v in request.query_params.multi_items() if k in names]
        doc = tileset_document(collection, "vector", tms, base_url(request), layer=layer,
                               query=urlencode(carried))  # fmt: skip
        return json_response(doc)

    return get_vector_tileset


def _tms_endpoints(
    sets: TileMatrixSets, settings: TileSettings, limits: LimitSettings | None = None
) -> dict[str, Callable[..., Any]]:
    async def get_tile_matrix_sets(request: Request) -> Response:
        """The tile matrix sets offered here."""
        base = base_url(request)
        return json_response({
            "tileMatrixSets": [tms_summary(sets.get(i), base) for i in sets.ids()],
            "links": [_link(f"{base}tileMatrixSets", "self", title="Tile matrix sets")],
        })  # fmt: skip

    async def get_tile_matrix_set(tms_id: TileMatrixSetID, compat: Compat = None) -> Response:
        """One tile matrix set definition (OGC 2D TMS 2.0 JSON)."""
        return json_response(tms_definition(sets.get(tms_id), tms1_names=compat == "tms1"))

    async def get_collection_tilesets(
        request: Request, collection_id: CollectionID, catalog: Catalog
    ) -> Response:
        """The tilesets of a collection: features (vector collections), or footprints (vector)
        and imagery (map), per TMS."""
        collection = await catalog.get_collection(collection_id)
        layer = await layer_cache(request, settings).get(collection_id)
        kinds: tuple[DataType, ...] = ("vector",) if layer is not None else DATA_TYPES
        base = base_url(request)
        href = f"{collection_url(base, collection_id)}/tiles"
        return json_response({
            "links": [_link(href, "self", title="Tilesets"),
                      _link(collection_url(base, collection_id), "collection")],
            "tilesets": [tileset_summary(collection, kind, sets.get(i), base, layer)
                         for kind in kinds for i in sets.ids()],
        })  # fmt: skip

    def tileset_endpoint(data_type: DataType) -> Callable[..., Any]:
        async def get_tileset(
            request: Request, collection_id: CollectionID, tms_id: TileMatrixSetID, catalog: Catalog
        ) -> Response:
            tms = sets.get(tms_id)
            collection = await catalog.get_collection(collection_id)
            coverage = None
            if data_type == "map":  # the mosaic's extent and zooms (vector tiles go everywhere)
                cube = await CubeRepository(catalog.engine).get(collection_id)
                coverage = (
                    cube_coverage(cube)
                    if cube is not None  # a datacube's grid, not its items'
                    else await MosaicRepository(catalog).collection_coverage(collection_id)
                )
            doc = tileset_document(collection, data_type, tms, base_url(request), coverage)
            return json_response(doc)

        get_tileset.__doc__ = f"Metadata of the {data_type} tileset of a collection in one TMS."
        return get_tileset

    return {
        "tms_list": get_tile_matrix_sets,
        "tms": get_tile_matrix_set,
        "tilesets": get_collection_tilesets,
        "vector_tileset": _vector_tileset_endpoint(sets, settings, limits),
        "map_tileset": tileset_endpoint("map"),
    }


@attr.s
class TilesExtension(ApiExtension):
    """OGC API - Tiles metadata routes as a stac-fastapi extension (conformance via /conformance).

    The vector tiles themselves come from ``VectorTilesExtension`` (ogc/vector_tiles.py); the
    map tiles from the raster side.
    """

    settings: TileSettings = attr.ib(factory=TileSettings)
    limits: LimitSettings | None = attr.ib(default=None)
    conformance_classes: list[str] = attr.ib(factory=lambda: list(CONFORMANCE_CLASSES))
    router: APIRouter = attr.ib(factory=lambda: APIRouter(tags=["OGC API - Tiles"]))

    def register(self, app: FastAPI) -> None:
        """Add the routes to ``app``."""
        sets = TileMatrixSets(self.settings.tile_matrix_sets)
        endpoints = _tms_endpoints(sets, self.settings, self.limits)
        collection = "/collections/{collectionId}"
        routes = [
            ("/tileMatrixSets", "tms_list", "getTileMatrixSetsList", "List tile matrix sets"),
            ("/tileMatrixSets/{tileMatrixSetId}", "tms", "getTileMatrixSet",
             "Describe a tile matrix set"),
            (f"{collection}/tiles", "tilesets", "getCollectionTileSetsList",
             "List the tilesets of a collection"),
            (f"{collection}/items/tiles/{{tileMatrixSetId}}", "vector_tileset",
             "getCollectionVectorTileSet",
             "Describe a vector tileset of features or item footprints (and its TileJSON)"),
            (f"{collection}/tiles/{{tileMatrixSetId}}", "map_tileset",
             "getCollectionMapTileSet", "Describe a map tileset of a collection's imagery"),
        ]  # fmt: skip
        for path, key, operation_id, summary in routes:
            self.router.add_api_route(
                path, endpoints[key], methods=["GET"], operation_id=operation_id,
                summary=summary, response_class=Response,
            )  # fmt: skip
        app.include_router(self.router)
