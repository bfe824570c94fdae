"""STAC documents <-> database rows. Incoming documents are checked here before any write."""

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import shapely
import shapely.geometry

from catalog.errors import InvalidBBox, InvalidDatetime, InvalidGeometry, InvalidStac
from catalog.geometry import (
    bbox_shape,
    beyond_antimeridian,
    fix_shape,
    normalize_bbox,
    parse_geojson,
    shape_bbox,
)
from catalog.stac.validation import check_extensions
from catalog.timeparse import parse_instant

if TYPE_CHECKING:
    from catalog.stac.assets import AssetLinks

STAC_VERSION = "1.1.0"
GENERATED_RELS = frozenset({"self", "root", "parent", "collection", "items", "queryables",
                            "http://www.opengis.net/def/rel/ogc/1.0/queryables"})  # fmt: skip
QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
_NORMALISED = (
    "longitudes beyond +-180 wrapped: geometry split at the antimeridian, bbox west > east"
)
_ID = re.compile(r"^[^/\\\x00-\x1f\x7f]{1,256}$")


def check_id(value: Any, what: str = "id") -> str:
    """A usable STAC id: 1-256 characters, no slash, backslash or control character."""
    if not isinstance(value, str) or not _ID.match(value) or value in (".", ".."):
        raise InvalidStac(
            f"{what} must be 1-256 characters without '/', '\\' or control characters: {value!r}"
        )
    return value


def _links(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(link, dict)
        and isinstance(link.get("href"), str)
        and isinstance(link.get("rel"), str)
        for link in value
    ):
        raise InvalidStac("links must be a list of objects with string href and rel")
    return [link for link in value if link["rel"] not in GENERATED_RELS]


# -- items -------------------------------------------------------------------------------------
def item_row(
    item: Mapping[str, Any],
    collection_id: str,
    validate_extensions: bool = True,
    plain: tuple[shapely.Geometry, list[float]] | None = None,
) -> dict[str, Any]:
    """Check a STAC item and split it into the columns of ``items`` (and ``shape``, its
    geometry as shapely). ``plain``: its geometry already read and checked, with its bounds
    (``catalog.geometry.plain_polygons``)."""
    if not isinstance(item, Mapping):
        raise InvalidStac("an item must be a JSON object")
    if item.get("type") != "Feature":
        raise InvalidStac("item type must be 'Feature'")
    item_id = check_id(item.get("id"), "item id")
    if item.get("collection") not in (None, collection_id):
        raise InvalidStac(
            f"item {item_id!r} names collection {item.get('collection')!r}, "
            f"but is written to {collection_id!r}"
        )
    properties = item.get("properties")
    if not isinstance(properties, dict):
        raise InvalidStac(f"item {item_id!r}: properties must be an object")
    start, end = _item_span(item_id, properties)
    if validate_extensions:
        check_extensions(item, f"item {item_id!r}")
    content = {k: v for k, v in item.items() if k not in ("id", "collection", "properties")}
    content["type"] = "Feature"
    content.setdefault("stac_version", STAC_VERSION)
    if not isinstance(content.get("stac_extensions", []), list):
        raise InvalidStac(f"item {item_id!r}: stac_extensions must be a list")
    if not isinstance(content.setdefault("assets", {}), dict):
        raise InvalidStac(f"item {item_id!r}: assets must be an object")
    content["links"] = _links(item.get("links"))
    shape, normalised = _item_geometry(item_id, item, content, plain)
    return {
        "id": item_id,
        "geometry": content["geometry"],
        "datetime": start,
        "end_datetime": end,
        "properties": properties,
        "content": content,
        "normalised": normalised,
        "shape": shape,
    }


def _item_geometry(
    item_id: str,
    item: Mapping[str, Any],
    content: dict[str, Any],
    plain: tuple[shapely.Geometry, list[float]] | None,
) -> tuple[shapely.Geometry | None, str | None]:
    """Check the item's geometry and bbox into ``content`` (fixed, normalised); its shape and
    whether it was normalised."""
    geometry = item.get("geometry")
    normalised: str | None = None
    shape: shapely.Geometry | None = None
    if geometry is None:
        content["geometry"] = None
        if item.get("bbox") is not None:
            raise InvalidStac(f"item {item_id!r}: bbox must be absent when geometry is null")
    elif plain is not None:
        shape, bounds = plain
        given = item.get("bbox")
        content["bbox"], wrapped = (
            (bounds, False) if given is None else _bbox(item_id, given, shape)
        )
        normalised = _NORMALISED if wrapped else None
    else:
        try:
            raw = parse_geojson(geometry)
        except InvalidGeometry as exc:
            raise InvalidStac(f"item {item_id!r}: {exc.description}") from exc
        wrapped = beyond_antimeridian(raw)
        try:
            shape = fix_shape(raw)
        except InvalidGeometry as exc:
            raise InvalidStac(f"item {item_id!r}: {exc.description}") from exc
        if shape is not raw:
            content["geometry"] = shapely.geometry.mapping(shape)
        content["bbox"], bbox_wrapped = _bbox(item_id, item.get("bbox"), shape)
        if wrapped or bbox_wrapped:
            normalised = _NORMALISED
    return shape, normalised


