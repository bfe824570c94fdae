"""An ingest process whose first job stops at a gate the test opens: in its child process
(before it reads the picture) or before its commit, so that a test can act while that job
runs."""

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.jobs.queue import JobContext, JobRecord, JobRepository
from catalog.stac.repository import CatalogRepository
from catalog.storage import build_storage
from catalog.uploads.ingest import IngestProcess
from catalog.uploads.repository import UploadRepository
from server.processes import build_processes
from server.settings import Settings
from tests.catalog.vector_uploads import FAST
from tests.workers import MakeWorker


class Gate:
    """Where the first job waits: ``child`` (a folder: the child writes ``entered`` there and
    waits for ``release``) or ``commit`` (before its commit, until ``release`` is set)."""

    def __init__(self, child: Path | None = None, commit: bool = False) -> None:
        self.child = child
        self.commit = commit
        self.entered = threading.Event()  # the commit gate is reached
        self.release = threading.Event()
        self.used = False

    def child_entered(self, timeout: float = 60) -> None:
        """Wait until the gated child runs."""
        assert self.child is not None
        deadline = time.monotonic() + timeout
        while not (self.child / "entered").exists():
            assert time.monotonic() < deadline, "the gated job's child did not start"
            time.sleep(0.05)

    def open(self) -> None:
        """Let the gated job go on."""
        if self.child is not None:
            (self.child / "release").touch()
        self.release.set()


class GatedIngest(IngestProcess):
    """IngestProcess with a ``gate`` for its first job."""

    gate: Gate

    async def prepare(self, job: JobRecord, cancelled: Any) -> dict[str, Any]:
        """The first job's plan names the child gate."""
        plan = await super().prepare(job, cancelled)
        if not self.gate.used and self.gate.child is not None:
            self.gate.used = True
            plan["gate"] = str(self.gate.child)
        return plan

    @staticmethod
    def execute(plan: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        """Child process: wait at the gate, if any, then ingest."""
        if plan.get("gate"):
            gate = Path(plan["gate"])
            (gate / "entered").touch()
            deadline = time.monotonic() + 60
            while not (gate / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return IngestProcess.execute(plan, ctx)

    async def commit(
        self, conn: AsyncConnection, job: JobRecord, result: dict[str, Any]
    ) -> dict[str, Any]:
        """The first job waits before its commit, if so gated."""
        if self.gate.commit and not self.gate.used:
            self.gate.used = True
            self.gate.entered.set()
            await asyncio.to_thread(self.gate.release.wait, 60)
        return await super().commit(conn, job, result)


def start_gated_worker(settings: Settings, make_worker: MakeWorker, gate: Gate) -> None:
    """A real worker whose ingest process is GatedIngest."""

    def processes(engine: Any) -> Any:
        uploads = UploadRepository(engine, JobRepository(engine))
        storage = build_storage(settings.storage, settings.ingest.data_dir)
        built = build_processes(settings, CatalogRepository(engine), uploads, storage)
        ingest = GatedIngest(uploads, CatalogRepository(engine), settings.ingest, storage,
                             settings.catalog.validate_extensions,
                             settings.auth.default_quota_bytes)  # fmt: skip
        ingest.gate = gate
        return built | {"ingest": ingest}

    make_worker(processes, FAST).start()
