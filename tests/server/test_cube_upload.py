"""A datacube end to end: a live uvicorn, a real ``terracat worker`` process, tuspy; then the
cube read back over HTTP as another machine would, from the item's asset URL."""

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from obstore.store import HTTPStore
from pystac_client import Client
from tusclient import client as tus_client
from zarr.storage import ObjectStore

from server.ingest_client import Sha256Uploader
from tests.cube_data import S2_START, s2_cube, s2_value, write_zarr, zip_store
from tests.factories import collection

from .ingest_stack import Stack, Workers, live_stack, running_workers, settled


@pytest.fixture(scope="module")
def stack(databases: Any) -> Iterator[Stack]:
    with live_stack(
        databases,
        "cube",
        TERRACAT_INGEST_CUBE_OVERVIEW_MIN_PX="48",
        TERRACAT_INGEST_CUBE_OVERVIEW_TILE_PX="16",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def workers(stack: Stack) -> Iterator[Workers]:
    with running_workers(stack) as running:
        yield running


def test_tus_zarr_upload_is_read_back_over_http(
    stack: Stack, workers: Workers, tmp_path: Path
) -> None:
    store = write_zarr(s2_cube(), tmp_path / "s2.zarr", zarr_format=3)
    data = zip_store(store, tmp_path / "s2.zip").read_bytes()
    with stack.http() as http:
        http.post("/collections", json=collection("sentinel")).raise_for_status()
        r = http.post("/upload_sets", json={"collection": "sentinel"})
        assert r.status_code == 201, r.text
        set_id = r.json()["id"]
        tus = tus_client.TusClient(stack.url + "uploads/", headers=stack.server.auth)
        Sha256Uploader(file_stream=io.BytesIO(data), client=tus, chunk_size=256 * 1024,
                       metadata={"filename": "s2.zarr.zip", "upload_set": set_id},
                       upload_checksum=True).upload()  # fmt: skip
        http.post(f"/upload_sets/{set_id}/complete").raise_for_status()
        (file,) = settled(http, set_id)["files"]
        assert file["source"] == "tus" and file["status"] == "ready", file
        assert file["collections"] == ["sentinel"]
        items = http.get("/collections/sentinel/items", params={"limit": 100}).json()
        assert len(items["features"]) == 40
        caps = http.get("/collections/sentinel/capabilities").json()
    dates = pd.date_range(S2_START, periods=40, freq="5D").strftime("%Y-%m-%dT%H:%M:%SZ")
    assert caps["time"]["values"] == list(dates) and caps["overviews"] == [2, 4]
    # pystac-client sees the time series: one item per date, searchable by datetime
    client = Client.open(stack.url, headers=dict(stack.server.auth))
    found = client.search(collections=["sentinel"], datetime="2024-04-01/2024-05-01")
    april = sorted(i.datetime.strftime("%Y-%m-%dT%H:%M:%SZ") for i in found.items())
    assert april == [d for d in dates if "2024-04-01" <= d[:10] <= "2024-05-01"]
    assert len(april) == 6
    chosen = next(i for i in items["features"] if i["properties"]["datetime"] == dates[12])
    href = chosen["assets"]["data"]["href"]
    assert href.startswith(stack.server.url + "/collections/sentinel/items/")
    # another machine: xarray + zarr over HTTP, the token as a header, nothing else shared
    http_store = HTTPStore.from_url(href, client_options={
        "allow_http": True, "default_headers": dict(stack.server.auth)})  # fmt: skip
    ds = xr.open_dataset(ObjectStore(http_store, read_only=True), engine="zarr",
                         consolidated=True, chunks=None)  # fmt: skip
    index = chosen["assets"]["data"]["terracat:time_index"]
    assert index == 12 and str(ds.time.values[index])[:10] == "2024-04-30"
    got = ds["B11"].isel(time=index).values
    yy, xx = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    np.testing.assert_allclose(got, s2_value(6, 12, yy, xx), rtol=1e-6)
