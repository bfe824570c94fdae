"""What the catalogue says about a COG: preview images and the STAC item.

Previews are PNG, not JPEG: nodata must show as transparent (JPEG has no alpha channel) and a
256 px thumbnail of a few tens of KB gains nothing from lossy compression.
"""

import math
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pystac
from pyproj import CRS, Geod
from rasterio.enums import ColorInterp
from rasterio.io import DatasetReader
from rio_stac import create_stac_item
from rio_tiler.errors import NoOverviewWarning
from rio_tiler.io import Reader
from rio_tiler.models import ImageData

from .footprint import footprint, geometry_bbox
from .validate import gdal_env, open_local

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
PNG_MEDIA_TYPE = "image/png"
EXTENSIONS = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
}
COMMON_NAMES = {
    ColorInterp.red: "red",
    ColorInterp.green: "green",
    ColorInterp.blue: "blue",
    ColorInterp.nir: "nir",
    ColorInterp.coastal: "coastal",
    ColorInterp.rededge: "rededge",
    ColorInterp.pan: "pan",
    ColorInterp.lwir: "lwir",
}
TIFF_DATETIME = "%Y:%m:%d %H:%M:%S"
PREVIEW_ROLES = {"thumbnail": ["thumbnail"], "overview": ["overview"]}


# -- previews ----------------------------------------------------------------------------------
def render_previews(
    cog: Path, thumbnail: Path, preview: Path, thumbnail_size: int, preview_size: int
) -> None:
    """Write PNG previews of at most ``*_size`` px on the long side, transparent where no data.

    RGB from the bands whose colour interpretation says red, green, blue (else the first
    three) when there are three or more, else the first band in grey (or its colour table).
    Data other than uint8 is stretched between the 2nd and 98th percentiles of valid pixels.
    """
    with gdal_env(), warnings.catch_warnings():
        warnings.simplefilter("ignore", NoOverviewWarning)
        with open_local(cog) as dataset, Reader(str(cog), dataset=dataset) as reader:
            indexes = _preview_bands(dataset)
            colormap = reader.colormap if len(indexes) == 1 else None
            longest = max(dataset.width, dataset.height)
            large = reader.preview(indexes=indexes, max_size=min(preview_size, longest))
            small = reader.preview(indexes=indexes, max_size=min(thumbnail_size, longest))
    ranges = None if large.data.dtype == np.uint8 or colormap else _stretch(large)
    for image, path in ((small, thumbnail), (large, preview)):
        if ranges is not None:
            image = image.rescale(in_range=ranges)
        path.write_bytes(image.render(img_format="PNG", add_mask=True, colormap=colormap))


