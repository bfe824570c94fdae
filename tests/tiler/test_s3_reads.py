"""The item reader on object storage: a missing object, and a store that does not answer."""

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from catalog.db.cluster import free_port
from catalog.settings import StorageSettings
from catalog.storage import build_storage
from catalog.storage.base import StorageUnavailable
from tests.conftest import S3Server
from tiler.errors import AssetNotReadable
from tiler.readers.item import ItemReader
from tiler.readers.pool import DatasetPool

GEOTIFF = "image/tiff; application=geotiff; profile=cloud-optimized"


def _item(href: str) -> dict[str, Any]:
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": "i", "collection": "c",
        "bbox": [0, 0, 1, 1], "links": [],
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]},
        "properties": {"datetime": "2020-01-01T00:00:00Z"},
        "assets": {"data": {"href": href, "type": GEOTIFF, "roles": ["data"]}},
    }  # fmt: skip


def test_a_missing_object_is_told_missing(s3_server: S3Server, tmp_path: Path) -> None:
    storage = build_storage(s3_server.settings(s3_server.make_bucket()), tmp_path)
    with (
        ItemReader(_item("storage:assets/c/i/i.tif"), storage=storage, datasets=DatasetPool()) as r,
        pytest.raises(AssetNotReadable, match="asset 'data' of item 'i' is missing from storage"),
    ):
        r.tile(1, 0, 1)


def test_a_store_that_does_not_answer_is_a_503(tmp_path: Path) -> None:
    settings = StorageSettings(
        kind="s3", s3_bucket="gone", s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
        s3_path_style=True, s3_access_key_id=SecretStr("k"), s3_secret_access_key=SecretStr("s"),
    )  # fmt: skip
    storage = build_storage(settings, tmp_path)
    with (
        ItemReader(_item("storage:assets/c/i/i.tif"), storage=storage) as reader,
        pytest.raises(StorageUnavailable) as raised,
    ):
        reader.tile(1, 0, 1)
    assert (raised.value.code, raised.value.status) == ("storage.Unavailable", 503)
    assert "127.0.0.1" not in raised.value.description  # no address of the store


def test_only_keys_of_the_assets_area_are_read(s3_server: S3Server, tmp_path: Path) -> None:
    """An href naming an upload waiting for ingest, or an export, is not an asset."""
    storage = build_storage(s3_server.settings(s3_server.make_bucket()), tmp_path)
    for href in ("storage:staging/upload-1", "storage:exports/j.mbtiles", "storage:../x"):
        with (
            ItemReader(_item(href), storage=storage) as reader,
            pytest.raises(AssetNotReadable, match="not a file of this catalogue's storage"),
        ):
            reader.tile(1, 0, 1)


def test_a_replaced_object_is_read_anew(s3_server: S3Server, tmp_path: Path) -> None:
    """The pool keys /vsis3/ handles by the asset's checksum: a new one opens the new object,
    not GDAL's cached bytes of the old one."""
    import contextlib

    import numpy
    import rasterio
    from rasterio.transform import from_origin

    from tiler.readers.shared import storage_env

    storage = build_storage(s3_server.settings(s3_server.make_bucket()), tmp_path)
    pool = DatasetPool()
    profile = {"driver": "GTiff", "width": 32, "height": 32, "count": 1, "dtype": "uint8",
               "crs": "EPSG:4326", "transform": from_origin(0, 1, 1 / 32, 1 / 32)}  # fmt: skip
    for version, value in (("v1", 10), ("v2", 20)):
        staged = storage.temp_path(".tif")
        with rasterio.open(staged, "w", **profile) as dst:
            dst.write(numpy.full((1, 32, 32), value, "uint8"))
        storage.publish(staged, "assets/c/i/i.tif")
        with rasterio.Env(**storage_env(storage)), contextlib.ExitStack() as stack:
            dataset = pool.borrow_grids(storage.gdal_path("assets/c/i/i.tif"), stack, version)[0]
            assert int(dataset.read(1)[0, 0]) == value
    assert pool.opened == 2
    with rasterio.Env(**storage_env(storage)), contextlib.ExitStack() as stack:
        pool.borrow_grids(storage.gdal_path("assets/c/i/i.tif"), stack, "v2")
    assert pool.opened == 2  # the same version: the pooled handle
    pool.close()
