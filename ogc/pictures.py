"""Routes of pictures' maps: sequence lines (GeoJSON and vector tiles), the nearest pictures,
and the style layers that draw them (docs/api.md, Pictures).

Every route reads one collection in its path: the ``READ`` rule of server/policy.py has
answered 404 for a collection the caller may not read before the route runs.
"""

import json
import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from catalog.errors import InvalidParameter, NotFound
from catalog.pictures.maps import PictureMapRepository
from catalog.web import base_url, json_response
from tiler.factory import cache_control_for

from .settings import WEB_MERCATOR, TileSettings
from .tiles import MVT, CollectionID, TileMatrixSets, collection_url
from .vector_tiles import BUFFER, EXTENT, AcceptEncoding, Authorization, IfNoneMatch, _response

GEOJSON = "application/geo+json"
Z = Annotated[int, Path(description="Tile matrix (zoom level).")]
X = Annotated[int, Path(description="Tile column.")]
Y = Annotated[int, Path(description="Tile row.")]


def _maps(request: Request) -> PictureMapRepository:
    return PictureMapRepository(request.app.state.repository.engine, EXTENT, BUFFER)


def sequence_tiles_url(base: str, collection_id: str) -> str:
    """The tile URL template of a collection's sequence lines (MapLibre ``tiles``)."""
    return f"{collection_url(base, collection_id)}/sequences/tiles/{WEB_MERCATOR}/{{z}}/{{x}}/{{y}}"


def picture_style_layers(base: str, collection_id: str, colour: str) -> dict[str, Any]:
    """Sources and layers drawing a collection's sequences (lines) and pictures (points)."""
    points = {"type": "vector", "url": f"{collection_url(base, collection_id)}/items/tiles/"
              f"{WEB_MERCATOR}"}  # fmt: skip
    lines = {"type": "vector", "tiles": [sequence_tiles_url(base, collection_id)],
             "minzoom": 0, "maxzoom": 22}  # fmt: skip
    layers = [
        {"id": f"{collection_id}-sequences", "type": "line", "source": f"{collection_id}-sequences",
         "source-layer": "sequences", "paint": {"line-color": colour, "line-width": 3,
                                                "line-opacity": 0.8}},
        {"id": f"{collection_id}-pictures", "type": "circle", "source": f"{collection_id}-pictures",
         "source-layer": collection_id, "minzoom": 14,
         "paint": {"circle-color": colour, "circle-radius": 5,
                   "circle-stroke-color": "#ffffff", "circle-stroke-width": 1.5}},
    ]  # fmt: skip
    sources = {f"{collection_id}-sequences": lines, f"{collection_id}-pictures": points}
    return {"sources": sources, "layers": layers}


def _sequence_feature(base: str, row: dict[str, Any]) -> dict[str, Any]:
    items = f"{collection_url(base, row['collection_id'])}/items/"
    return {
        "type": "Feature",
        "id": str(row["id"]),
        "geometry": json.loads(row["geojson"]),
        "properties": {
            "collection": row["collection_id"],
            "start_datetime": row["start_datetime"].isoformat(),
            "end_datetime": row["end_datetime"].isoformat(),
            "picture_count": row["picture_count"],
            "items": row["item_ids"],
        },
        "links": [
            {"rel": "self", "type": GEOJSON,
             "href": f"{collection_url(base, row['collection_id'])}/sequences/{row['id']}"},
            {"rel": "first", "type": GEOJSON, "href": items + quote(row["item_ids"][0], safe="")},
        ],
    }  # fmt: skip


