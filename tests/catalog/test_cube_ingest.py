"""Datacubes through the ingest process and a real worker: a Sentinel-2-like Zarr store, a
lat/lon model cube in NetCDF, a cube with a band dimension, cubes by URL (copied, registered in
place), a cube replacing another, and a private cube hidden from other accounts.

Every figure is checked against the formula the test cube was made from (tests/cube_data.py)
or against xarray on the same data.
"""

import json
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from fastapi.testclient import TestClient
from pyproj import Transformer

from catalog.cubes.store import clear_cache, open_cube
from catalog.cubes.write import overview_factors
from catalog.settings import IngestSettings
from catalog.storage.base import stored_key
from catalog.storage.s3 import S3Storage
from server.settings import Settings
from tests.conftest import S3Server
from tests.cube_data import (
    S2_BANDS,
    S2_START,
    model_cube,
    s2_cube,
    s2_value,
    write_netcdf,
    write_zarr,
    zip_store,
)
from tests.owners import owned_collection, person
from tests.workers import MakeWorker, wait_for, wait_for_final

from .cube_uploads import all_items, cube_row, datacube_of, storage_of, tune, valid_item
from .vector_uploads import ensure_collection, loaded, start_worker, upload


@pytest.fixture(autouse=True)
def _tuned(settings: Settings) -> None:
    tune(settings)
    clear_cache()


@pytest.fixture
def worker(settings: Settings, make_worker: MakeWorker) -> None:
    start_worker(settings, make_worker)


def _s2_zip(tmp_path: Path, times: int = 40, **options: Any) -> bytes:
    store = write_zarr(s2_cube(times=times), tmp_path / "s2.zarr", **options)
    return zip_store(store, tmp_path / "s2.zip").read_bytes()


def _iso(values: Any) -> list[str]:
    return [pd.Timestamp(v).strftime("%Y-%m-%dT%H:%M:%SZ") for v in values]


def test_sentinel2_zarr_becomes_a_datacube_collection(
    client: TestClient, admin: dict[str, str], worker: None, settings: Settings, tmp_path: Path
) -> None:
    data = _s2_zip(tmp_path, zarr_format=3, consolidated=False)
    assert loaded(upload(client, admin, "s2", "upload.bin", data)) == ["s2"]
    times = _iso(pd.date_range(S2_START, periods=40, freq="5D"))
    items = all_items(client, admin, "s2")
    assert [i["properties"]["datetime"] for i in items] == times
    assert [i["id"] for i in items][:2] == ["20240301T000000Z", "20240306T000000Z"]
    to_lonlat = Transformer.from_crs(32631, 4326, always_xy=True)
    west, south, east, north = to_lonlat.transform_bounds(600_000, 4_999_360, 600_640, 5_000_000)
    assert items[0]["bbox"] == pytest.approx([west, south, east, north], abs=1e-6)
    assert items[5]["properties"]["proj:code"] == "EPSG:32631"
    assert items[5]["assets"]["data"]["terracat:time_index"] == 5
    valid_item(items[5])
    # the collection: datacube extension fields, read back by pystac's datacube extension
    doc = client.get("/collections/s2", headers=admin).json()
    cube_ext = datacube_of(doc)
    dims = cube_ext.dimensions
    assert dims["x"].extent == [600_000, 600_640] and dims["x"].step == 10
    assert dims["y"].extent == [4_999_360, 5_000_000] and dims["y"].step == -10
    assert dims["x"].reference_system == 32631
    assert dims["time"].values == times and dims["time"].extent == [times[0], times[-1]]
    assert sorted(cube_ext.variables or {}) == sorted(S2_BANDS)
    assert doc["cube:variables"]["B04"]["dimensions"] == ["time", "y", "x"]
    assert doc["extent"]["temporal"]["interval"] == [[times[0], times[-1]]]
    assert doc["terracat:kind"] == "datacube"
    caps_link = next(link for link in doc["links"] if link["rel"] == "capabilities")
    assert caps_link["href"] == "http://testserver/collections/s2/capabilities"
    # the stored copy: values as made, sorted by time, overviews of factor 2 and 4
    cube = cube_row(client, "s2")
    assert [o.factor for o in cube.overviews] == [2, 4]
    assert [(o.width, o.height) for o in cube.overviews] == [(32, 32), (16, 16)]
    assert cube.layer("red") is not None and cube.layer("red").name == "B04"  # type: ignore[union-attr]
    storage = storage_of(settings)
    ds = open_cube(cube, storage)
    yy, xx = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    np.testing.assert_allclose(ds["B08"].isel(time=17).values, s2_value(4, 17, yy, xx), rtol=1e-6)
    overview = open_cube(cube, storage, overview=4)["B04"].isel(time=9).values
    expected = s2_cube()["B04"].isel(time=9).coarsen(x=4, y=4).mean().values
    np.testing.assert_allclose(overview, expected, rtol=1e-6)
    # capabilities for clients
    caps = client.get("/collections/s2/capabilities", headers=admin).json()
    assert sorted(layer["name"] for layer in caps["layers"]) == sorted(S2_BANDS)
    common = {layer["name"]: layer["common_name"] for layer in caps["layers"]}
    assert common["B04"] == "red" and common["B8A"] == "nir08" and common["B11"] == "swir16"
    assert caps["time"]["values"] == times and caps["crs"] == "EPSG:32631"
    assert caps["bbox"] == pytest.approx([west, south, east, north], abs=1e-6)
    assert caps["overviews"] == [2, 4] and caps["layers"][0]["dtype"] == "float32"