def _item_span(item_id: str, properties: Mapping[str, Any]) -> tuple[datetime, datetime]:
    def instant(name: str) -> datetime | None:
        value = properties.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidStac(f"item {item_id!r}: {name} must be an RFC 3339 string")
        try:
            return parse_instant(value)
        except InvalidDatetime as exc:
            raise InvalidStac(f"item {item_id!r}: {name}: {exc.description}") from exc

    if "datetime" not in properties:
        raise InvalidStac(f"item {item_id!r}: properties.datetime is required (may be null)")
    moment, start, end = instant("datetime"), instant("start_datetime"), instant("end_datetime")
    first = start if start is not None else moment
    last = end if end is not None else moment
    if first is None or last is None:  # datetime null and a bound missing
        raise InvalidStac(
            f"item {item_id!r}: datetime is null, so start_datetime and end_datetime are required"
        )
    if start is not None and end is not None and start > end:
        raise InvalidStac(f"item {item_id!r}: start_datetime is after end_datetime")
    return first, last


def _bbox(item_id: str, given: Any, shape: shapely.Geometry) -> tuple[list[float], bool]:
    """The item's bbox, and whether it was replaced because its longitudes went beyond +-180
    (it is then the bbox of the normalised geometry, 2D)."""
    if given is None:
        return shape_bbox(shape), False
    if not isinstance(given, list):
        raise InvalidStac(f"item {item_id!r}: bbox must be an array of 4 or 6 numbers")
    if len(given) in (4, 6) and all(isinstance(v, int | float) for v in given):
        half = len(given) // 2
        if max(abs(given[0]), abs(given[half])) > 180:
            return shape_bbox(shape), True
    try:
        normalize_bbox(given)
    except InvalidBBox as exc:
        raise InvalidStac(f"item {item_id!r}: {exc.description}") from exc
    return given, False


def item_document(
    row: Mapping[str, Any], base_url: str, *, assets: "AssetLinks | None"
) -> dict[str, Any]:
    """The STAC item for a row of ``items`` (id, collection_id, properties, content).

    ``assets``: how stored assets (``storage:`` hrefs) appear, as URLs of their download
    route (catalog/stac/assets.py). None keeps the stored hrefs: for the server's own
    renderers only, never for a response.
    """
    content = row["content"]
    collection_id, item_id = row["collection_id"], row["id"]
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": content.get("stac_version", STAC_VERSION),
        "stac_extensions": content.get("stac_extensions", []),
        "id": item_id,
        "collection": collection_id,
        "geometry": content.get("geometry"),
    }
    if content.get("bbox") is not None:
        item["bbox"] = content["bbox"]
    item["properties"] = row["properties"]
    collection_url = f"{base_url}collections/{quote(collection_id, safe='')}"
    item["links"] = [
        {"rel": "self", "type": "application/geo+json",
         "href": f"{collection_url}/items/{quote(item_id, safe='')}"},
        {"rel": "parent", "type": "application/json", "href": collection_url},
        {"rel": "collection", "type": "application/json", "href": collection_url},
        {"rel": "root", "type": "application/json", "href": base_url},
        *content.get("links", []),
    ]  # fmt: skip
    # A picture's neighbours in its sequence (catalog/pictures): links made here, from the
    # request's base URL, like the rest.
    for rel, key in (("prev", "terracat:sequence_prev"), ("next", "terracat:sequence_next")):
        if isinstance(neighbour := row["properties"].get(key), str):
            href = f"{collection_url}/items/{quote(neighbour, safe='')}"
            item["links"].append({"rel": rel, "type": "application/geo+json", "href": href})
    stored = content.get("assets", {})
    item["assets"] = (
        assets.rewrite(collection_id, item_id, stored)
        if assets is not None and isinstance(stored, dict)
        else stored
    )
    for key, value in content.items():
        if key not in item and key not in ("links", "bbox"):
            item[key] = value
    return item


