"""Real COG items for the tiler: GeoTIFFs from tests/rasters.py, ingested by ingest_file and
stored through the STAC API.

Items are made in two places. ``make_item``, ``rgb_item`` and ``rgbn_item`` make them in the
test's own database and data folder, for tests that change state (delete items, run exports and
jobs). ``maps`` is a client on a ``SharedCatalogue``: a database of its own holding the same two
items, made once per session for the many tests that only read them.
"""

import copy
import io
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import morecantile
import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from sqlalchemy import Engine, create_engine, text

from catalog.db.engine import sync_url
from catalog.ingest.pipeline import IngestRequest, file_digest, ingest_file
from catalog.settings import IngestSettings
from catalog.storage.local import LocalStorage
from server.app import create_app
from server.settings import Settings
from tests import rasters
from tests.conftest import ADMIN, Databases, app_settings
from tests.factories import collection
from tests.stored import store_item

COLLECTION = "maps"
PREFIX = f"/collections/{COLLECTION}/items"
WHEN = datetime(2024, 5, 1, tzinfo=UTC)
TMS = morecantile.tms.get("WebMercatorQuad")
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


class ListWriter:
    """An archive writer for ``write_tiles`` that records the tiles and the threads and
    processes that wrote them (the writer must be one thread of the export's process)."""

    def __init__(self) -> None:
        self.tiles: list[tuple[int, int, int, bytes]] = []
        self.threads: set[int] = set()
        self.pids: set[int] = set()

    def add(self, z: int, x: int, y: int, data: bytes) -> None:
        self.threads.add(threading.get_ident())
        self.pids.add(os.getpid())
        self.tiles.append((z, x, y, data))


def expected_tiles(
    region: shapely.Geometry, minzoom: int, maxzoom: int
) -> set[tuple[int, int, int]]:
    """The tiles covering a region, found with morecantile and shapely tile by tile: those
    whose interior meets the region's."""
    found = set()
    for tile in TMS.tiles(*region.bounds, list(range(minzoom, maxzoom + 1))):
        box = shapely.box(*TMS.bounds(tile))
        if region.intersects(box) and not region.touches(box):
            found.add((tile.z, tile.x, tile.y))
    return found


def ingest_item(
    client: TestClient, settings: Settings, source: Path, item_id: str,
    collection_id: str = COLLECTION, when: datetime = WHEN,
) -> dict[str, Any]:  # fmt: skip
    """Ingest a GeoTIFF with ingest_file into the settings' data folder and store the item as
    the ingest job does; returns the item as the API serves it."""
    sha256, size = file_digest(source)
    request = IngestRequest(
        source=source, collection_id=collection_id, item_id=item_id, sha256=sha256, size=size,
        filename=source.name, datetime_value=when, upload_time=datetime.now(UTC),
    )  # fmt: skip
    item = ingest_file(request, LocalStorage(settings.ingest.data_dir), settings.ingest)
    assert settings.db.url is not None
    store_item(settings.db.url, item)
    return client.get(f"/collections/{collection_id}/items/{item_id}", headers=ADMIN).json()


def add_collection(client: TestClient, doc: dict[str, Any]) -> None:
    """POST a collection."""
    r = client.post("/collections", json=doc, headers=ADMIN)
    assert r.status_code == 201, r.text


# -- items in the test's own database -----------------------------------------------------------
@pytest.fixture
def make_item(client: TestClient, settings: Settings) -> MakeItem:
    """Ingest a GeoTIFF with ingest_file and store the item; returns the item as served."""
    add_collection(client, collection(COLLECTION))

    def make(source: Path, item_id: str, collection_id: str = COLLECTION) -> dict[str, Any]:
        return ingest_item(client, settings, source, item_id, collection_id)

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


