"""What a ``layers=`` value of a datacube reads and computes.

A layer is a cube layer (a variable, or a band along the band dimension) by its name, its
common name or its Sentinel-2 id (``B04`` = ``red``: ``tiler.presets.SENTINEL2_BANDS``), or a
preset of ``tiler.presets`` (NDVI, NDMI, NDRE, GNDVI, EVI; RGB, CIR, AGRICULTURE, SWIR) whose
bands are found the same way. Several plain layers, comma-separated, are stacked as bands
(``layers=B04,B03,B02``). Names are matched case-insensitively.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rio_tiler.colormap import cmap as default_cmap
from rio_tiler.types import ColorMapType

from catalog.cubes.model import Cube, CubeLayer

from ..errors import PresetUnavailable
from ..presets import (
    DTYPE_RANGES,
    PRESET_ALIASES,
    PRESETS,
    Preset,
    common_name_of,
    find_preset,
    match_bands,
)
from .errors import UnknownLayer

MAX_LAYERS = 4  # plain layers stacked in one image (an RGBA PNG holds four)
# Composites of reflectance stored as integers: Sentinel-2 L2A's scale (reflectance x 10000).
REFLECTANCE_RANGES = {"uint16": (0.0, 10000.0), "int16": (0.0, 10000.0)}


@dataclass(frozen=True)
class LayerPlan:
    """Layers to read (``sources``), and the preset computing the output from them."""

    name: str
    sources: tuple[CubeLayer, ...]
    preset: Preset | None = None
    keys: tuple[str, ...] = ()  # the preset's band name of each source
    rescale: tuple[tuple[float, float], ...] | None = None
    colormap: ColorMapType | None = None


def _find(cube: Cube, name: str) -> CubeLayer | None:
    """A layer of the cube by name, common name or Sentinel-2 id (any case)."""
    lowered = name.lower()
    for layer in cube.layers:
        if layer.name.lower() == lowered:
            return layer
    for layer in cube.layers:
        if (common_name_of(layer.name, layer.common_name) or "").lower() == lowered:
            return layer
    return None


def common_names(cube: Cube) -> dict[str, str | None]:
    """Each layer's common name (its own or its Sentinel-2 id's), by layer name."""
    return {layer.name: common_name_of(layer.name, layer.common_name) for layer in cube.layers}


def _composite_range(layer: CubeLayer) -> tuple[float, float] | None:
    if layer.dtype.startswith("float"):
        return (0.0, 1.0)  # reflectance
    return REFLECTANCE_RANGES.get(layer.dtype) or DTYPE_RANGES.get(layer.dtype)


def preset_plan(cube: Cube, preset: Preset) -> LayerPlan:
    """The plan of a preset over the cube's layers; ``tiler.PresetUnavailable`` naming the
    bands it needs when the cube lacks some."""
    found = match_bands(preset, common_names(cube))
    by_name = {layer.name: layer for layer in cube.layers}
    sources = tuple(by_name[found[band]] for band in preset.bands)
    rescale: tuple[tuple[float, float], ...] | None
    if preset.rescale:
        rescale = (preset.rescale,) * len(preset.formulas)
    else:
        ranges = [_composite_range(by_name[found[b]]) for b in preset.bands]
        rescale = None if any(r is None for r in ranges) else tuple(r for r in ranges if r)
    colormap = default_cmap.get(preset.colormap) if preset.colormap else None
    return LayerPlan(preset.name, sources, preset, tuple(preset.bands), rescale, colormap)


def resolve_layers(cube: Cube, layers: Sequence[str] | None) -> LayerPlan:
    """The plan of ``layers`` (default: the cube's first layer); ``cube.UnknownLayer``."""
    names = [n.strip() for value in layers or () for n in value.split(",") if n.strip()]
    if not names:
        first = cube.layers[0]
        return LayerPlan(first.name, (first,))
    if len(names) == 1:
        layer = _find(cube, names[0])
        if layer is not None:  # a cube variable called like a preset is the variable
            return LayerPlan(layer.name, (layer,))
        preset = find_preset(names[0])
        if preset is not None:
            return preset_plan(cube, preset)
    if len(names) > MAX_LAYERS:
        raise UnknownLayer(f"at most {MAX_LAYERS} layers are stacked in one image")
    found = []
    for name in names:
        layer = _find(cube, name)
        if layer is None:
            extra = " (presets are drawn alone)" if find_preset(name) else ""
            raise UnknownLayer(
                f"layer {name[:64]!r} is not a layer of this cube{extra}: one of {available(cube)}"
            )
        found.append(layer)
    return LayerPlan(",".join(layer.name for layer in found), tuple(found))


def available(cube: Cube) -> list[str]:
    """Every layer name the cube offers: its layers, then the presets it has bands for."""
    return [layer.name for layer in cube.layers] + derived(cube)


def derived(cube: Cube) -> list[str]:
    """The presets the cube has the bands for, upper-case (NDVI, RGB, AGRICULTURE...)."""
    names = {v: k for k, v in PRESET_ALIASES.items()}
    found = []
    for preset in PRESETS.values():
        try:
            match_bands(preset, common_names(cube))
        except PresetUnavailable:
            continue
        found.append(names.get(preset.name, preset.name).upper())
    return found
