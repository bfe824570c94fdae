"""A picture's ingest job, child side: read its tags, make and publish its web copies and
original, build its item. The item waits in ``pictures`` for the set's dispatch.

Each copy of a picture (each upload file record) publishes under a folder of its own below the
item's prefix, ``assets/{collection}/{item}/{copy}/``: a picture sent again by its name while
the first copy's job still runs takes the same item id, and the two jobs can never overwrite
or delete each other's files; the stale job's commit finds its record gone and removes its own.
"""

import shutil
from pathlib import Path
from typing import Any

from catalog.jobs.queue import JobContext
from catalog.settings import IngestSettings
from catalog.storage.base import Storage, check_part, item_prefix, stored_href

from .derivatives import make_derivatives
from .formats import FORMATS, picture_format
from .item import picture_item
from .reader import read_picture


def ingest_picture(
    source: Path,
    plan: dict[str, Any],
    storage: Storage,
    settings: IngestSettings,
    ctx: JobContext,
) -> dict[str, Any]:
    """Publish the original and its copies under the item's prefix; its tags and item."""
    meta = read_picture(source, settings)
    ctx.progress(20, "tags read")
    collection_id, item_id = plan["collection_id"], plan["item_id"]
    media_type, extension = FORMATS[picture_format(source) or "jpeg"]
    copy = check_part(plan["upload_file"].replace("-", "")[:12], "picture copy")
    folder = storage.temp_path("")
    folder.mkdir(mode=0o700)
    published: list[str] = []
    # The item id is this file's (claimed): what lies under it is a replaced copy's.
    storage.delete_prefix(item_prefix(collection_id, item_id))
    try:
        tiled = meta.type == "equirectangular"
        derived = make_derivatives(
            source, folder, settings.picture_thumbnail_px, settings.picture_sd_px, tiled
        )
        ctx.progress(70, f"{len(derived)} web copies made")
        original = folder / f"original.{extension}"
        shutil.copyfile(source, original)  # publishing moves it; the staged bytes stay
        files = [("original", original), *((d.name, d.path) for d in derived)]
        hrefs: dict[str, str] = {}
        for name, local in files:
            key = copy_key(collection_id, item_id, copy, local.name)
            storage.publish(local, key)
            published.append(key)
            hrefs[name] = stored_href(key)
        item = picture_item(meta, item_id, collection_id, plan["filename"], plan["sha256"],
                            plan["size"], hrefs, derived, media_type)  # fmt: skip
    except BaseException:
        for key in published:
            storage.delete(key)
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ctx.progress(95, "files published")
    return {"meta": meta.to_json(), "item": item}


def copy_key(collection_id: str, item_id: str, copy: str, name: str) -> str:
    """``assets/{collection}/{item}/{copy}/{name}``: a file of one copy of a picture."""
    return f"{item_prefix(collection_id, item_id)}/{check_part(copy)}/{check_part(name)}"
