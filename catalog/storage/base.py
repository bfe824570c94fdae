"""The storage contract: keys, stored hrefs, and what every storage (local folder, S3) does.

A key is a relative path of checked segments. The first segment is the area:

- ``assets/{collection}/{item}/{name}``: an ingested item's files (COG, previews);
- ``assets/{collection}/cube-{job}/...``: a datacube's Zarr store and overviews, written by
  the ingest job ``job`` (catalog/cubes/files.py), named by the ``datacubes`` row;
- ``exports/{job id}.{ext}``: export archives;
- ``staging/...`` and ``tus/...``: uploads waiting for, or being sent to, their ingest job.

The database keeps keys, never URLs: an asset that Terracat stored has the href
``storage:{key}`` in the item's JSON (see :func:`stored_href`). Clients never send such hrefs
(the catalogue refuses them) and never see them (the API presents every stored asset with an
http(s) href of its download route), so no path given by a client reaches a file or a bucket.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from catalog.errors import Unavailable

STORED_SCHEME = "storage:"
_PART = re.compile(r"^[^/\\\x00-\x1f\x7f]{1,255}$")


class StorageUnavailable(Unavailable):
    """The object storage does not answer (down, unreachable, refusing our credentials)."""

    code = "storage.Unavailable"


@dataclass(frozen=True)
class StoredObject:
    """What a storage knows of one object: enough for Range, ETag and Last-Modified."""

    key: str
    size: int
    modified: datetime  # aware, UTC
    etag: str  # a strong validator, without quotes


class Storage(Protocol):
    """Where published files live. Stage locally, publish atomically under a key, read back."""

    kind: str  # "local" or "s3"

    def temp_path(self, suffix: str) -> Path:
        """A fresh, not yet existing local path to stage a file in before publishing it."""
        ...

    def publish(self, local: Path, key: str) -> None:
        """Store ``local`` under ``key`` atomically (never a half object under the key),
        replacing what was there; ``local`` is gone afterwards."""
        ...

    def delete(self, key: str) -> None:
        """Remove one object; a missing one is fine."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under ``prefix`` (``assets/collection/item``, say)."""
        ...

    def stat(self, key: str) -> StoredObject | None:
        """Size, modification time and ETag of ``key``; None when it does not exist."""
        ...

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes ``start`` to ``end`` (inclusive; None: to the end) in chunks of bounded
        size, read as they are consumed (never the whole object in memory)."""
        ...

    def fetch(self, key: str, local: Path) -> None:
        """Copy ``key`` to the local path ``local`` (a worker staging its input)."""
        ...

    def keys(self, prefix: str) -> Iterator[StoredObject]:
        """The objects under ``prefix`` (sweeps of stale uploads and exports)."""
        ...

    def gdal_path(self, key: str) -> str:
        """What GDAL opens for ``key``: a local path or a ``/vsis3/`` path."""
        ...

    def gdal_options(self) -> dict[str, str]:
        """GDAL configuration options that reading ``gdal_path`` needs (rasterio.Env)."""
        ...

    def presigned_url(self, key: str, expires_s: int, filename: str | None = None) -> str | None:
        """A URL that reads ``key`` directly from the store for ``expires_s`` seconds, or
        None when the storage has none (a local folder)."""
        ...


def check_part(value: str, what: str = "key part") -> str:
    """One path segment of a key: at most 255 bytes, no '/', '\\', control character, '.', '..'."""
    if (
        not isinstance(value, str)
        or not _PART.match(value)
        or value in (".", "..")
        or len(value.encode()) > 255
    ):
        raise ValueError(f"invalid {what}: {value!r}")
    return value


def check_key(key: str) -> str:
    """A relative key of valid segments separated by '/'."""
    if not isinstance(key, str) or not key:
        raise ValueError("empty storage key")
    for part in key.split("/"):
        check_part(part)
    return key


def asset_key(collection_id: str, item_id: str, name: str) -> str:
    """The key of an item's file: ``assets/{collection}/{item}/{name}``."""
    return "/".join(
        ("assets", check_part(collection_id, "collection id"), check_part(item_id, "item id"),
         check_part(name, "asset name"))
    )  # fmt: skip


def item_prefix(collection_id: str, item_id: str) -> str:
    """The prefix under which all files of one item live."""
    return asset_key(collection_id, item_id, "x").rsplit("/", 1)[0]


def stored_href(key: str) -> str:
    """The href kept in the database for a file this catalogue stored under ``key``."""
    return STORED_SCHEME + check_key(key)


def stored_key(href: object) -> str | None:
    """The key of a ``storage:`` href; None for any other href (or a malformed one)."""
    if not isinstance(href, str) or not href.startswith(STORED_SCHEME):
        return None
    try:
        return check_key(href[len(STORED_SCHEME) :])
    except ValueError:
        return None
