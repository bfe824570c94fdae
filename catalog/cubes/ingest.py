"""The ingest of a datacube: what the job's child does, and what its commit writes.

A cube arrives as an uploaded file (a zipped Zarr store, or a NetCDF4 file; told by content)
or as a URL of an upload set whose ``cube_url`` is ``copy`` (read there, copied here) or
``register`` (served from there; only overviews are stored here). The child opens it with
xarray, checks it (``describe``), writes the copy and overviews (``write_cube``) and
publishes them under ``assets/{collection}/cube-{job}/``; the commit, in the job's success
transaction, replaces the collection's earlier cube items by one item per time step, adds
the datacube extension fields to the collection and writes the ``datacubes`` row.
"""

import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import xarray as xr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.cubes.describe import CubeShape, describe
from catalog.cubes.errors import CubeUnreadable, NotACubeCollection
from catalog.cubes.model import Cube, CubeLayer, CubeOverview, Format, put_cube
from catalog.cubes.stac import slice_items, with_cube
from catalog.cubes.store import open_path, open_store
from catalog.cubes.write import overview_factors, prepared, target_chunks, write_cube
from catalog.ingest.errors import IngestError
from catalog.settings import IngestSettings
from catalog.storage.base import Storage, check_part, stored_href, stored_key

Kind = Literal["zarr-zip", "netcdf"]
_HDF5 = b"\x89HDF\r\n\x1a\n"
_ZARR_MARKERS = (".zgroup", ".zarray", ".zmetadata", "zarr.json")
_NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".h5", ".hdf5")


def detect_cube(path: Path) -> Kind | None:
    """``zarr-zip`` for a zip holding a Zarr store, ``netcdf`` for a NetCDF4 (HDF5) file,
    None for anything else (by content, never by name)."""
    with path.open("rb") as f:
        head = f.read(8)
    if head.startswith(_HDF5):
        return "netcdf"
    if head.startswith(b"CDF\x01") or head.startswith(b"CDF\x02"):
        return "netcdf"  # classic NetCDF: refused by the reader with cube.Unreadable
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return None
        if any(PurePosixPath(n).name in _ZARR_MARKERS for n in names):
            return "zarr-zip"
    return None


def cube_prefix(collection_id: str, job_id: str) -> str:
    """Where a job's copy and overviews are published: ``assets/{collection}/cube-{job}``."""
    token = job_id.replace("-", "")[:16]
    return f"assets/{check_part(collection_id, 'collection id')}/cube-{check_part(token)}"


def _store_root(folder: Path) -> Path:
    """The shallowest folder of an extracted zip that is a Zarr store (or group)."""
    found = sorted(
        (p.parent for p in folder.rglob("*") if p.name in (".zgroup", ".zmetadata", "zarr.json")),
        key=lambda p: (len(p.relative_to(folder).parts), p.as_posix()),
    )
    if not found:
        raise CubeUnreadable("the zip holds no Zarr store (no .zgroup, .zmetadata or zarr.json)")
    return found[0]


def open_upload(source: Path, kind: Kind, work: Path, settings: IngestSettings) -> xr.Dataset:
    """The uploaded cube, opened lazily (a zip extracted safely into ``work`` first)."""
    from catalog.vector.formats import ZipLimits, extract

    try:
        if kind == "netcdf":
            return open_path(source, "netcdf")
        folder = work / "unzipped"
        folder.mkdir()
        limits = ZipLimits(settings.zip_max_bytes, settings.zip_max_ratio,
                           settings.cube_zip_max_members)  # fmt: skip
        extract(source, folder, limits)
        return open_path(_store_root(folder), "zarr")
    except IngestError:
        raise
    except Exception as exc:  # zarr, h5py and numcodecs each raise their own
        raise CubeUnreadable(f"the file cannot be read as a {kind} datacube: {exc}") from exc


def url_format(url: str) -> Format:
    """NetCDF for a URL whose path ends like a NetCDF file, else Zarr."""
    path = url.split("?", 1)[0].rstrip("/").lower()
    return "netcdf" if path.endswith(_NETCDF_SUFFIXES) else "zarr"


def open_url(url: str, storage: Storage) -> xr.Dataset:
    """The cube at ``url`` (checked by the caller), opened lazily where it is."""
    try:
        return open_store(storage, url, url_format(url))
    except PermissionError as exc:
        raise CubeUnreadable(f"{url} refuses to be read (a private bucket?): {exc}") from exc
    except Exception as exc:  # zarr, h5py, obstore each raise their own
        raise CubeUnreadable(f"{url} cannot be read as a datacube: {exc}") from exc