def test_item_asset_is_the_store_served_file_by_file(
    client: TestClient, admin: dict[str, str], worker: None, tmp_path: Path
) -> None:
    data = _s2_zip(tmp_path, times=4, zarr_format=2)
    assert loaded(upload(client, admin, "s2", "s2.zarr.zip", data)) == ["s2"]
    item = all_items(client, admin, "s2")[3]
    href = item["assets"]["data"]["href"]
    assert href == f"http://testserver/collections/s2/items/{item['id']}/assets/data"
    assert item["assets"]["data"]["type"] == "application/vnd+zarr"
    r = client.get(href + "/.zmetadata", headers=admin)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert json.loads(r.content)["metadata"]["B04/.zarray"]["chunks"] == [1, 64, 64]
    chunk = client.get(href + "/B04/3.0.0", headers=admin)
    assert chunk.status_code == 200 and len(chunk.content) > 0
    for bad in ("/../../other/data", "/B04/%2e%2e/x", "/nothing"):
        assert client.get(href + bad, headers=admin).status_code == 404, bad


def test_netcdf_model_cube(
    client: TestClient, admin: dict[str, str], worker: None, settings: Settings, tmp_path: Path
) -> None:
    source = model_cube()
    data = write_netcdf(source, tmp_path / "model.nc").read_bytes()
    assert loaded(upload(client, admin, "era", "forecast.nc", data)) == ["era"]
    items = all_items(client, admin, "era")
    assert [i["properties"]["datetime"] for i in items] == _iso(source.time.values)
    assert items[0]["bbox"] == pytest.approx([2.0, 42.0, 14.0, 50.0])
    doc = client.get("/collections/era", headers=admin).json()
    dims = datacube_of(doc).dimensions
    assert dims["longitude"].extent == [2.0, 14.0] and dims["latitude"].extent == [42.0, 50.0]
    assert doc["cube:variables"]["t2m"]["unit"] == "K"
    cube = cube_row(client, "era")
    assert (cube.crs, cube.width, cube.height, cube.overviews) == ("EPSG:4326", 48, 32, ())
    ds = open_cube(cube, storage_of(settings))
    xr.testing.assert_allclose(ds["t2m"].drop_vars("spatial_ref"), source["t2m"].drop_vars(
        "spatial_ref"))  # fmt: skip


