"""What the readers take from a STAC item: its assets by media type, bands and projection.

Band names. After the assets are read and stacked, ``b1``..``bn`` are the positions in the stack
(rio-tiler's rule). Expressions may also use each band's ``eo:bands`` ``name`` and
``common_name`` (case-insensitive): ``(nir-red)/(nir+red)`` becomes ``(b4-b1)/(b4+b1)`` on
an RGBN item. ``bands=["red", "nir"]`` selects bands by those names.
"""

import re
from collections.abc import Container, Mapping, Sequence
from typing import Any

import numpy
import pystac
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rio_tiler.errors import InvalidBandName, InvalidExpression, MissingAssets
from rio_tiler.types import AssetType

from ..crs import safe_crs
from ..errors import UnsafeCrs
from .kinds import ASSET_READERS, media_type

_NAME = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()")
_POSITIONAL = re.compile(r"^b\d+$", re.IGNORECASE)


def item_dict(value: dict[str, Any] | pystac.Item) -> dict[str, Any]:
    """An item as a dict (``pystac.Item`` or mapping); MissingAssets if it has no assets."""
    if isinstance(value, pystac.Item):
        return value.to_dict(include_self_link=False, transform_hrefs=False)
    if not isinstance(value, Mapping) or not isinstance(value.get("assets"), Mapping):
        raise MissingAssets("not a STAC item with assets")
    return dict(value)


def is_raster_asset(asset: Any, kinds: Container[str] = ASSET_READERS) -> bool:
    """Whether an asset (dict) is a raster a reader reads, by its media type (GeoTIFF)."""
    return media_type(asset) in kinds


def raster_assets(item: Mapping[str, Any], kinds: Container[str] = ASSET_READERS) -> list[str]:
    """Names of the item's GeoTIFF assets (media types in ``kinds``), in the item's order."""
    return [name for name, asset in item["assets"].items() if is_raster_asset(asset, kinds)]


def default_assets(item: Mapping[str, Any], kinds: Container[str] = ASSET_READERS) -> list[str]:
    """``data`` if it is a GeoTIFF, else the GeoTIFF assets with role ``data`` (maybe none)."""
    rasters = raster_assets(item, kinds)
    if "data" in rasters:
        return ["data"]
    return [n for n in rasters if "data" in (item["assets"][n].get("roles") or [])]


def asset_bands(item: Mapping[str, Any], name: str) -> list[dict[str, Any]] | None:
    """The asset's ``eo:bands`` (STAC 1.0) or ``bands`` (1.1), or None when it has neither."""
    asset = item["assets"].get(name) or {}
    bands = asset.get("eo:bands") or asset.get("bands")
    if not isinstance(bands, list):
        return None
    return [band if isinstance(band, dict) else {} for band in bands]


def band_names(band: Mapping[str, Any]) -> set[str]:
    """The lower-case names a band answers to: ``name`` and its common name."""
    values = (band.get("name"), band.get("common_name"), band.get("eo:common_name"))
    return {v.lower() for v in values if isinstance(v, str) and v}


def band_indexes(item: Mapping[str, Any], asset: str, wanted: Sequence[str]) -> list[int]:
    """1-based band indexes of ``asset`` for band names or common names; InvalidBandName."""
    bands = asset_bands(item, asset)
    if bands is None:
        raise InvalidBandName(f"asset {asset!r} has no eo:bands to select bands by name")
    indexes = []
    for name in wanted:
        found = [i for i, band in enumerate(bands, 1) if name.lower() in band_names(band)]
        if not found:
            raise InvalidBandName(f"asset {asset!r} has no band named {name!r}")
        indexes.append(found[0])
    return indexes


def _asset_name(asset: AssetType) -> str:
    return asset if isinstance(asset, str) else str(asset.get("name"))


def band_positions(
    item: Mapping[str, Any], assets: Sequence[AssetType], indexes: Sequence[int] | None = None
) -> dict[str, list[int]]:
    """Band names -> their 1-based positions in the stack the assets make (lower case).

    ``indexes`` (``bidx``) applies to every asset, like rio-tiler's; an asset's own
    ``indexes`` or ``bands`` option wins. Names stop at the first asset without eo:bands (its
    band count is unknown until it is read).
    """
    positions: dict[str, list[int]] = {}
    offset = 0
    for asset in assets:
        name = _asset_name(asset)
        bands = asset_bands(item, name)
        if bands is None:
            break
        options: Mapping[str, Any] = asset if isinstance(asset, Mapping) else {}
        if options.get("bands"):
            chosen = band_indexes(item, name, options["bands"])
        else:
            chosen = list(options.get("indexes") or indexes or range(1, len(bands) + 1))
        for index in chosen:
            offset += 1
            if 1 <= index <= len(bands):
                for band_name in band_names(bands[index - 1]):
                    positions.setdefault(band_name, []).append(offset)
    return positions


def translate_expression(expression: str, positions: Mapping[str, list[int]]) -> str:
    """Replace band names in an expression by ``b<position>``; ``b<n>`` are left alone."""

    def replace(match: re.Match[str]) -> str:
        word = match.group(1)
        key = word.lower()
        if _POSITIONAL.match(key) or key not in positions:
            return word
        found = positions[key]
        if len(found) > 1:
            where = ", ".join(f"b{p}" for p in found)
            raise InvalidExpression(f"band name {word!r} is ambiguous here ({where}): use b<n>")
        return f"b{found[0]}"

    return _NAME.sub(replace, expression)


def projection(
    item: Mapping[str, Any], assets: Sequence[str]
) -> tuple[CRS, Affine, int, int] | None:
    """CRS, transform, height and width from the projection extension (asset, then item)."""
    sources = [item["assets"][name] for name in assets] + [item.get("properties") or {}]
    for source in sources:
        shape, transform = source.get("proj:shape"), source.get("proj:transform")
        code = source.get("proj:code") or (
            f"EPSG:{source['proj:epsg']}" if source.get("proj:epsg") else None
        )
        wkt = source.get("proj:wkt2")
        if not (shape and transform and (code or wkt)):
            continue
        try:
            crs = safe_crs(str(code)) if code else CRS.from_wkt(str(wkt))
            height, width = int(shape[0]), int(shape[1])
            affine = Affine(*(float(v) for v in transform[:6]))
        except (UnsafeCrs, CRSError, ValueError, TypeError, IndexError, KeyError):
            continue
        if height > 0 and width > 0 and affine.determinant != 0:
            return crs, affine, height, width
    return None


def band_statistics(asset: Mapping[str, Any]) -> list[tuple[float, float]] | None:
    """Per-band (minimum, maximum) from ``raster:bands`` when every band has finite ones."""
    bands = asset.get("raster:bands") or asset.get("bands")
    if not isinstance(bands, list) or not bands:
        return None
    stats = []
    for band in bands:
        values = band.get("statistics") if isinstance(band, dict) else None
        if not isinstance(values, dict):
            return None
        low, high = values.get("minimum"), values.get("maximum")
        if not (isinstance(low, int | float) and isinstance(high, int | float)):
            return None
        if not (numpy.isfinite(low) and numpy.isfinite(high)):
            return None
        stats.append((float(low), float(high)))
    return stats