def _publish(storage: Storage, folder: Path, prefix: str) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    jobs = [(p, f"{prefix}/{p.relative_to(folder).as_posix()}") for p in files]
    # One PUT (S3) or fsync and rename (local) per chunk file: overlap their waits.
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda job: storage.publish(*job), jobs))


def build_cube(
    ds: xr.Dataset,
    *,
    collection_id: str,
    href: str | None,
    fmt: Format,
    prefix: str,
    storage: Storage,
    settings: IngestSettings,
    fallback_datetime: datetime | None,
    progress: Callable[[int, str], None],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Check, write and publish the cube; what the commit needs (JSON). ``href`` None: a copy
    (stored under ``prefix``); else the URL the cube is served from (registered in place)."""
    shape = describe(ds, max_times=settings.cube_max_times, fallback_datetime=fallback_datetime,
                     log=log)  # fmt: skip
    log(f"{shape.width} x {shape.height} px, {len(shape.times)} time step(s), "
        f"{len(shape.layers)} layer(s), {shape.crs}")  # fmt: skip
    chunks = target_chunks(ds, shape, settings, can_rechunk=href is None)
    ds = prepared(ds, shape, sort=href is None)
    factors = overview_factors(shape.width, shape.height, settings)
    folder = storage.temp_path("")
    folder.mkdir(mode=0o700)
    try:
        try:
            sizes = write_cube(ds, shape, folder, chunks, factors, write_full=href is None,
                               progress=progress)  # fmt: skip
        except Exception as exc:  # a chunk that does not decode, a truncated file
            raise CubeUnreadable(f"the cube's values cannot be read: {exc}") from exc
        progress(92, "publishing the store")
        _publish(storage, folder, prefix)
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    times = tuple(sorted(shape.times)) if href is None and shape.time_dim else shape.times
    cube = _cube(shape, collection_id, href or stored_href(f"{prefix}/cube.zarr"),
                 fmt if href else "zarr", times, prefix, sizes)  # fmt: skip
    log(f"{len(factors)} overview level(s); {len(cube.times)} item(s) to write")
    return {"cube": cube_json(cube), "items": slice_items(cube)}


def _cube(
    shape: CubeShape,
    collection_id: str,
    href: str,
    fmt: Format,
    times: tuple[datetime, ...],
    prefix: str,
    sizes: dict[int, tuple[int, int]],
) -> Cube:
    overviews = tuple(
        CubeOverview(href=stored_href(f"{prefix}/overview-{f}.zarr"), factor=f, width=w, height=h)
        for f, (w, h) in sorted(sizes.items())
    )
    return Cube(
        collection_id=collection_id, href=href, format=fmt, crs=shape.crs,
        transform=shape.transform, width=shape.width, height=shape.height, x_dim=shape.x_dim,
        y_dim=shape.y_dim, time_dim=shape.time_dim, band_dim=shape.band_dim,
        layers=shape.layers, times=times, overviews=overviews,
    )  # fmt: skip


def cube_json(cube: Cube) -> dict[str, Any]:
    """``cube`` as JSON (the child's result travels as JSON)."""
    return {
        **{k: getattr(cube, k) for k in ("collection_id", "href", "format", "crs", "width",
                                         "height", "x_dim", "y_dim", "time_dim", "band_dim")},
        "transform": list(cube.transform),
        "layers": [vars(layer) for layer in cube.layers],
        "times": [t.isoformat() for t in cube.times],
        "overviews": [vars(o) for o in cube.overviews],
    }  # fmt: skip


def cube_from_json(doc: dict[str, Any]) -> Cube:
    """The ``Cube`` of ``cube_json``."""
    plain = {k: v for k, v in doc.items() if k not in ("layers", "times", "overviews",
                                                       "transform")}  # fmt: skip
    return Cube(
        **plain,
        transform=tuple(doc["transform"]),
        layers=tuple(CubeLayer(**layer) for layer in doc["layers"]),
        times=tuple(datetime.fromisoformat(t) for t in doc["times"]),
        overviews=tuple(CubeOverview(**o) for o in doc["overviews"]),
    )


async def commit_cube(
    conn: AsyncConnection,
    catalog: Any,
    result: dict[str, Any],
    validate_extensions: bool,
) -> dict[str, Any]:
    """In the job's success transaction: the items, the collection's fields, the row.
    Returns the job's outputs (with the prefix of a replaced store, removed after commit)."""
    from catalog.stac.serializers import item_row

    cube = cube_from_json(result["cube"])
    collection_id = cube.collection_id
    previous, old_prefixes = await _check_collection(conn, collection_id)
    if previous is not None:
        await conn.execute(
            text("DELETE FROM items WHERE collection_id = :c "
                 "AND content -> 'assets' -> 'data' ->> 'href' = :href"),
            {"c": collection_id, "href": previous},
        )  # fmt: skip
    for item in result["items"]:
        await catalog.insert_item(conn, collection_id, item_row(item, collection_id,
                                                                 validate_extensions))  # fmt: skip
    content = await conn.scalar(
        text("SELECT content FROM collections WHERE id = :c FOR UPDATE"), {"c": collection_id}
    )
    await conn.execute(
        text("UPDATE collections SET content = CAST(:content AS jsonb), updated = now() "
             "WHERE id = :c"),
        {"c": collection_id, "content": _json(with_cube(dict(content), cube))},
    )  # fmt: skip
    await put_cube(conn, cube)
    new_prefix = (stored_key(cube.href) or "").rsplit("/", 1)[0]
    replaced = sorted(p for p in old_prefixes if p != new_prefix)
    outputs: dict[str, Any] = {
        "collections": [{"id": collection_id, "items": len(result["items"])}],
        "cube": {"collection": collection_id, "items": len(result["items"]),
                 "layers": [layer.name for layer in cube.layers],
                 "overviews": [o.factor for o in cube.overviews]},
    }  # fmt: skip
    if replaced:
        outputs["cube"]["replaced"] = replaced
    return outputs


async def _check_collection(
    conn: AsyncConnection, collection_id: str
) -> tuple[str | None, set[str]]:
    """The href of the collection's cube so far (None: none yet) and the prefixes of the
    files stored for it; NotACubeCollection when it holds vector features, or items without
    being a datacube collection."""
    vector = await conn.scalar(
        text("SELECT 1 FROM vector_layers WHERE collection_id = :c"), {"c": collection_id}
    )
    if vector is not None:
        raise NotACubeCollection(f"{collection_id!r} holds vector features, not a datacube")
    row = (
        await conn.execute(
            text("SELECT href, overviews FROM datacubes WHERE collection_id = :c FOR UPDATE"),
            {"c": collection_id},
        )
    ).first()
    if row is None:
        items = await conn.scalar(
            text("SELECT 1 FROM items WHERE collection_id = :c LIMIT 1"), {"c": collection_id}
        )
        if items is not None:
            raise NotACubeCollection(
                f"{collection_id!r} holds items already: a datacube goes into a collection of "
                "its own"
            )
        return None, set()
    hrefs = [row.href, *(o.get("href") for o in row.overviews)]
    keys = [k for k in map(stored_key, hrefs) if k is not None]
    return row.href, {k.rsplit("/", 1)[0] for k in keys}


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()


def _fallback(plan: dict[str, Any]) -> datetime | None:
    return datetime.fromisoformat(plan["datetime"]) if plan.get("datetime") else None


def ingest_cube_file(
    source: Path,
    kind: Kind,
    work: Path,
    plan: dict[str, Any],
    settings: IngestSettings,
    storage: Storage,
    job_id: str,
    progress: Callable[[int, str], None],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Child process: an uploaded cube, copied into the storage."""
    log(f"{plan['filename']} is a datacube ({kind})")
    ds = open_upload(source, kind, work, settings)
    collection_id = plan["collection_id"]
    return build_cube(ds, collection_id=collection_id, href=None, fmt="zarr",
                      prefix=cube_prefix(collection_id, job_id), storage=storage,
                      settings=settings, fallback_datetime=_fallback(plan), progress=progress,
                      log=log)  # fmt: skip


def ingest_cube_url(
    plan: dict[str, Any],
    settings: IngestSettings,
    storage: Storage,
    job_id: str,
    progress: Callable[[int, str], None],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Child process: a cube at a URL, copied (``copy``) or registered in place."""
    from catalog.cubes.urls import check_cube_url

    url, mode = plan["cube_url"], plan["cube_mode"]
    check_cube_url(url, settings.url_allow_private)  # again: the name may resolve elsewhere now
    log(f"{url}: a datacube to {'register in place' if mode == 'register' else 'copy'}")
    ds = open_url(url, storage)
    collection_id = plan["collection_id"]
    return build_cube(ds, collection_id=collection_id,
                      href=url if mode == "register" else None, fmt=url_format(url),
                      prefix=cube_prefix(collection_id, job_id), storage=storage,
                      settings=settings, fallback_datetime=_fallback(plan), progress=progress,
                      log=log)  # fmt: skip
