"""Datacube uploads through the ingest process and a real worker, and reading what they made.

Shared by tests/catalog/test_cube_ingest*.py.
"""

from functools import partial
from pathlib import Path
from typing import Any

import pystac
from fastapi.testclient import TestClient
from pystac.extensions.datacube import DatacubeExtension

from catalog.cubes.model import Cube, CubeRepository
from catalog.jobs.queue import JobRepository
from catalog.stac.repository import CatalogRepository
from catalog.storage import build_storage
from catalog.storage.local import LocalStorage
from catalog.uploads.repository import UploadRepository
from server.processes import build_processes
from server.settings import Settings
from tests.workers import MakeWorker, WorkerThread

from .vector_uploads import FAST, valid_collection


def tune(settings: Settings) -> None:
    """Cube settings of these tests: overviews from 48 px (factors 2 and 4 of a 64 px cube),
    URLs on this machine allowed (the test's own HTTP server)."""
    settings.ingest.cube_overview_min_px = 48
    settings.ingest.cube_overview_tile_px = 16
    settings.ingest.url_allow_private = True


def worker_for(settings: Settings, make_worker: MakeWorker, **ingest: Any) -> WorkerThread:
    """A started worker whose ingest settings are ``settings``' with ``ingest`` changed."""
    changed = settings.model_copy(deep=True)
    for name, value in ingest.items():
        setattr(changed.ingest, name, value)

    def processes(engine: Any) -> Any:
        uploads = UploadRepository(engine, JobRepository(engine))
        storage = build_storage(changed.storage, changed.ingest.data_dir)
        return build_processes(changed, CatalogRepository(engine), uploads, storage)

    worker = make_worker(processes, FAST)
    worker.start()
    return worker


def cube_row(client: TestClient, collection_id: str) -> Cube:
    """The ``datacubes`` row of a collection (fails when it has none)."""
    repo = CubeRepository(client.app.state.repository.engine)  # type: ignore[attr-defined]
    cube = client.portal.call(partial(repo.get, collection_id))  # type: ignore[union-attr]
    assert cube is not None, f"{collection_id} has no datacube row"
    return cube


def storage_of(settings: Settings) -> LocalStorage:
    """The tests' local storage."""
    return LocalStorage(settings.ingest.data_dir)


def all_items(client: TestClient, admin: dict[str, str], collection_id: str) -> list[Any]:
    """Every item of a collection, by datetime."""
    r = client.get(f"/collections/{collection_id}/items?limit=1000", headers=admin)
    assert r.status_code == 200, r.text
    return sorted(r.json()["features"], key=lambda i: i["properties"]["datetime"])


def datacube_of(doc: dict[str, Any]) -> DatacubeExtension[pystac.Collection]:
    """The collection as pystac reads it (core checked against the offline schemas first,
    without the datacube extension, whose schema is not held offline), its datacube view."""
    declared = doc["stac_extensions"]
    assert "https://stac-extensions.github.io/datacube/v2.2.0/schema.json" in declared
    core = {**doc, "stac_extensions": [e for e in declared if "/datacube/" not in e]}
    valid_collection(core)
    collection = pystac.Collection.from_dict({**doc, "links": []})
    return DatacubeExtension.ext(collection)


def make_zip(tmp_path: Path, members: dict[str, bytes]) -> bytes:
    """A zip of these members (names as given, traversal included)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
