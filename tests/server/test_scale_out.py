"""Scale-out: two API processes and two ``terracat worker``s that share only PostgreSQL and an
S3 server (moto, the session's ``s3_server``). Each process has its own empty data folder;
uploads go to one API (a tus upload is resumed on the other); tiles, asset downloads and an
export archive are read from the other, and every data folder ends as empty as it began:
nothing depends on a shared disk.
"""

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import morecantile
import pytest
from rasterio.transform import from_origin
from tusclient import client as tus_client

from tests import rasters
from tests.factories import collection
from tests.owners import tus_metadata

from .conftest import LiveServer, _start, _stop
from .ingest_stack import ROOT, multipart, new_set, settled, wait_for

COLLECTION = "drone-orthos"  # new_set's
FILES = 10
TUS = {"Tus-Resumable": "1.0.0"}
PNG = b"\x89PNG\r\n\x1a\n"
SQLITE = b"SQLite format 3\x00"


def _env(s3: Any, bucket: str, database_url: str) -> dict[str, str]:
    """What every process of the deployment is given: the database and the bucket."""
    return {
        "DATABASE_URL": database_url,
        "TERRACAT_STORAGE_KIND": "s3",
        "TERRACAT_STORAGE_S3_ENDPOINT_URL": s3.endpoint,
        "TERRACAT_STORAGE_S3_REGION": s3.region,
        "TERRACAT_STORAGE_S3_BUCKET": bucket,
        "TERRACAT_STORAGE_S3_PREFIX": "terracat/",
        "TERRACAT_STORAGE_S3_PATH_STYLE": "true",
        "TERRACAT_STORAGE_S3_ACCESS_KEY_ID": s3.access_key,
        "TERRACAT_STORAGE_S3_SECRET_ACCESS_KEY": s3.secret_key,
        "TERRACAT_JOBS_HEARTBEAT_S": "0.3",
        "TERRACAT_JOBS_IDLE_WAKE_S": "0.5",
        "TERRACAT_EXPORT_ZOOM_LEVELS": "1",
    }