def _sequences_endpoint() -> Any:
    async def get_sequences(
        request: Request,
        collection_id: CollectionID,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        """The collection's sequences (newest first) as GeoJSON lines."""
        rows = await _maps(request).sequences(collection_id, limit)
        base = base_url(request)
        doc = {"type": "FeatureCollection",
               "features": [_sequence_feature(base, r) for r in rows]}  # fmt: skip
        return json_response(doc, media_type=GEOJSON)

    return get_sequences


def _sequence_endpoint() -> Any:
    async def get_sequence(
        request: Request,
        collection_id: CollectionID,
        sequence_id: Annotated[str, Path(alias="sequenceId", description="A sequence id.")],
    ) -> Response:
        """One sequence of the collection as a GeoJSON line."""
        maps = _maps(request)
        await maps.check(collection_id)
        found = []
        try:
            found = await maps.sequences(collection_id, 1, uuid.UUID(sequence_id))
        except ValueError:
            pass
        if not found:
            raise NotFound(f"sequence {sequence_id[:64]!r} is not one of {collection_id!r}")
        return json_response(_sequence_feature(base_url(request), found[0]), media_type=GEOJSON)

    return get_sequence


def _tile_endpoint(settings: TileSettings) -> Any:
    sets = TileMatrixSets([WEB_MERCATOR])

    async def get_sequence_tile(
        request: Request,
        collection_id: CollectionID,
        z: Z,
        x: X,
        y: Y,
        accept_encoding: AcceptEncoding = None,
        if_none_match: IfNoneMatch = None,
        authorization: Authorization = None,
    ) -> Response:
        """A Web Mercator vector tile of the collection's sequence lines (layer ``sequences``)."""
        sets.bounds(WEB_MERCATOR, z, x, y)  # tiles.InvalidTile outside the matrix
        tile = await _maps(request).sequence_tile(collection_id, z, x, y, settings.max_features,
                                                  settings.simplify)  # fmt: skip
        cache_control = cache_control_for(settings.cache_control, authorization is not None)
        return _response(tile, settings.max_features, settings, accept_encoding, if_none_match,
                         cache_control)  # fmt: skip

    return get_sequence_tile


def _position(lon: float | None, lat: float | None) -> tuple[float, float]:
    """``lon`` and ``lat``, both given and in range (checked after the collection, so that a
    collection the caller may not read answers as a missing one, whatever the query)."""
    if lon is None or lat is None:
        raise InvalidParameter("lon and lat are required")
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InvalidParameter(f"lon {lon}, lat {lat}: out of range")
    return lon, lat


def _nearest_endpoint() -> Any:
    async def get_nearest(
        request: Request,
        collection_id: CollectionID,
        lon: Annotated[float | None, Query(description="Longitude (required).")] = None,
        lat: Annotated[float | None, Query(description="Latitude (required).")] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
        max_distance: Annotated[float | None, Query(gt=0, le=1e6)] = None,
    ) -> Response:
        """The collection's pictures nearest a point, nearest first, with distances (m)."""
        maps = _maps(request)
        await maps.check(collection_id)
        rows = await maps.nearest(collection_id, *_position(lon, lat), limit, max_distance)
        items = f"{collection_url(base_url(request), collection_id)}/items/"
        features = [{
            "type": "Feature", "id": r["id"],
            "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
            "properties": {"distance": round(r["distance"], 3),
                           "datetime": r["datetime"].isoformat(),
                           "view:azimuth": r["azimuth"], "terracat:sequence": r["sequence"]},
            "links": [{"rel": "item", "type": GEOJSON, "href": items + quote(r["id"], safe="")}],
        } for r in rows]  # fmt: skip
        return json_response({"type": "FeatureCollection", "features": features},
                             media_type=GEOJSON)  # fmt: skip

    return get_nearest


def pictures_router(settings: TileSettings) -> APIRouter:
    """The sequence and nearest-picture routes."""
    router = APIRouter(tags=["Pictures"])
    collection = "/collections/{collectionId}"
    router.add_api_route(f"{collection}/sequences", _sequences_endpoint(), methods=["GET"],
                         operation_id="getCollectionSequences", response_class=Response,
                         summary="Sequences of pictures, as GeoJSON lines")  # fmt: skip
    router.add_api_route(f"{collection}/sequences/{{sequenceId}}", _sequence_endpoint(),
                         methods=["GET"], operation_id="getCollectionSequence",
                         response_class=Response, summary="One sequence")  # fmt: skip
    router.add_api_route(
        f"{collection}/sequences/tiles/{WEB_MERCATOR}/{{z}}/{{x}}/{{y}}",
        _tile_endpoint(settings),
        methods=["GET"], operation_id="getCollectionSequenceTile", response_class=Response,
        summary="A vector tile of sequence lines",
        responses={200: {"content": {MVT: {}}, "description": "A Mapbox Vector Tile"},
                   204: {"description": "No sequence in this tile"},
                   304: {"description": "`If-None-Match` holds the tile's `ETag`"}},
    )  # fmt: skip
    router.add_api_route(f"{collection}/pictures/nearest", _nearest_endpoint(), methods=["GET"],
                         operation_id="getNearestPictures", response_class=Response,
                         summary="The pictures nearest a point")  # fmt: skip
    return router
