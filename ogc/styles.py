"""Map styles of collections (OGC API - Styles, MapLibre style JSON version 8).

``/collections/{collectionId}/styles/default`` is the style a collection admin stored
(``PUT``), or else one generated from the collection:

- a vector collection: a vector source on its TileJSON (ogc/tiles.py, WebMercatorQuad) and
  fill + outline, line or circle layers by geometry type (all three, split by
  ``geometry-type``, for mixed layers);
- a raster collection: a raster source on its mosaic TileJSON (tiler/mosaic.py), under the
  layers of the vector collections that annotate it (those the caller may read).

``?color_by=<property>`` generates a style coloured by a property: categorized (strings and
booleans: a ``match``/``case`` on the most frequent values) or graduated (numbers: an
``interpolate`` over the layer's min..max). Its source asks for that property in tiles of every
zoom (``?properties=``). URLs are absolute; a client with a token adds it to requests to this
API itself (MapLibre's ``transformRequest``, as the viewer does): styles carry no secret.
"""

import math
import zlib
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import attr
from fastapi import APIRouter, FastAPI, Path, Query, Request
from stac_fastapi.types.extension import ApiExtension
from starlette.responses import Response

from catalog.accounts.web import readable_of
from catalog.errors import InvalidParameter, NotFound
from catalog.pictures.maps import PictureMapRepository
from catalog.vector.query import field
from catalog.vector.schema import Layer, PropertyType
from catalog.vector.styles import StyleRepository
from catalog.web import base_url, json_response, read_json

from .feature_tiles import layer_cache
from .pictures import picture_style_layers
from .settings import WEB_MERCATOR, TileSettings
from .style_schema import validate
from .tiles import Catalog, CollectionID, collection_url

STYLE_MEDIA = "application/vnd.mapbox.style+json"
CONF = "http://www.opengis.net/spec/ogcapi-styles-1/1.0/conf/"
CONFORMANCE_CLASSES = [CONF + "core", CONF + "manage-styles", CONF + "mapbox-styles"]
DEFAULT = "default"
COLOURS = ("#1f78b4", "#33a02c", "#e31a1c", "#ff7f00", "#6a3d9a", "#b15928", "#0f9d9a")
CATEGORY_COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
                    "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")  # fmt: skip
RAMP = ("#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026")
OTHER = "#888888"
POLYGONS = ("Polygon", "MultiPolygon")
LINES = ("LineString", "MultiLineString")
POINTS = ("Point", "MultiPoint")


class UnknownStyle(NotFound):
    """A style id the collection does not have."""

    code = "styles.UnknownStyle"


class InvalidColorBy(InvalidParameter):
    """``color_by`` names a property no generated style can colour by."""

    code = "styles.InvalidColorBy"


# -- generation -----------------------------------------------------------------------------------
def collection_colour(collection_id: str) -> str:
    """A colour of the collection's own (stable across requests and processes)."""
    return COLOURS[zlib.crc32(collection_id.encode()) % len(COLOURS)]


def categorized(name: str, kind: PropertyType, values: list[Any]) -> Any:
    """A colour per value (booleans: true, false), grey for any other."""
    get = ["get", name]
    if kind is PropertyType.BOOLEAN:
        return ["case", ["==", get, True], CATEGORY_COLOURS[0],
                ["==", get, False], CATEGORY_COLOURS[1], OTHER]  # fmt: skip
    if not values:
        return OTHER
    pairs: list[Any] = []
    for value, colour in zip(values, CATEGORY_COLOURS, strict=False):
        pairs += [value, colour]
    return ["match", ["to-string", get], *pairs, OTHER]


