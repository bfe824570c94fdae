"""A real job worker in a thread of the test process, and polling a job over HTTP.

``tests/conftest.py`` hands out workers through the ``make_worker`` fixture, which stops them
at the end of the test.
"""

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import create_engine
from catalog.jobs.queue import JobRepository, Process
from catalog.jobs.worker import Worker
from catalog.settings import DatabaseSettings, JobSettings

Processes = Callable[[AsyncEngine], Mapping[str, Process]]


class LoopThread:
    """An async ``main(stop)`` on an event loop of its own, in a thread (the TestClient has its
    own loop); ``stop()`` sets the event and waits for ``main`` to return."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None

    def run(self, main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        """Start ``main`` in the thread and wait until its loop runs."""
        ready = threading.Event()

        async def wrapper() -> None:
            self.loop, self.stop_event = asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            await main(self.stop_event)

        self.thread = threading.Thread(target=asyncio.run, args=(wrapper(),), daemon=True)
        self.thread.start()
        assert ready.wait(10), "the worker thread did not start"

    def stop(self) -> None:
        """Stop ``main`` (a worker abandons its running jobs) and wait for the thread."""
        if self.thread is None:
            return
        assert self.loop is not None and self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)
        assert not self.thread.is_alive(), "the worker did not stop"


class WorkerThread(LoopThread):
    """A real worker in a thread. ``processes`` makes the offered processes, by id, from the
    worker's engine."""

    def __init__(self, database_url: str, processes: Processes, jobs: JobSettings) -> None:
        super().__init__()
        self.url = database_url
        self.processes = processes
        self.jobs = jobs

    def start(self, processes: Processes | None = None) -> None:
        """Start working, on ``processes`` if given instead of the constructor's."""
        make = processes or self.processes

        async def main(stop: asyncio.Event) -> None:
            engine = create_engine(self.url, DatabaseSettings(url=self.url))
            try:
                await Worker(JobRepository(engine), self.url, make(engine), self.jobs).run(stop)
            finally:
                await engine.dispose()

        self.run(main)


MakeWorker = Callable[[Processes, JobSettings], WorkerThread]


def wait_for_final(
    client: TestClient, headers: dict[str, str], location: str, timeout: float = 30
) -> Any:
    """Poll an upload file record until it leaves ``received``/``processing``; the record.

    A job reads ``failed`` a moment before its file reads ``rejected``: the worker marks the
    job, then runs the process's failure hook, which records the outcome on the file.
    """
    deadline = time.monotonic() + timeout
    while True:
        record = client.get(location, headers=headers).json()
        if record["status"] not in ("received", "processing") or time.monotonic() > deadline:
            return record
        time.sleep(0.05)


def wait_for(
    client: TestClient, admin: dict[str, str], job_id: str, *statuses: str, timeout: float = 60
) -> dict[str, Any]:
    """Poll the job's status until it is one of ``statuses``; the job document."""
    deadline = time.monotonic() + timeout
    while True:
        doc = client.get(f"/jobs/{job_id}", headers=admin).json()
        if doc["status"] in statuses:
            return doc
        assert time.monotonic() < deadline, f"job still {doc['status']}: {doc}"
        time.sleep(0.1)