def test_band_dimension_gives_a_layer_per_band(
    client: TestClient, admin: dict[str, str], worker: None, settings: Settings, tmp_path: Path
) -> None:
    bands = ["B02", "B04", "B08"]
    s2 = s2_cube(size=16, times=3, bands=tuple(bands))
    stacked = s2.to_dataarray("band").transpose("time", "band", "y", "x")
    ds = stacked.to_dataset(name="reflectance").assign_coords(band=bands)
    ds = ds.rio.write_crs("EPSG:32631")
    store = write_zarr(ds, tmp_path / "stack.zarr", chunks={"band": 1})
    assert loaded(
        upload(
            client,
            admin,
            "stack",
            "stack.zip",
            zip_store(store, tmp_path / "stack.zip").read_bytes(),
        )
    ) == ["stack"]
    cube = cube_row(client, "stack")
    assert cube.band_dim == "band" and [la.name for la in cube.layers] == bands
    assert cube.layer("nir") is not None and cube.layer("nir").band == "B08"  # type: ignore[union-attr]
    doc = client.get("/collections/stack", headers=admin).json()
    assert doc["cube:dimensions"]["band"] == {"type": "bands", "values": bands}
    got = open_cube(cube, storage_of(settings))["reflectance"].sel(band="B08").isel(time=2)
    yy, xx = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    np.testing.assert_allclose(got.values, s2_value(2, 2, yy, xx), rtol=1e-6)  # B08: 3rd