def graduated(name: str, low: float, high: float) -> Any:
    """A colour ramp from ``low`` to ``high``; grey where the value is missing."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return RAMP[-1]
    stops: list[Any] = []
    for i, colour in enumerate(RAMP):
        stops += [low + (high - low) * i / (len(RAMP) - 1), colour]
    ramp = ["interpolate", ["linear"], ["get", name], *stops]
    return ["case", ["==", ["typeof", ["get", name]], "number"], ramp, OTHER]


def feature_layers(source: str, source_layer: str, geometry_type: str, colour: Any) -> list[Any]:
    """Style layers drawing a vector source's features of ``geometry_type``."""
    kind = geometry_type.removesuffix("25D")
    common = {"source": source, "source-layer": source_layer}
    fill = {"id": f"{source}-fill", "type": "fill", **common,
            "paint": {"fill-color": colour, "fill-opacity": 0.5}}  # fmt: skip
    outline = {"id": f"{source}-outline", "type": "line", **common,
               "paint": {"line-color": colour, "line-width": 1}}  # fmt: skip
    line = {"id": f"{source}-line", "type": "line", **common,
            "paint": {"line-color": colour, "line-width": 2}}  # fmt: skip
    circle = {"id": f"{source}-circle", "type": "circle", **common,
              "paint": {"circle-color": colour, "circle-radius": 4,
                        "circle-stroke-color": "#ffffff", "circle-stroke-width": 1}}  # fmt: skip
    if kind in POLYGONS:
        return [fill, outline]
    if kind in LINES:
        return [line]
    if kind in POINTS:
        return [circle]

    def only(types: tuple[str, ...]) -> Any:
        return ["in", ["geometry-type"], ["literal", list(types)]]

    return [{**fill, "filter": only(POLYGONS)}, {**outline, "filter": only(POLYGONS)},
            {**line, "filter": only(LINES)}, {**circle, "filter": only(POINTS)}]  # fmt: skip


def _view(bbox: tuple[float, float, float, float] | None) -> dict[str, Any]:
    """``center`` and ``zoom`` showing ``bbox`` on a 512-pixel-wide map."""
    if bbox is None:
        return {"center": [0, 0], "zoom": 0}
    west, south, east, north = bbox
    if west > east:
        east += 360
    middle = (west + east) / 2
    middle = middle - 360 if middle > 180 else middle
    span = max(east - west, (north - south) * 1.5, 1e-6)
    zoom = max(0.0, min(18.0, math.log2(360 / span)))
    lat = max(-85.0, min(85.0, (south + north) / 2))
    return {"center": [round(middle, 6), round(lat, 6)], "zoom": round(zoom, 2)}


def vector_source(base: str, collection_id: str, properties: str | None) -> dict[str, Any]:
    """The vector source of a collection's features (its TileJSON)."""
    url = f"{collection_url(base, collection_id)}/items/tiles/{WEB_MERCATOR}"
    if properties is not None:
        url += "?" + urlencode({"properties": properties})
    return {"type": "vector", "url": url}


