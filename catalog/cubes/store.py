"""Open a datacube's store (or one of its overviews) as a lazy, georeferenced xarray Dataset.

Where the store is comes from the ``Cube`` row only, never from a client: ``storage:{key}``
of a store Terracat holds (a folder of the local storage, or objects under a prefix of the S3
storage), or the URL an uploader registered in place (``https://...`` or ``s3://...``).
Zarr stores are read by zarr (v2 and v3, consolidated metadata or not); objects in S3 and over
HTTP through obstore, the object-store client zarr ships a store for (``zarr.storage.ObjectStore``).
NetCDF files are read by h5netcdf, over obstore's file-like reader when remote.

Opening only reads metadata; values are read when indexed. Everything here blocks: callers in
the event loop run it in a thread. Opened datasets are kept per (storage, href, format) in a
small LRU: a store is never rewritten under the same href (each ingest writes a new one), so a
cached dataset never goes stale.
"""

import io
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine

from catalog.cubes.model import Cube, CubeOverview, Format
from catalog.storage.base import Storage, stored_key

if TYPE_CHECKING:
    from obstore.store import ObjectStore

__all__ = ["CubeStoreError", "clear_cache", "open_cube", "open_path", "open_store", "remote_store"]

_CACHE_SIZE = 32


class CubeStoreError(LookupError):
    """The cube has no such overview, or its href is none this module opens."""


def open_cube(cube: Cube, storage: Storage, *, overview: int | None = None) -> xr.Dataset:
    """The cube's store (or its overview of factor ``overview``), lazy and read-only, with the
    CRS and transform written and x/y set as the spatial dimensions (rioxarray)."""
    if overview is None or overview == 1:
        href, transform = cube.href, Affine.from_gdal(*cube.transform)
    else:
        level = _overview(cube, overview)
        href = level.href
        transform = Affine.from_gdal(*cube.transform) @ Affine.scale(level.factor)
    ds = _cached(storage, href, cube.format)
    ds = ds.rio.set_spatial_dims(x_dim=cube.x_dim, y_dim=cube.y_dim)
    ds = ds.rio.write_crs(cube.crs)
    georeferenced: xr.Dataset = ds.rio.write_transform(transform)
    return georeferenced


def _overview(cube: Cube, factor: int) -> CubeOverview:
    for level in cube.overviews:
        if level.factor == factor:
            return level
    raise CubeStoreError(f"the cube of {cube.collection_id!r} has no overview of factor {factor}")


_lock = threading.Lock()
_cache: "OrderedDict[tuple[int, str, str], xr.Dataset]" = OrderedDict()


def _cached(storage: Storage, href: str, fmt: Format) -> xr.Dataset:
    key = (id(storage), href, fmt)
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    ds = open_store(storage, href, fmt)
    with _lock:
        _cache[key] = ds
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return ds


def clear_cache() -> None:
    """Forget the opened datasets (tests; a store deleted under a cached href)."""
    with _lock:
        _cache.clear()


def open_store(storage: Storage, href: str, fmt: Format) -> xr.Dataset:
    """The store at ``href`` (``storage:{key}``, ``https://``, ``s3://``) as xarray opens it,
    lazily, without georeferencing (the ingest reads that from it)."""
    key = stored_key(href)
    if key is not None:
        if storage.kind == "local":
            return open_path(Path(storage.gdal_path(key)), fmt)
        store, path = _s3_store(storage, key, fmt)
    else:
        store, path = remote_store(href, fmt, storage)
    from obstore.exceptions import NotFoundError, PermissionDeniedError, UnauthenticatedError

    try:
        return _open_object_store(store, path, fmt)
    except NotFoundError as exc:  # callers know OSError, not obstore's errors
        raise FileNotFoundError(f"no cube store at {href}") from exc
    except (PermissionDeniedError, UnauthenticatedError) as exc:
        raise PermissionError(f"the cube store at {href} refuses to be read") from exc


def open_path(path: Path, fmt: Format) -> xr.Dataset:
    """A local Zarr folder or NetCDF file, lazily."""
    if fmt == "netcdf":
        return xr.open_dataset(
            path, engine="h5netcdf", chunks=None, cache=False, decode_coords="all"
        )
    return _open_zarr(str(path))


