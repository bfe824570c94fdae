"""Where asset files live: storage keys, the local-folder storage and the S3 storage.

The storage is built once per process from ``StorageSettings`` (``build_storage``) and passed
down; a job's child process rebuilds it from ``storage_plan`` carried in its plan.
"""

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from catalog.settings import StorageSettings
from catalog.storage.base import Storage, check_part, item_prefix, stored_key

logger = logging.getLogger("terracat.storage")


def build_storage(settings: StorageSettings, data_dir: Path) -> Storage:
    """The storage ``settings`` describe; ``data_dir`` is the local folder (the storage
    itself when local, else the staging area of files before they are published)."""
    if settings.kind == "s3":
        from catalog.storage.s3 import S3Storage  # boto3 is imported only when used

        return S3Storage(settings, data_dir)
    from catalog.storage.local import LocalStorage

    return LocalStorage(data_dir)


def storage_plan(storage: Storage) -> dict[str, Any]:
    """What a job's child process rebuilds ``storage`` from (``storage_from_plan``): JSON.

    Secrets are in clear: a plan only travels through the pipe to the job's child process.
    """
    if storage.kind == "s3":
        from catalog.storage.s3 import S3Storage

        if not isinstance(storage, S3Storage):
            raise TypeError(f"an s3 storage that is not an S3Storage: {storage!r}")
        settings = storage.settings
        dumped = settings.model_dump(mode="json")
        for name in ("s3_access_key_id", "s3_secret_access_key"):
            secret = getattr(settings, name)
            dumped[name] = secret.get_secret_value() if secret is not None else None
        return {"settings": dumped, "data_dir": str(storage.tmp.parent)}
    from catalog.storage.local import LocalStorage

    if not isinstance(storage, LocalStorage):
        raise TypeError(f"a storage of unknown kind: {storage!r}")
    return {"settings": {"kind": "local"}, "data_dir": str(storage.root)}


def storage_from_plan(plan: dict[str, Any]) -> Storage:
    """The storage of a ``storage_plan``."""
    if plan["settings"]["kind"] == "local":  # the environment's settings do not count
        from catalog.storage.local import LocalStorage

        return LocalStorage(Path(plan["data_dir"]))
    return build_storage(StorageSettings(**plan["settings"]), Path(plan["data_dir"]))


def remove_item_files(
    storage: Storage, collection_id: str, item_id: str, assets: Mapping[str, Any]
) -> bool:
    """Delete the files of a deleted item, if any of its assets is one we stored; whether
    it had any. Run after the deletion committed: a failure leaves files, never an item
    without its files; it is logged, not raised (the item is gone either way)."""
    try:
        prefix = item_prefix(collection_id, item_id)
    except ValueError:  # an id no key can hold: nothing of ours
        return False
    ours = [
        key
        for asset in assets.values()
        if isinstance(asset, Mapping)
        and (key := stored_key(asset.get("href"))) is not None
        and key.startswith(prefix + "/")
    ]
    if not ours:
        return False
    try:
        storage.delete_prefix(prefix)
    except Exception:
        logger.exception("the files of deleted item %s/%s were not all removed", collection_id,
                         item_id)  # fmt: skip
    return True


def remove_collection_files(storage: Storage, collection_id: str) -> None:
    """Delete the files of every item of a deleted collection (``assets/{collection}/``)."""
    try:
        prefix = "assets/" + check_part(collection_id, "collection id")
    except ValueError:
        return
    try:
        storage.delete_prefix(prefix)
    except Exception:
        logger.exception("the files of deleted collection %s were not all removed",
                         collection_id)  # fmt: skip
