"""What the readers of one app (or one export) share, made once and closed with it.

A reader is made per request. Its storage (which creates its folders when made), the files
kept open between reads (``DatasetPool``) and what is worked out once per data grid
(``GridCache``) outlive it: the app makes one ``ReaderResources``, hands it to its
factories (their ``reader_dependency``) and closes it in its lifespan; an export's process
makes its own. Nothing here is a module global.
"""

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cachetools import LRUCache

from catalog.storage.local import LocalStorage

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

    storage: LocalStorage
    datasets: DatasetPool = field(default_factory=DatasetPool)
    grids: GridCache = field(default_factory=GridCache)

    @classmethod
    def at(cls, data_dir: Path) -> "ReaderResources":
        """Resources reading the assets of the storage under ``data_dir``."""
        return cls(LocalStorage(Path(data_dir)))

    def close(self) -> None:
        """Close the files kept open (the resources stay usable: files are opened again)."""
        self.datasets.close()
