"""The job table: submit, claim, heartbeat, finish; and the plugin shape of a process.

We keep our own queue rather than procrastinate: the job row *is* the OGC API - Processes job
resource (status, progress, log, results, dismiss), and a process's results must be committed
in the same transaction that marks its job successful (an ingested item appears exactly once
even when a worker dies). procrastinate's own job table would be a second source of truth that
cannot share that transaction, and it has no progress, log or per-job timeout. The mechanics
it would give us are small here: ``FOR UPDATE SKIP LOCKED`` to claim, LISTEN/NOTIFY (triggers
in migration 0003) to wake, heartbeats to find dead workers.
"""

import enum
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, Field
from sqlalchemy import false, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.accounts.principal import Principal
from catalog.accounts.repository import AccountRepository
from catalog.db.engine import connect
from catalog.db.models import Job, JobLog
from catalog.errors import CatalogError, InvalidParameter, NotFound

JOBS_CHANNEL = "terracat_jobs"
CANCEL_CHANNEL = "terracat_job_cancel"


class JobStatus(enum.StrEnum):
    """OGC API - Processes statusCode values."""

    accepted = "accepted"
    running = "running"
    successful = "successful"
    failed = "failed"
    dismissed = "dismissed"


# -- process plugins ----------------------------------------------------------------------------
class InputDescription(BaseModel):
    """One input of a process: a JSON schema and how often it may be given."""

    title: str
    description: str = ""
    schema_: dict[str, Any] = Field(alias="schema")
    min_occurs: int = Field(default=1, alias="minOccurs")
    max_occurs: int = Field(default=1, alias="maxOccurs")

    model_config = {"populate_by_name": True}


class OutputDescription(BaseModel):
    """One output of a process."""

    title: str
    description: str = ""
    schema_: dict[str, Any] = Field(alias="schema")

    model_config = {"populate_by_name": True}


class ProcessDescription(BaseModel):
    """What a process is, in the terms of OGC API - Processes (ogc-process-description)."""

    id: str
    title: str
    description: str
    version: str = "1.0.0"
    keywords: list[str] = Field(default_factory=list)
    inputs: dict[str, InputDescription]
    outputs: dict[str, OutputDescription]
    timeout_s: int | None = Field(default=None, description="None: the worker default.")
    max_attempts: int | None = None


class ProcessError(CatalogError):
    """A process refused or failed its job; ``retriable`` errors are tried again."""

    code = "job.Failed"
    status = 422
    retriable: ClassVar[bool] = False


class JobCancelled(Exception):
    """Raised in a process when its job was dismissed."""


@dataclass
class JobContext:
    """What a process sees while it runs in the worker's child process."""

    job_id: str
    progress: Callable[[int, str], None]
    log: Callable[[str], None]


