"""One upload -> published COG and previews -> STAC item. What the job worker runs.

Nothing is written to the database here: the caller stores the returned item, so that a crash
leaves either no item or a whole one. Files are staged in the storage's temporary folder and
only published (atomic renames) once the item is built; a failure removes the staged files and
anything already published by this call.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from catalog.storage.base import Storage, asset_key, stored_href

from ..settings import IngestSettings
from .cog import to_cog
from .metadata import build_item, render_previews
from .validate import inspect

Progress = Callable[[int, str], None]
_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class IngestRequest:
    """A staged upload and what to make of it."""

    source: Path  # the staged raw upload (never modified or deleted here)
    collection_id: str
    item_id: str
    sha256: str  # of the upload
    size: int  # of the upload, in bytes
    filename: str
    datetime_value: datetime | None
    upload_time: datetime


def _no_progress(percent: int, message: str) -> None:
    """Default progress callback: ignore."""


def file_digest(path: Path) -> tuple[str, int]:
    """SHA-256 hex digest and size of a file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def ingest_file(
    req: IngestRequest,
    storage: Storage,
    settings: IngestSettings,
    progress: Progress = _no_progress,
) -> dict[str, Any]:
    """Validate, convert, preview, describe and publish one upload; return its STAC item.

    Raises the ``IngestError`` of the first check that fails. The data asset's
    ``file:checksum``/``file:size`` describe the published COG: the upload's own when it
    was kept as it is, the new file's when it was converted.
    """
    progress(1, "inspecting the file")
    info = inspect(req.source, settings)
    progress(5, "file checked")
    staged: list[Path] = []
    published: list[str] = []
    keys = {
        "data": asset_key(req.collection_id, req.item_id, f"{req.item_id}.tif"),
        "thumbnail": asset_key(req.collection_id, req.item_id, "thumbnail.png"),
        "overview": asset_key(req.collection_id, req.item_id, "overview.png"),
    }
    try:
        cog = storage.temp_path(".tif")
        staged.append(cog)
        progress(6, "converting to a Cloud-Optimized GeoTIFF")
        converted = to_cog(req.source, cog, info, settings)
        progress(60, "converted" if converted else "already a Cloud-Optimized GeoTIFF")
        thumbnail, overview = storage.temp_path(".png"), storage.temp_path(".png")
        staged += [thumbnail, overview]
        render_previews(cog, thumbnail, overview, settings.thumbnail_size, settings.preview_size)
        progress(80, "previews rendered")
        sha256, size = file_digest(cog) if converted else (req.sha256, req.size)
        item = build_item(
            cog,
            item_id=req.item_id,
            collection_id=req.collection_id,
            assets={name: f"staged:{name}" for name in keys},
            sha256=sha256,
            size=size,
            datetime_value=req.datetime_value,
            upload_time=req.upload_time,
            title=Path(req.filename).name or None,
        )
        progress(90, "metadata extracted")
        for name, local in zip(keys, (cog, thumbnail, overview), strict=True):
            storage.publish(local, keys[name])
            item["assets"][name]["href"] = stored_href(keys[name])
            published.append(keys[name])
        progress(95, "files published")
        return item
    except BaseException:
        for key in published:
            storage.delete(key)
        raise
    finally:
        for path in staged:
            path.unlink(missing_ok=True)
