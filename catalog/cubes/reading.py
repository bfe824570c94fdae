"""Opening a cube's store for time series and EDR queries: ``store.open_cube``, its failures
turned into one error a client can be answered with."""

from __future__ import annotations

import xarray as xr

from catalog.errors import CatalogError
from catalog.storage.base import Storage

from .model import Cube
from .store import CubeStoreError, open_cube


class StoreUnreadable(CatalogError):
    """The cube's store cannot be read now (gone, refusing us, or not a store any more)."""

    code = "cube.StoreUnreadable"
    status = 502


def open_for_reading(cube: Cube, storage: Storage) -> xr.Dataset:
    """The cube's store as a lazy Dataset (blocking; kept open by ``open_cube``)."""
    try:
        return open_cube(cube, storage)
    except (CubeStoreError, OSError, ValueError, KeyError) as exc:
        raise StoreUnreadable(f"the store of collection {cube.collection_id!r} cannot be read "
                              "now") from exc  # fmt: skip


__all__ = ["StoreUnreadable", "open_for_reading"]
