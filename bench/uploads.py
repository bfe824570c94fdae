"""Terracat's HTTP API as the benchmarks drive it, and one upload followed from its first request
until its item is searchable (or its file refused), with the servers' memory meanwhile.
"""

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from .memory import RssTimeline
from .report import log
from .servers import Server, Stacks

BASELINE_S = 1.0  # quiet time before each upload: the "before" memory
JOB_POLL_S = 0.25
FINAL = ("successful", "failed", "dismissed")
COG_START = "converting to a Cloud-Optimized GeoTIFF"


def job_stamp(job: dict[str, Any], name: str) -> float:
    """A timestamp of a job document (``started``, ``finished``...) as time.time(), NaN if none."""
    value = job.get(name)
    return datetime.fromisoformat(value).timestamp() if value else math.nan


@dataclass
class Upload:
    """One measured upload and what became of it."""

    label: str
    transport: str  # "tus" or "multipart"
    path: Path
    collection: str
    expect_item: bool
    t0: float = math.nan  # first request of the upload
    sent: float = math.nan  # last response of the upload
    searchable: float = math.nan  # GET /search returned the item
    job: dict[str, Any] = field(default_factory=dict)
    file: dict[str, Any] = field(default_factory=dict)
    messages: dict[str, float] = field(default_factory=dict)  # job message -> first seen
    api_before: int = 0
    api_peak: int = 0
    worker_before: int = 0
    worker_peak: int = 0
    child: tuple[float, float] | None = None

    @property
    def size(self) -> int:
        """Bytes sent."""
        return self.path.stat().st_size

    def stamp(self, name: str) -> float:
        """A job timestamp (``started``, ``finished``...) as time.time(), NaN if missing."""
        return job_stamp(self.job, name)

    @property
    def upload_s(self) -> float:
        """Seconds of the upload itself."""
        return self.sent - self.t0

    @property
    def rate(self) -> float:
        """Upload throughput in MiB/s."""
        return self.size / 2**20 / self.upload_s

    @property
    def cog_s(self) -> float:
        """COG conversion inside the job: from its progress message to the next one seen."""
        names = list(self.messages)
        if COG_START not in names or names.index(COG_START) + 1 == len(names):
            return math.nan
        after = names[names.index(COG_START) + 1]
        return self.messages[after] - self.messages[COG_START]

    def phases(self) -> str:
        """The job's progress messages, each with when it was first seen after ``started``."""
        started = self.stamp("started")
        return ", ".join(f"{name!r} {t - started:+.1f}" for name, t in self.messages.items())

    @property
    def outcome(self) -> str:
        """The file's status, with the error code of a refusal."""
        error = self.file.get("error") or {}
        return " ".join(x for x in (self.file.get("status"), error.get("code")) if x)


