"""Vector uploads end to end: a live uvicorn, a real ``terracat worker`` process, httpx
multipart and tuspy; and the time a 100k-polygon GeoPackage takes to be queryable."""

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
import shapely
from pyogrio.raw import write
from tusclient import client as tus_client

from server.ingest_client import Sha256Uploader
from tests.catalog.vector_uploads import lonlat, polygons_in, write_layer
from tests.factories import collection

from .ingest_stack import Stack, Workers, live_stack, multipart, running_workers, settled, wait_for


@pytest.fixture(scope="module")
def stack(databases: Any) -> Iterator[Stack]:
    with live_stack(databases, "vector") as running:
        yield running


@pytest.fixture(scope="module")
def workers(stack: Stack) -> Iterator[Workers]:
    with running_workers(stack) as running:
        yield running


def _new_set(http: httpx.Client, collection_id: str, **options: Any) -> str:
    if http.get(f"/collections/{collection_id}").status_code == 404:
        http.post("/collections", json=collection(collection_id)).raise_for_status()
    r = http.post("/upload_sets", json={"collection": collection_id, **options})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _layer(stack: Stack, collection_id: str) -> dict[str, Any]:
    with psycopg.connect(stack.database_url.replace("+psycopg", "")) as conn:
        cur = conn.execute(
            "SELECT table_name, feature_count, source_crs, west, south, east, north "
            "FROM vector_layers WHERE collection_id = %s",
            (collection_id,),
        )
        names = [d.name for d in cur.description or []]
        row = cur.fetchone()
        assert row is not None, f"{collection_id} has no layer"
        return dict(zip(names, row, strict=True))


def test_multipart_geopackage_becomes_a_listed_vector_collection(
    stack: Stack, workers: Workers, tmp_path: Path
) -> None:
    geoms = polygons_in("EPSG:2154", (2.35, 48.85), 100)
    path = write_layer(tmp_path / "parcels.gpkg", geoms, "EPSG:2154")
    with stack.http() as http:
        set_id = _new_set(http, "parcels")
        record = multipart(http, set_id, path, "parcels")  # no extension: content decides
        http.post(f"/upload_sets/{set_id}/complete").raise_for_status()
        done = settled(http, set_id)
        (file,) = done["files"]
        assert file["status"] == "ready" and file["collections"] == ["parcels"], file
        assert file["id"] == record["id"] and file["job"]["status"] == "successful"
        link = next(lk["href"] for lk in file["links"] if lk["rel"] == "collection")
        doc = http.get(link).json()  # an absolute link that works from elsewhere
        assert doc["terracat:kind"] == "vector" and doc["itemType"] == "feature"
        listed = http.get("/collections").json()["collections"]
        assert "parcels" in [c["id"] for c in listed]
    layer = _layer(stack, "parcels")
    assert layer["feature_count"] == 3 and layer["source_crs"] == "EPSG:2154"
    west, south, east, north = shapely.total_bounds([lonlat(g, "EPSG:2154") for g in geoms])
    assert doc["extent"]["spatial"]["bbox"][0] == pytest.approx([west, south, east, north])


def test_tus_zipped_shapefile_in_utm(stack: Stack, workers: Workers, tmp_path: Path) -> None:
    folder = tmp_path / "shp"
    folder.mkdir()
    write_layer(folder / "roads.shp", polygons_in("EPSG:32631", (2.35, 48.85), 50),
                "EPSG:32631", "ESRI Shapefile", fields={"lanes": np.array([1, 2, 3])})  # fmt: skip
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for part in folder.iterdir():
            archive.write(part, part.name)
    with stack.http() as http:
        set_id = _new_set(http, "roads")
        tus = tus_client.TusClient(stack.url + "uploads/", headers=stack.server.auth)
        Sha256Uploader(file_stream=io.BytesIO(buffer.getvalue()), client=tus, chunk_size=4096,
                       metadata={"filename": "roads.zip", "upload_set": set_id},
                       upload_checksum=True).upload()  # fmt: skip
        http.post(f"/upload_sets/{set_id}/complete").raise_for_status()
        (file,) = settled(http, set_id)["files"]
        assert file["source"] == "tus" and file["status"] == "ready", file
    assert _layer(stack, "roads")["feature_count"] == 3
    assert _layer(stack, "roads")["source_crs"] == "EPSG:32631"


