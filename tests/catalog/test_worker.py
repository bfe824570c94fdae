"""The job queue against a real PostGIS: claim, progress, log, cancel, timeout, retry, requeue."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import create_engine
from catalog.jobs.queue import JobRecord, JobRepository
from catalog.jobs.worker import Worker
from catalog.settings import DatabaseSettings, JobSettings

from .processes import CancelledMidwayProcess, DoubleProcess, FlakyProcess

FAST = JobSettings(heartbeat_s=0.2, stale_after_s=2, idle_wake_s=0.5, max_attempts=3)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, DatabaseSettings(url=database_url))
    yield engine
    await engine.dispose()


@pytest.fixture
def jobs(engine: AsyncEngine) -> JobRepository:
    return JobRepository(engine)


class Running:
    """Workers started by a test, stopped at its end."""

    def __init__(self, jobs: JobRepository, url: str) -> None:
        self.jobs, self.url = jobs, url
        self.tasks: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    def start(self, processes: dict[str, Any], worker_id: str | None = None) -> Worker:
        worker = Worker(self.jobs, self.url, processes, FAST, worker_id=worker_id)
        stop = asyncio.Event()
        self.tasks.append((stop, asyncio.create_task(worker.run(stop))))
        return worker

    async def stop(self) -> None:
        for stop, _ in self.tasks:
            stop.set()
        await asyncio.gather(*(task for _, task in self.tasks))


@pytest.fixture
async def workers(jobs: JobRepository, database_url: str) -> AsyncIterator[Running]:
    running = Running(jobs, database_url)
    yield running
    await running.stop()


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> float:
    """Wait until ``check()`` is true; returns the seconds it took."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def status_is(jobs: JobRepository, job: JobRecord, *statuses: str) -> JobRecord:
    async def check() -> bool:
        return (await jobs.get(job.id)).status in statuses

    await until(check)
    return await jobs.get(job.id)


async def test_job_runs_to_success_with_progress_and_log(
    jobs: JobRepository, workers: Running
) -> None:
    process = DoubleProcess()
    job = await jobs.submit("double", {"value": 21, "seconds": 1}, timeout_s=60, max_attempts=1)
    assert job.status == "accepted"
    workers.start({"double": process})
    seen: set[int] = set()

    async def running_with_progress() -> bool:
        current = await jobs.get(job.id)
        seen.add(current.progress)
        return current.status == "successful"

    await until(running_with_progress)
    done = await jobs.get(job.id)
    assert done.outputs == {"doubled": 42}
    assert done.progress == 100 and done.finished is not None and done.attempts == 1
    assert any(0 < p < 100 for p in seen), seen
    assert await jobs.log(job.id) == ["doubling 21"]
    assert await jobs.log(job.id, from_line=1) == []
    assert process.committed == [{"doubled": 42}]


async def test_listen_notify_wakes_an_idle_worker(jobs: JobRepository, workers: Running) -> None:
    slow_poll = JobSettings(heartbeat_s=0.2, stale_after_s=2, idle_wake_s=60)
    worker = Worker(jobs, workers.url, {"double": DoubleProcess()}, slow_poll)
    stop = asyncio.Event()
    workers.tasks.append((stop, asyncio.create_task(worker.run(stop))))
    await asyncio.sleep(1.5)  # the worker found nothing and sleeps for up to 60 s
    job = await jobs.submit("double", {"value": 1}, timeout_s=60, max_attempts=1)
    done = await status_is(jobs, job, "successful", "failed")
    assert done.status == "successful"
    assert (done.started - job.created).total_seconds() < 30  # woken, not polled


async def test_process_error_fails_the_job_with_its_code(
    jobs: JobRepository, workers: Running
) -> None:
    process = DoubleProcess()
    job = await jobs.submit("double", {"value": -1}, timeout_s=60, max_attempts=3)
    workers.start({"double": process})
    done = await status_is(jobs, job, "failed")
    assert done.error_code == "job.Failed"
    assert "negative" in (done.error_message or "")
    assert done.attempts == 1  # not retriable: no second attempt
    assert process.failures == [("job.Failed", "negative values are refused", True)]


async def test_dismiss_cancels_a_running_job_quickly_and_restart_reruns_it(
    jobs: JobRepository, workers: Running
) -> None:
    process = DoubleProcess()
    job = await jobs.submit("double", {"value": 2, "seconds": 60}, timeout_s=600, max_attempts=1)
    workers.start({"double": process})

    async def progressing() -> bool:
        return (await jobs.get(job.id)).progress > 0

    await until(progressing)
    asked = await jobs.dismiss(job.id)
    assert asked.status == "running" and asked.cancel_requested
    start = time.monotonic()
    done = await status_is(jobs, job, "dismissed")
    took = time.monotonic() - start
    print(f"cancel took {took:.2f} s")
    assert done.finished is not None
    assert process.failures[-1][0] == "job.Dismissed"
    again = await jobs.restart(job.id)
    assert again.status == "accepted" and again.attempts == 0 and not again.cancel_requested
    await jobs.dismiss(job.id)  # it was queued: dismissed at once, without a worker
    assert (await jobs.get(job.id)).status in ("dismissed", "running")


