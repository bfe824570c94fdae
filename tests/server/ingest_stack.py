"""The live stack of the ingest end-to-end tests: its server, its workers, and the HTTP steps
the tests share (kept apart so that test_ingest_e2e.py holds tests)."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
import numpy as np
import shapely.geometry
from pyproj import Transformer
from shapely.geometry import box

from tests import rasters

from .conftest import LiveServer, _start, _stop

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = "drone-orthos"


@dataclass
class Stack:
    """A live API, its database and data folder; workers are started per test."""

    server: LiveServer
    database_url: str
    data_dir: Path
    env: dict[str, str]

    @property
    def url(self) -> str:
        """Base URL with a trailing slash."""
        return self.server.url + "/"

    def http(self) -> httpx.Client:
        """An authorized client on the live API."""
        return httpx.Client(base_url=self.server.url, headers=self.server.auth, timeout=60)


# What the live stacks of the upload tests set: fast heartbeats and wake-ups, so a worker
# picks a job up within half a second and a killed one is seen within seconds.
JOB_ENV = {"TERRACAT_JOBS_HEARTBEAT_S": "0.3", "TERRACAT_JOBS_STALE_AFTER_S": "5",
           "TERRACAT_JOBS_IDLE_WAKE_S": "0.5"}  # fmt: skip


@contextmanager
def live_stack(databases: Any, name: str, **env: str) -> Iterator[Stack]:
    """A live API on a database and data folder of its own (``name``), ``env`` on top of
    ``JOB_ENV``; both removed afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"terracat-{name}-"))
    url = databases.create(f"terracat_{name}_{databases.suffix}")
    full = {"TERRACAT_INGEST_DATA_DIR": str(data_dir), **JOB_ENV, **env}
    proc, server = _start(url, **full)
    try:
        yield Stack(server, url, data_dir, full)
    finally:
        _stop(proc, server)
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def running_workers(stack: Stack) -> Iterator["Workers"]:
    """``Workers`` of ``stack``, one started, all stopped afterwards."""
    running = Workers(stack)
    running.start()
    try:
        yield running
    finally:
        running.stop()


class Workers:
    """``terracat worker`` processes of the module's tests, one kept running between them.

    A worker process costs seconds of CPU to start (imports, its job fork server). A test's
    first ``start`` hands out the worker left running by the tests before, if any; a second
    ``start`` in the same test starts another. After each test one live worker stays (its log
    checked like the others'); the rest are stopped.
    """

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}
        self.handed_out = 0

    def start(self) -> subprocess.Popen[bytes]:
        """A running worker: a kept one for the test's first call, else a new one."""
        if self.handed_out == 0 and self.procs and self.procs[0].poll() is None:
            self.handed_out = 1
            return self.procs[0]
        log = Path(tempfile.mkstemp(prefix="terracat-worker-", suffix=".log")[1])
        env = {**os.environ, **self.stack.env, "DATABASE_URL": self.stack.database_url}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "server.cli", "worker"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.procs.append(proc)
        self.logs[proc.pid] = log
        self.handed_out += 1
        return proc

    def end_test(self) -> None:
        """Keep the first live worker for the next test; stop the others."""
        live = [p for p in self.procs if p.poll() is None]
        self._stop([p for p in self.procs if p not in live[:1]])
        self.procs = live[:1]
        self.handed_out = 0

    def stop(self) -> None:
        """Stop every worker."""
        self._stop(self.procs)
        self.procs = []

    def _stop(self, procs: list[subprocess.Popen[bytes]]) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log = self.logs.pop(proc.pid)
            text = log.read_text(errors="replace")
            if "Traceback" in text:
                print(f"worker {proc.pid} log:\n{text}", file=sys.stderr)
            log.unlink(missing_ok=True)


def wait_for(check: Callable[[], Any], timeout: float = 90, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        time.sleep(every)


def new_set(http: httpx.Client, **extra: Any) -> dict[str, Any]:
    r = http.post("/upload_sets", json={"collection": COLLECTION, **extra})
    assert r.status_code == 201, r.text
    assert r.headers["Location"].endswith(f"/upload_sets/{r.json()['id']}")
    return dict(r.json())


def settled(http: httpx.Client, set_id: str) -> dict[str, Any]:
    """The upload set once it is ready (every file finished)."""

    def ready() -> dict[str, Any] | None:
        doc = http.get(f"/upload_sets/{set_id}").json()
        return doc if doc["ready"] else None

    return dict(wait_for(ready))


def multipart(http: httpx.Client, set_id: str, path: Path, name: str | None = None) -> Any:
    with path.open("rb") as f:
        r = http.post(f"/upload_sets/{set_id}/files", files={"file": (name or path.name, f)})
    assert r.status_code == 201, r.text
    return r.json()


def item_of(http: httpx.Client, record: dict[str, Any]) -> dict[str, Any]:
    href = next(link["href"] for link in record["links"] if link["rel"] == "item")
    r = http.get(href)
    assert r.status_code == 200, r.text
    return dict(r.json())


def local_path(stack: "Stack", href: str) -> Path:
    """The file behind an asset's download URL, in the stack's data folder (the name from the
    route's Content-Disposition)."""
    parsed = urlparse(href)
    _, collections, collection_id, items, item_id, assets, _name = parsed.path.split("/")
    assert (collections, items, assets) == ("collections", "items", "assets"), href
    r = httpx.head(href, headers=stack.server.auth, timeout=30)
    assert r.status_code == 200, (href, r.status_code)
    filename = r.headers["content-disposition"].split('filename="')[1].split('"')[0]
    return stack.data_dir / "assets" / unquote(collection_id) / unquote(item_id) / filename


def expected_utm_footprint(size: int, border: int) -> shapely.Geometry:
    x0, y0 = rasters.UTM_ORIGIN
    valid = box(x0 + border * 10, y0 - (size - border) * 10, x0 + (size - border) * 10,
                y0 - border * 10)  # fmt: skip
    to_wgs84 = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    return shapely.transform(
        valid.segmentize(50), lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1]))
    )
