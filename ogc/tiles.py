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
from urllib.parse import quote

import attr
import morecantile
from fastapi import APIRouter, Depends, FastAPI, Path, Request
from morecantile import TileMatrixSet
from stac_fastapi.types.extension import ApiExtension
from starlette.responses import Response

from catalog.errors import CatalogError, NotFound
from catalog.maps.tiles import FEATURE_PROPERTIES, TileBounds
from catalog.stac.queryables import Kind
from catalog.stac.repository import CatalogRepository
from catalog.web import base_url, json_response

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
    collection: dict[str, Any], data_type: DataType, tms: TileMatrixSet, base: str
) -> dict[str, Any]:
    """A tileset as listed in /collections/{id}/tiles (20-057 /req/tilesets-list/tileset-links)."""
    collection_id, tms_id = collection["id"], str(tms.id)
    name = collection["content"].get("title") or collection_id
    what = "item footprints" if data_type == "vector" else "imagery"
    media = MVT if data_type == "vector" else None
    return {
        "title": f"{name}: {what} ({tms_id})",
        "dataType": data_type,
        "crs": str(tms.crs.root),
        "tileMatrixSetURI": tms.uri,
        "links": [
            _link(tileset_url(base, collection_id, data_type, tms_id), "self",
                  title=f"{data_type} tileset metadata"),
            _link(f"{base}tileMatrixSets/{tms_id}", REL + "tiling-scheme",
                  title=f"{tms_id} definition"),
            _link(tile_template(base, collection_id, data_type, tms_id), "item", media,
                  templated=True, title=f"{data_type} tiles"),
        ],
    }  # fmt: skip


def tileset_document(
    collection: dict[str, Any], data_type: DataType, tms: TileMatrixSet, base: str
) -> dict[str, Any]:
    """Tileset metadata (TMS 2.0 tileSet.json), with TileJSON 3.0 members for WebMercatorQuad."""
    collection_id = collection["id"]
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
    if tms.id == WEB_MERCATOR:
        doc.update(_tilejson(collection_id, data_type, tms, base, extent))
    return doc


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


# -- routes -------------------------------------------------------------------------------------
def _tms_endpoints(sets: TileMatrixSets) -> dict[str, Callable[..., Any]]:
    async def get_tile_matrix_sets(request: Request) -> Response:
        """The tile matrix sets offered here."""
        base = base_url(request)
        return json_response({
            "tileMatrixSets": [tms_summary(sets.get(i), base) for i in sets.ids()],
            "links": [_link(f"{base}tileMatrixSets", "self", title="Tile matrix sets")],
        })  # fmt: skip

    async def get_tile_matrix_set(tms_id: TileMatrixSetID) -> Response:
        """One tile matrix set definition (OGC 2D TMS 2.0 JSON)."""
        return json_response(sets.get(tms_id).model_dump(exclude_none=True, mode="json"))

    async def get_collection_tilesets(
        request: Request, collection_id: CollectionID, catalog: Catalog
    ) -> Response:
        """The tilesets of a collection: footprints (vector) and imagery (map), per TMS."""
        collection = await catalog.get_collection(collection_id)
        base = base_url(request)
        href = f"{collection_url(base, collection_id)}/tiles"
        return json_response({
            "links": [_link(href, "self", title="Tilesets"),
                      _link(collection_url(base, collection_id), "collection")],
            "tilesets": [tileset_summary(collection, kind, sets.get(i), base)
                         for kind in DATA_TYPES for i in sets.ids()],
        })  # fmt: skip

    def tileset_endpoint(data_type: DataType) -> Callable[..., Any]:
        async def get_tileset(
            request: Request, collection_id: CollectionID, tms_id: TileMatrixSetID, catalog: Catalog
        ) -> Response:
            tms = sets.get(tms_id)
            collection = await catalog.get_collection(collection_id)
            return json_response(tileset_document(collection, data_type, tms, base_url(request)))

        get_tileset.__doc__ = f"Metadata of the {data_type} tileset of a collection in one TMS."
        return get_tileset

    return {
        "tms_list": get_tile_matrix_sets,
        "tms": get_tile_matrix_set,
        "tilesets": get_collection_tilesets,
        "vector_tileset": tileset_endpoint("vector"),
        "map_tileset": tileset_endpoint("map"),
    }


@attr.s
class TilesExtension(ApiExtension):
    """OGC API - Tiles metadata routes as a stac-fastapi extension (conformance via /conformance).

    The vector tiles themselves come from ``VectorTilesExtension`` (ogc/vector_tiles.py); the
    map tiles from the raster side.
    """

    settings: TileSettings = attr.ib(factory=TileSettings)
    conformance_classes: list[str] = attr.ib(factory=lambda: list(CONFORMANCE_CLASSES))
    router: APIRouter = attr.ib(factory=lambda: APIRouter(tags=["OGC API - Tiles"]))

    def register(self, app: FastAPI) -> None:
        """Add the routes to ``app``."""
        endpoints = _tms_endpoints(TileMatrixSets(self.settings.tile_matrix_sets))
        collection = "/collections/{collectionId}"
        routes = [
            ("/tileMatrixSets", "tms_list", "getTileMatrixSetsList", "List tile matrix sets"),
            ("/tileMatrixSets/{tileMatrixSetId}", "tms", "getTileMatrixSet",
             "Describe a tile matrix set"),
            (f"{collection}/tiles", "tilesets", "getCollectionTileSetsList",
             "List the tilesets of a collection"),
            (f"{collection}/items/tiles/{{tileMatrixSetId}}", "vector_tileset",
             "getCollectionVectorTileSet", "Describe a vector tileset of item footprints"),
            (f"{collection}/tiles/{{tileMatrixSetId}}", "map_tileset",
             "getCollectionMapTileSet", "Describe a map tileset of a collection's imagery"),
        ]  # fmt: skip
        for path, key, operation_id, summary in routes:
            self.router.add_api_route(
                path, endpoints[key], methods=["GET"], operation_id=operation_id,
                summary=summary, response_class=Response,
            )  # fmt: skip
        app.include_router(self.router)
