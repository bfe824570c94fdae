"""Opening a cube's store for the time series (until catalog/cubes/store.py's ``open_cube``).

Stores Terracat holds (``storage:{key}`` in a local storage) are opened lazily and read-only
with xarray; nothing else is opened (an href registered in place, or object storage, waits for
the ingest branch's opener). Open datasets are kept per href, a few at a time.
"""

import threading
from collections import OrderedDict

import xarray as xr

from catalog.errors import CatalogError
from catalog.storage.base import Storage, stored_key

from .model import Cube


class StoreUnreadable(CatalogError):
    """The cube's store cannot be opened here."""

    code = "cube.StoreUnreadable"
    status = 502


class DatasetCache:
    """Open datasets by href, at most ``size`` (least recently used dropped)."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._open: OrderedDict[str, xr.Dataset] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, cube: Cube, storage: Storage) -> xr.Dataset:
        """The cube's dataset, opened now or kept from before (blocking)."""
        with self._lock:
            if (found := self._open.get(cube.href)) is not None:
                self._open.move_to_end(cube.href)
                return found
        dataset = open_dataset(cube, storage)
        with self._lock:
            self._open[cube.href] = dataset
            while len(self._open) > self.size:
                self._open.popitem(last=False)
        return dataset


def open_dataset(cube: Cube, storage: Storage) -> xr.Dataset:
    """The cube's store as a lazy Dataset; StoreUnreadable when it is not ours or unreadable."""
    key = stored_key(cube.href)
    path = getattr(storage, "path", None)
    if key is None or path is None:
        raise StoreUnreadable(f"the store of {cube.collection_id!r} is not in local storage")
    try:
        if cube.format == "zarr":
            try:
                return xr.open_zarr(path(key), consolidated=True, chunks=None)
            except (KeyError, ValueError, FileNotFoundError):  # no consolidated metadata
                return xr.open_zarr(path(key), consolidated=False, chunks=None)
        return xr.open_dataset(path(key), engine="h5netcdf", chunks=None)
    except (OSError, ValueError, KeyError) as exc:
        raise StoreUnreadable(f"the store of {cube.collection_id!r} cannot be read") from exc


__all__ = ["DatasetCache", "StoreUnreadable", "open_dataset"]
