"""Validation of MapLibre style JSON (style spec version 8) stored by collection admins.

Structural, in Python: a JSON Schema of the root, sources and layers (jsonschema-rs), then what a
schema cannot say: layer ids unique, every layer's source declared, ``source-layer`` on layers
of vector sources only. MapLibre's own validator (@maplibre/maplibre-gl-style-spec) is
JavaScript: running Node per request would make Node a server dependency, so the tests check
our generated styles with it instead, and this module refuses what would break a map outright.
Paint and layout values (expressions) are checked for shape, not evaluated.
"""

from typing import Any

import jsonschema_rs

from catalog.errors import InvalidParameter

LAYER_TYPES = ["background", "fill", "line", "symbol", "raster", "circle", "fill-extrusion",
               "heatmap", "hillshade", "color-relief"]  # fmt: skip
SOURCE_TYPES = ["vector", "raster", "raster-dem", "geojson", "image", "video"]
VECTOR_LAYERS = {"fill", "line", "symbol", "circle", "fill-extrusion", "heatmap"}
_URL = {"type": "string", "minLength": 1, "maxLength": 4096}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["version", "sources", "layers"],
    "properties": {
        "version": {"const": 8},
        "name": {"type": "string"},
        "metadata": {"type": "object"},
        "center": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        "zoom": {"type": "number"},
        "bearing": {"type": "number"},
        "pitch": {"type": "number"},
        "sprite": {"type": ["string", "array"]},
        "glyphs": {"type": "string"},
        "sources": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"enum": SOURCE_TYPES},
                    "url": _URL,
                    "tiles": {"type": "array", "items": _URL, "minItems": 1},
                    "minzoom": {"type": "number", "minimum": 0, "maximum": 24},
                    "maxzoom": {"type": "number", "minimum": 0, "maximum": 24},
                    "tileSize": {"type": "integer", "minimum": 1},
                    "bounds": {
                        "type": "array",
                        "items": {"type": "number"},
                        "minItems": 4,
                        "maxItems": 4,
                    },
                },  # fmt: skip
                "allOf": [
                    {
                        "if": {
                            "properties": {"type": {"enum": ["vector", "raster", "raster-dem"]}}
                        },
                        "then": {"anyOf": [{"required": ["url"]}, {"required": ["tiles"]}]},
                    },  # fmt: skip
                    {
                        "if": {"properties": {"type": {"const": "geojson"}}},
                        "then": {"required": ["data"]},
                    },
                ],
            },
        },
        "layers": {
            "type": "array",
            "maxItems": 1000,
            "items": {
                "type": "object",
                "required": ["id", "type"],
                "properties": {
                    "id": {"type": "string", "minLength": 1},
                    "type": {"enum": LAYER_TYPES},
                    "source": {"type": "string"},
                    "source-layer": {"type": "string"},
                    "minzoom": {"type": "number", "minimum": 0, "maximum": 24},
                    "maxzoom": {"type": "number", "minimum": 0, "maximum": 24},
                    "filter": {"type": ["array", "boolean"]},
                    "layout": {"type": "object"},
                    "paint": {"type": "object"},
                    "metadata": {},
                },
                "additionalProperties": False,
            },
        },
    },
}
_VALIDATOR = jsonschema_rs.Draft202012Validator(SCHEMA)


class InvalidStyle(InvalidParameter):
    """A style that is not MapLibre style JSON (version 8)."""

    code = "styles.InvalidStyle"


def problems(style: Any) -> list[str]:
    """What makes ``style`` no MapLibre style (empty when it is one)."""
    found = sorted(
        f"{'/'.join(str(p) for p in error.instance_path) or '(root)'}: {error.message}"
        for error in _VALIDATOR.iter_errors(style)
    )
    if found:
        return found
    sources = style["sources"]
    seen: set[str] = set()
    for index, layer in enumerate(style["layers"]):
        where = f"layers/{index}"
        if layer["id"] in seen:
            found.append(f"{where}: duplicate layer id {layer['id']!r}")
        seen.add(layer["id"])
        if layer["type"] == "background":
            continue
        source = layer.get("source")
        if source is None:
            found.append(f"{where}: a {layer['type']} layer needs a source")
        elif source not in sources:
            found.append(f"{where}: source {source!r} is not declared in sources")
        elif sources[source]["type"] == "vector":
            if layer["type"] not in VECTOR_LAYERS:
                found.append(f"{where}: a {layer['type']} layer cannot draw vector source "
                             f"{source!r}")  # fmt: skip
            elif "source-layer" not in layer:
                found.append(f"{where}: a layer of vector source {source!r} needs source-layer")
    return found


def validate(style: Any) -> dict[str, Any]:
    """``style`` if it is MapLibre style JSON, else InvalidStyle listing the first problems."""
    found = problems(style)
    if found:
        shown = "; ".join(found[:5]) + (f" (and {len(found) - 5} more)" if len(found) > 5 else "")
        raise InvalidStyle(f"not a MapLibre style (version 8): {shown}")
    validated: dict[str, Any] = style
    return validated


__all__ = ["InvalidStyle", "problems", "validate"]
