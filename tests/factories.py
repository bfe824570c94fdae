"""Small, valid STAC documents for tests."""

from typing import Any

EO = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"


def collection(collection_id: str, **extra: Any) -> dict[str, Any]:
    """A minimal valid collection."""
    doc: dict[str, Any] = {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": collection_id,
        "title": extra.pop("title", f"Collection {collection_id}"),
        "description": extra.pop("description", f"Test collection {collection_id}"),
        "license": "CC-BY-4.0",
        "extent": {
            "spatial": {"bbox": [extra.pop("bbox", [-180.0, -90.0, 180.0, 90.0])]},
            "temporal": {"interval": [extra.pop("interval", ["2020-01-01T00:00:00Z", None])]},
        },
        "links": [],
    }
    doc.update(extra)
    return doc


def item(
    item_id: str,
    lon: float = 10.0,
    lat: float = 45.0,
    when: str = "2021-06-01T10:00:00Z",
    size: float = 0.5,
    **properties: Any,
) -> dict[str, Any]:
    """A valid item: a square footprint of ``size`` degrees at (lon, lat)."""
    ring = [
        [lon, lat],
        [lon + size, lat],
        [lon + size, lat + size],
        [lon, lat + size],
        [lon, lat],
    ]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [EO] if any(k.startswith("eo:") for k in properties) else [],
        "id": item_id,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [lon, lat, lon + size, lat + size],
        "properties": {"datetime": when, **properties},
        "links": [{"rel": "license", "href": "https://example.com/license"}],
        "assets": {
            "data": {"href": f"s3://bucket/{item_id}.tif", "type": "image/tiff", "roles": ["data"]}
        },
    }