def _files(folder: Path) -> list[Path]:
    """The files under ``folder`` (a process's data folder)."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


class Deployment:
    """Two APIs and two workers, each with a data folder of its own."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.folders: list[Path] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.apis: list[tuple[subprocess.Popen[bytes], LiveServer]] = []
        self.logs: list[Path] = []

    def folder(self) -> Path:
        made = Path(tempfile.mkdtemp(prefix="terracat-node-"))
        self.folders.append(made)
        return made

    def start(self) -> None:
        for _ in range(2):  # workers first: they start while the APIs do
            log = Path(tempfile.mkstemp(prefix="terracat-worker-", suffix=".log")[1])
            env = {**os.environ, **self.env, "TERRACAT_INGEST_DATA_DIR": str(self.folder())}
            with log.open("wb") as out:
                self.workers.append(subprocess.Popen(
                    [sys.executable, "-m", "server.cli", "worker"],
                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                ))  # fmt: skip
            self.logs.append(log)
        database_url = self.env["DATABASE_URL"]
        env = {k: v for k, v in self.env.items() if k != "DATABASE_URL"}
        folders = [str(self.folder()) for _ in range(2)]
        with ThreadPoolExecutor(2) as pool:  # both start at once: most of it is imports
            starting = [pool.submit(_start, database_url, TERRACAT_INGEST_DATA_DIR=folder, **env)
                        for folder in folders]  # fmt: skip
            self.apis.extend(future.result() for future in starting)

    def bucket_keys(self) -> list[str]:
        """Every key in the bucket, without the deployment's prefix."""
        import boto3

        env = self.env
        client = boto3.session.Session().client(
            "s3", endpoint_url=env["TERRACAT_STORAGE_S3_ENDPOINT_URL"],
            region_name=env["TERRACAT_STORAGE_S3_REGION"],
            aws_access_key_id=env["TERRACAT_STORAGE_S3_ACCESS_KEY_ID"],
            aws_secret_access_key=env["TERRACAT_STORAGE_S3_SECRET_ACCESS_KEY"],
        )  # fmt: skip
        prefix = env["TERRACAT_STORAGE_S3_PREFIX"]
        try:
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=env["TERRACAT_STORAGE_S3_BUCKET"], Prefix=prefix
            )
            return [o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", [])]
        finally:
            client.close()

    def http(self, index: int) -> httpx.Client:
        server = self.apis[index][1]
        return httpx.Client(base_url=server.url, headers=server.auth, timeout=60)

    def stop(self) -> None:
        for proc, server in self.apis:
            _stop(proc, server)
        for proc in self.workers:
            proc.terminate()
        for proc, log in zip(self.workers, self.logs, strict=True):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            text = log.read_text(errors="replace")
            if "Traceback" in text:
                print(f"worker {proc.pid} log:\n{text}", file=sys.stderr)
            log.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    pytest.importorskip("catalog.storage.s3", reason="the S3 storage is not on this branch yet")
    databases, s3_server = (request.getfixturevalue(f) for f in ("databases", "s3_server"))
    url = databases.create(f"terracat_scale_{databases.suffix}")
    running = Deployment(_env(s3_server, s3_server.make_bucket(), url))
    try:
        running.start()
        yield running
    finally:
        running.stop()
        for folder in running.folders:
            subprocess.run(["rm", "-rf", str(folder)], check=False)


def _sources(folder: Path) -> list[Path]:
    """Ten small distinct GeoTIFFs side by side (distinct bytes: no duplicates)."""
    x0, y0 = rasters.UTM_ORIGIN
    return [
        rasters.write_geotiff(
            folder / f"tile-{i:02d}.tif",
            width=128,
            height=128,
            count=3,
            dtype="uint8",
            crs="EPSG:32633",
            transform=from_origin(x0 + i * 1280, y0, 10, 10),
        )  # fmt: skip
        for i in range(FILES)
    ]


def _tus_split(one: httpx.Client, two: httpx.Client, set_id: str, source: Path) -> None:
    """A tus upload started on API 1 and finished on API 2 (tuspy resuming from HEAD)."""
    data = source.read_bytes()
    half = len(data) // 2
    headers = {
        **TUS,
        "Upload-Length": str(len(data)),
        "Content-Type": "application/offset+octet-stream",
        "Upload-Metadata": tus_metadata(filename=source.name, upload_set=set_id),
    }
    created = one.post("/uploads/", headers=headers, content=data[:half])
    assert created.status_code == 201 and created.headers["upload-offset"] == str(half)
    url = created.headers["location"]
    path = httpx.URL(url).path
    other = str(two.base_url.copy_with(path=path))
    head = two.head(other, headers=TUS)
    assert head.status_code == 200 and head.headers["upload-offset"] == str(half)
    client = tus_client.TusClient(str(two.base_url) + "/uploads/", headers=dict(two.headers))
    resumed = client.uploader(str(source), url=other, chunk_size=16 * 1024)
    assert resumed.offset == half  # picked up on API 2 from what API 1 received
    resumed.upload()


def test_two_apis_and_two_workers_share_only_the_database_and_the_bucket(
    deployment: Deployment, tmp_path: Path
) -> None:
    sources = _sources(tmp_path)
    with deployment.http(0) as one, deployment.http(1) as two:
        for api in (one, two):
            health = api.get("/_mgmt/health")
            assert health.status_code == 200, health.text
        assert one.post("/collections", json=collection(COLLECTION)).status_code == 201
        upload_set = new_set(one, expected_files=FILES)
        for source in sources[:-2]:
            multipart(one, upload_set["id"], source)
        client = tus_client.TusClient(str(one.base_url) + "/uploads/", headers=dict(one.headers))
        client.uploader(str(sources[-2]), chunk_size=8 * 1024,
                        metadata={"filename": sources[-2].name,
                                  "upload_set": upload_set["id"]}).upload()  # fmt: skip
        _tus_split(one, two, upload_set["id"], sources[-1])

        doc = settled(two, upload_set["id"])  # followed on the other API
        assert doc["counts"]["ready"] == FILES, doc
        items = two.get(f"/collections/{COLLECTION}/items", params={"limit": 20}).json()
        assert len(items["features"]) == FILES
        tms = morecantile.tms.get("WebMercatorQuad")
        for item in items["features"]:
            west, south, east, north = item["bbox"]
            tile = tms.tile((west + east) / 2, (south + north) / 2, 14)
            r = two.get(f"/collections/{COLLECTION}/items/{item['id']}/tiles/WebMercatorQuad/"
                        f"{tile.z}/{tile.x}/{tile.y}.png")  # fmt: skip
            assert r.status_code == 200 and r.content.startswith(PNG), r.text

        # An asset link handed out by API 1 works on API 2: the bytes come from the bucket.
        assets = one.get(f"/collections/{COLLECTION}/items/{items['features'][0]['id']}").json()
        on_two = {name: httpx.URL(asset["href"]).raw_path.decode()
                  for name, asset in assets["assets"].items()}  # fmt: skip
        thumbnail = two.get(on_two["thumbnail"])
        assert thumbnail.status_code == 200 and thumbnail.content.startswith(PNG)
        head = two.get(on_two["data"], headers={"Range": "bytes=0-3"})
        assert head.status_code == 206 and head.content in (b"II*\x00", b"MM\x00*")

        first = items["features"][0]["id"]
        inputs = {"item": {"collection": COLLECTION, "id": first}, "maxzoom": 14}
        r = one.post("/processes/mbtiles/execution", json={"inputs": inputs})
        assert r.status_code == 201, r.text
        job_id = r.json()["jobID"]
        job = wait_for(lambda: (d := two.get(f"/jobs/{job_id}").json())["status"]
                       not in ("accepted", "running") and d)  # fmt: skip
        assert job["status"] == "successful", job
        archive = two.get(f"/jobs/{job_id}/results").json()["archive"]["value"]
        got = two.get(archive["href"])
        assert got.status_code == 200 and got.content.startswith(SQLITE)
        assert len(got.content) == archive["bytes"]

    # Nothing stayed on any process's disk: uploads, parts, assets and archives are all in the
    # bucket (temp folders were emptied after use), and the uploads left it once ingested.
    for folder in deployment.folders:
        assert _files(folder) == [], folder
    areas: dict[str, int] = {}
    for key in deployment.bucket_keys():
        areas[key.split("/", 1)[0]] = areas.get(key.split("/", 1)[0], 0) + 1
    assert areas == {"assets": 3 * FILES, "exports": 1}, areas
