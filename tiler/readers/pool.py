"""GeoTIFFs left open between reads (``DatasetPool``)."""

import atexit
import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence

import rasterio
import rasterio.cache
from rasterio.io import DatasetReader

from .grids import TileGrids

FileKey = tuple[str, Hashable]  # path, version: (device, inode, mtime ns, size) of a local file


class DatasetPool:
    """GeoTIFFs left open between reads of the same file, one reader at a time per handle.

    Opening the file again for every tile costs its header and IFDs, and drops the blocks
    GDAL has decoded for that handle: map tiles next to each other (a map view, an export
    walking the tiles in order) read the same blocks. ``borrow`` hands out an idle handle of
    the file, or opens one, with its ``TileGrids``; the reader's exit gives them back.
    A handle belongs to one file version (inode, mtime, size): a replaced file is opened
    anew and the old handles age out. An object of a store (a ``/vsi...`` path) has the
    version its reader gives (the asset's checksum): asking for a new one also drops what
    GDAL's HTTP cache holds of the path. At most ``size`` idle handles are kept, none idle for
    more than ``idle_s``; a forked child starts with none (a handle's file offset would be
    shared with its parent). The app (or an export) that makes a pool closes it.

    Each handle holds ~1.6 MB of buffers per dataset it has read (libtiff's compressed tile
    and GDAL's interleaved block, for the file and each overview it opened), its warped VRTs,
    and its own decoded blocks in GDAL's cache: ~6 MB and its share of the cache for a 4000 px
    RGB COG read at 7 zooms. Concurrent tiles of one file need a handle each, so a burst of
    8 leaves 8 behind. A file's most recently given handle waits for ``idle_s``; the others
    (spares, kept for the next burst: capping them made a burst reopen the file ~100 times
    in 700 tiles and empty the cache) close after ``spare_idle_s``. ``reap`` applies both
    when no read comes to do it (the app calls it every few seconds).
    """

    def __init__(self, size: int = 64, idle_s: float = 60.0, spare_idle_s: float = 20.0) -> None:
        self.size = size
        self.idle_s = idle_s
        self.spare_idle_s = spare_idle_s
        self._idle: OrderedDict[tuple[FileKey, int], tuple[float, DatasetReader, TileGrids]]
        self._idle = OrderedDict()
        self._lock = threading.Lock()
        self._serial = 0
        self.opened = 0  # files opened, for tests and benchmarks
        self._pid = os.getpid()
        self._at_exit = False
        self._remote: dict[str, Hashable] = {}  # the last version asked for, of each object

    def _own(self) -> None:
        """In a forked child, forget the parent's handles: they are not ours to read through.

        Checked on use rather than with ``os.register_at_fork``, which would keep every pool
        ever made alive; a forked child starts with one thread, so nothing races this.
        """
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._idle = OrderedDict()
            self._at_exit = False
            self._remote = {}

    def borrow(self, path: str, stack: contextlib.ExitStack) -> DatasetReader:
        """An open dataset of ``path`` for the life of ``stack`` (a reader's context)."""
        return self.borrow_grids(path, stack)[0]

    def borrow_grids(
        self, path: str, stack: contextlib.ExitStack, version: Hashable = None
    ) -> tuple[DatasetReader, TileGrids | None]:
        """``borrow``, with the handle's tile grids (None for a file that is gone).

        ``version`` tells versions of an object of a store apart (a local file's comes
        from the file system).
        """
        key: FileKey
        if path.startswith("/vsi"):
            key = (path, version)
            self._own()
            with self._lock:
                before = self._remote.get(path, version)
                self._remote[path] = version
            if before != version:  # replaced: GDAL's cache of the path holds the old bytes
                rasterio.cache.invalidate(path)
        else:
            try:
                info = os.stat(path)
            except OSError:  # gone: GDAL says so as it always did
                return stack.enter_context(rasterio.open(path, driver="GTiff")), None
            key = (path, (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size))
        found = None
        self._own()
        with self._lock:
            closing = self._expired(time.monotonic())
            for slot in self._idle:
                if slot[0] == key:
                    found = self._idle.pop(slot)[1:]
                    break
        _close(closing)
        if found is None:
            dataset = rasterio.open(path, driver="GTiff")
            found = (dataset, TileGrids(dataset))
            self.opened += 1
        stack.callback(self._give, key, *found)
        return found

    def _give(self, key: FileKey, dataset: DatasetReader, grids: TileGrids) -> None:
        now = time.monotonic()
        self._own()
        with self._lock:
            if not self._at_exit:  # closed by GDAL while Python still runs, not at teardown
                atexit.register(self.clear)
                self._at_exit = True
            self._serial += 1
            self._idle[(key, self._serial)] = (now, dataset, grids)
            closing = self._expired(now)
            while len(self._idle) > self.size:
                closing.append(self._idle.popitem(last=False)[1][1:])
        _close(closing)

    def _expired(self, now: float) -> list[tuple[DatasetReader, TileGrids]]:
        """Pop the handles idle for longer than ``idle_s``, and the spares idle for longer
        than ``spare_idle_s`` (a file's handles but its most recently given one); lock held.

        Handles are kept oldest first, so only a prefix can be due: every borrow and give
        comes here, and without one due it stops at the first handle (14 -> ~1 us with 64).
        """
        shortest = min(self.idle_s, self.spare_idle_s)
        due = []
        for slot, (since, _, _) in self._idle.items():
            if now - since <= shortest:
                break
            due.append(slot)
        if not due:
            return []
        newest = {slot[0]: slot for slot in self._idle}  # oldest first: the last one wins
        expired = []
        for slot in due:
            since, dataset, grids = self._idle[slot]
            idle = now - since
            if idle > self.idle_s or (idle > self.spare_idle_s and newest[slot[0]] != slot):
                del self._idle[slot]
                expired.append((dataset, grids))
        return expired

    def reap(self) -> int:
        """Close the handles past their idle time now; how many were closed."""
        self._own()
        with self._lock:
            closing = self._expired(time.monotonic())
        _close(closing)
        return len(closing)

    def clear(self) -> None:
        """Close every idle handle."""
        self._own()
        with self._lock:
            idle, self._idle = self._idle, OrderedDict()
        _close([entry[1:] for entry in idle.values()])

    def close(self) -> None:
        """Close every idle handle and let the pool go (it stays usable: it reopens files)."""
        self.clear()
        with self._lock:
            if self._at_exit:
                atexit.unregister(self.clear)
                self._at_exit = False

    def __len__(self) -> int:
        self._own()
        return len(self._idle)


def _close(handles: Sequence[tuple[DatasetReader, TileGrids]]) -> None:
    for dataset, grids in handles:
        grids.close()
        dataset.close()