class Process(ABC):
    """A process plugin (STYLE.md pattern 11): a typed description and three steps.

    ``prepare`` runs in the worker with database access and may use threads (downloads,
    hashing); ``execute`` runs in a child process that the worker kills on cancel or timeout,
    with only the JSON plan ``prepare`` made; ``commit`` runs inside the transaction that marks
    the job successful, so whatever it writes appears together with the job's success or not
    at all. ``failed`` runs when a job ends without success (final or not).
    """

    description: ClassVar[ProcessDescription]
    # Modules ``execute`` imports when it runs: job children start with them imported.
    child_modules: ClassVar[tuple[str, ...]] = ()

    def check_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Validate inputs at submission (raise InvalidParameter); returns what is stored."""
        known = set(self.description.inputs)
        unknown = set(inputs) - known
        if unknown:
            raise InvalidParameter(f"unknown input(s): {', '.join(sorted(unknown))}")
        for name, spec in self.description.inputs.items():
            if spec.min_occurs > 0 and name not in inputs:
                raise InvalidParameter(f"input {name!r} is required")
        return dict(inputs)

    async def admit(
        self, inputs: dict[str, Any], caller: Principal, accounts: AccountRepository
    ) -> dict[str, Any]:
        """At submission, after ``check_inputs``: refuse a ``caller`` without the rights the
        job needs on what its inputs name (raise), and return the inputs to store, with what
        the worker must know of the caller's rights (default: the inputs as they are)."""
        return inputs

    @abstractmethod
    async def prepare(self, job: "JobRecord", cancelled: Callable[[], bool]) -> dict[str, Any]:
        """Gather what ``execute`` needs (a JSON-able plan)."""

    @staticmethod
    @abstractmethod
    def execute(plan: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        """Do the work in a child process; returns a JSON-able result."""

    @abstractmethod
    async def commit(
        self, conn: AsyncConnection, job: "JobRecord", result: dict[str, Any]
    ) -> dict[str, Any]:
        """Write the result in the success transaction; returns the job's outputs."""

    async def failed(  # noqa: B027 - optional hook
        self, job: "JobRecord", code: str, message: str, final: bool
    ) -> None:
        """Record a failure where the process keeps state (default: nothing)."""

    async def after_commit(  # noqa: B027 - optional hook
        self, job: "JobRecord", outputs: dict[str, Any]
    ) -> None:
        """Clean up once the success is committed (default: nothing)."""


# -- the job table ------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobRecord:
    """A job row."""

    id: uuid.UUID
    process_id: str
    status: str
    progress: int
    message: str | None
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None
    error_code: str | None
    error_message: str | None
    log_lines: int
    attempts: int
    max_attempts: int
    timeout_s: int
    cancel_requested: bool
    worker_id: str | None
    created: datetime
    updated: datetime
    started: datetime | None
    finished: datetime | None
    heartbeat: datetime | None
    owner_id: uuid.UUID | None = None  # the account that made it (None: the bootstrap admin)

    @classmethod
    def from_row(cls, row: Any) -> "JobRecord":
        """Build from a mapping with the jobs columns."""
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


_COLUMNS = [getattr(Job, name) for name in JobRecord.__dataclass_fields__]


def parse_job_id(value: str) -> uuid.UUID:
    """A job id from a URL; NotFound for anything that is not one of ours."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"job {value!r} does not exist") from None


class JobRepository:
    """All SQL on the job table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def connect(self, write: bool = True) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection (a transaction when ``write``), with driver errors translated."""
        return connect(self.engine, write)

    # -- API side ------------------------------------------------------------------------------
    async def submit(
        self,
        process_id: str,
        inputs: Mapping[str, Any],
        timeout_s: int,
        max_attempts: int,
        conn: AsyncConnection | None = None,
        owner_id: uuid.UUID | None = None,
    ) -> JobRecord:
        """Queue a job of ``owner_id`` (in ``conn``'s transaction when given); NOTIFY wakes a
        worker."""
        statement = (
            insert(Job)
            .values(
                id=uuid.uuid4(),
                process_id=process_id,
                inputs=dict(inputs),
                timeout_s=timeout_s,
                max_attempts=max_attempts,
                owner_id=owner_id,
            )
            .returning(*_COLUMNS)
        )
        if conn is not None:
            return JobRecord.from_row((await conn.execute(statement)).one()._mapping)
        async with self.connect() as own:
            return JobRecord.from_row((await own.execute(statement)).one()._mapping)

    async def get(self, job_id: uuid.UUID) -> JobRecord:
        """One job, or NotFound."""
        async with self.connect(write=False) as conn:
            row = (await conn.execute(select(*_COLUMNS).where(Job.id == job_id))).first()
        if row is None:
            raise NotFound(f"job {job_id} does not exist")
        return JobRecord.from_row(row._mapping)

    async def statuses(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The status of each of ``job_ids`` that exists."""
        if not job_ids:
            return {}
        async with self.connect(write=False) as conn:
            rows = await conn.execute(select(Job.id, Job.status).where(Job.id.in_(list(job_ids))))
            return {row.id: str(row.status) for row in rows}

    async def list_jobs(
        self,
        statuses: list[str] | None = None,
        process_ids: list[str] | None = None,
        limit: int = 100,
        offset: int = 0,
        created: tuple[datetime | None, datetime | None] = (None, None),
        min_duration_s: float | None = None,
        max_duration_s: float | None = None,
        owners: Sequence[uuid.UUID] | None = None,
    ) -> list[JobRecord]:
        """Jobs, newest first; ``created`` is an interval, durations are in seconds.

        A job's duration runs from its start to its end, or to now while it runs; a job that
        has not started has none and matches no duration filter (OGC job-list). ``owners``
        keeps the jobs of these accounts only (None: everyone's, for admins; empty: none).
        """
        query = select(*_COLUMNS)
        if owners is not None:
            query = query.where(Job.owner_id.in_(list(owners)) if owners else false())
        if created[0] is not None:
            query = query.where(Job.created >= created[0])
        if created[1] is not None:
            query = query.where(Job.created <= created[1])
        duration = func.extract("epoch", func.coalesce(Job.finished, func.now()) - Job.started)
        if min_duration_s is not None:
            query = query.where(duration >= min_duration_s)
        if max_duration_s is not None:
            query = query.where(duration <= max_duration_s)
        if statuses:
            query = query.where(Job.status.in_(statuses))
        if process_ids:
            query = query.where(Job.process_id.in_(process_ids))
        query = query.order_by(Job.created.desc(), Job.id.desc()).limit(limit).offset(offset)
        async with self.connect(write=False) as conn:
            rows = (await conn.execute(query)).all()
        return [JobRecord.from_row(r._mapping) for r in rows]

    async def log(self, job_id: uuid.UUID, from_line: int = 0, limit: int = 1000) -> list[str]:
        """Log lines from ``from_line`` on (0-based)."""
        async with self.connect(write=False) as conn:
            rows = await conn.scalars(
                select(JobLog.message)
                .where(JobLog.job_id == job_id, JobLog.line >= from_line)
                .order_by(JobLog.line)
                .limit(limit)
            )
            return list(rows)

    async def dismiss(self, job_id: uuid.UUID, conn: AsyncConnection | None = None) -> JobRecord:
        """Cancel a queued or running job; a finished one is marked dismissed (in ``conn``'s
        transaction when given).

        A queued job is dismissed at once. A running one gets ``cancel_requested``: its worker
        is told by NOTIFY, kills the work and marks it dismissed (within a heartbeat).
        """
        if conn is None:
            async with self.connect() as own:
                return await self.dismiss(job_id, own)
        row = (
            await conn.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    status=text(
                        "CASE WHEN jobs.status = 'running' THEN 'running' ELSE 'dismissed' END"
                    ),
                    cancel_requested=text("jobs.status = 'running'"),
                    finished=text(
                        "CASE WHEN jobs.status = 'running' THEN jobs.finished "
                        "ELSE coalesce(jobs.finished, now()) END"
                    ),
                    message=text(
                        "CASE WHEN jobs.status = 'running' THEN 'cancel requested' "
                        "ELSE 'dismissed' END"
                    ),
                    updated=func.now(),
                )
                .returning(*_COLUMNS)
            )
        ).first()
        if row is None:
            raise NotFound(f"job {job_id} does not exist")
        return JobRecord.from_row(row._mapping)

    async def restart(self, job_id: uuid.UUID) -> JobRecord:
        """Queue a failed or dismissed job again, from scratch."""
        async with self.connect() as conn:
            row = (
                await conn.execute(
                    update(Job)
                    .where(
                        Job.id == job_id,
                        Job.status.in_([JobStatus.failed.value, JobStatus.dismissed.value]),
                    )
                    .values(
                        status=JobStatus.accepted.value,
                        progress=0,
                        message="restarted",
                        outputs=None,
                        error_code=None,
                        error_message=None,
                        attempts=0,
                        cancel_requested=False,
                        worker_id=None,
                        run_after=func.now(),
                        started=None,
                        finished=None,
                        heartbeat=None,
                        updated=func.now(),
                    )
                    .returning(*_COLUMNS)
                )
            ).first()
        if row is None:
            current = await self.get(job_id)
            raise JobStateConflict(
                f"job {job_id} is {current.status}; only failed or dismissed jobs restart"
            )
        return JobRecord.from_row(row._mapping)

    # -- worker side ---------------------------------------------------------------------------
    async def _update_ours(
        self,
        job_id: uuid.UUID,
        worker_id: str,
        values: dict[str, Any],
        returning: tuple[Any, ...] = (Job.id,),
        conn: AsyncConnection | None = None,
        condition: Any = None,
    ) -> Any:
        """Update a running job only while ``worker_id`` holds it (and ``condition`` holds);
        the row, or None if not.

        Every write of a worker about its job goes through here, so a worker that lost its job
        (re-queued after a stall, dismissed) can never overwrite what another one does.
        """
        ours = update(Job).where(
            Job.id == job_id, Job.worker_id == worker_id, Job.status == "running"
        )  # fmt: skip
        if condition is not None:
            ours = ours.where(condition)
        statement = ours.values(**values, updated=func.now()).returning(*returning)
        if conn is not None:
            return (await conn.execute(statement)).first()
        async with self.connect() as own:
            return (await own.execute(statement)).first()

    async def claim(self, worker_id: str, process_ids: list[str]) -> JobRecord | None:
        """Take the oldest runnable job no other worker holds, or None."""
        async with self.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "UPDATE jobs SET status = 'running', worker_id = :worker, "
                        "attempts = attempts + 1, started = now(), heartbeat = now(), "
                        "updated = now(), message = 'running' "
                        "WHERE id = (SELECT id FROM jobs WHERE status = 'accepted' "
                        "AND run_after <= now() AND process_id = ANY(:processes) "
                        "ORDER BY run_after, created FOR UPDATE SKIP LOCKED LIMIT 1) "
                        "RETURNING " + ", ".join(JobRecord.__dataclass_fields__)
                    ),
                    {"worker": worker_id, "processes": process_ids},
                )
            ).first()
        return JobRecord.from_row(row._mapping) if row is not None else None

    async def beat(
        self, job_id: uuid.UUID, worker_id: str, progress: int | None, message: str | None
    ) -> bool | None:
        """Record a heartbeat; None when the job is no longer ours, else cancel_requested."""
        values: dict[str, Any] = {"heartbeat": func.now()}
        if progress is not None:
            values["progress"] = max(0, min(100, progress))
        if message is not None:
            values["message"] = message[:1000]
        row = await self._update_ours(job_id, worker_id, values, (Job.cancel_requested,))
        return None if row is None else bool(row[0])

    async def append_log(self, job_id: uuid.UUID, message: str) -> None:
        """Add a line to a job's log."""
        async with self.connect() as conn:
            await conn.execute(
                text(
                    "WITH n AS (UPDATE jobs SET log_lines = log_lines + 1 WHERE id = :id "
                    "RETURNING log_lines - 1 AS line) "
                    "INSERT INTO job_log (job_id, line, message) SELECT :id, line, :message FROM n"
                ),
                {"id": job_id, "message": message[:10_000]},
            )

    async def mark_successful(
        self, conn: AsyncConnection, job_id: uuid.UUID, worker_id: str, outputs: dict[str, Any]
    ) -> bool:
        """In ``conn``'s transaction: successful, if the job is still ours.

        The error of an earlier attempt (a lost worker, a retried failure) goes: it no longer
        describes the job.
        """
        values = {
            "status": JobStatus.successful.value,
            "progress": 100,
            "message": "done",
            "outputs": outputs,
            "error_code": None,
            "error_message": None,
            "finished": func.now(),
        }
        return await self._update_ours(job_id, worker_id, values, conn=conn) is not None

    async def mark_failed(
        self,
        job: JobRecord,
        worker_id: str,
        code: str,
        message: str,
        retry: bool,
    ) -> JobRecord | None:
        """Fail a job, or re-queue it with a backoff when ``retry`` and attempts remain."""
        again = retry and job.attempts < job.max_attempts
        values: dict[str, Any] = {"error_code": code, "error_message": message[:10_000]}
        if again:
            delay = min(60, 2**job.attempts)
            values |= {
                "status": JobStatus.accepted.value,
                "worker_id": None,
                "message": f"retrying in {delay} s after: {message[:200]}",
                "run_after": text(f"now() + interval '{int(delay)} seconds'"),
            }
        else:
            values |= {
                "status": JobStatus.failed.value,
                "message": message[:1000],
                "finished": func.now(),
            }
        row = await self._update_ours(job.id, worker_id, values, tuple(_COLUMNS))
        return JobRecord.from_row(row._mapping) if row is not None else None

    async def mark_dismissed(
        self, job_id: uuid.UUID, worker_id: str, requested_only: bool = False
    ) -> bool:
        """A running job of ours that was cancelled (``requested_only``: only if a cancel was
        asked for, whatever its work did meanwhile)."""
        values = {
            "status": JobStatus.dismissed.value,
            "message": "dismissed",
            "finished": func.now(),
        }
        condition = Job.cancel_requested.is_(True) if requested_only else None
        return await self._update_ours(job_id, worker_id, values, condition=condition) is not None

    async def release(self, job_id: uuid.UUID, worker_id: str) -> bool:
        """A stopping worker hands a running job back: queued again, the attempt not counted."""
        values = {
            "status": JobStatus.accepted.value,
            "attempts": func.greatest(Job.attempts - 1, 0),
            "worker_id": None,
            "message": "re-queued: its worker stopped",
            "run_after": func.now(),
            "started": None,
            "heartbeat": None,
        }
        return await self._update_ours(job_id, worker_id, values) is not None

    async def requeue_stale(self, stale_after_s: float) -> list[JobRecord]:
        """Jobs whose worker stopped beating: re-queued, or failed after their last attempt."""
        async with self.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "UPDATE jobs SET "
                        "status = CASE WHEN cancel_requested THEN 'dismissed' "
                        "  WHEN attempts < max_attempts THEN 'accepted' ELSE 'failed' END, "
                        "error_code = CASE WHEN cancel_requested THEN error_code "
                        "  ELSE 'job.WorkerLost' END, "
                        "error_message = CASE WHEN cancel_requested THEN error_message "
                        "  ELSE 'worker ' || coalesce(worker_id, '?') "
                        "  || ' stopped responding' END, "
                        "message = CASE WHEN cancel_requested THEN 'dismissed' "
                        "  WHEN attempts < max_attempts THEN 're-queued: worker lost' "
                        "  ELSE 'failed: worker lost' END, "
                        "finished = CASE WHEN cancel_requested OR attempts >= max_attempts "
                        "  THEN now() END, "
                        "worker_id = NULL, run_after = now(), updated = now() "
                        "WHERE status = 'running' "
                        "AND heartbeat < now() - make_interval(secs => :stale) "
                        "RETURNING " + ", ".join(JobRecord.__dataclass_fields__)
                    ),
                    {"stale": stale_after_s},
                )
            ).all()
        return [JobRecord.from_row(r._mapping) for r in rows]


class JobStateConflict(CatalogError):
    """The job is not in a state that allows the request."""

    code = "job.InvalidState"
    status = 409
