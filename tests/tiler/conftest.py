"""Real COG items for the tiler: GeoTIFFs from tests/rasters.py, ingested by ingest_file into
the test's data folder and stored through the STAC API."""

import io
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from catalog.ingest.pipeline import IngestRequest, file_digest, ingest_file
from catalog.ingest.storage import LocalStorage
from catalog.settings import IngestSettings
from server.settings import Settings
from tests import rasters
from tests.factories import collection

COLLECTION = "maps"
PREFIX = f"/collections/{COLLECTION}/items"
MakeItem = Callable[..., dict[str, Any]]


def decode(content: bytes) -> np.ndarray:
    """The pixels of an encoded image (PNG, JPEG, WEBP, GeoTIFF), bands first."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(content) as memory, memory.open() as dataset:
            return dataset.read()


def npy(content: bytes) -> np.ndarray:
    """An ``.npy`` response as an array."""
    return np.load(io.BytesIO(content), allow_pickle=False)


@pytest.fixture
def make_item(
    client: TestClient, admin: dict[str, str], settings: Settings, tmp_path: Path
) -> MakeItem:
    """Ingest a GeoTIFF with ingest_file and POST the item; returns the item as stored."""
    r = client.post("/collections", json=collection(COLLECTION), headers=admin)
    assert r.status_code == 201, r.text
    storage = LocalStorage(settings.ingest.data_dir)

    def make(source: Path, item_id: str, collection_id: str = COLLECTION) -> dict[str, Any]:
        sha256, size = file_digest(source)
        request = IngestRequest(
            source=source, collection_id=collection_id, item_id=item_id, sha256=sha256,
            size=size, filename=source.name, datetime_value=datetime(2024, 5, 1, tzinfo=UTC),
            upload_time=datetime.now(UTC),
        )  # fmt: skip
        item = ingest_file(request, storage, settings.ingest)
        r = client.post(f"/collections/{collection_id}/items", json=item, headers=admin)
        assert r.status_code == 201, r.text
        return client.get(f"/collections/{collection_id}/items/{item_id}").json()

    return make


@pytest.fixture
def rgb_item(make_item: MakeItem, tmp_path: Path) -> dict[str, Any]:
    """A 512 x 512 px uint8 RGB item at 10 m in EPSG:32633, nodata on a 64 px frame."""
    folder = tmp_path / "src-rgb"
    folder.mkdir()
    return make_item(rasters.utm_rgb_tif(folder), "rgb")


@pytest.fixture
def rgbn_item(make_item: MakeItem, tmp_path: Path) -> dict[str, Any]:
    """A 300 x 300 px uint16 red/green/blue/NIR item at 20 m in EPSG:32633."""
    folder = tmp_path / "src-rgbn"
    folder.mkdir()
    return make_item(rasters.rgbn_uint16_tif(folder), "rgbn")


@pytest.fixture
def local_item(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """A real RGBN COG item made by ingest_file in a private data folder (no database)."""
    settings = IngestSettings(data_dir=tmp_path / "data")
    source = rasters.rgbn_uint16_tif(tmp_path)
    sha256, size = file_digest(source)
    request = IngestRequest(source, "c", "i", sha256, size, "rgbn.tif", None, datetime.now(UTC))
    return ingest_file(request, LocalStorage(settings.data_dir), settings), settings.data_dir


def centre_tile(client: TestClient, item_id: str, zoom_offset: int = 0) -> tuple[int, int, int]:
    """The WebMercatorQuad tile at the centre of an item, at its maxzoom (minus an offset)."""
    import morecantile

    tj = client.get(f"{PREFIX}/{item_id}/WebMercatorQuad/tilejson.json").json()
    west, south, east, north = tj["bounds"]
    tile = morecantile.tms.get("WebMercatorQuad").tile(
        (west + east) / 2, (south + north) / 2, tj["maxzoom"] - zoom_offset
    )
    return tile.z, tile.x, tile.y
