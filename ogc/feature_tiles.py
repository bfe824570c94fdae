"""What the tile, tileset, style and map routes of vector collections share: the layer lookup,
the feature selection parameters and the attribute choice.

``filter`` / ``filter-lang`` (CQL2 text or JSON) and ``datetime`` select features through
``catalog.vector.query.where``, as the items routes do; ``properties`` names the attributes
a tile carries (default: every property, or none below ``vector_properties_minzoom``).
"""

from typing import Annotated

from fastapi import Query, Request

from catalog.settings import LimitSettings
from catalog.stac import cql2
from catalog.timeparse import parse_interval
from catalog.vector.crs import filter_in_crs84, parse_filter_crs
from catalog.vector.layers import LayerCache, app_layers
from catalog.vector.query import FeatureQuery, field
from catalog.vector.schema import Layer, Property, PropertyType

from .settings import TileSettings

Filter = Annotated[
    str | None,
    Query(alias="filter", description="CQL2 filter (text or JSON) on the features' properties."),
]
FilterLang = Annotated[
    str | None, Query(alias="filter-lang", description="`cql2-text` or `cql2-json`.")
]
FilterCrs = Annotated[
    str | None,
    Query(
        alias="filter-crs",
        description="The CRS of the filter's geometries: CRS84 (default) or one the items "
        "route serves (EPSG:4326 latitude first, EPSG:3857, EPSG:2154, WGS 84 UTM zones).",
    ),
]
Properties = Annotated[
    str | None,
    Query(
        description="Comma-separated properties each feature carries (vector collections; "
        "default: all of them, none at low zooms)."
    ),
]


def layer_cache(request: Request, settings: TileSettings) -> LayerCache:
    """The app's layer cache (made on first use, renewed with the app's repository)."""
    return app_layers(request.app.state, settings.layer_cache_s)


def feature_query(
    filter_: str | None,
    lang: str | None,
    interval: str | None,
    limits: LimitSettings | None = None,
    crs: str | None = None,
) -> FeatureQuery:
    """The selection of ``filter``/``filter-lang``/``filter-crs`` and ``datetime``."""
    filter_crs = parse_filter_crs(crs)
    parsed = cql2.parse(filter_, lang, limits) if filter_ else None
    if isinstance(parsed, dict):
        parsed = filter_in_crs84(parsed, filter_crs)
    return FeatureQuery(
        datetime=parse_interval(interval) if interval else None,
        filter=parsed,
    )


def chosen_properties(
    layer: Layer, names: str | None, zoom: int | None = None, minzoom: int = 0
) -> list[Property]:
    """The properties named in ``names`` (unknown ones: 400 listing the allowed names); without
    ``names``, every property from ``minzoom`` on and none below."""
    if names is None:
        return list(layer.properties) if zoom is None or zoom >= minzoom else []
    chosen: list[Property] = []
    for name in (n.strip() for n in names.split(",")):
        if not name:
            continue
        field(layer, name)  # 400 search.UnknownQueryable for a name the layer lacks
        prop = layer.prop(name)
        if prop is not None and prop not in chosen:
            chosen.append(prop)
    return chosen


TILEJSON_TYPES = {
    PropertyType.STRING: "String",
    PropertyType.INTEGER: "Number",
    PropertyType.NUMBER: "Number",
    PropertyType.BOOLEAN: "Boolean",
    PropertyType.DATE: "String",
    PropertyType.DATETIME: "String",
    PropertyType.JSON: "String",
}

__all__ = [
    "TILEJSON_TYPES",
    "Filter",
    "FilterCrs",
    "FilterLang",
    "Properties",
    "chosen_properties",
    "feature_query",
    "layer_cache",
]