# -- items made once, only read -----------------------------------------------------------------
class SharedCatalogue:
    """An app client on a database and data folder of its own, for data that tests only read.

    The per-test truncation of the test database never reaches it, so a test must not change
    what others read; ``forget_searches`` undoes the one write tests make here (saved searches).
    """

    def __init__(
        self, settings: Settings, client: TestClient, engine: Engine, folder: Path
    ) -> None:
        self.settings = settings
        self.client = client
        self.engine = engine
        self.folder = folder
        self.items: dict[str, dict[str, Any]] = {}

    def source_folder(self, name: str) -> Path:
        """A new folder for source GeoTIFFs."""
        folder = self.folder / name
        folder.mkdir()
        return folder

    def ingest(
        self, source: Path, item_id: str, collection_id: str, when: datetime = WHEN
    ) -> dict[str, Any]:
        """Ingest and store an item (see ``ingest_item``), kept in ``items`` too."""
        item = ingest_item(self.client, self.settings, source, item_id, collection_id, when)
        self.items[item_id] = item
        return item

    def forget_searches(self) -> None:
        """Delete the saved searches."""
        with self.engine.begin() as conn:
            conn.execute(text("TRUNCATE searches"))


@contextmanager
def shared_catalogue(
    databases: Databases, name: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedCatalogue]:
    """A ``SharedCatalogue`` on a new migrated database named after ``name``."""
    folder = tmp_path_factory.mktemp(f"shared-{name}")
    url = databases.create(f"terracat_{name}_{databases.suffix}")
    settings = app_settings(url, folder / "data")
    engine = create_engine(sync_url(url))
    try:
        with TestClient(create_app(settings)) as client:
            yield SharedCatalogue(settings, client, engine, folder)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def maps_catalogue(
    databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedCatalogue]:
    """Collection ``maps`` with the items of ``rgb_item`` and ``rgbn_item``, made once."""
    with shared_catalogue(databases, "maps", tmp_path_factory) as shared:
        add_collection(shared.client, collection(COLLECTION))
        shared.ingest(rasters.utm_rgb_tif(shared.source_folder("src-rgb")), "rgb", COLLECTION)
        shared.ingest(rasters.rgbn_uint16_tif(shared.source_folder("src-rgbn")), "rgbn",
                      COLLECTION)  # fmt: skip
        yield shared


@pytest.fixture
def maps(maps_catalogue: SharedCatalogue) -> TestClient:
    """A client on collection ``maps`` with items ``rgb`` and ``rgbn``, shared: read only."""
    return maps_catalogue.client


@pytest.fixture
def maps_rgb(maps_catalogue: SharedCatalogue) -> dict[str, Any]:
    """The ``rgb`` item of ``maps`` as stored (a copy)."""
    return copy.deepcopy(maps_catalogue.items["rgb"])


@pytest.fixture
def maps_rgbn(maps_catalogue: SharedCatalogue) -> dict[str, Any]:
    """The ``rgbn`` item of ``maps`` as stored (a copy)."""
    return copy.deepcopy(maps_catalogue.items["rgbn"])


@pytest.fixture(scope="session")
def _local_rgbn(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    folder = tmp_path_factory.mktemp("local-item")
    settings = IngestSettings(data_dir=folder / "data")
    source = rasters.rgbn_uint16_tif(folder)
    sha256, size = file_digest(source)
    request = IngestRequest(source, "c", "i", sha256, size, "rgbn.tif", None, datetime.now(UTC))
    return ingest_file(request, LocalStorage(settings.data_dir), settings), settings.data_dir


@pytest.fixture
def local_item(_local_rgbn: tuple[dict[str, Any], Path]) -> tuple[dict[str, Any], Path]:
    """A real RGBN COG item made by ingest_file in a private data folder (no database); made
    once, each test gets a copy of the item."""
    item, data_dir = _local_rgbn
    return copy.deepcopy(item), data_dir


def centre_tile(client: TestClient, item_id: str, zoom_offset: int = 0) -> tuple[int, int, int]:
    """The WebMercatorQuad tile at the centre of an item, at its maxzoom (minus an offset)."""
    tj = client.get(f"{PREFIX}/{item_id}/WebMercatorQuad/tilejson.json").json()
    west, south, east, north = tj["bounds"]
    tile = TMS.tile((west + east) / 2, (south + north) / 2, tj["maxzoom"] - zoom_offset)
    return tile.z, tile.x, tile.y


from tests.tiler.rights import world  # noqa: E402, F401 - the rights tests' fixture
