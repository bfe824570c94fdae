"""Queryables and sortables of a vector collection: JSON Schema from its typed properties.

What these list is exactly what ``filter``, ``sortby`` and ``properties`` accept on its
features (``query.field``): the feature ``id``, the ``geometry`` and each property by name.
"""

from typing import Any

from catalog.stac.queryables import Kind

from .schema import Layer, PropertyType

_GEOMETRY_FORMATS = {
    "Point": "geometry-point", "MultiPoint": "geometry-multipoint",
    "LineString": "geometry-linestring", "MultiLineString": "geometry-multilinestring",
    "Polygon": "geometry-polygon", "MultiPolygon": "geometry-multipolygon",
}  # fmt: skip
_SORTABLE = frozenset({Kind.NUMBER, Kind.STRING, Kind.TIMESTAMP, Kind.BOOLEAN})


def layer_schema(
    layer: Layer, schema_id: str, geometry: dict[str, Any], sortable: bool
) -> dict[str, Any]:
    """The queryables (or, with ``sortable``, sortables) document of ``layer``.

    ``geometry`` is the GeoJSON geometry schema to inline for the geometry queryable.
    """
    properties: dict[str, Any] = {"id": {"title": "Feature id", "type": "integer"}}
    if not sortable:
        fmt = _GEOMETRY_FORMATS.get(layer.geometry_type, "geometry-any")
        properties["geometry"] = {**geometry, "title": "Geometry", "format": fmt}
    for prop in layer.properties:
        if sortable and prop.type.kind not in _SORTABLE:
            continue
        schema = {"title": prop.name, **prop.type.json_schema}
        if prop.type is PropertyType.JSON:
            schema["description"] = "any JSON value (compared as an object)"
        properties.setdefault(prop.name, schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id,
        "type": "object",
        "title": f"{'Sortables' if sortable else 'Queryables'} of {layer.collection_id}",
        "properties": properties,
        "additionalProperties": False,
    }


__all__ = ["layer_schema"]
