"""Vector files made with pyogrio/GDAL, and uploading them through a real worker.

Shared by tests/catalog/test_vector_ingest*.py and tests/server/test_vector_upload*.py.
"""

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from fastapi.testclient import TestClient
from pyogrio.raw import write
from pyproj import Transformer
from sqlalchemy import Engine, text

from catalog.jobs.queue import JobRepository
from catalog.settings import JobSettings
from catalog.stac.repository import CatalogRepository
from catalog.storage import build_storage
from catalog.uploads.repository import FINAL_FILE_STATES, UploadRepository
from server.processes import build_processes
from server.settings import Settings
from tests.factories import collection
from tests.workers import MakeWorker, wait_for

FAST = JobSettings(heartbeat_s=0.2, stale_after_s=5, idle_wake_s=0.2, max_attempts=1)

# Fields of the standard test layer: name -> (values per feature).
CROPS = np.array(["wheat", "maize", "wheat"], dtype=object)
AREAS = np.array([1.5, 2.25, 3.0])
COUNTS = np.array([3, 1, 4], dtype=np.int64)
DAYS = np.array(["2024-05-01T10:00:00", "2024-06-02T00:00:00", "2024-07-03T12:30:00"],
                dtype="datetime64[ms]")  # fmt: skip


def start_worker(settings: Settings, make_worker: MakeWorker) -> None:
    """A real job worker (in a thread) running the server's processes."""

    def processes(engine: Any) -> Any:
        uploads = UploadRepository(engine, JobRepository(engine))
        storage = build_storage(settings.storage, settings.ingest.data_dir)
        return build_processes(settings, CatalogRepository(engine), uploads, storage)

    make_worker(processes, FAST).start()


def polygons_in(crs: str, origin: tuple[float, float], size: float) -> list[shapely.Geometry]:
    """Three squares near ``origin`` (given in EPSG:4326 lon/lat), built in ``crs``."""
    to_crs = Transformer.from_crs(4326, crs, always_xy=True)
    x, y = to_crs.transform(*origin)
    return [shapely.box(x + i * 2 * size, y, x + i * 2 * size + size, y + size) for i in range(3)]


def write_layer(
    path: Path,
    geoms: Sequence[shapely.Geometry],
    crs: str | None = "EPSG:4326",
    driver: str = "GPKG",
    layer: str | None = None,
    fields: dict[str, np.ndarray] | None = None,
    **options: Any,
) -> Path:
    """Write a layer with GDAL (pyogrio); default fields: crop, area, count, day."""
    fields = fields if fields is not None else {"crop": CROPS, "area": AREAS, "count": COUNTS,
                                                "day": DAYS}  # fmt: skip
    fields = {k: v[: len(geoms)] for k, v in fields.items()}
    kinds = {g.geom_type for g in geoms}
    write(str(path), shapely.to_wkb(np.array(geoms, dtype=object)), list(fields.values()),
          list(fields), layer=layer, driver=driver, crs=crs,
          geometry_type=kinds.pop() if len(kinds) == 1 else "Unknown", **options)  # fmt: skip
    return path


def ensure_collection(client: TestClient, admin: dict[str, str], collection_id: str) -> None:
    """The upload set's collection (made as a plain STAC collection if missing)."""
    if client.get(f"/collections/{collection_id}", headers=admin).status_code == 404:
        r = client.post("/collections", json=collection(collection_id), headers=admin)
        assert r.status_code == 201, r.text


def upload(
    client: TestClient,
    admin: dict[str, str],
    collection_id: str,
    filename: str,
    data: bytes,
    **options: Any,
) -> dict[str, Any]:
    """Send one file in a new upload set through multipart; its record once its job ended."""
    ensure_collection(client, admin, collection_id)
    r = client.post("/upload_sets", json={"collection": collection_id, **options}, headers=admin)
    assert r.status_code == 201, r.text
    set_id = r.json()["id"]
    r = client.post(f"/upload_sets/{set_id}/files", headers=admin,
                    files={"file": (filename, data)})  # fmt: skip
    assert r.status_code == 201, r.text
    wait_for(client, admin, r.json()["job"]["id"], "successful", "failed", timeout=120)
    # The file's record follows its job's end (the process's ``failed`` hook runs after).
    deadline = time.monotonic() + 30
    while True:
        record = dict(client.get(r.headers["location"], headers=admin).json())
        if record["status"] in FINAL_FILE_STATES or time.monotonic() > deadline:
            return record
        time.sleep(0.05)


def loaded(record: dict[str, Any]) -> list[str]:
    """The collections a file went into; fails with the file's error if it was refused."""
    assert record["status"] == "ready", json.dumps(record, indent=1)
    return list(record["collections"])


def refused(record: dict[str, Any], code: str) -> str:
    """The file was refused with ``code``; its message."""
    assert record["status"] == "rejected", json.dumps(record, indent=1)
    assert record["error"]["code"] == code, record["error"]
    return str(record["error"]["description"])


def layer_row(engine: Engine, collection_id: str) -> dict[str, Any]:
    """The ``vector_layers`` row of a collection."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM vector_layers WHERE collection_id = :c"),
                           {"c": collection_id}).mappings().one()  # fmt: skip
    return dict(row)


def features(engine: Engine, collection_id: str) -> list[dict[str, Any]]:
    """Every feature of a collection, by fid: ``geom`` (shapely) and its properties by name."""
    layer = layer_row(engine, collection_id)
    columns = {p["column"]: p["name"] for p in layer["properties"]}
    with engine.connect() as conn:
        table = f'features."{layer["table_name"]}"'
        rows = conn.execute(text("SELECT ST_AsBinary(geom) AS wkb, ST_SRID(geom) AS srid, * "
                                 f"FROM {table} ORDER BY fid"))  # fmt: skip
        found = []
        for row in rows.mappings():
            assert row["srid"] == 4326
            found.append({"geom": shapely.from_wkb(bytes(row["wkb"])),
                          **{name: row[column] for column, name in columns.items()}})  # fmt: skip
    return found


def valid_collection(doc: dict[str, Any]) -> None:
    """``doc`` is a valid STAC Collection (pystac, schemas from catalog/schemas, no network)."""
    import pystac
    from pystac.validation import JsonSchemaSTACValidator, set_validator

    from catalog.stac.validation import SCHEMA_DIR, _urlmap

    validator = JsonSchemaSTACValidator()
    for url, relative in _urlmap().items():
        validator.schema_cache[url] = json.loads((SCHEMA_DIR / relative).read_text())
    set_validator(validator)
    try:
        # Without its links: pystac would follow the root link to resolve it.
        assert pystac.Collection.from_dict({**doc, "links": []}).validate()
    finally:
        set_validator(JsonSchemaSTACValidator())


def lonlat(geom: shapely.Geometry, crs: str) -> shapely.Geometry:
    """A geometry of ``crs`` in EPSG:4326 lon/lat, by pyproj."""
    to_4326 = Transformer.from_crs(crs, 4326, always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(to_4326.transform(*xy.T)))
