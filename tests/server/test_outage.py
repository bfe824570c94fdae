"""A database outage as clients see it: a private cluster stopped and started under a live server.

While the database is down every route family that needs it answers ``503 catalog.Unavailable``
with ``Retry-After`` (never a 500), ``/_mgmt/health`` says DOWN and ``/_mgmt/ping`` stays up.
Once the cluster is back, no request fails: the pooled connections it killed are replaced.

The cluster is this module's own (the session's shared one is never stopped); the server is
uvicorn on a real socket in a thread of the test process, reached by httpx from several threads.
Setting them up (initdb, PostGIS, migrations, an app, one ingested COG) is most of the module's
few seconds; stopping and starting the cluster costs a fraction of a second each.
"""

import base64
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import morecantile
import pytest
import uvicorn

from catalog.db.cluster import LocalCluster, free_port
from catalog.db.engine import migrate
from server.app import create_app
from tests import rasters
from tests.conftest import ADMIN, app_settings
from tests.factories import collection
from tests.tiler.conftest import ingest_item

COLLECTION = "outage"
THROWAWAY = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@dataclass
class Stack:
    """The module's cluster and the live server on it, with what was stored before any outage."""

    cluster: LocalCluster
    url: str
    item_tile: str = ""
    upload_set: str = ""

    def http(self) -> httpx.Client:
        """An authorized client on the live server."""
        return httpx.Client(base_url=self.url, headers=ADMIN, timeout=30)


def _serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    folder = Path(tempfile.mkdtemp(prefix="terracat-outage-"))
    folder.chmod(0o755)  # the postgres user must reach the data folder inside
    cluster = LocalCluster(folder / "db", free_port(), THROWAWAY)
    try:
        cluster.start()
        database = cluster.ensure_database("terracat")
        migrate(database)
        settings = app_settings(database, folder / "data")
        settings.db.connect_timeout_s = 2
        server, thread, url = _serve(create_app(settings))
        try:
            made = Stack(cluster, url)
            with made.http() as http:
                _load(made, http, settings, folder)
            yield made
        finally:
            server.should_exit = True
            thread.join(30)
    finally:
        cluster.destroy()
        shutil.rmtree(folder, ignore_errors=True)


def _load(stack: Stack, http: httpx.Client, settings: Any, folder: Path) -> None:
    """A collection, one real COG item and an upload set, stored while the database is up."""
    assert http.post("/collections", json=collection(COLLECTION)).status_code == 201
    sources = folder / "sources"
    sources.mkdir()
    item = ingest_item(http, settings, rasters.rgbn_uint16_tif(sources), "scene", COLLECTION)  # type: ignore[arg-type]
    lon = (item["bbox"][0] + item["bbox"][2]) / 2
    lat = (item["bbox"][1] + item["bbox"][3]) / 2
    tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 12)
    stack.item_tile = f"/collections/{COLLECTION}/items/scene/tiles/WebMercatorQuad/" + (
        f"{tile.z}/{tile.x}/{tile.y}.png?bidx=1&rescale=0,4095"
    )
    r = http.post("/upload_sets", json={"collection": COLLECTION})
    assert r.status_code == 201, r.text
    stack.upload_set = r.json()["id"]


@dataclass(frozen=True)
class Call:
    """One request of a route family; ``body`` makes its JSON body anew for every send."""

    family: str
    method: str
    path: str
    body: Callable[[], Any] | None = None
    headers: dict[str, str] | None = None

    def send(self, http: httpx.Client) -> httpx.Response:
        """Send it."""
        body = self.body() if self.body else None
        return http.request(self.method, self.path, json=body, headers=self.headers)


def _calls(stack: Stack) -> list[Call]:
    """A request of every route family that needs the database."""
    items = f"/collections/{COLLECTION}/items"
    return [
        Call("collections", "GET", "/collections"),
        Call("collections", "GET", f"/collections/{COLLECTION}"),
        Call("search", "GET", f"/search?collections={COLLECTION}"),
        Call("search", "POST", "/search", lambda: {"collections": [COLLECTION], "limit": 5}),
        Call("items", "GET", items),
        Call("items", "GET", f"{items}/scene"),
        Call("tiles", "GET", f"{items}/tiles/WebMercatorQuad/0/0/0"),
        Call("jobs", "GET", "/jobs"),
        Call("uploads", "GET", f"/upload_sets/{stack.upload_set}"),
        Call("uploads", "POST", "/upload_sets", lambda: {"collection": COLLECTION}),
        # a new id each time, so that every success is a 201
        Call("writes", "POST", "/collections", lambda: collection(f"c-{uuid.uuid4().hex[:12]}")),
    ]


def _refused_calls(stack: Stack) -> list[Call]:
    """More route families, checked while the database is down only: most of these requests
    name ids that do not exist, so they are refused (4xx) once it is back."""
    missing = str(uuid.uuid4())
    tus_metadata = "filename YS50aWY=,upload_set " + base64.b64encode(
        stack.upload_set.encode()
    ).decode("ascii")
    return [
        Call("processes", "POST", "/processes/ingest/execution",
             lambda: {"inputs": {"upload_file": missing}}),
        Call("jobs", "GET", f"/jobs/{missing}"),
        Call("exports", "GET", f"/exports/{missing}.mbtiles"),
        Call("uploads (tus)", "POST", "/uploads/", headers={
            "Tus-Resumable": "1.0.0", "Upload-Length": "10", "Upload-Metadata": tus_metadata}),
        Call("mosaics", "POST", "/searches", lambda: {"collections": [COLLECTION]}),
        Call("OGC tiles", "GET", f"/collections/{COLLECTION}/tiles"),
    ]  # fmt: skip


