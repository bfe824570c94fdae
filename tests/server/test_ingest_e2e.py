"""Ingest end to end: a live uvicorn, real ``terracat worker`` processes, real clients.

tuspy uploads with an interruption, httpx multipart, URL ingest from a local HTTP server, the
``terracat ingest`` command; every refusal code; a worker SIGKILLed mid-ingest; cancel and
restart; the item found by STAC search, its COG valid, its footprint where the data is.
"""

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
import shapely.geometry
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate
from tusclient import client as tus_client

from server.cli import main
from server.ingest_client import Sha256Uploader
from server.progress import file_state
from tests import rasters
from tests.factories import collection
from tests.owners import stored

from .conftest import _start, _stop
from .ingest_stack import (
    COLLECTION,
    ROOT,
    Stack,
    Workers,
    expected_utm_footprint,
    item_of,
    local_path,
    multipart,
    new_set,
    settled,
    wait_for,
)


@pytest.fixture(scope="module")
def stack(databases: Any) -> Iterator[Stack]:
    data_dir = Path(tempfile.mkdtemp(prefix="terracat-ingest-"))
    url = databases.create(f"terracat_ingest_{databases.suffix}")
    env = {
        "TERRACAT_INGEST_DATA_DIR": str(data_dir),
        "TERRACAT_INGEST_URL_ALLOW_PRIVATE": "true",  # the URL test serves from loopback
        "TERRACAT_JOBS_HEARTBEAT_S": "0.3",
        "TERRACAT_JOBS_STALE_AFTER_S": "2",
        "TERRACAT_JOBS_IDLE_WAKE_S": "1",
    }
    proc, server = _start(url, **env)
    try:
        with httpx.Client(base_url=server.url, headers=server.auth) as http:
            r = http.post("/collections", json=collection(COLLECTION))
            assert r.status_code == 201, r.text
        yield Stack(server, url, data_dir, env)
    finally:
        _stop(proc, server)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def stack_files() -> Iterator[ExitStack]:
    with ExitStack() as files:
        yield files


@pytest.fixture(scope="module")
def _module_workers(stack: Stack) -> Iterator[Workers]:
    running = Workers(stack)
    yield running
    running.stop()


@pytest.fixture
def workers(_module_workers: Workers) -> Iterator[Workers]:
    """The module's workers: a test's first ``start`` may reuse a running one."""
    yield _module_workers
    _module_workers.end_test()


