"""Links from STAC items and collections to their maps: ``tilejson``, ``xyz`` and ``wmts``.

The rels and members are those of the STAC web-map-links extension, which STAC clients (STAC
Browser among them) and titiler-pgstac use: ``tilejson`` (TileJSON, ``application/json``),
``xyz`` (a ``{z}/{x}/{y}`` tile template, typed with the tiles' media type) and ``wmts`` (the
WMTS capabilities, typed with the tiles' media type, with ``wmts:layer``). All are in
``WebMercatorQuad`` PNG, absolute, from the proxy-aware base URL.

Only documents the tiler can draw get them: an item with an asset whose media type is in
``readers.kinds.ASSET_READERS``, a collection with such an asset among its newest items
(catalog/maps/mosaic.py ``collections_with_rasters``). An item whose readable assets are
neither ``data`` nor of role ``data`` (what the tiler draws by default) links its first one
with ``assets=``. Links of these rels stored with a document (another tiler's) are replaced.
The hooks plug into the STAC client (catalog/stac/client.py ``DocumentLinks``).
"""

from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request

from catalog.maps.mosaic import MosaicRepository
from catalog.web import base_url

from .readers.kinds import ASSET_READERS
from .readers.stac import default_assets, raster_assets

TMS = "WebMercatorQuad"
PNG = "image/png"
JSON = "application/json"
RELS = frozenset({"tilejson", "xyz", "wmts"})


def _with(href: str, query: dict[str, str]) -> str:
    return href + ("?" + urlencode(query) if query else "")


def item_map_links(item: dict[str, Any], base: str) -> list[dict[str, Any]]:
    """The map links of an item (none if the tiler reads none of its assets)."""
    assets = raster_assets(item) if isinstance(item.get("assets"), dict) else []
    if not assets:
        return []
    collection_id, item_id = str(item["collection"]), str(item["id"])
    url = f"{base}collections/{quote(collection_id, safe='')}/items/{quote(item_id, safe='')}"
    query = {} if default_assets(item) else {"assets": assets[0]}
    return [
        {"rel": "tilejson", "type": JSON, "title": "TileJSON of the item's map",
         "href": _with(f"{url}/{TMS}/tilejson.json", {"tile_format": "png", **query})},
        {"rel": "xyz", "type": PNG, "title": "Map tiles of the item",
         "href": _with(f"{url}/tiles/{TMS}/{{z}}/{{x}}/{{y}}.png", query)},
        {"rel": "wmts", "type": PNG, "title": "WMTS of the item's map",
         "href": _with(f"{url}/WMTSCapabilities.xml", query),
         "wmts:layer": f"{collection_id}.{item_id}_{TMS}_default"},
    ]  # fmt: skip


def collection_map_links(collection_id: str, base: str) -> list[dict[str, Any]]:
    """The map links of a collection's mosaic."""
    collection_url = f"{base}collections/{quote(collection_id, safe='')}"
    url = f"{collection_url}/tiles"
    return [
        {"rel": "tilejson", "type": JSON, "title": "TileJSON of the collection's mosaic",
         "href": f"{url}/{TMS}/tilejson.json?tile_format=png"},
        {"rel": "xyz", "type": PNG, "title": "Map tiles of the collection's mosaic",
         "href": f"{url}/{TMS}/{{z}}/{{x}}/{{y}}.png"},
        {"rel": "wmts", "type": PNG, "title": "WMTS of the collection's mosaic",
         "href": f"{collection_url}/WMTSCapabilities.xml",
         "wmts:layer": f"{collection_id}_{TMS}_default"},
    ]  # fmt: skip


def _relinked(document: dict[str, Any], links: list[dict[str, Any]]) -> None:
    kept = [link for link in document.get("links", []) if link.get("rel") not in RELS]
    document["links"] = kept + links


async def add_item_map_links(request: Request, items: list[dict[str, Any]]) -> None:
    """Hook: the map links of each item."""
    base = base_url(request)
    for item in items:
        links = item_map_links(item, base)
        if links:
            _relinked(item, links)


async def add_collection_map_links(request: Request, collections: list[dict[str, Any]]) -> None:
    """Hook: the map links of each collection with an asset the tiler reads."""
    if not collections:
        return
    mosaics = MosaicRepository(request.app.state.repository)
    drawn = await mosaics.collections_with_rasters([c["id"] for c in collections], ASSET_READERS)
    base = base_url(request)
    for collection in collections:
        if collection["id"] in drawn:
            _relinked(collection, collection_map_links(collection["id"], base))
