"""What the readers of one app (or one export) share, made once and closed with it.

A reader is made per request. The storage (built once per process, ``build_storage``), the
files kept open between reads (``DatasetPool``) and what is worked out once per data grid
(``GridCache``) outlive it: the app makes one ``ReaderResources``, hands it to its
factories (their ``reader_dependency``) and closes it in its lifespan; an export's process
makes its own. Nothing here is a module global.
"""

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cachetools import LRUCache
from rasterio.session import Session

from catalog.storage.base import Storage

from .pool import DatasetPool

T = TypeVar("T")


class GridCache:
    """The zooms and tile-matrix-set bounds of data grids, worked out once per grid.

    Working an item's zooms out (a reprojection of its grid) was ~2 ms of every tile, and
    its bounds in the tile matrix set's CRS ~1 ms; a grid's never change.
    """

    def __init__(self, size: int = 4096) -> None:
        self.zooms: LRUCache[Hashable, tuple[int, int]] = LRUCache(maxsize=size)
        self.tms_bounds: LRUCache[Hashable, tuple[float, float, float, float] | None]
        self.tms_bounds = LRUCache(maxsize=size)
        self._lock = threading.Lock()  # of both caches

    def remember(self, cache: LRUCache[Hashable, T], key: Hashable, make: Callable[[], T]) -> T:
        """``cache[key]``, made by ``make`` (outside the lock) when missing."""
        with self._lock:
            if key in cache:
                return cache[key]
        found = make()
        with self._lock:
            cache[key] = found
        return found

    def clear(self) -> None:
        """Forget every grid."""
        with self._lock:
            self.zooms.clear()
            self.tms_bounds.clear()


@dataclass(frozen=True)
class ReaderResources:
    """The storage assets are read from, the files kept open, and the grids' cache."""

    storage: Storage
    datasets: DatasetPool = field(default_factory=DatasetPool)
    grids: GridCache = field(default_factory=GridCache)
    # the datacube stores kept open (tiler/cubes/reader.py), made on first use
    cubes: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        """Close the files kept open (the resources stay usable: files are opened again)."""
        self.datasets.close()


_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class _StorageCredentials(Session):  # type: ignore[misc]  # rasterio: untyped
    """The storage's credentials as a rasterio session: ``rasterio.Env`` refuses AWS keys
    among its options, and its own AWS session would make a boto3 session per ``Env``."""

    def __init__(self, options: dict[str, str]) -> None:
        self.credentials = options

    def get_credential_options(self) -> dict[str, str]:
        """The GDAL options of the credentials."""
        return dict(self.credentials)


def storage_env(storage: Storage) -> dict[str, Any]:
    """``rasterio.Env`` keywords reading ``storage.gdal_path`` needs (empty for a folder).

    Applied per read with the reader's own options (~10 us an Env of a dozen options, against
    milliseconds a tile) rather than set once per process: thread-safe, and each storage of a
    process (tests have several) gets its own.
    """
    options: dict[str, Any] = storage.gdal_options()
    credentials = {k: options.pop(k) for k in _CREDENTIALS if k in options}
    if credentials:
        options["session"] = _StorageCredentials(credentials)
    return options