class _Ranges(SimpleHTTPRequestHandler):
    """Python's file server, quiet, answering ``Range: bytes=a-b`` (NetCDF is read by ranges)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        wanted = self.headers.get("Range", "")
        path = Path(self.translate_path(self.path))
        if not wanted.startswith("bytes=") or not path.is_file():
            super().do_GET()
            return
        data = path.read_bytes()
        first, _, last = wanted[6:].partition("-")
        start = int(first) if first else len(data) - int(last)
        end = min(int(last), len(data) - 1) if first and last else len(data) - 1
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self.wfile.write(data[start : end + 1])


@pytest.fixture
def served(tmp_path: Path) -> Any:
    """An HTTP server on this machine serving ``tmp_path/www``."""
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Ranges, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _by_url(client: TestClient, admin: dict[str, str], collection_id: str, href: str,
            mode: str) -> dict[str, Any]:  # fmt: skip
    ensure_collection(client, admin, collection_id)
    r = client.post("/upload_sets", json={"collection": collection_id, "cube_url": mode},
                    headers=admin)  # fmt: skip
    assert r.status_code == 201 and r.json()["cube_url"] == mode, r.text
    r = client.post(f"/upload_sets/{r.json()['id']}/files", json={"href": href}, headers=admin)
    assert r.status_code == 201, r.text
    wait_for(client, admin, r.json()["job"]["id"], "successful", "failed", timeout=120)
    return dict(wait_for_final(client, admin, r.headers["location"]))


def wait_until(check: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_urls_copied_and_registered_in_place(
    client: TestClient, admin: dict[str, str], worker: None, settings: Settings, served: Any
) -> None:
    root, base = served
    write_zarr(s2_cube(size=32, times=4), root / "s2.zarr", zarr_format=2)
    write_netcdf(model_cube(nlon=64, times=3), root / "model.nc")
    assert loaded(_by_url(client, admin, "copied", f"{base}/s2.zarr", "copy")) == ["copied"]
    copied = cube_row(client, "copied")
    assert stored_key(copied.href) is not None and copied.format == "zarr"
    assert loaded(_by_url(client, admin, "linked", f"{base}/s2.zarr", "register")) == ["linked"]
    linked = cube_row(client, "linked")
    assert linked.href == f"{base}/s2.zarr" and linked.overviews == ()  # 32 px: none needed
    items = all_items(client, admin, "linked")
    assert len(items) == 4 and items[0]["assets"]["data"]["href"] == f"{base}/s2.zarr"
    assert loaded(_by_url(client, admin, "nc", f"{base}/model.nc", "register")) == ["nc"]
    nc_cube = cube_row(client, "nc")
    assert nc_cube.format == "netcdf" and [o.factor for o in nc_cube.overviews] == [2, 4]
    storage = storage_of(settings)
    for cube in (copied, linked):
        got = open_cube(cube, storage)["B03"].isel(time=3, y=7, x=9).values
        np.testing.assert_allclose(got, s2_value(1, 3, 7, 9), rtol=1e-6)
    source = model_cube(nlon=64, times=3)["precip"].isel(time=2)
    nc = open_cube(nc_cube, storage)["precip"].isel(time=2).values
    np.testing.assert_allclose(nc, source.values)
    # its overviews are stored here, as Zarr, though the cube is a NetCDF file elsewhere
    half = open_cube(nc_cube, storage, overview=2)["precip"].isel(time=2).values
    np.testing.assert_allclose(half, source.coarsen(latitude=2, longitude=2).mean().values,
                               rtol=1e-6)  # fmt: skip
    # a set without cube_url downloads the file, which becomes a cube by its content
    ensure_collection(client, admin, "fetched")
    r = client.post("/upload_sets", json={"collection": "fetched"}, headers=admin)
    r = client.post(f"/upload_sets/{r.json()['id']}/files", json={"href": f"{base}/model.nc"},
                    headers=admin)  # fmt: skip
    assert r.status_code == 201, r.text
    wait_for(client, admin, r.json()["job"]["id"], "successful", "failed", timeout=120)
    assert loaded(wait_for_final(client, admin, r.headers["location"])) == ["fetched"]
    assert stored_key(cube_row(client, "fetched").href) is not None
    # a server that does not answer: url.Unreachable (retried while attempts remain), and a
    # URL that answers with no store: cube.Unreadable
    closed = _by_url(client, admin, "gone", "http://127.0.0.1:9/cube.zarr", "register")
    assert closed["error"]["code"] == "url.Unreachable", closed
    empty = _by_url(client, admin, "empty", f"{base}/nothing.zarr", "register")
    assert empty["error"]["code"] == "cube.Unreadable", empty
    # only http(s) and s3 URLs, and not to this machine without the setting (tested in the
    # URL ingest tests): a file: URL is refused before any job
    r = client.post("/upload_sets", json={"collection": "nc", "cube_url": "register"},
                    headers=admin)  # fmt: skip
    bad = client.post(f"/upload_sets/{r.json()['id']}/files", json={"href": "file:///etc"},
                      headers=admin)  # fmt: skip
    assert bad.status_code == 400 and bad.json()["code"] == "url.Forbidden"


@pytest.fixture
def s3_settings(settings: Settings, s3_server: S3Server) -> Settings:
    """The test's settings with assets in a new bucket of the session's moto server."""
    settings.storage = s3_server.settings(s3_server.make_bucket(), "terracat/")
    return settings


def test_a_cube_in_s3_storage(
    s3_settings: Settings, client: TestClient, admin: dict[str, str], make_worker: MakeWorker,
    tmp_path: Path, s3_server: S3Server,
) -> None:  # fmt: skip
    start_worker(s3_settings, make_worker)
    data = write_netcdf(s2_cube(times=3), tmp_path / "s2.nc").read_bytes()
    assert loaded(upload(client, admin, "s3cube", "s2.nc", data)) == ["s3cube"]
    cube = cube_row(client, "s3cube")
    storage = S3Storage(s3_settings.storage, s3_settings.ingest.data_dir)
    key = str(stored_key(cube.href))
    assert storage.stat(f"{key}/.zmetadata") is not None
    got = open_cube(cube, storage)["B12"].isel(time=2).values
    yy, xx = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    np.testing.assert_allclose(got, s2_value(7, 2, yy, xx), rtol=1e-6)
    quarter = open_cube(cube, storage, overview=4)["B12"].isel(time=2).values
    expected = s2_cube(times=3)["B12"].isel(time=2).coarsen(x=4, y=4).mean().values
    np.testing.assert_allclose(quarter, expected, rtol=1e-6)
    item = all_items(client, admin, "s3cube")[1]
    r = client.get(item["assets"]["data"]["href"] + "/.zmetadata", headers=admin)
    assert r.status_code == 200 and "B12/.zarray" in r.json()["metadata"]
    # an s3:// URL registered in place: read anonymously (a public bucket) on the same service
    public = s3_server.make_bucket()
    storage.client.put_bucket_policy(Bucket=public, Policy=json.dumps(_public_read(public)))
    local = write_zarr(s2_cube(size=16, times=2), tmp_path / "pub.zarr", zarr_format=2)
    for file in sorted(p for p in local.rglob("*") if p.is_file()):
        storage.client.upload_file(str(file), public, f"cubes/pub.zarr/{file.relative_to(local)}")
    record = _by_url(client, admin, "pub", f"s3://{public}/cubes/pub.zarr", "register")
    assert loaded(record) == ["pub"] and cube_row(client, "pub").href.startswith("s3://")
    got = open_cube(cube_row(client, "pub"), storage)["B02"].isel(time=1, y=3, x=4).values
    np.testing.assert_allclose(got, s2_value(0, 1, 3, 4), rtol=1e-6)


def _public_read(bucket: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}  # fmt: skip


def test_a_new_cube_replaces_the_old_one(
    client: TestClient, admin: dict[str, str], worker: None, settings: Settings, tmp_path: Path
) -> None:
    first = _s2_zip(tmp_path, times=3)
    assert loaded(upload(client, admin, "s2", "first.zip", first)) == ["s2"]
    old = cube_row(client, "s2")
    old_folder = storage_of(settings).path(str(stored_key(old.href))).parent
    assert old_folder.is_dir()
    second = write_zarr(s2_cube(size=16, times=5), tmp_path / "second.zarr")
    data = zip_store(second, tmp_path / "second.zip").read_bytes()
    assert loaded(upload(client, admin, "s2", "second.zip", data)) == ["s2"]
    new = cube_row(client, "s2")
    assert new.href != old.href and (new.width, len(new.times)) == (16, 5)
    assert len(all_items(client, admin, "s2")) == 5
    # removed after the commit (the job's after_commit), which may follow the file's `ready`
    assert wait_until(lambda: not old_folder.exists())


def test_private_cube_is_invisible_to_other_accounts(
    client: TestClient, admin: dict[str, str], worker: None, tmp_path: Path
) -> None:
    owner, other = person(client, "cube-owner"), person(client, "cube-other")
    owned_collection(client, admin, "secret", owner, "private")
    data = write_netcdf(model_cube(times=2), tmp_path / "m.nc").read_bytes()
    assert loaded(upload(client, owner.headers, "secret", "m.nc", data)) == ["secret"]
    item = all_items(client, owner.headers, "secret")[0]
    # signed for a private collection; a store's files are read with the token instead (the
    # signature of the asset also opens them, put after the file's path)
    href, _, signature = item["assets"]["data"]["href"].partition("?")
    assert client.get(f"{href}/.zmetadata?{signature}").status_code == 200
    paths = ["/collections/secret/capabilities", "/collections/secret/items",
             f"/collections/secret/items/{item['id']}", href + "/.zmetadata"]  # fmt: skip
    for path in paths:
        assert client.get(path, headers=owner.headers).status_code == 200, path
        for who in (other.headers, {}):
            r = client.get(path, headers=who)
            assert r.status_code == 404 and "t2m" not in r.text, (path, r.text)
    missing = client.get("/collections/nothing/capabilities", headers=other.headers).json()
    hidden = client.get("/collections/secret/capabilities", headers=other.headers).json()
    assert hidden["code"] == missing["code"] == "catalog.NotFound"


def test_every_cube_wider_than_a_tile_gets_overviews_by_default(tmp_path: Path) -> None:
    """As a COG has overviews down to its block size: a 2048 px cube without them tiled at
    5x a COG's time from z0 to z5 (bench.cube_tiles at its defaults)."""
    settings = IngestSettings(data_dir=tmp_path)
    assert overview_factors(512, 300, settings) == ()  # one tile: nothing to reduce
    assert overview_factors(513, 100, settings) == (2,)
    assert overview_factors(2048, 2048, settings) == (2, 4)
    assert overview_factors(1000, 5000, settings) == (2, 4, 8, 16)