def _open_zarr(store: Any) -> xr.Dataset:
    # Consolidated metadata (one read) when the store has it, else each array's metadata;
    # asked explicitly since consolidated=None warns on every store without it.
    try:
        return xr.open_dataset(
            store, engine="zarr", consolidated=True, chunks=None, decode_coords="all"
        )
    except (ValueError, KeyError, FileNotFoundError):
        return xr.open_dataset(
            store, engine="zarr", consolidated=False, chunks=None, decode_coords="all"
        )


def _open_object_store(store: "ObjectStore", path: str, fmt: Format) -> xr.Dataset:
    if fmt == "netcdf":
        import obstore

        reader = obstore.open_reader(store, path, buffer_size=4 * 1024 * 1024)
        return xr.open_dataset(
            _File(reader), engine="h5netcdf", chunks=None, cache=False, decode_coords="all"
        )
    from zarr.storage import ObjectStore

    return _open_zarr(ObjectStore(store, read_only=True))


class _File(io.RawIOBase):
    """obstore's reader as the file object h5py reads: its reads return ``bytes``."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader

    mode = "rb"

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return int(self._reader.seek(offset, whence))

    def tell(self) -> int:
        return int(self._reader.tell())

    def readinto(self, buffer: Any) -> int:
        data = memoryview(self._reader.read(len(buffer)))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._reader.close()
        super().close()


def _s3_store(storage: Storage, key: str, fmt: Format) -> "tuple[ObjectStore, str]":
    """An obstore client on the S3 storage's bucket, its prefix the key's (a Zarr store's
    folder), with the storage's endpoint and credentials; the path of the object within."""
    from obstore.store import S3Store

    from catalog.storage.s3 import S3Storage

    if not isinstance(storage, S3Storage):
        raise CubeStoreError(f"a storage of kind {storage.kind!r} holds no S3 objects")
    settings = storage.settings
    config: dict[str, Any] = {
        "region": settings.s3_region,
        "virtual_hosted_style_request": not settings.s3_path_style,
    }
    if settings.s3_endpoint_url:
        config["endpoint"] = settings.s3_endpoint_url
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        config["access_key_id"] = settings.s3_access_key_id.get_secret_value()
        config["secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
    name = storage.object_name(key)
    folder, _, leaf = name.rpartition("/")
    # A Zarr store is a folder: the store's prefix is the key; a NetCDF file is one object.
    prefix, path = (name, "") if fmt == "zarr" else (folder, leaf)
    store = S3Store(
        settings.s3_bucket,
        prefix=prefix,
        config=config,  # type: ignore[arg-type]
        client_options=_client_options(settings.s3_endpoint_url),
    )
    return store, path


def remote_store(
    url: str, fmt: Format, storage: Storage | None = None
) -> "tuple[ObjectStore, str]":
    """An obstore client for a cube registered in place at ``url``, and the path within.

    ``s3://`` URLs are read without credentials (public buckets: the server's credentials
    must not lend an uploader what they can read), on the S3 service of the storage when it
    is S3 (its endpoint and addressing), else on AWS.
    """
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        from obstore.store import HTTPStore

        if fmt == "zarr":
            return HTTPStore.from_url(url.rstrip("/"), client_options=_client_options(url)), ""
        base, _, leaf = url.rpartition("/")
        return HTTPStore.from_url(base, client_options=_client_options(url)), leaf
    if parts.scheme == "s3":
        from obstore.store import S3Store

        from catalog.storage.s3 import S3Storage

        config: dict[str, Any] = {"skip_signature": True}
        endpoint = None
        if isinstance(storage, S3Storage):
            endpoint = storage.settings.s3_endpoint_url
            config["region"] = storage.settings.s3_region
            config["virtual_hosted_style_request"] = not storage.settings.s3_path_style
            if endpoint:
                config["endpoint"] = endpoint
        path = parts.path.strip("/")
        folder, _, leaf = path.rpartition("/")
        prefix, within = (path, "") if fmt == "zarr" else (folder, leaf)
        store = S3Store(
            parts.netloc,
            prefix=prefix or None,
            config=config,  # type: ignore[arg-type]
            client_options=_client_options(endpoint),
        )
        return store, within
    raise CubeStoreError(f"no cube store at {url!r}: only storage:, http(s):// and s3:// hrefs")


def _client_options(url: str | None) -> Any:
    # obstore refuses plain http unless told; a local MinIO or test server speaks it.
    return {"allow_http": True} if url and url.startswith("http://") else None