class TerracatClient:
    """The few HTTP calls of the benchmark (bearer token on every request)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.http = httpx.Client(base_url=url, headers=self.headers, timeout=60)

    def _ok(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise RuntimeError(f"{response.request.url}: HTTP {response.status_code} "
                               f"{response.text[:500]}")  # fmt: skip
        return dict(response.json()) if response.content else {}

    def create_collection(self, collection_id: str) -> None:
        """A minimal STAC collection."""
        doc = {
            "type": "Collection",
            "stac_version": "1.1.0",
            "id": collection_id,
            "description": f"bench.ingest: {collection_id}",
            "license": "CC-BY-4.0",
            "extent": {
                "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
                "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]},
            },
            "links": [],
        }
        self._ok(self.http.post("collections", json=doc))

    def new_set(self, collection: str) -> str:
        """A new upload set for one file; its id."""
        body = {"collection": collection, "expected_files": 1}
        return str(self._ok(self.http.post("upload_sets", json=body))["id"])

    def send_tus(self, set_id: str, path: Path) -> None:
        """Upload over tus the way ``terracat ingest`` does (tuspy, 8 MiB, SHA-256 chunks)."""
        from tusclient import client as tus_client

        from server.ingest_client import CHUNK, Sha256Uploader

        tus = tus_client.TusClient(self.url + "uploads/", headers=self.headers)
        with path.open("rb") as stream:
            uploader = Sha256Uploader(
                file_stream=stream,
                client=tus,
                chunk_size=CHUNK,
                metadata={"filename": path.name, "upload_set": set_id},
                retries=5,
                retry_delay=2,
                upload_checksum=True,
            )
            uploader.upload()

    def send_multipart(self, set_id: str, path: Path) -> None:
        """One multipart POST; httpx reads the open file in 64 KiB pieces while sending."""
        with path.open("rb") as stream:
            files = {"file": (path.name, stream, "image/tiff")}
            timeout = httpx.Timeout(60, read=600)  # the server fsyncs the file before answering
            self._ok(self.http.post(f"upload_sets/{set_id}/files", files=files, timeout=timeout))

    def first_file(self, set_id: str) -> dict[str, Any]:
        """The (only) file of an upload set."""
        files = self._ok(self.http.get(f"upload_sets/{set_id}"))["files"]
        return dict(files[0]) if files else {}

    def execute(self, process: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """Run a process asynchronously (``Prefer: respond-async``); its job document."""
        response = self.http.post(f"processes/{process}/execution", json={"inputs": inputs},
                                  headers={"Prefer": "respond-async"})  # fmt: skip
        return self._ok(response)

    def get(self, href: str) -> dict[str, Any]:
        """GET any URL of the API as JSON."""
        return self._ok(self.http.get(href))

    def searchable(self, item_id: str, collection: str) -> bool:
        """Does ``GET /search`` return the item?"""
        params = {"ids": item_id, "collections": collection}
        features = self._ok(self.http.get("search", params=params)).get("features", [])
        return any(f.get("id") == item_id for f in features)


def measure_upload(
    client: TerracatClient, timeline: RssTimeline, up: Upload, poll_s: float, timeout: float
) -> Upload:
    """Upload, then follow the job until the item is searchable (or the file is refused)."""
    from catalog.uploads.repository import item_id_from_filename

    set_id = client.new_set(up.collection)
    time.sleep(BASELINE_S)
    up.t0 = time.time()
    if up.transport == "tus":
        client.send_tus(set_id, up.path)
    else:
        client.send_multipart(set_id, up.path)
    up.sent = time.time()
    record = client.first_file(set_id)
    job_href = next(link["href"] for link in record["links"] if link["rel"] == "monitor")
    item_id = item_id_from_filename(up.path.name)  # a new collection: the id is the stem
    deadline, next_job = up.sent + timeout, 0.0
    while time.time() < deadline:
        now = time.time()
        if now >= next_job:
            up.job = client.get(job_href)
            message = up.job.get("message")
            if message and message not in up.messages:
                up.messages[message] = now
            next_job = now + JOB_POLL_S
            if up.job["status"] in FINAL and not (
                up.expect_item and up.job["status"] == "successful"
            ):
                break
        if up.expect_item and client.searchable(item_id, up.collection):
            up.searchable = time.time()
            break
        time.sleep(poll_s)
    for _ in range(100):  # the job row is final by now, or nearly
        up.job = client.get(job_href)
        if up.job["status"] in FINAL:
            break
        time.sleep(0.1)
    up.file = client.first_file(set_id)
    started, finished = up.stamp("started"), up.stamp("finished")
    up.api_before = timeline.before("api", up.t0)
    up.api_peak = timeline.peak("api", up.t0, up.sent)
    up.worker_before = timeline.before("worker", up.t0)
    up.worker_peak = timeline.peak("worker", started, finished + 0.5)
    up.child = timeline.child_span(started, finished + 0.5)
    return up


def wait_for_worker(stacks: Stacks, worker: Server, timeout: float = 60.0) -> None:
    """Until the worker LISTENs for jobs (its connection is named ``terracat-worker``)."""
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'terracat-worker'"
    with psycopg.connect(stacks.terracat_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if worker.process.poll() is not None:
                raise RuntimeError(f"the worker exited: {worker.log.read_text()[-2000:]}")
            row = conn.execute(query).fetchone()
            if row and row[0]:
                return
            time.sleep(0.2)
    raise RuntimeError(f"the worker did not start: {worker.log.read_text()[-2000:]}")


@dataclass
class IngestStack:
    """Terracat's API and one worker on the cluster of a ``Stacks``, sharing a data folder."""

    api: Server
    worker: Server
    client: TerracatClient
    data_dir: Path

    @classmethod
    def start(
        cls, stacks: Stacks, pgstac: bool = False, api_env: dict[str, str] | None = None
    ) -> "IngestStack":
        """Start the cluster (with the pgstac database if asked), the API and the worker."""
        log(f"cluster + migrations in {stacks.tmp}")
        stacks.start_cluster(pgstac=pgstac)
        data_dir = stacks.tmp / "data"
        env = {"TERRACAT_INGEST_DATA_DIR": str(data_dir)}
        api = stacks.start_terracat({**env, **(api_env or {})})
        worker = stacks.start_worker(env)
        wait_for_worker(stacks, worker)
        return cls(api, worker, TerracatClient(api.url, stacks.token), data_dir)

    def timeline(self) -> RssTimeline:
        """A started sampler of the API's and the worker's process trees."""
        return RssTimeline({"api": self.api.process.pid, "worker": self.worker.process.pid}).start()
