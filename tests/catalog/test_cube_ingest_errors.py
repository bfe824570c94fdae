"""Bad datacubes through the ingest process and a real worker: each refused with its code on
the upload file, nothing left in the catalogue; and chunks over the limit rechunked."""

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from fastapi.testclient import TestClient

from catalog.cubes.store import open_cube
from server.settings import Settings
from tests.cube_data import s2_cube, write_netcdf, write_zarr, zip_store
from tests.factories import item
from tests.workers import MakeWorker

from .cube_uploads import all_items, cube_row, storage_of, tune, worker_for
from .vector_uploads import ensure_collection, loaded, refused, upload

Maker = Callable[[Path], bytes]


@pytest.fixture(autouse=True)
def _tuned(settings: Settings) -> None:
    tune(settings)


def _zarr_zip(ds: xr.Dataset, tmp_path: Path, **options: object) -> bytes:
    store = write_zarr(ds, tmp_path / "bad.zarr", **options)  # type: ignore[arg-type]
    return zip_store(store, tmp_path / "bad.zip").read_bytes()


def _small() -> xr.Dataset:
    return s2_cube(size=8, times=3, bands=("B04", "B08"))


def no_spatial_dims(tmp_path: Path) -> bytes:
    data = np.zeros((2, 4, 4), dtype="float32")
    ds = xr.Dataset({"v": (("time", "row", "col"), data)},
                    coords={"time": pd.date_range("2024-01-01", periods=2)})  # fmt: skip
    return write_netcdf(ds, tmp_path / "flat.nc").read_bytes()


def unknown_crs(tmp_path: Path) -> bytes:
    ds = _small().drop_vars("spatial_ref")
    for var in ds.data_vars.values():
        var.encoding.pop("grid_mapping", None)
    return _zarr_zip(ds, tmp_path)


def time_without_dates(tmp_path: Path) -> bytes:
    ds = _small().assign_coords(time=[0, 1, 2])
    return _zarr_zip(ds, tmp_path)


def no_time_at_all(tmp_path: Path) -> bytes:
    return _zarr_zip(_small().isel(time=0, drop=True), tmp_path)


def half_floats(tmp_path: Path) -> bytes:
    ds = _small()
    ds["B04"] = ds["B04"].astype("float16")
    return _zarr_zip(ds, tmp_path)


def two_extra_dims(tmp_path: Path) -> bytes:
    data = np.zeros((2, 2, 3, 8, 8), dtype="float32")
    ds = _small()
    ds = xr.Dataset({"v": (("time", "level", "member", "y", "x"), data)},
                    coords={"time": ds.time[:2], "y": ds.y, "x": ds.x})  # fmt: skip
    return _zarr_zip(ds.rio.write_crs("EPSG:32631"), tmp_path)


def uneven_grid(tmp_path: Path) -> bytes:
    ds = _small()
    x = ds.x.values.copy()
    x[-1] += 3
    return _zarr_zip(ds.assign_coords(x=x), tmp_path)


