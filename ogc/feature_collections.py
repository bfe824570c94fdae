"""What vector and hybrid collections add to their collection documents.

A vector collection's document stays a STAC Collection (the same serializer makes it) and
becomes an OGC API - Features one: ``itemType: feature``, ``terracat:kind: vector``, its
layer's extent, the CRS it serves (Part 2 ``crs`` and ``storageCrs``). A raster collection that
vector collections annotate links each one's features (``rel: related``), and each of those
links back: a hybrid is two listed collections (docs/api.md, One /collections namespace).
"""

from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import Request

from catalog import web
from catalog.vector.crs import CRS84, crs_list
from catalog.vector.repository import VectorRepository
from catalog.vector.schema import Layer

KIND = "terracat:kind"
GEOJSON = "application/geo+json"
SORTABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/sortables"


def _stamp(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _vector(doc: dict[str, Any], layer: Layer, collection_url: str) -> None:
    doc["itemType"] = "feature"
    doc[KIND] = "vector"
    extent = dict(doc.get("extent") or {})
    if layer.bbox is not None:
        extent["spatial"] = {"bbox": [list(layer.bbox)]}
    if layer.interval != (None, None):
        extent["temporal"] = {"interval": [[_stamp(t) for t in layer.interval]]}
    extent.setdefault("spatial", {"bbox": [[-180.0, -90.0, 180.0, 90.0]]})
    extent.setdefault("temporal", {"interval": [[None, None]]})
    doc["extent"] = extent
    doc["crs"] = crs_list(layer.bbox)
    doc["storageCrs"] = CRS84
    links = doc.setdefault("links", [])
    links.append(
        {"rel": SORTABLES_REL, "type": "application/schema+json",
         "href": f"{collection_url}/sortables"}
    )  # fmt: skip
    if layer.annotates is not None:
        raster = collection_url.rsplit("/", 1)[0] + "/" + quote(layer.annotates, safe="")
        links.append({"rel": "related", "type": "application/json", "href": raster,
                      "title": f"annotated imagery: {layer.annotates}"})  # fmt: skip


async def add_vector_documents(request: Request, docs: list[dict[str, Any]]) -> None:
    """Make the vector collections among ``docs`` OGC API - Features collections, and link
    the raster ones to the vector collections annotating them (a collection hook)."""
    if not docs:
        return
    vectors: VectorRepository = request.app.state.vectors
    layers = await vectors.related([doc["id"] for doc in docs])
    if not layers:
        return
    base = web.base_url(request) + "collections/"
    by_id = {layer.collection_id: layer for layer in layers}
    for doc in docs:
        url = base + quote(doc["id"], safe="")
        layer = by_id.get(doc["id"])
        if layer is not None:
            _vector(doc, layer, url)
        for other in layers:
            if other.annotates == doc["id"]:
                href = base + quote(other.collection_id, safe="") + "/items"
                doc.setdefault("links", []).append(
                    {
                        "rel": "related",
                        "type": GEOJSON,
                        "href": href,
                        "title": f"annotations: {other.collection_id}",
                    }  # fmt: skip
                )


__all__ = ["KIND", "add_vector_documents"]