# -- the happy path, over tus with an interruption ---------------------------------------------
def test_tus_upload_interrupted_and_resumed_becomes_a_searchable_cog_item(
    stack: Stack, workers: Workers, tmp_path: Path, stack_files: ExitStack
) -> None:
    source = rasters.utm_rgb_tif(tmp_path, size=512, border=64, name="field-42.tif")
    workers.start()
    with stack.http() as http:
        upload_set = new_set(http, title="field survey", expected_files=1)
        tus = tus_client.TusClient(stack.url + "uploads/", headers=stack.server.auth)
        metadata = {"filename": source.name, "upload_set": upload_set["id"]}
        stream = stack_files.enter_context(source.open("rb"))
        first = Sha256Uploader(file_stream=stream, client=tus, chunk_size=64 * 1024,
                               metadata=metadata, upload_checksum=True)  # fmt: skip
        first.upload_chunk()
        first.upload_chunk()  # ... and the connection is lost here
        url = first.url
        assert 0 < first.offset < source.stat().st_size
        head = httpx.head(url, headers={**stack.server.auth, "Tus-Resumable": "1.0.0"})
        assert int(head.headers["Upload-Offset"]) == first.offset
        stream = stack_files.enter_context(source.open("rb"))
        resumed = Sha256Uploader(file_stream=stream, client=tus, url=url,
                                 chunk_size=256 * 1024, upload_checksum=True)  # fmt: skip
        assert resumed.offset == first.offset  # picked up from HEAD, not from zero
        resumed.upload()

        doc = settled(http, upload_set["id"])
        assert doc["counts"]["ready"] == 1 and doc["title"] == "field survey"
        record = doc["files"][0]
        assert record["status"] == "ready" and record["source"] == "tus"
        job = {"status": "successful", "progress": 100, "message": "done"}
        assert record["job"] == {"id": record["links"][-1]["href"].rsplit("/", 1)[1], **job}
        assert record["filename"] == "field-42.tif" and record["item_id"] == "field-42"
        assert record["size"] == source.stat().st_size
        item = item_of(http, record)

        found = http.get("/search", params={"ids": item["id"], "collections": COLLECTION}).json()
        assert [f["id"] for f in found["features"]] == ["field-42"]

    cog = local_path(stack, item["assets"]["data"]["href"])
    assert cog.is_relative_to(stack.data_dir)
    valid, errors, warnings = cog_validate(str(cog), quiet=True)
    assert valid and not errors and not warnings
    assert item["assets"]["data"]["roles"] == ["data"]
    assert "cloud-optimized" in item["assets"]["data"]["type"]
    assert local_path(stack, item["assets"]["thumbnail"]["href"]).stat().st_size > 0
    assert local_path(stack, item["assets"]["overview"]["href"]).stat().st_size > 0
    props = item["properties"]
    assert props["proj:code"] == "EPSG:32633" and props["gsd"] == pytest.approx(10, rel=0.01)
    shape = shapely.geometry.shape(item["geometry"])
    expected = expected_utm_footprint(512, 64)
    assert shape.symmetric_difference(expected).area < 0.02 * expected.area
    assert stored(stack.data_dir / "staging") == []  # the raw upload is gone
    assert stored(stack.data_dir / "tus") == []  # and so are the tus upload's parts
    assert stored(stack.data_dir / "tmp") == []  # and the folder they were assembled in


# -- multipart, and every refusal code ---------------------------------------------------------
def test_multipart_uploads_get_their_codes_and_duplicates_are_found(
    stack: Stack, workers: Workers, tmp_path: Path
) -> None:
    good = rasters.utm_rgb_tif(tmp_path, size=256, border=16, name="good.tif")
    cases = {
        "truncated.tif": (rasters.truncated_tif(tmp_path), "ingest.Corrupt"),
        "notes.tif": (rasters.text_tif(tmp_path), "ingest.NotARaster"),
        "plain.tif": (rasters.not_georeferenced_tif(tmp_path), "ingest.NotGeoreferenced"),
        "complex.tif": (rasters.complex_tif(tmp_path), "ingest.UnsupportedDataType"),
        "bomb.tif": (rasters.bomb_tif(tmp_path), "ingest.ImplausibleSize"),
    }
    workers.start()
    with stack.http() as http:
        upload_set = new_set(http)
        first = multipart(http, upload_set["id"], good)
        assert first["status"] == "received" and len(first["sha256"]) == 64
        for name, (path, _) in cases.items():
            multipart(http, upload_set["id"], path, name)
        http.post(f"/upload_sets/{upload_set['id']}/complete").raise_for_status()
        doc = settled(http, upload_set["id"])
        by_name = {f["filename"]: f for f in doc["files"]}
        assert by_name["good.tif"]["status"] == "ready"
        for name, (_, code) in cases.items():
            assert by_name[name]["status"] == "rejected", by_name[name]
            assert by_name[name]["error"]["code"] == code, by_name[name]
            assert by_name[name]["error"]["description"]
        assert doc["counts"] == {"received": 0, "processing": 0, "ready": 1, "rejected": 5,
                                 "duplicate": 0}  # fmt: skip

        # The same bytes again, in another set of the same collection: a duplicate at once.
        again = new_set(http)
        record = multipart(http, again["id"], good, "good-copy.tif")
        assert record["status"] == "duplicate" and record["error"]["code"] == "ingest.Duplicate"
        assert "good" in record["error"]["description"]
        http.post(f"/upload_sets/{again['id']}/complete").raise_for_status()
        assert settled(http, again["id"])["counts"]["duplicate"] == 1
        # ... and over tus, where the checksum is only known in the job.
        tus = tus_client.TusClient(stack.url + "uploads/", headers=stack.server.auth)
        third = new_set(http, expected_files=1)
        with good.open("rb") as stream:
            Sha256Uploader(file_stream=stream, client=tus, metadata={
                "filename": "good-tus.tif", "upload_set": third["id"]}).upload()  # fmt: skip
        dup = settled(http, third["id"])["files"][0]
        assert dup["status"] == "duplicate" and dup["error"]["code"] == "ingest.Duplicate"
        items = http.get(f"/collections/{COLLECTION}/items", params={"limit": 100}).json()
        assert [f["id"] for f in items["features"]].count("good") == 1
    assert stored(stack.data_dir / "staging") == []  # refused bytes are not kept
    assert stored(stack.data_dir / "tus") == []  # a duplicate's parts neither
    assert stored(stack.data_dir / "tmp") == []  # nor the jobs' work folders, failed or not