def traversal(tmp_path: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cube.zarr/.zgroup", '{"zarr_format": 2}')
        archive.writestr("../../outside/.zgroup", '{"zarr_format": 2}')
    return buffer.getvalue()


def garbage_metadata(tmp_path: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cube.zarr/.zgroup", "{ not json")
    return buffer.getvalue()


def classic_netcdf(tmp_path: Path) -> bytes:
    return b"CDF\x01" + bytes(60)


CASES: list[tuple[Maker, str]] = [
    (no_spatial_dims, "cube.NoSpatialDims"),
    (unknown_crs, "cube.UnknownCrs"),
    (time_without_dates, "cube.NoTimeCoordinate"),
    (no_time_at_all, "cube.NoTimeCoordinate"),
    (half_floats, "cube.UnsupportedDtype"),
    (two_extra_dims, "cube.UnsupportedDimensions"),
    (uneven_grid, "cube.IrregularGrid"),
    (traversal, "ingest.UnsafeArchive"),
    (garbage_metadata, "cube.Unreadable"),
    (classic_netcdf, "cube.Unreadable"),
]


def test_each_bad_cube_gets_its_code(
    client: TestClient, admin: dict[str, str], settings: Settings, make_worker: MakeWorker,
    tmp_path: Path,
) -> None:  # fmt: skip
    worker_for(settings, make_worker)
    for n, (make, code) in enumerate(CASES):
        folder = tmp_path / str(n)
        folder.mkdir()
        record = upload(client, admin, f"bad-{n}", "cube.bin", make(folder))
        message = refused(record, code)
        assert message, make.__name__
        assert all_items(client, admin, f"bad-{n}") == [], make.__name__
        r = client.get(f"/collections/bad-{n}/capabilities", headers=admin)
        assert r.status_code == 404 and r.json()["code"] == "cube.NotACube", make.__name__


def test_a_cube_without_time_takes_the_upload_sets_datetime(
    client: TestClient, admin: dict[str, str], settings: Settings, make_worker: MakeWorker,
    tmp_path: Path,
) -> None:  # fmt: skip
    worker_for(settings, make_worker)
    data = no_time_at_all(tmp_path)
    record = upload(client, admin, "dem", "dem.zip", data, datetime="2023-06-01T12:00:00Z")
    assert loaded(record) == ["dem"]
    (only,) = all_items(client, admin, "dem")
    assert only["properties"]["datetime"] == "2023-06-01T12:00:00Z"
    assert cube_row(client, "dem").time_dim is None


def _deep_chunks(tmp_path: Path) -> bytes:
    """One chunk of 40 x 64 x 64 float32: 640 KiB, over a limit of 64 KiB."""
    return _zarr_zip(s2_cube(bands=("B04",)), tmp_path, chunks={"time": 40})


def test_chunks_over_the_limit_are_refused_without_rechunking(
    client: TestClient, admin: dict[str, str], settings: Settings, make_worker: MakeWorker,
    tmp_path: Path,
) -> None:  # fmt: skip
    worker_for(settings, make_worker, cube_max_chunk_bytes=65536, cube_rechunk=False)
    refused(upload(client, admin, "big", "big.zip", _deep_chunks(tmp_path)),
            "cube.ChunksTooLarge")  # fmt: skip


def test_chunks_over_the_limit_are_rechunked(
    client: TestClient, admin: dict[str, str], settings: Settings, make_worker: MakeWorker,
    tmp_path: Path,
) -> None:  # fmt: skip
    data = _deep_chunks(tmp_path)
    worker_for(settings, make_worker, cube_max_chunk_bytes=65536)
    assert loaded(upload(client, admin, "big2", "big.zip", data)) == ["big2"]
    ds = open_cube(cube_row(client, "big2"), storage_of(settings))
    assert ds["B04"].encoding["chunks"] == (1, 64, 64)
    np.testing.assert_array_equal(ds["B04"].values, s2_cube(bands=("B04",))["B04"].values)


def test_zip_limits(
    client: TestClient, admin: dict[str, str], settings: Settings, make_worker: MakeWorker,
    tmp_path: Path,
) -> None:  # fmt: skip
    worker_for(settings, make_worker, cube_zip_max_members=5)
    data = _zarr_zip(_small(), tmp_path)
    refused(upload(client, admin, "bomb", "many.zip", data), "ingest.ArchiveBomb")


def test_a_cube_goes_into_a_collection_of_its_own(
    client: TestClient, admin: dict[str, str], settings: Settings, make_worker: MakeWorker,
    tmp_path: Path,
) -> None:  # fmt: skip
    worker_for(settings, make_worker)
    ensure_collection(client, admin, "scenes")
    r = client.post("/collections/scenes/items", json=item("scene-1"), headers=admin)
    assert r.status_code in (200, 201), r.text
    data = _zarr_zip(_small(), tmp_path)
    refused(upload(client, admin, "scenes", "cube.zip", data), "cube.NotACubeCollection")
    assert [i["id"] for i in all_items(client, admin, "scenes")] == ["scene-1"]