def _preview_bands(dataset: DatasetReader) -> list[int]:
    colors = dataset.colorinterp
    bands = [i for i in dataset.indexes if colors[i - 1] != ColorInterp.alpha]
    if len(bands) < 3:
        return bands[:1] or [1]
    by_color = {colors[i - 1]: i for i in bands}
    if all(c in by_color for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
        return [by_color[ColorInterp.red], by_color[ColorInterp.green], by_color[ColorInterp.blue]]
    return bands[:3]


def _stretch(image: ImageData) -> list[tuple[float, float]]:
    ranges = []
    for band in image.array:
        values = band.compressed()
        values = values[np.isfinite(values)]
        if values.size == 0:
            ranges.append((0.0, 1.0))
            continue
        low, high = (float(v) for v in np.percentile(values, [2, 98]))
        ranges.append((low, high) if high > low else (low - 0.5, low + 0.5))
    return ranges


# -- STAC item ---------------------------------------------------------------------------------
def build_item(
    cog: Path,
    *,
    item_id: str,
    collection_id: str,
    assets: Mapping[str, str],
    sha256: str,
    size: int,
    datetime_value: datetime | None,
    upload_time: datetime,
    title: str | None = None,
) -> dict[str, Any]:
    """The STAC item (dict) of a COG whose assets are published at ``assets`` hrefs.

    ``assets`` maps ``data`` (required), ``thumbnail`` and ``overview`` to hrefs; ``sha256``
    and ``size`` describe the data file. ``datetime`` is, first to apply: ``datetime_value``
    (what the user said), the TIFF tag TIFFTAG_DATETIME (``YYYY:MM:DD HH:MM:SS``, read as
    UTC), ``upload_time``. The geometry is the valid-data footprint, not the raster extent.
    """
    geometry = footprint(cog)
    with gdal_env(), warnings.catch_warnings(), open_local(cog) as src:
        # rio-stac tries to parse TIFF dates itself and warns on the TIFF format; we parse it.
        warnings.filterwarnings("ignore", message="Could not get parse date")
        warnings.filterwarnings("ignore", message="Could not calculate the histogram")
        moment = _item_datetime(src, datetime_value, upload_time)
        stac = _rio_stac_item(src, item_id, collection_id, assets["data"], moment)
        gsd = _gsd(src)
        projection = _projection(src)
        eo_bands = _eo_bands(src)
    _link_collection(stac, collection_id)
    stac.geometry = geometry
    stac.bbox = geometry_bbox(geometry)
    stac.datetime = moment
    properties = {k: v for k, v in stac.properties.items() if not k.startswith("proj:")}
    properties.update(projection, gsd=gsd)
    if title:
        properties["title"] = title
    stac.properties = properties
    # Common metadata: when this item was made. Clients offer sorting on it (stac-browser's
    # "Created" and "Updated"), which the API refuses for a property no item has.
    stac.common_metadata.created = stac.common_metadata.updated = datetime.now(UTC)
    stac.stac_extensions = list(EXTENSIONS.values())
    _describe_data(stac.assets["data"], title or item_id, gsd, eo_bands, sha256, size)
    for key, roles in PREVIEW_ROLES.items():
        if key in assets:
            stac.add_asset(
                key, pystac.Asset(href=assets[key], media_type=PNG_MEDIA_TYPE, roles=roles)
            )
    return stac.to_dict(include_self_link=False, transform_hrefs=False)


def _rio_stac_item(
    src: DatasetReader, item_id: str, collection_id: str, href: str, moment: datetime
) -> pystac.Item:
    """What rio-stac reads from the raster: projection, raster and eo metadata, one asset."""
    item: pystac.Item = create_stac_item(
        src,
        input_datetime=moment,
        id=item_id,
        collection=collection_id,
        asset_name="data",
        asset_roles=["data"],
        asset_media_type=COG_MEDIA_TYPE,
        asset_href=href,
        with_proj=True,
        with_raster=True,
        with_eo=True,
        raster_max_size=1024,
    )
    return item


def _link_collection(stac: pystac.Item, collection_id: str) -> None:
    """The item's only link, to its collection."""
    stac.clear_links()
    stac.collection_id = collection_id
    # STAC requires a collection link with "collection"; relative to the item's URL in a STAC
    # API (/collections/{c}/items/{i}). The catalogue replaces it by an absolute one.
    stac.add_link(
        pystac.Link(
            pystac.RelType.COLLECTION,
            f"../../{quote(collection_id, safe='')}",
            media_type=pystac.MediaType.JSON,
        )
    )


def _describe_data(
    data: pystac.Asset,
    title: str,
    gsd: float,
    eo_bands: list[dict[str, Any]],
    sha256: str,
    size: int,
) -> None:
    """The data asset's title, bands (without histograms), checksum and size."""
    data.title = title
    bands = data.extra_fields.pop("raster:bands")
    for band in bands:
        band.pop("histogram", None)
        band["spatial_resolution"] = gsd
    data.extra_fields.update(
        {
            "raster:bands": bands,
            "eo:bands": eo_bands,
            "file:checksum": f"1220{sha256.lower()}",
            "file:size": size,
        }
    )


def _item_datetime(src: DatasetReader, given: datetime | None, upload_time: datetime) -> datetime:
    """What the user said, else the TIFF's own date, else the upload time; in UTC."""
    if given is not None:
        return _utc(given)
    return _tiff_datetime(src) or _utc(upload_time)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _tiff_datetime(src: DatasetReader) -> datetime | None:
    text = src.tags().get("TIFFTAG_DATETIME")
    if not text:
        return None
    try:
        return datetime.strptime(text.strip(), TIFF_DATETIME).replace(tzinfo=UTC)
    except ValueError:
        return None


def _projection(src: DatasetReader) -> dict[str, Any]:
    crs = src.crs
    epsg = crs.to_epsg() if crs.is_epsg_code else None
    code = {"proj:code": f"EPSG:{epsg}"} if epsg else {
        "proj:wkt2": CRS.from_wkt(crs.to_wkt()).to_wkt("WKT2_2019")
    }  # fmt: skip
    return {
        **code,
        "proj:shape": [src.height, src.width],
        "proj:transform": [float(v) for v in list(src.transform)[:6]],
        "proj:bbox": [float(v) for v in src.bounds],
    }


def _gsd(src: DatasetReader) -> float:
    """Pixel size in metres: from the CRS units, or geodesic at the centre for degrees."""
    t = src.transform
    xres, yres = math.hypot(t.a, t.d), math.hypot(t.b, t.e)
    crs = CRS.from_wkt(src.crs.to_wkt())
    if crs.is_geographic:
        lon, lat = t @ (src.width / 2, src.height / 2)
        lat = max(-89.9, min(89.9, lat))
        geod = crs.get_geod() or Geod(ellps="WGS84")
        dx = float(geod.inv(lon, lat, lon + xres, lat)[2])
        dy = float(geod.inv(lon, max(-90.0, lat - yres / 2), lon, min(90.0, lat + yres / 2))[2])
        return round((dx + dy) / 2, 3)
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return round((xres + yres) / 2 * factor, 3)


def _eo_bands(src: DatasetReader) -> list[dict[str, Any]]:
    bands = []
    for index, color, description in zip(
        src.indexes, src.colorinterp, src.descriptions, strict=True
    ):
        band: dict[str, Any] = {"name": f"b{index}"}
        if color in COMMON_NAMES:
            band["common_name"] = COMMON_NAMES[color]
        band["description"] = description or color.name
        bands.append(band)
    return bands
