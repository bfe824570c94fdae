"""``?preset=``: named band combinations resolved against the item's eo:bands common names.

A preset expands to an expression over the stacked bands, a rescale and a colormap. Bands are
found by ``common_name`` (``name`` too) in the assets being read (``assets=``, default
``data``); ``nir`` also matches ``nir08`` and ``rededge`` matches ``rededge071/075/078``.

Indices (one output band, ``rescale=-1,1``):

- ``ndvi``  = (nir - red) / (nir + red), colormap ``rdylgn``
- ``ndmi``  = (nir - swir16) / (nir + swir16), colormap ``brbg``
- ``ndre``  = (nir - rededge) / (nir + rededge), colormap ``rdylgn``
- ``gndvi`` = (nir - green) / (nir + green), colormap ``rdylgn``
- ``evi``   = 2.5 * (nir - red) / (nir + 6 * red - 7.5 * blue + 1), colormap ``rdylgn``
  (the constants assume reflectance in 0..1; on raw digital numbers the ``+ 1`` hardly counts)

Composites (three output bands, each rescaled between its ``raster:bands`` minimum and maximum
when the item has them, no colormap): ``rgb`` = red, green, blue; ``cir`` = nir, red, green;
``agri`` = swir16, nir, blue; ``swir`` = swir22, nir, red.

Explicit ``rescale``/``colormap``/``colormap_name`` override the preset's. A preset with
``expression``, ``bidx`` or ``bands`` is ``tiler.InvalidLayer`` (400); an unknown name is
``tiler.UnknownPreset`` (400); missing bands are ``tiler.PresetUnavailable`` (400) naming them.

The table itself (``PRESETS``, ``ALIASES``) is catalog/presets.py (re-exported here): datacube
layers evaluate the same formulas. The dependencies below plug into titiler's ``layer_dependency``,
``render_dependency`` and ``colormap_dependency`` slots; they share one per-request
resolution (FastAPI caches it).
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, cast

import numpy
from fastapi import Depends, Query
from rio_tiler.colormap import cmap as default_cmap
from rio_tiler.types import ColorMapType
from titiler.core.dependencies import ImageRenderingParams

from catalog.errors import InvalidParameter
from catalog.presets import ALIASES as ALIASES
from catalog.presets import PRESET_ALIASES as PRESET_ALIASES
from catalog.presets import PRESETS as PRESETS
from catalog.presets import SENTINEL2_BANDS as SENTINEL2_BANDS
from catalog.presets import Preset as Preset
from catalog.presets import common_name_of as common_name_of
from catalog.presets import evaluate_formula
from catalog.presets import find_preset as find_preset

from .dependencies import LayerQuery, SafeColorMapParams, check_color_formula
from .errors import InvalidLayer, PresetUnavailable, UnknownPreset
from .readers.stac import asset_bands, band_positions, default_assets

DTYPE_RANGES = {"uint8": (0.0, 255.0), "uint16": (0.0, 65535.0), "int16": (-32768.0, 32767.0)}


def match_bands(preset: Preset, common_names: Mapping[str, str | None]) -> dict[str, str]:
    """Which band (key of ``common_names``, mapping band -> common name) each of the preset's
    bands is: the first whose common name matches (``nir`` also ``nir08``...).
    ``PresetUnavailable`` naming what is missing."""
    found: dict[str, str] = {}
    missing = []
    for band in preset.bands:
        accepted = ALIASES.get(band, (band,))
        # aliases in order: ``nir`` before ``nir08``, whatever the band order
        matches = [b for a in accepted for b, c in common_names.items() if c == a]
        if matches:
            found[band] = matches[0]
        else:
            missing.append(band)
    if missing:
        raise PresetUnavailable(
            f"{preset.name!r} needs bands with common names {missing} (or their Sentinel-2 "
            f"ids {[_s2_ids(b) for b in missing]}), which are not among {sorted(common_names)}"
        )
    return found


def _s2_ids(common: str) -> str:
    ids = [i for i, c in SENTINEL2_BANDS.items() if c in ALIASES.get(common, (common,))]
    return "/".join(ids) or "-"


def evaluate(preset: Preset, arrays: Mapping[str, numpy.ndarray]) -> numpy.ndarray:
    """The preset's output bands (stacked on a first axis, float32) from ``arrays`` by the
    preset's band names (``{"nir": ..., "red": ...}``), by catalog/presets.py's evaluator.
    NaN in any input band (no data) is NaN in every output band."""
    names = list(preset.bands)
    data = {n: numpy.asarray(arrays[n], dtype="float32") for n in names}
    with numpy.errstate(all="ignore"):  # 0/0 is NaN: no data there
        out = numpy.stack([
            numpy.broadcast_to(evaluate_formula(f.format(**{n: n for n in names}), data),
                               data[names[0]].shape)
            for f in preset.formulas
        ]).astype("float32")  # fmt: skip
    out[:, numpy.isnan(numpy.stack(list(data.values()))).any(axis=0)] = numpy.nan
    return out


@dataclass
class PresetRender:
    """A preset resolved for one item: what the layer, render and colormap slots receive."""

    name: str
    expression: str
    rescale: list[tuple[float, float]] | None
    colormap: ColorMapType | None


def _stack_statistics(
    item: Mapping[str, Any], assets: Sequence[str]
) -> list[tuple[float, float] | None]:
    """(minimum, maximum) of each stacked band from raster:bands (or its data type's range)."""
    stack: list[tuple[float, float] | None] = []
    for name in assets:
        count = len(asset_bands(item, name) or [])
        raster = item["assets"][name].get("raster:bands") or []
        for index in range(count):
            band = raster[index] if index < len(raster) and isinstance(raster[index], dict) else {}
            found = band.get("statistics")
            stats = found if isinstance(found, dict) else {}
            low, high = stats.get("minimum"), stats.get("maximum")
            if isinstance(low, int | float) and isinstance(high, int | float) and low < high:
                stack.append((float(low), float(high)))
            else:
                stack.append(DTYPE_RANGES.get(str(band.get("data_type"))))
    return stack


def resolve_preset(
    preset: Preset, item: Mapping[str, Any], assets: Sequence[str] | None = None
) -> PresetRender:
    """The preset's expression, rescale and colormap for ``item``; PresetUnavailable."""
    chosen = list(assets or default_assets(item))
    positions = band_positions(item, chosen)
    found: dict[str, int] = {}
    missing = []
    for band in preset.bands:
        matches = [positions[a] for a in ALIASES.get(band, (band,)) if a in positions]
        if not matches:
            missing.append(band)
        elif len(matches[0]) > 1:
            raise PresetUnavailable(
                f"preset {preset.name!r}: several bands are {band!r} in assets {chosen}; "
                "choose one asset with assets="
            )
        else:
            found[band] = matches[0][0]
    if missing:
        raise PresetUnavailable(
            f"preset {preset.name!r} needs bands with common names {missing}, which assets "
            f"{chosen} of item {item.get('id')!r} do not have"
        )
    names = {band: f"b{position}" for band, position in found.items()}
    expression = ";".join(formula.format(**names) for formula in preset.formulas)
    if preset.rescale:
        rescale: list[tuple[float, float]] | None = [preset.rescale] * len(preset.formulas)
    else:
        stack = _stack_statistics(item, chosen)
        ranges = [stack[found[b] - 1] if found[b] <= len(stack) else None for b in preset.bands]
        rescale = None if any(r is None for r in ranges) else [r for r in ranges if r]
    colormap = default_cmap.get(preset.colormap) if preset.colormap else None
    return PresetRender(preset.name, expression, rescale, colormap)


def PresetQuery(  # noqa: N802 - FastAPI dependency named like a class (house style)
    preset: Annotated[
        str | None,
        Query(
            description="Named rendering from the item's band common names: "
            + ", ".join(f"`{p.name}` ({p.title})" for p in PRESETS.values()),
            json_schema_extra={"enum": [*PRESETS, *PRESET_ALIASES]},
        ),
    ] = None,
) -> Preset | None:
    """The ``preset`` query parameter; ``tiler.UnknownPreset`` for a name not in PRESETS."""
    if preset is None:
        return None
    found = find_preset(preset)
    if found is None:
        raise UnknownPreset(f"unknown preset {preset[:40]!r}: one of {sorted(PRESETS)}")
    return found


def preset_params(item_dependency: Callable[..., Any]) -> Callable[..., PresetRender | None]:
    """The dependency resolving ``?preset=`` against the item ``item_dependency`` returns."""

    def dependency(
        item: Annotated[dict[str, Any], Depends(item_dependency)],
        layer: Annotated[LayerQuery, Depends()],
        preset: Annotated[Preset | None, Depends(PresetQuery)],
    ) -> PresetRender | None:
        if preset is None:
            return None
        if layer.expression or layer.indexes or layer.bands:
            raise InvalidLayer(
                f"preset {preset.name!r} sets the bands itself: drop expression, bidx and bands"
            )
        return resolve_preset(preset, item, layer.assets)

    return dependency


def preset_layer_params(preset: Callable[..., PresetRender | None]) -> Callable[..., LayerQuery]:
    """``layer_dependency``: LayerQuery, whose expression a preset fills in."""

    def dependency(
        layer: Annotated[LayerQuery, Depends()],
        resolved: Annotated[PresetRender | None, Depends(preset)],
    ) -> LayerQuery:
        if resolved is not None:
            layer.expression = resolved.expression
        return layer

    return dependency


def preset_render_params(
    preset: Callable[..., PresetRender | None],
) -> Callable[..., ImageRenderingParams]:
    """``render_dependency``: titiler's rescale/color_formula/return_mask, preset rescale."""

    def dependency(
        render: Annotated[ImageRenderingParams, Depends()],
        resolved: Annotated[PresetRender | None, Depends(preset)],
    ) -> ImageRenderingParams:
        # titiler annotates rescale as list[str]; its __post_init__ makes (min, max) pairs
        pairs = cast(list[tuple[float, float]], render.rescale or [])
        for low, high in pairs:
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise InvalidParameter(
                    f"rescale must be finite min,max with min < max: {low},{high}"
                )
        check_color_formula(render.color_formula)
        if resolved is not None and not render.rescale and resolved.rescale:
            render.rescale = cast(list[str], resolved.rescale)  # (min, max) pairs: see above
        return render

    return dependency


def preset_colormap_params(
    preset: Callable[..., PresetRender | None],
) -> Callable[..., ColorMapType | None]:
    """``colormap_dependency``: colormap_name/colormap, else the preset's colormap."""

    def dependency(
        colormap: Annotated[ColorMapType | None, Depends(SafeColorMapParams)],
        resolved: Annotated[PresetRender | None, Depends(preset)],
    ) -> ColorMapType | None:
        if colormap is None and resolved is not None:
            return resolved.colormap
        return colormap

    return dependency
