"""The STAC item of a picture: a Point where it was taken, at the time it was taken.

Extensions: ``view`` (``view:azimuth``) and ``perspective-imagery`` (``pers:pitch``,
``pers:roll``, ``pers:yaw``, ``pers:interior_orientation`` with the camera's make, model, focal
length and field of view), as Panoramax's items have them. What no extension says carries the
``terracat:`` prefix (docs/api.md): ``terracat:picture_type``, ``terracat:altitude``,
``terracat:sequence``, ``terracat:sequence_rank``, ``terracat:sequence_prev``/``_next`` (the
neighbours' item ids, which the API turns into ``prev``/``next`` links), ``terracat:tiles``.
"""

import datetime as dt
from typing import Any

from .derivatives import TILE_COLS, TILE_ROWS, Derived
from .reader import PictureMeta

VIEW = "https://stac-extensions.github.io/view/v1.1.0/schema.json"
PERSPECTIVE = "https://stac-extensions.github.io/perspective-imagery/v1.0.0/schema.json"
FILE = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
_ROLES = {"original": ["data"], "sd": ["visual"], "thumbnail": ["thumbnail"]}
_TITLES = {"original": "Original picture, with its EXIF tags",
           "sd": "Standard definition (no EXIF)", "thumbnail": "Thumbnail (no EXIF)"}  # fmt: skip


def _interior(meta: PictureMeta) -> dict[str, Any]:
    found: dict[str, Any] = {"camera_manufacturer": meta.make, "camera_model": meta.model,
             "focal_length": meta.focal_length, "field_of_view": meta.field_of_view}  # fmt: skip
    if meta.sensor_width is not None:
        found["sensor_array_dimensions"] = [meta.width, meta.height]
    return {k: v for k, v in found.items() if v is not None}


def _assets(
    assets: dict[str, str], derived: list[Derived], original_type: str, size: int, sha256: str
) -> dict[str, dict[str, Any]]:
    """The item's assets: the original (its size and checksum) and the web copies (theirs)."""
    sizes = {d.name: d for d in derived}
    body: dict[str, dict[str, Any]] = {}
    for name, href in assets.items():
        media_type = original_type if name == "original" else "image/jpeg"
        asset: dict[str, Any] = {"href": href, "type": media_type}
        if name in _ROLES:
            asset |= {"roles": _ROLES[name], "title": _TITLES[name]}
        else:
            asset["roles"] = ["tile"]
        if name == "original":
            asset |= {"file:size": size, "file:checksum": "1220" + sha256}
        elif name in sizes:
            asset["terracat:size"] = [sizes[name].width, sizes[name].height]
        body[name] = asset
    return body


def picture_item(
    meta: PictureMeta,
    item_id: str,
    collection_id: str,
    filename: str,
    sha256: str,
    size: int,
    assets: dict[str, str],
    derived: list[Derived],
    original_type: str = "image/jpeg",
) -> dict[str, Any]:
    """The item (``assets``: asset name -> stored href; ``derived``: the web copies made, all
    JPEGs; ``original_type``: the media type of the original, ``image/jpeg`` or ``image/heic``)."""
    properties: dict[str, Any] = {
        "datetime": meta.when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        # The local time where the picture was taken, with its offset (Panoramax's datetimetz).
        "terracat:datetime_local": meta.when.isoformat(),
        "title": filename,
        "terracat:picture_type": meta.type,
        "terracat:original_size": [meta.width, meta.height],
    }
    if meta.heading is not None:
        properties["view:azimuth"] = float(meta.heading % 360)
    for name in ("pitch", "roll", "yaw"):
        value = getattr(meta, name)
        if value is not None:
            properties[f"pers:{name}"] = float(value)
    if interior := _interior(meta):
        properties["pers:interior_orientation"] = interior
    if meta.altitude is not None:
        properties["terracat:altitude"] = float(meta.altitude)
    if meta.gps_accuracy is not None:
        properties["terracat:gps_accuracy"] = float(meta.gps_accuracy)
    body = _assets(assets, derived, original_type, size, sha256)
    if any(name.startswith("tile_") for name in assets):
        properties["terracat:tiles"] = {"cols": TILE_COLS, "rows": TILE_ROWS,
                                        "asset": "tile_{col}_{row}",
                                        "width": meta.width, "height": meta.height}  # fmt: skip
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [VIEW, PERSPECTIVE, FILE],
        "id": item_id,
        "collection": collection_id,
        "geometry": {"type": "Point", "coordinates": [meta.lon, meta.lat]},
        "bbox": [meta.lon, meta.lat, meta.lon, meta.lat],
        "properties": properties,
        "assets": body,
        "links": [],
    }
