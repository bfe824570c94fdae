"""The reader of GeoTIFF (COG) assets: rio-tiler's Reader on files kept open and tile grids."""

import functools
import os
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import attr
import numpy
import rasterio
from rasterio.errors import RasterioIOError
from rio_tiler.io import Reader
from rio_tiler.models import ImageData
from rio_tiler.utils import cast_to_sequence

from catalog.storage.base import Storage, StorageUnavailable

from ..errors import AssetMissing, AssetNotReadable, InvalidLayer
from .grids import TileGrids, grid_readable
from .pool import DatasetPool

# GDAL looks for .ovr/.aux.xml/.msk side-cars next to a file unless told not to.
GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


@dataclass(frozen=True)
class AssetPlace:
    """Where a reader's file is stored: what says, when it cannot be opened, whether it is
    missing (a stat only then, never per read), and the version the pool keys it by."""

    storage: Storage
    key: str
    label: str  # "asset 'data' of item 'x'", for messages
    version: Hashable = None

    def missing(self) -> bool:
        """Whether nothing is stored under the key; StorageUnavailable (503) when the store
        does not answer (the open failed for that reason, not for the file's)."""
        try:
            return self.storage.stat(self.key) is None
        except Exception as exc:
            raise StorageUnavailable(
                f"the object storage does not answer ({type(exc).__name__}); try again"
            ) from exc


def _checked_options(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Reader method: band indexes outside the file, or a nodata value its data type
    cannot hold, are InvalidLayer (400) instead of IndexError/TypeError deep in numpy."""

    @functools.wraps(method)
    def wrapper(self: Reader, *args: Any, indexes: Any = None, **kwargs: Any) -> Any:
        if self.dataset is None:  # opened by __attrs_post_init__
            raise RuntimeError("the reader's dataset is not open")
        count = self.dataset.count
        if any(not 1 <= i <= count for i in cast_to_sequence(indexes) or ()):
            raise InvalidLayer(f"band indexes {indexes} out of range: the asset has {count}")
        nodata = kwargs.get("nodata")
        dtype: numpy.dtype[Any] = numpy.dtype(self.dataset.dtypes[0])
        if nodata is not None and dtype.kind in "iu":
            info = numpy.iinfo(dtype)
            if not (numpy.isfinite(nodata) and info.min <= nodata <= info.max):
                raise InvalidLayer(f"nodata {nodata} does not fit the data type {dtype}")
        return method(self, *args, indexes=indexes, **kwargs)

    return wrapper


@attr.s
class LocalTiffReader(Reader):
    """rio-tiler's Reader for a local GeoTIFF: GDAL may use its GTiff driver only (no VRT).

    The file comes from ``datasets`` (the app's pool): open handles are reused from one read
    to the next. Without a pool the file is opened for this reader and closed with it. The
    file may be a local path or an object of a store (``/vsis3/``); ``place`` says where it
    is stored (a file that cannot be opened is then told missing from not readable).
    """

    # the GDAL configuration ItemReader reads this reader's assets in
    gdal_env: ClassVar[dict[str, str]] = GDAL_ENV
    datasets: DatasetPool | None = attr.ib(default=None, kw_only=True)
    place: AssetPlace | None = attr.ib(default=None, kw_only=True)
    grids: TileGrids | None = attr.ib(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        """Borrow the file, opened with the GTiff driver, then let Reader read its metadata."""
        if self.dataset is None:
            try:
                self._open(str(self.input))  # rio-tiler types it optional; ItemReader: a path
            except RasterioIOError as exc:  # a registered asset that is not a GeoTIFF
                self._ctx_stack.close()
                if self.place is not None and self.place.missing():
                    raise AssetMissing(f"{self.place.label} is missing from storage") from exc
                raise AssetNotReadable(
                    f"asset file {os.path.basename(str(self.input))!r} is not a GeoTIFF "
                    "GDAL can read"
                ) from exc
        super().__attrs_post_init__()  # type: ignore[no-untyped-call]  # rio-tiler: unannotated

    def _open(self, path: str) -> None:
        if self.datasets is not None:
            version = self.place.version if self.place is not None else None
            self.dataset, self.grids = self.datasets.borrow_grids(path, self._ctx_stack, version)
        else:
            opened = rasterio.open(path, driver="GTiff")
            self.dataset = self._ctx_stack.enter_context(opened)
            self.grids = TileGrids(self.dataset)
            self._ctx_stack.callback(self.grids.close)

    @_checked_options
    def tile(
        self,
        tile_x: int,
        tile_y: int,
        tile_z: int,
        tilesize: int | None = None,
        indexes: Sequence[int] | int | None = None,
        expression: str | None = None,
        buffer: float | None = None,
        **kwargs: Any,
    ) -> ImageData:
        """A tile, read through the file's ``TileGrids`` where it can read it, else rio-tiler's."""
        options = {**self.options, **kwargs}
        if self.grids is not None and not expression and not buffer and grid_readable(options):
            size = tilesize or self.tms.matrix(tile_z).tileWidth
            kernel = options.get("reproject_method") or "nearest"
            image = self.grids.tile(self.tms, tile_x, tile_y, tile_z, size,
                                    cast_to_sequence(indexes), kernel)  # fmt: skip
            if image is not None:
                image.assets = [self.input]
                return image
        return super().tile(tile_x, tile_y, tile_z, tilesize=tilesize, indexes=indexes,
                            expression=expression, buffer=buffer, **kwargs)  # fmt: skip

    part = _checked_options(Reader.part)
    preview = _checked_options(Reader.preview)
    point = _checked_options(Reader.point)
    feature = _checked_options(Reader.feature)
    statistics = _checked_options(Reader.statistics)
