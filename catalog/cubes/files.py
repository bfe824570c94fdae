"""The stored files of datacubes: what is removed when a cube is replaced or its job fails.

A job publishes its copy and overviews under ``assets/{collection}/cube-{job}/`` before its
commit; the ``datacubes`` row names them once it commits. A replaced cube's folder goes after
the commit that replaced it; a failed job's folder goes unless a row names it (a retry of the
same job that succeeded meanwhile). Deleting the collection removes ``assets/{collection}``
and with it every cube folder (catalog/storage: remove_collection_files).
"""

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.cubes.ingest import cube_prefix
from catalog.cubes.model import CubeRepository
from catalog.storage.base import Storage, stored_key

logger = logging.getLogger("terracat.cubes")


def _is_cube_folder(prefix: str, collection_id: str) -> bool:
    return prefix.startswith(f"assets/{collection_id}/cube-") and prefix.count("/") == 2


async def remove_replaced_cubes(storage: Storage, outputs: dict[str, Any]) -> None:
    """After the commit of a new cube: delete the folders of the one it replaced."""
    collection_id = str(outputs.get("collection"))
    for prefix in outputs.get("replaced") or []:
        if not isinstance(prefix, str) or not _is_cube_folder(prefix, collection_id):
            continue
        try:
            await asyncio.to_thread(storage.delete_prefix, prefix)
        except Exception:  # logged: the new cube is in either way
            logger.exception("the files of replaced cube %s were not all removed", prefix)


async def remove_failed_cube(
    storage: Storage, engine: AsyncEngine, collection_id: str, job_id: str
) -> None:
    """After a job failed: delete what it may have published, unless a cube row uses it."""
    try:
        prefix = cube_prefix(collection_id, job_id)
    except ValueError:
        return
    cube = await CubeRepository(engine).get(collection_id)
    if cube is not None:
        hrefs = [cube.href, *(o.href for o in cube.overviews)]
        if any((stored_key(h) or "").startswith(prefix + "/") for h in hrefs):
            return
    await asyncio.to_thread(storage.delete_prefix, prefix)