def test_upload_set_errors(stack: Stack) -> None:
    with stack.http() as http:
        r = http.post("/upload_sets", json={"collection": "no-such-collection"})
        assert r.status_code == 404 and r.json()["code"] == "catalog.NotFound"
        r = http.post("/upload_sets", json={"collection": COLLECTION, "expected_files": 0})
        assert r.status_code == 400
        assert http.get("/upload_sets/not-a-uuid").status_code == 404
        closed = new_set(http, expected_files=1)
        http.post(f"/upload_sets/{closed['id']}/complete").raise_for_status()
        r = http.post(f"/upload_sets/{closed['id']}/files", files={"file": ("a.tif", b"x")})
        assert r.status_code == 409 and r.json()["code"] == "upload.SetClosed"
        r = http.post(f"/upload_sets/{closed['id']}/files", content=b"raw",
                      headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        assert r.status_code in (409, 415)
        tus = httpx.post(stack.url + "uploads/", headers={**stack.server.auth,
                         "Tus-Resumable": "1.0.0", "Upload-Length": "10",
                         "Upload-Metadata": "filename YS50aWY="})  # fmt: skip
        assert tus.status_code == 400 and tus.json()["code"] == "upload.InvalidMetadata"
    assert httpx.post(stack.url + "upload_sets", json={"collection": COLLECTION}).status_code == 401


# -- by URL ------------------------------------------------------------------------------------
class _FileHandler(SimpleHTTPRequestHandler):
    """Files of a folder, and ``/loop.tif``, which redirects to itself."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/loop.tif":
            self.send_response(302)
            self.send_header("Location", "/loop.tif")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "www"
    folder.mkdir()
    handler = partial(_FileHandler, directory=str(folder))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", folder
    httpd.shutdown()
    httpd.server_close()


def test_url_ingest_downloads_in_the_job(
    stack: Stack, workers: Workers, file_server: tuple[str, Path]
) -> None:
    base, folder = file_server
    rasters.rgbn_uint16_tif(folder)
    workers.start()
    with stack.http() as http:
        upload_set = new_set(http, expected_files=3)
        r = http.post(f"/upload_sets/{upload_set['id']}/files", json={"href": base + "rgbn.tif"})
        assert r.status_code == 201, r.text
        assert r.json()["source"] == "url" and r.json()["href"] == base + "rgbn.tif"
        http.post(f"/upload_sets/{upload_set['id']}/files", json={"href": base + "missing.tif"})
        http.post(f"/upload_sets/{upload_set['id']}/files", json={"href": base + "loop.tif"})
        doc = settled(http, upload_set["id"])
        by_name = {f["filename"]: f for f in doc["files"]}
        assert by_name["rgbn.tif"]["status"] == "ready", by_name
        missing = by_name["missing.tif"]
        assert missing["status"] == "rejected" and missing["error"]["code"] == "url.Unreachable"
        loop = by_name["loop.tif"]
        assert loop["status"] == "rejected" and loop["error"]["code"] == "url.TooManyRedirects"
        loop_job = next(link["href"] for link in loop["links"] if link["rel"] == "monitor")
        assert _job(http, loop_job)["attempts"] == 1  # final: a loop is not tried again
        item = item_of(http, by_name["rgbn.tif"])
    bands = item["assets"]["data"]["eo:bands"]
    assert [b.get("common_name") for b in bands] == ["red", "green", "blue", "nir"]


def test_url_ingest_refuses_loopback_unless_allowed(
    client: Any, admin: dict[str, str], database_url: str
) -> None:
    r = client.post("/collections", json=collection("c"), headers=admin)
    assert r.status_code == 201
    upload_set = client.post("/upload_sets", json={"collection": "c"}, headers=admin).json()
    for href in ("http://127.0.0.1:9/x.tif", "http://localhost/x.tif", "file:///etc/passwd",
                 "http://169.254.169.254/latest/meta-data", "ftp://example.com/x.tif"):  # fmt: skip
        r = client.post(f"/upload_sets/{upload_set['id']}/files", json={"href": href},
                        headers=admin)  # fmt: skip
        assert r.status_code == 400 and r.json()["code"] == "url.Forbidden", (href, r.text)
    files = client.get(f"/upload_sets/{upload_set['id']}", headers=admin).json()["files"]
    assert files == []  # nothing was queued


# -- workers dying, cancel, restart ------------------------------------------------------------
def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _job(http: httpx.Client, job_href: str) -> dict[str, Any]:
    return dict(http.get(job_href).json())


def _big_raster(folder: Path, name: str) -> Path:
    # Big enough that the job's child runs for a second or more on this machine; the seed
    # differs by name, so two such files are no duplicates of each other.
    seed = sum(name.encode())
    return rasters.write_geotiff(
        folder / name, width=4096, height=4096, count=3, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(*rasters.UTM_ORIGIN, 1, 1), nodata=0, tiled=True,
        fill=lambda c, h, w: np.random.default_rng(seed).integers(1, 255, (c, h, w), "uint8"),
    )  # fmt: skip


def test_a_worker_killed_mid_ingest_is_replaced_and_exactly_one_item_exists(
    stack: Stack, workers: Workers, tmp_path: Path
) -> None:
    source = _big_raster(tmp_path, "killed.tif")
    doomed = workers.start()
    with stack.http() as http:
        upload_set = new_set(http, expected_files=1)
        record = multipart(http, upload_set["id"], source)
        job_href = next(link["href"] for link in record["links"] if link["rel"] == "monitor")

        def child_running() -> set[int]:
            job = _job(http, job_href)
            return _children(doomed.pid) if job["status"] == "running" else set()

        children = wait_for(child_running, every=0.02)  # the worker's job process is up
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), 10)
        workers.start()  # finds the stale heartbeat, re-queues, finishes
        doc = settled(http, upload_set["id"])
        assert doc["files"][0]["status"] == "ready", doc
        job = _job(http, job_href)
        assert job["status"] == "successful" and job["attempts"] == 2
        found = http.get("/search", params={"ids": "killed", "collections": COLLECTION}).json()
        assert len(found["features"]) == 1
    with psycopg.connect(stack.database_url) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM items WHERE collection_id = %s AND id LIKE 'killed%%'",
            (COLLECTION,),
        ).fetchone()
    assert count == 1


def test_cancel_then_restart_an_ingest_job(stack: Stack, workers: Workers, tmp_path: Path) -> None:
    source = _big_raster(tmp_path, "cancelled.tif")
    workers.start()
    with stack.http() as http:
        upload_set = new_set(http, expected_files=1)
        record = multipart(http, upload_set["id"], source)
        job_href = next(link["href"] for link in record["links"] if link["rel"] == "monitor")
        wait_for(lambda: _job(http, job_href)["status"] == "running", every=0.02)
        r = http.delete(job_href)
        assert r.status_code == 200 and r.json()["status"] == "dismissed", r.text
        doc = settled(http, upload_set["id"])
        assert doc["files"][0]["status"] == "rejected"
        assert doc["files"][0]["error"]["code"] == "job.Dismissed"
        assert http.get(f"/collections/{COLLECTION}/items/cancelled").status_code == 404
        r = http.post(job_href + "/restart")
        assert r.status_code == 200 and r.json()["status"] == "accepted"
        wait_for(lambda: _job(http, job_href)["status"] == "successful")
        doc = http.get(f"/upload_sets/{upload_set['id']}").json()
        assert doc["ready"] and doc["files"][0]["status"] == "ready"
        assert http.get(f"/collections/{COLLECTION}/items/cancelled").status_code == 200


# -- the command line --------------------------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        found += (children := _children(todo.pop()))
        todo += children
    return found


def _file(http: httpx.Client, set_url: str, name: str) -> dict[str, Any]:
    """The file ``name`` of an upload set ({} until it is uploaded)."""
    return dict(next((f for f in http.get(set_url).json()["files"] if f["filename"] == name), {}))


def test_terracat_ingest_creates_its_collection_and_shows_each_files_progress(
    stack: Stack, workers: Workers, tmp_path: Path
) -> None:
    polar, bad = rasters.polar_north_tif(tmp_path), rasters.text_tif(tmp_path)
    # Its job runs for seconds; the test holds it still (SIGSTOP) while the command shows it.
    big = rasters.write_geotiff(
        tmp_path / "big.tif", width=2048, height=2048, count=3, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(*rasters.UTM_ORIGIN, 1, 1), nodata=0, tiled=True,
        fill=lambda c, h, w: np.random.default_rng(7).integers(1, 255, (c, h, w), "uint8"),
    )  # fmt: skip
    worker = workers.start()
    out_path, err_path = tmp_path / "out.txt", tmp_path / "err.txt"
    with out_path.open("w") as out, err_path.open("w") as err:
        cli = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "ingest", str(big), str(polar), str(bad),
             "--collection", "cli-new", "--create", "--title", "Made by ingest",
             "--license", "CC0-1.0", "--server", stack.server.url, "--token",
             stack.server.token, "--datetime", "2024-05-01T12:00:00Z"],
            cwd=ROOT, stdout=out, stderr=err, text=True,
        )  # fmt: skip
    try:
        with stack.http() as http:
            set_url = wait_for(lambda: next((w for w in out_path.read_text().split()
                                             if "/upload_sets/" in w), None))  # fmt: skip
            wait_for(lambda: (_file(http, set_url, "big.tif").get("job") or {}).get("progress"),
                     every=0.02)  # fmt: skip
            held = _descendants(worker.pid)  # its fork server and the job's process
            for pid in held:  # the worker itself keeps the job's heartbeat
                os.kill(pid, signal.SIGSTOP)
            # the command prints the state the server shows (frozen, after a last heartbeat)
            frozen = wait_for(
                lambda: (
                    (state := file_state(_file(http, set_url, "big.tif"))).line("big.tif")
                    in err_path.read_text().splitlines()
                    and state
                )
            )
            for pid in held:
                os.kill(pid, signal.SIGCONT)
        assert cli.wait(timeout=180) == 1  # one file was refused
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert frozen.state == "running" and 0 < (frozen.percent or 0) < 100, frozen
    out = out_path.read_text().splitlines()
    assert out[0] == f"created collection cli-new: {stack.server.url}/collections/cli-new"
    assert out[1].startswith(f"upload set {stack.server.url}/upload_sets/")
    items = f"{stack.server.url}/collections/cli-new/items"
    assert set(out[2:]) == {
        f"ready     big.tif: {items}/big", f"ready     polar.tif: {items}/polar",
        "rejected  notes.tif: ingest.NotARaster the file is not a GeoTIFF (GDAL cannot open "
        "it as one)"}, out  # fmt: skip
    # one line per change of a file's step, not one per poll (the upload bars start alike)
    lines = [x for x in err_path.read_text().splitlines() if re.match(r"big.tif: [a-z]", x)]
    assert lines and len(lines) == len(set(lines)) <= 9, lines
    made = httpx.get(f"{stack.server.url}/collections/cli-new").json()
    assert (made["title"], made["license"]) == ("Made by ingest", "CC0-1.0")
    item = httpx.get(f"{items}/polar").json()
    assert item["properties"]["datetime"] == "2024-05-01T12:00:00Z"
    assert shapely.geometry.shape(item["geometry"]).contains(shapely.geometry.Point(0, 89.99))
    assert item["bbox"][3] == pytest.approx(90)
    with stack.http() as http:
        # The collection's extent is its items' (declared: the whole world from 2020 on).
        features = http.get(f"/collections/{COLLECTION}/items?limit=1000").json()["features"]
        bounds = [shapely.geometry.shape(f["geometry"]).bounds for f in features]
        box = [min(b[0] for b in bounds), min(b[1] for b in bounds),
               max(b[2] for b in bounds), max(b[3] for b in bounds)]  # fmt: skip
        times = sorted(_instant(f["properties"]["datetime"]) for f in features)
        extent = http.get(f"/collections/{COLLECTION}").json()["extent"]
        assert extent["spatial"]["bbox"] == [pytest.approx(box, abs=1e-9)]
        # the same instants; PostgreSQL writes 09.11589Z where Python wrote 09.115890Z
        ((first, last),) = extent["temporal"]["interval"]
        assert [_instant(first), _instant(last)] == [times[0], times[-1]]
        tilejson = http.get(f"/collections/{COLLECTION}/tiles/WorldCRS84Quad/tilejson.json")
        assert tilejson.json()["bounds"] == pytest.approx(box, abs=1e-9)
    with psycopg.connect(stack.database_url) as conn:
        # Ingest analysed the table once its statistics were missing (autovacuum would wait
        # for 50 changed rows), so numberMatched may be estimated from them.
        analysed = conn.execute("SELECT reltuples FROM pg_class WHERE relname = 'items'")
        assert 1 <= analysed.fetchone()[0] <= len(features)


def test_terracat_ingest_into_a_missing_collection_says_create_makes_it(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["ingest", str(rasters.text_tif(tmp_path)), "--collection", "absent",
                 "--server", stack.server.url, "--token", stack.server.token])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err == (
        "terracat ingest: creating the upload set: HTTP 404 catalog.NotFound: collection "
        "'absent' does not exist (--create makes it)\n"
    )


def test_running_ingest_again_on_an_ingested_file_changes_nothing(
    stack: Stack, workers: Workers, tmp_path: Path
) -> None:
    source = rasters.utm_rgb_tif(tmp_path, size=128, border=8, name="again.tif")
    workers.start()
    with stack.http() as http:
        upload_set = new_set(http, expected_files=1)
        record = multipart(http, upload_set["id"], source)
        record = settled(http, upload_set["id"])["files"][0]
        item = item_of(http, record)
        r = http.post("/processes/ingest/execution", json={"inputs": {"upload_file": record["id"]}})
        assert r.status_code == 201, r.text
        job_href = r.headers["Location"]
        done = wait_for(lambda: (j := _job(http, job_href))["status"] in ("failed", "successful")
                        and j)  # fmt: skip
        assert done["status"] == "failed" and done["error"]["code"] == "ingest.AlreadyIngested"
        after = http.get(f"/upload_sets/{upload_set['id']}").json()["files"][0]
        assert after["status"] == "ready" and after["item_id"] == item["id"]
        assert http.get(f"/collections/{COLLECTION}/items/{item['id']}").status_code == 200
    assert local_path(stack, item["assets"]["data"]["href"]).exists()  # its files are still there


def _instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