# -- the service ----------------------------------------------------------------------------------
@attr.s(frozen=True, auto_attribs=True)
class StyleService:
    """Builds the styles of one request's caller."""

    request: Request
    settings: TileSettings
    categories: int = 10

    @property
    def repository(self) -> StyleRepository:
        """The stored styles, on the app's database."""
        return StyleRepository(self.request.app.state.repository.engine)

    async def colour(self, layer: Layer, color_by: str | None) -> tuple[Any, dict[str, Any]]:
        """The colour expression of a layer's features, and its legend (metadata)."""
        if color_by is None:
            return collection_colour(layer.collection_id), {}
        field(layer, color_by)  # 400 for a name the layer lacks, listing its queryables
        prop = layer.prop(color_by)
        if prop is None:
            raise InvalidColorBy(f"color_by takes a property of {layer.collection_id!r}, "
                                 f"not {color_by!r}")  # fmt: skip
        if prop.type in (PropertyType.STRING, PropertyType.BOOLEAN):
            values = [] if prop.type is PropertyType.BOOLEAN else [
                str(v) for v in await self.repository.categories(layer, prop, self.categories)
            ]  # fmt: skip
            return categorized(color_by, prop.type, values), {
                "property": color_by, "kind": "categorized", "values": values,
            }  # fmt: skip
        if prop.type in (PropertyType.INTEGER, PropertyType.NUMBER):
            found = await self.repository.value_range(layer, prop)
            low, high = found or (0.0, 0.0)
            return graduated(color_by, low, high), {
                "property": color_by, "kind": "graduated", "range": [low, high],
            }  # fmt: skip
        raise InvalidColorBy(
            f"color_by needs a string, boolean or number property; {color_by!r} is {prop.type}"
        )

    async def generated(
        self, collection: dict[str, Any], color_by: str | None = None
    ) -> dict[str, Any]:
        """The style generated from the collection (see the module docstring)."""
        collection_id = collection["id"]
        base = base_url(self.request)
        cache = layer_cache(self.request, self.settings)
        layer = await cache.get(collection_id)
        name = collection["content"].get("title") or collection_id
        style: dict[str, Any] = {"version": 8, "name": name, "sources": {}, "layers": []}
        legends = []
        pictures = layer is None and await PictureMapRepository(
            self.request.app.state.repository.engine
        ).has_sequences(collection_id)
        if pictures:  # points of pictures and lines of their sequences, no raster mosaic
            drawn = picture_style_layers(base, collection_id, collection_colour(collection_id))
            style["sources"] |= drawn["sources"]
            style["layers"] += drawn["layers"]
            vectors, bbox = [], _bbox(collection)
        elif layer is None:
            url = f"{collection_url(base, collection_id)}/tiles/{WEB_MERCATOR}/tilejson.json"
            style["sources"][collection_id] = {"type": "raster", "url": url, "tileSize": 256}
            style["layers"].append({"id": f"{collection_id}-raster", "type": "raster",
                                    "source": collection_id})  # fmt: skip
            readable = await readable_of(self.request)
            vectors = [v for v in await cache.annotations(collection_id)
                       if readable.allows(v.collection_id)]  # fmt: skip
            if color_by is not None:
                vectors = [v for v in vectors if v.prop(color_by) is not None]
                if not vectors:
                    raise InvalidColorBy(f"no vector collection annotating {collection_id!r} "
                                         f"has a property {color_by!r}")  # fmt: skip
            bbox = _bbox(collection)
        else:
            vectors, bbox = [layer], layer.bbox or _bbox(collection)
        for vector in vectors:
            colour, legend = await self.colour(vector, color_by)
            style["sources"][vector.collection_id] = vector_source(base, vector.collection_id,
                                                                   color_by)  # fmt: skip
            style["layers"] += feature_layers(vector.collection_id, vector.collection_id,
                                              vector.geometry_type, colour)  # fmt: skip
            if legend:
                legends.append({"collection": vector.collection_id, **legend})
        style |= _view(bbox)
        style["metadata"] = {"terracat:collection": collection_id, "terracat:generated": True}
        if legends:
            style["metadata"]["terracat:legend"] = legends
        return style

    async def default(self, collection: dict[str, Any], color_by: str | None) -> dict[str, Any]:
        """The stored default style, or the generated one (always with ``color_by``)."""
        if color_by is None:
            stored = await self.repository.get(collection["id"], DEFAULT)
            if stored is not None:
                return stored
        return await self.generated(collection, color_by)