# -- collections -------------------------------------------------------------------------------
def collection_row(
    collection: Mapping[str, Any], validate_extensions: bool = True
) -> dict[str, Any]:
    """Check a STAC collection and derive the searchable columns of ``collections``."""
    if not isinstance(collection, Mapping):
        raise InvalidStac("a collection must be a JSON object")
    if collection.get("type", "Collection") != "Collection":
        raise InvalidStac("collection type must be 'Collection'")
    collection_id = check_id(collection.get("id"), "collection id")
    if validate_extensions:
        check_extensions(collection, f"collection {collection_id!r}")
    content = {k: v for k, v in collection.items() if k != "id"}
    content["type"] = "Collection"
    content.setdefault("stac_version", STAC_VERSION)
    content.setdefault("description", "")
    content.setdefault("license", "other")
    content["links"] = _links(collection.get("links"))
    extent = content.setdefault(
        "extent", {"spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
                   "temporal": {"interval": [[None, None]]}}
    )  # fmt: skip
    spatial, start, end = _extent(collection_id, extent)
    keywords = content.get("keywords") or []
    if not isinstance(keywords, list):
        raise InvalidStac(f"collection {collection_id!r}: keywords must be a list")
    text_parts = [collection_id, content.get("title") or "", content.get("description") or ""]
    text_parts += [str(k) for k in keywords]
    return {
        "id": collection_id,
        "content": content,
        "search_text": " ".join(p for p in text_parts if isinstance(p, str)),
        "spatial": spatial,
        "start_datetime": start,
        "end_datetime": end,
    }


def _extent(
    collection_id: str, extent: Any
) -> tuple[shapely.Geometry | None, datetime | None, datetime | None]:
    try:
        bboxes = extent["spatial"]["bbox"]
        intervals = extent["temporal"]["interval"]
    except (KeyError, TypeError):  # not objects, or members missing
        bboxes = intervals = None
    if not isinstance(bboxes, list) or not isinstance(intervals, list):
        raise InvalidStac(
            f"collection {collection_id!r}: extent needs spatial.bbox and temporal.interval lists"
        )
    try:
        shapes = [bbox_shape(b) for b in bboxes[:1]] if bboxes else []
    except InvalidBBox as exc:
        raise InvalidStac(f"collection {collection_id!r}: extent: {exc.description}") from exc
    start = end = None
    if intervals and isinstance(intervals[0], list) and len(intervals[0]) == 2:
        try:
            start = parse_instant(intervals[0][0]) if intervals[0][0] else None
            end = parse_instant(intervals[0][1]) if intervals[0][1] else None
        except InvalidDatetime as exc:
            raise InvalidStac(f"collection {collection_id!r}: extent: {exc.description}") from exc
    else:
        raise InvalidStac(f"collection {collection_id!r}: temporal interval must be [start, end]")
    return (shapes[0] if shapes else None), start, end


def collection_document(row: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """The STAC collection for a row of ``collections`` (id, content)."""
    content = row["content"]
    collection_id = row["id"]
    url = f"{base_url}collections/{quote(collection_id, safe='')}"
    doc: dict[str, Any] = {
        "type": "Collection",
        "stac_version": content.get("stac_version", STAC_VERSION),
        "stac_extensions": content.get("stac_extensions", []),
        "id": collection_id,
    }
    for key, value in content.items():
        if key not in doc and key != "links":
            doc[key] = value
    doc["links"] = [
        {"rel": "self", "type": "application/json", "href": url},
        {"rel": "parent", "type": "application/json", "href": base_url},
        {"rel": "root", "type": "application/json", "href": base_url},
        {"rel": "items", "type": "application/geo+json", "href": f"{url}/items"},
        {"rel": QUERYABLES_REL, "type": "application/schema+json", "href": f"{url}/queryables"},
        *content.get("links", []),
    ]
    return doc


def summaries_kinds(summaries: Any) -> Iterable[tuple[str, Any]]:
    """(name, example value) pairs from collection summaries, to type queryables."""
    if not isinstance(summaries, dict):
        return []
    pairs: list[tuple[str, Any]] = []
    for name, summary in summaries.items():
        if isinstance(summary, list) and summary:
            pairs.append((name, summary[0]))
        elif isinstance(summary, dict) and "minimum" in summary:
            pairs.append((name, summary["minimum"]))
    return pairs
