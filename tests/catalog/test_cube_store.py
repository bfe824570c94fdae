"""open_cube: stores made by the test, opened lazily with their grid, values as written.

Local folders and the session's S3 server (moto), Zarr v2 and v3, consolidated or not, NetCDF,
an overview level; the values read equal the formula the cube was made from.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from pyproj import CRS

from catalog.cubes.model import Cube, CubeLayer, CubeOverview, Format
from catalog.cubes.store import CubeStoreError, clear_cache, open_cube
from catalog.storage.base import Storage
from catalog.storage.local import LocalStorage
from catalog.storage.s3 import S3Storage
from tests.conftest import S3Server
from tests.cube_data import (
    S2_BANDS,
    S2_ORIGIN,
    model_cube,
    s2_cube,
    s2_value,
    write_netcdf,
    write_zarr,
)

S2_TRANSFORM = (S2_ORIGIN[0], 10.0, 0.0, S2_ORIGIN[1], 0.0, -10.0)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    clear_cache()


def _s2(href: str, fmt: Format = "zarr", overviews: tuple[CubeOverview, ...] = ()) -> Cube:
    return Cube(
        collection_id="s2", href=href, format=fmt, crs="EPSG:32631", transform=S2_TRANSFORM,
        width=64, height=64, x_dim="x", y_dim="y", time_dim="time", band_dim=None,
        layers=tuple(CubeLayer(name=b, variable=b) for b in S2_BANDS), overviews=overviews,
    )  # fmt: skip


def _publish_folder(storage: Storage, folder: Path, key: str, scratch: Path) -> None:
    for file in sorted(folder.rglob("*")):
        if file.is_file():
            staged = scratch / "staged"
            shutil.copyfile(file, staged)
            storage.publish(staged, f"{key}/{file.relative_to(folder).as_posix()}")


def _check_s2(cube: Cube, storage: Storage, times: int = 40) -> None:
    ds = open_cube(cube, storage)
    assert ds.rio.crs == CRS.from_epsg(32631)
    assert ds.rio.transform() == Affine.from_gdal(*S2_TRANSFORM)
    assert (ds.rio.x_dim, ds.rio.y_dim) == ("x", "y")
    assert ds.sizes == {"time": times, "y": 64, "x": 64}
    assert ds["B04"].variable._in_memory is False  # lazy: nothing read yet
    got = ds["B04"].isel(time=7, y=slice(3, 6), x=slice(10, 12)).values
    yy, xx = np.meshgrid(np.arange(3, 6), np.arange(10, 12), indexing="ij")
    np.testing.assert_allclose(got, s2_value(2, 7, yy, xx), rtol=1e-6)
    assert ds.time.values[0].astype("datetime64[D]") == np.datetime64("2024-03-01")


@pytest.mark.parametrize(
    ("zarr_format", "consolidated"), [(2, True), (2, False), (3, True), (3, False)]
)
def test_local_zarr(tmp_path: Path, zarr_format: int, consolidated: bool) -> None:
    storage = LocalStorage(tmp_path / "data")
    write_zarr(s2_cube(), storage.path("assets/s2/cube.zarr"), zarr_format=zarr_format,
               consolidated=consolidated)  # fmt: skip
    _check_s2(_s2("storage:assets/s2/cube.zarr"), storage)


def test_local_netcdf(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    path = storage.path("assets/m/cube.nc")
    path.parent.mkdir(parents=True)
    write_netcdf(model_cube(), path)
    cube = Cube(
        collection_id="m", href="storage:assets/m/cube.nc", format="netcdf", crs="EPSG:4326",
        transform=(2.0, 0.25, 0.0, 50.0, 0.0, -0.25), width=48, height=32, x_dim="longitude",
        y_dim="latitude", time_dim="time", band_dim=None,
        layers=(CubeLayer(name="t2m", variable="t2m"),),
    )  # fmt: skip
    ds = open_cube(cube, storage)
    assert ds.rio.crs == CRS.from_epsg(4326)
    assert ds.rio.bounds() == pytest.approx((2.0, 42.0, 14.0, 50.0))
    expected = model_cube()["t2m"].isel(time=3).values
    np.testing.assert_array_equal(ds["t2m"].isel(time=3).values, expected)


def test_overview(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    full = s2_cube(size=64, times=2)
    write_zarr(full, storage.path("assets/s2/cube.zarr"))
    half = full.coarsen(x=2, y=2).mean()
    write_zarr(half, storage.path("assets/s2/cube.zarr.ovr/2"))
    level = CubeOverview(href="storage:assets/s2/cube.zarr.ovr/2", factor=2, width=32, height=32)
    cube = _s2("storage:assets/s2/cube.zarr", overviews=(level,))
    ds = open_cube(cube, storage, overview=2)
    assert ds.rio.transform() == Affine.from_gdal(*S2_TRANSFORM) @ Affine.scale(2)
    assert ds.rio.bounds() == pytest.approx(open_cube(cube, storage).rio.bounds())
    np.testing.assert_allclose(ds["B02"].isel(time=1).values, half["B02"].isel(time=1).values)
    with pytest.raises(CubeStoreError):
        open_cube(cube, storage, overview=4)


def test_s3_zarr_and_netcdf(tmp_path: Path, s3_server: S3Server) -> None:
    storage = S3Storage(s3_server.settings(s3_server.make_bucket(), "pre/"), tmp_path / "data")
    for zarr_format in (2, 3):
        local = write_zarr(s2_cube(times=8), tmp_path / f"v{zarr_format}.zarr",
                           zarr_format=zarr_format, consolidated=zarr_format == 2)  # fmt: skip
        _publish_folder(storage, local, f"assets/s2/v{zarr_format}.zarr", tmp_path)
        _check_s2(_s2(f"storage:assets/s2/v{zarr_format}.zarr"), storage, times=8)
    nc = write_netcdf(s2_cube(size=16, times=3), tmp_path / "s2.nc")
    storage.publish(nc, "assets/s2/cube.nc")
    cube = _s2("storage:assets/s2/cube.nc", "netcdf")
    ds = open_cube(cube, storage)
    assert ds.sizes == {"time": 3, "y": 16, "x": 16}
    np.testing.assert_allclose(ds["B11"].isel(time=2, y=4, x=5).values, s2_value(6, 2, 4, 5))
    # the same objects by URL, as registered in place: read without the storage's credentials,
    # so refused while the bucket is private, read once it is public
    url_cube = _s2(f"s3://{storage.bucket}/pre/assets/s2/v3.zarr")
    with pytest.raises(PermissionError):
        open_cube(url_cube, storage)
    storage.client.put_bucket_policy(
        Bucket=storage.bucket, Policy=json.dumps(_public(storage.bucket))
    )
    assert float(open_cube(url_cube, storage)["B02"].isel(time=0, y=0, x=0)) == pytest.approx(0.05)
    assert open_cube(cube, storage).time.values[2] == np.datetime64("2024-03-11")


def _public(bucket: str) -> dict[str, object]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*",
                       "Action": ["s3:GetObject", "s3:ListBucket"],
                       "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}],
    }  # fmt: skip