def _bbox(collection: dict[str, Any]) -> tuple[float, float, float, float] | None:
    try:
        box = collection["content"]["extent"]["spatial"]["bbox"][0]
        half = len(box) // 2
        return float(box[0]), float(box[1]), float(box[half]), float(box[half + 1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


# -- routes ---------------------------------------------------------------------------------------
StyleID = Annotated[str, Path(alias="styleId", description="A style id (`default`).")]
ColorBy = Annotated[
    str | None,
    Query(description="A property to colour features by: categorized (strings, booleans) or "
          "graduated (numbers)."),
]  # fmt: skip


def _check_id(style_id: str) -> None:
    if style_id != DEFAULT:
        raise UnknownStyle(f"no style {style_id[:64]!r}: collections have one style, 'default'")


def _endpoints(settings: TileSettings) -> dict[str, Callable[..., Any]]:
    async def get_styles(
        request: Request, collection_id: CollectionID, catalog: Catalog
    ) -> Response:
        """The styles of a collection (one: ``default``, stored or generated)."""
        await catalog.get_collection(collection_id)
        base = base_url(request)
        href = f"{collection_url(base, collection_id)}/styles"
        stored = DEFAULT in await StyleRepository(request.app.state.repository.engine).ids(
            collection_id
        )
        return json_response({
            "default": DEFAULT,
            "styles": [{
                "id": DEFAULT,
                "title": "Stored by the collection's admin" if stored else "Generated",
                "links": [{"href": f"{href}/{DEFAULT}", "rel": "stylesheet", "type": STYLE_MEDIA,
                           "title": "MapLibre style"}],
            }],
            "links": [{"href": href, "rel": "self", "type": "application/json"},
                      {"href": collection_url(base, collection_id), "rel": "collection",
                       "type": "application/json"}],
        })  # fmt: skip

    async def get_style(
        request: Request, collection_id: CollectionID, style_id: StyleID, catalog: Catalog,
        color_by: ColorBy = None,
    ) -> Response:  # fmt: skip
        """A MapLibre style of the collection (stored, or generated; ``color_by`` generates)."""
        collection = await catalog.get_collection(collection_id)  # 404 first, as unreadable
        _check_id(style_id)
        style = await StyleService(request, settings).default(collection, color_by)
        return json_response(style, media_type=STYLE_MEDIA)

    async def put_style(
        request: Request, collection_id: CollectionID, style_id: StyleID, catalog: Catalog
    ) -> Response:
        """Store a MapLibre style (version 8) in place of the generated one."""
        await catalog.get_collection(collection_id)
        _check_id(style_id)
        style = validate(await read_json(request))
        replaced = await StyleRepository(request.app.state.repository.engine).put(
            collection_id, style_id, style
        )
        location = f"{collection_url(base_url(request), collection_id)}/styles/{quote(style_id)}"
        return Response(status_code=204 if replaced else 201, headers={"Location": location})

    async def delete_style(
        request: Request, collection_id: CollectionID, style_id: StyleID, catalog: Catalog
    ) -> Response:
        """Drop the stored style: the generated one is served again."""
        await catalog.get_collection(collection_id)
        _check_id(style_id)
        repository = StyleRepository(request.app.state.repository.engine)
        if not await repository.delete(collection_id, style_id):
            raise UnknownStyle(f"{collection_id!r} has no stored style {style_id!r}")
        return Response(status_code=204)

    return {"list": get_styles, "get": get_style, "put": put_style, "delete": delete_style}


@attr.s
class StylesExtension(ApiExtension):
    """The style routes of collections as a stac-fastapi extension."""

    settings: TileSettings = attr.ib(factory=TileSettings)
    conformance_classes: list[str] = attr.ib(factory=lambda: list(CONFORMANCE_CLASSES))
    router: APIRouter = attr.ib(factory=lambda: APIRouter(tags=["OGC API - Styles"]))

    def register(self, app: FastAPI) -> None:
        """Add the routes to ``app``."""
        endpoints = _endpoints(self.settings)
        styles = "/collections/{collectionId}/styles"
        style = styles + "/{styleId}"
        routes = [
            (styles, "GET", "list", "getCollectionStyles", "List the styles of a collection"),
            (style, "GET", "get", "getCollectionStyle", "A MapLibre style of the collection"),
            (style, "PUT", "put", "putCollectionStyle", "Replace the collection's style"),
            (style, "DELETE", "delete", "deleteCollectionStyle",
             "Drop the stored style (the generated one comes back)"),
        ]  # fmt: skip
        for path, method, key, operation_id, summary in routes:
            self.router.add_api_route(
                path, endpoints[key], methods=[method], operation_id=operation_id,
                summary=summary, response_class=Response,
            )  # fmt: skip
        app.include_router(self.router)


__all__ = ["StyleService", "StylesExtension", "collection_colour", "feature_layers"]