def test_100k_polygon_geopackage_until_queryable(
    stack: Stack, workers: Workers, tmp_path: Path
) -> None:
    """Measured, not asserted on time (docs/ingest.md quotes the figure)."""
    n = 100_000
    rng = np.random.default_rng(7)
    x, y = rng.uniform(-5, 8, n), rng.uniform(42, 51, n)
    squares = shapely.box(x, y, x + 0.001, y + 0.001)
    names = np.array(["wheat", "maize", "barley", "rye", "oat"], dtype=object)
    crops = names[rng.integers(0, 5, n)]
    days = np.datetime64("2024-01-01") + rng.integers(0, 365, n).astype("timedelta64[D]")
    fields = [crops, rng.uniform(0, 100, n), rng.integers(0, 1000, n),
              days.astype("datetime64[ms]"), rng.integers(0, 2, n).astype(bool),
              np.array([f"farmer {i % 977}" for i in range(n)], dtype=object)]  # fmt: skip
    path = tmp_path / "big.gpkg"
    write(str(path), shapely.to_wkb(squares), fields,
          ["crop", "yield", "plot", "sown", "organic", "farmer"], driver="GPKG",
          geometry_type="Polygon", crs="EPSG:4326")  # fmt: skip
    with stack.http() as http:
        # A warm worker, as in service: its job fork server started by a first small file.
        warm = _new_set(http, "warm-up")
        multipart(http, warm, write_layer(tmp_path / "w.geojson", [shapely.Point(1, 2)],
                                          fields={}, driver="GeoJSON"))  # fmt: skip
        http.post(f"/upload_sets/{warm}/complete").raise_for_status()
        assert settled(http, warm)["files"][0]["status"] == "ready"
        set_id = _new_set(http, "big")
        started = time.perf_counter()
        record = multipart(http, set_id, path)
        uploaded = time.perf_counter()
        wait_for(lambda: http.get(f"/upload_sets/{set_id}/files/{record['id']}").json()
                 ["status"] in ("ready", "rejected"), timeout=180, every=0.05)  # fmt: skip
        queryable = time.perf_counter()
        ended = time.time()
        file = http.get(f"/upload_sets/{set_id}/files/{record['id']}").json()
    assert file["status"] == "ready", file
    assert _layer(stack, "big")["feature_count"] == n
    steps = _job_steps(stack, file["job"]["id"], ended)
    print(
        f"\n100k-polygon GeoPackage ({path.stat().st_size / 1e6:.1f} MB): upload "
        f"{uploaded - started:.2f} s, queryable after {queryable - started:.2f} s ({steps})"
    )


def _job_steps(stack: Stack, job_id: str, ended: float) -> str:
    """Where the job's time went, from its rows: queued, prepared, read (child), committed."""
    with psycopg.connect(stack.database_url.replace("+psycopg", "")) as conn:
        created, started = conn.execute(
            "SELECT extract(epoch FROM created), extract(epoch FROM started) FROM jobs "
            "WHERE id = %s", (job_id,)
        ).fetchone() or (0, 0)  # fmt: skip
        at = [float(t) for (t,) in conn.execute(
            "SELECT extract(epoch FROM at) FROM job_log WHERE job_id = %s ORDER BY line",
            (job_id,))]  # fmt: skip
    # Log lines: "ingesting ...", "... is vector data", "GPKG: ...", "layer ...", "layers read".
    queued, prepared = float(started) - float(created), at[0] - float(started)
    return (f"queued {queued:.2f} s, prepare {prepared:.2f} s, read in the child "
            f"{at[-1] - at[0]:.2f} s, commit {ended - at[-1]:.2f} s")  # fmt: skip