async def test_dismiss_of_a_queued_job_is_immediate(jobs: JobRepository) -> None:
    job = await jobs.submit("double", {"value": 2}, timeout_s=60, max_attempts=1)
    done = await jobs.dismiss(job.id)
    assert done.status == "dismissed" and done.finished is not None


async def test_restart_refuses_a_job_that_is_not_finished(jobs: JobRepository) -> None:
    from catalog.jobs.queue import JobStateConflict

    job = await jobs.submit("double", {"value": 2}, timeout_s=60, max_attempts=1)
    with pytest.raises(JobStateConflict):
        await jobs.restart(job.id)


async def test_timeout_kills_the_job(jobs: JobRepository, workers: Running) -> None:
    job = await jobs.submit("double", {"value": 2, "seconds": 60}, timeout_s=2, max_attempts=3)
    workers.start({"double": DoubleProcess()})
    done = await status_is(jobs, job, "failed")
    assert done.error_code == "job.Timeout"
    assert done.attempts == 1


async def test_retriable_errors_are_retried_until_success(
    jobs: JobRepository, workers: Running
) -> None:
    job = await jobs.submit("flaky", {"value": 5}, timeout_s=60, max_attempts=3)
    workers.start({"flaky": FlakyProcess()})
    done = await status_is(jobs, job, "successful", "failed")
    assert done.status == "successful", done
    assert done.attempts == 3 and done.outputs == {"doubled": 10}
    assert done.error_code is None and done.error_message is None


async def test_a_job_of_a_dead_worker_is_requeued_and_finished_by_another(
    jobs: JobRepository, workers: Running, engine: AsyncEngine
) -> None:
    job = await jobs.submit("double", {"value": 4}, timeout_s=60, max_attempts=2)
    claimed = await jobs.claim("ghost-worker", ["double"])  # a worker that then dies silently
    assert claimed is not None and claimed.id == job.id
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE jobs SET heartbeat = now() - interval '1 minute' WHERE id = :id"),
            {"id": job.id},
        )
    workers.start({"double": DoubleProcess()}, worker_id="rescuer")
    done = await status_is(jobs, job, "successful", "failed")
    assert done.status == "successful" and done.worker_id == "rescuer" and done.attempts == 2
    assert done.error_code is None and done.error_message is None  # the lost worker's is gone
    # the dead worker can no longer write anything about it
    assert await jobs.beat(job.id, "ghost-worker", 50, None) is None
    async with jobs.connect() as conn:
        assert not await jobs.mark_successful(conn, job.id, "ghost-worker", {})


async def test_two_workers_never_run_the_same_job(jobs: JobRepository, workers: Running) -> None:
    a, b = DoubleProcess(), DoubleProcess()
    submitted = [
        await jobs.submit("double", {"value": v}, timeout_s=60, max_attempts=1) for v in range(6)
    ]
    workers.start({"double": a}, worker_id="a")
    workers.start({"double": b}, worker_id="b")
    for job in submitted:
        assert (await status_is(jobs, job, "successful", "failed")).status == "successful"
    assert len(a.committed) + len(b.committed) == 6


async def test_a_stopping_worker_hands_its_running_job_back(
    jobs: JobRepository, database_url: str
) -> None:
    job = await jobs.submit("double", {"value": 3, "seconds": 60}, timeout_s=600, max_attempts=1)
    worker = Worker(jobs, database_url, {"double": DoubleProcess()}, FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    async def progressing() -> bool:
        return (await jobs.get(job.id)).progress > 0

    await until(progressing)
    stop.set()
    await task
    back = await jobs.get(job.id)
    assert back.status == "accepted" and back.worker_id is None
    assert back.attempts == 0  # the interrupted attempt is not counted against max_attempts


async def test_a_failure_after_a_cancel_request_is_a_dismissal(
    jobs: JobRepository, workers: Running
) -> None:
    """Whatever a job's interrupted work raises once its cancel was asked for, it ends
    ``dismissed``, not ``failed`` (a re-sent picture's first job, its record deleted)."""
    process = CancelledMidwayProcess(jobs)
    workers.start({"cancelled_midway": process})
    job = await jobs.submit("cancelled_midway", {"value": 1}, 30, 3)
    done = await status_is(jobs, job, "dismissed", "failed", "successful")
    assert (done.status, done.attempts, done.error_code) == ("dismissed", 1, None)
    assert process.failures == [("job.Dismissed", "the job was dismissed", True)]