def _is_unavailable(response: httpx.Response) -> bool:
    return (
        response.status_code == 503
        and response.json()["code"] == "catalog.Unavailable"
        and int(response.headers.get("Retry-After", "0")) > 0
    )


def test_every_route_family_answers_503_while_the_database_is_down(stack: Stack) -> None:
    calls = _calls(stack)
    with stack.http() as http:
        assert http.get("/_mgmt/health").json()["checks"]["database"]["status"] == "UP"
        stack.cluster.stop()
        try:
            for call in [*calls, *_refused_calls(stack)]:
                response = call.send(http)
                assert _is_unavailable(response), (call, response.status_code, response.text)
            health = http.get("/_mgmt/health")
            assert health.status_code == 503 and int(health.headers["Retry-After"]) > 0
            assert health.json()["status"] == "DOWN"
            assert health.json()["checks"]["database"]["status"] == "DOWN"
            assert health.json()["checks"]["storage"]["status"] == "UP"
            assert http.get("/_mgmt/ping").status_code == 200  # alive: must not be restarted
            for path in ("/", "/conformance", "/processes", "/processes/ingest"):
                assert http.get(path).status_code == 200, path  # they need no database
        finally:
            stack.cluster.start()
        for call in calls:
            response = call.send(http)
            assert response.is_success, (call, response.status_code, response.text)
        health = http.get("/_mgmt/health")
        assert health.status_code == 200 and health.json()["status"] == "UP"


@dataclass(frozen=True)
class Answer:
    """What a client got for request number ``number`` (numbered when sent)."""

    number: int
    call: Call
    status: int
    unavailable: bool  # a proper 503: catalog.Unavailable with Retry-After
    text: str


class Clients:
    """Client threads sending the route families' requests in a loop until told to stop.

    Requests are numbered when they are sent, from one counter for all threads, so the test
    can tell which were sent after the database came back.
    """

    def __init__(self, stack: Stack, count: int) -> None:
        self.stack = stack
        # and a raster tile, whose item may come from the tiler's cache during the outage
        self.calls = [*_calls(stack), Call("tiles", "GET", stack.item_tile)]
        self.answers: list[Answer] = []
        self.sent = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(i,)) for i in range(count)]

    def _loop(self, offset: int) -> None:
        with self.stack.http() as http:
            position = offset
            while not self.stop.is_set():
                call = self.calls[position % len(self.calls)]
                position += 1
                with self.lock:
                    self.sent += 1
                    number = self.sent
                try:
                    response = call.send(http)
                except httpx.TransportError as exc:  # the server hung up: a failure too
                    answer = Answer(number, call, 0, False, repr(exc))
                else:
                    answer = Answer(number, call, response.status_code,
                                    _is_unavailable(response), response.text[:200])  # fmt: skip
                with self.lock:
                    self.answers.append(answer)

    def __enter__(self) -> "Clients":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def after(self, number: int) -> list[Answer]:
        """The answers to the requests sent after request ``number``."""
        with self.lock:
            return [answer for answer in self.answers if answer.number > number]

    def run_until(self, condition: Callable[[], bool]) -> None:
        """Let the clients run until ``condition`` holds."""
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, "the clients made no progress"
            time.sleep(0.02)


def _failures(answers: list[Answer], allowed: set[int]) -> list[tuple[str, str, int, str]]:
    return [(a.call.method, a.call.path, a.status, a.text) for a in answers
            if a.status not in allowed]  # fmt: skip


def test_no_request_fails_once_the_database_is_back(stack: Stack) -> None:
    with Clients(stack, count=4) as clients:
        # Every client has had a pooled connection before the database goes away.
        clients.run_until(lambda: len(clients.after(0)) >= 40)
        before = clients.after(0)
        stack.cluster.stop()
        down_from = clients.sent
        clients.run_until(lambda: len(clients.after(down_from)) >= 40)
        stack.cluster.start()
        back_from = clients.sent
        clients.run_until(lambda: len(clients.after(back_from)) >= 80)
    assert _failures(before, {200, 201}) == []
    after = clients.after(back_from)
    assert len(after) >= 80 and _failures(after, {200, 201}) == []
    # In flight when it stopped, or sent while it was down: a proper 503, never a 500.
    outage = clients.after(down_from)
    assert sum(a.unavailable for a in outage) >= 40 - len(after)
    assert [a for a in clients.after(0) if a.status not in (200, 201) and not a.unavailable] == []


def test_a_restart_no_request_saw_fails_no_request(stack: Stack) -> None:
    with Clients(stack, count=4) as clients:  # fills the pool with connections
        clients.run_until(lambda: len(clients.after(0)) >= 40)
    stack.cluster.stop()  # kills every pooled connection while they sit idle
    stack.cluster.start()
    with Clients(stack, count=4) as clients:
        clients.run_until(lambda: len(clients.after(0)) >= 40)
    assert _failures(clients.after(0), {200, 201}) == []


def test_a_database_host_that_never_answers_gives_503_not_a_hang(stack: Stack) -> None:
    stack.cluster.stop()
    try:
        # Its port now takes connections and never says a word, as a host behind a dead link.
        with socket.create_server(("127.0.0.1", stack.cluster.port)), stack.http() as http:
            with ThreadPoolExecutor(2) as pool:
                search = pool.submit(http.get, f"/search?collections={COLLECTION}")
                health = pool.submit(http.get, "/_mgmt/health")
                assert _is_unavailable(search.result()), search.result().text
                assert health.result().status_code == 503
                assert health.result().json()["checks"]["database"]["status"] == "DOWN"
    finally:
        stack.cluster.start()
