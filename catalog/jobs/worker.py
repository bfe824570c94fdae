"""``terracat worker``: claims jobs, runs each in a child process, heartbeats, cancels, re-queues.

One worker process runs ``concurrency`` jobs at once; any number of workers on any number of
machines share the job table. A job's heavy step runs in a child process so that a cancel or a
timeout takes effect at once (the child is killed, whatever C library call it is in), a crash
in GDAL fails one job instead of the worker, and the child dies with its worker
(PR_SET_PDEATHSIG): a worker killed mid-job leaves nothing running, and its job is re-queued
by whichever worker next sees its heartbeat go stale.

Children are forked from multiprocessing's fork server, a single-threaded process that
imported the processes' modules once (``preload``); a spawned child imported them anew for
every job, 0.5-1.5 s of CPU before any work. The fork server exits with the worker, and the
children die with the fork server.
"""

import asyncio
import importlib
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, NoReturn

import psycopg
from sqlalchemy import make_url

from catalog.errors import CatalogError
from catalog.jobs.lifetime import die_with_parent
from catalog.jobs.queue import (
    CANCEL_CHANNEL,
    JOBS_CHANNEL,
    JobCancelled,
    JobContext,
    JobRecord,
    JobRepository,
    Process,
)
from catalog.settings import JobSettings

logger = logging.getLogger("terracat.worker")

Housekeeping = Callable[[], Awaitable[Any]]


class _Lost(Exception):
    """The job is no longer ours (re-queued after a stall, or dismissed and taken over)."""


class _Timeout(Exception):
    """The job ran past its timeout."""


@dataclass
class _Running:
    job: JobRecord
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    progress: int | None = None
    message: str | None = None
    lost: bool = False


def _libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# -- the child process -------------------------------------------------------------------------
# What the fork server imports when it starts (see ``preload``): this module, the processes'.
_PRELOAD: set[str] = {__name__}


def preload(modules: Iterable[str]) -> None:
    """Have job children start with ``modules`` imported, if the fork server is yet to start.

    The fork server is one per process and starts when the process's first worker runs; a
    module named after that is imported by each child that needs it, as a spawned child would.
    """
    _PRELOAD.update(modules)
    multiprocessing.get_context("forkserver").set_forkserver_preload(sorted(_PRELOAD))


def _die_with_worker(worker: int) -> None:
    """Die when the fork server (this child's parent) exits, as it does with the worker."""
    # multiprocessing hands each forked child the write end of the pipe by which the fork
    # server sees its worker go; a child keeping it would keep the fork server, and so itself,
    # alive after the worker was killed. No public API closes it.
    server = vars(multiprocessing.forkserver._forkserver)
    if server.get("_forkserver_alive_fd") is not None:
        os.close(server["_forkserver_alive_fd"])
        server["_forkserver_alive_fd"] = None
    die_with_parent(os.getppid())
    try:
        os.kill(worker, 0)  # gone before the line above took effect: nobody would kill us
    except ProcessLookupError:
        os._exit(1)
    except PermissionError:  # alive, under another user
        pass


def _exit_on_term(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _child_main(
    target: str,
    plan: dict[str, Any],
    job_id: str,
    conn: Connection,
    worker: int,
    environ: dict[str, str],
) -> None:
    _die_with_worker(worker)
    # The worker's environment now, as a spawned child would have it (the fork server's is
    # the worker's at the first job).
    os.environ.clear()
    os.environ.update(environ)
    # SIGTERM unwinds Python frames so that ``finally`` blocks remove temp files.
    signal.signal(signal.SIGTERM, _exit_on_term)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)

    def send(message: tuple[Any, ...]) -> None:
        try:
            conn.send(message)
        except OSError:  # the worker is gone: end as the kernel ends us when the server goes
            os.kill(os.getpid(), signal.SIGKILL)

    def progress(pct: int, msg: str = "") -> None:
        send(("progress", int(pct), str(msg)))

    def log(line: str) -> None:
        send(("log", str(line)))

    ctx = JobContext(job_id=job_id, progress=progress, log=log)
    code = 0
    try:
        result = cls.execute(plan, ctx)
    except SystemExit as exc:  # SIGTERM: a cancel or a timeout; the work's frames have unwound
        code = exc.code if isinstance(exc.code, int) else 1
    except CatalogError as exc:
        send(("error", exc.code, exc.description, bool(getattr(exc, "retriable", False))))
    except Exception as exc:  # a bug or an environment failure: report it, do not loop on it
        logging.getLogger("terracat.worker").exception("job %s failed", job_id)
        send(("error", "job.InternalError", f"{type(exc).__name__}: {exc}", False))
    else:
        send(("result", result))
    finally:
        conn.close()
    _leave(code)


def _leave(code: int) -> NoReturn:
    """End the child at once: its work has unwound (temp files removed) and was reported.

    Python's teardown of this process (GDAL, PROJ and a few thousand modules) took 1.1-1.4 s
    on our 2-core machine, more than the second a cancel has to take effect; nothing of it
    is needed once the work's own ``finally`` blocks have run.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken: nothing left to say there
            pass
    os._exit(code)


# -- the worker ---------------------------------------------------------------------------------
class Worker:
    """Runs jobs of the given processes until ``stop`` is set."""

    def __init__(
        self,
        jobs: JobRepository,
        database_url: str,
        processes: Mapping[str, Process],
        settings: JobSettings,
        housekeeping: Sequence[Housekeeping] = (),
        worker_id: str | None = None,
    ) -> None:
        self.jobs = jobs
        self.database_url = _libpq_url(database_url)
        self.processes = dict(processes)
        self.settings = settings
        self.housekeeping = list(housekeeping)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = asyncio.Event()
        self._running: dict[uuid.UUID, _Running] = {}
        self._mp = multiprocessing.get_context("forkserver")
        preload(
            module
            for process in self.processes.values()
            for module in (type(process).__module__, *process.child_modules)
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; running jobs are stopped and handed back on stop."""
        logger.info("worker %s: processes %s", self.worker_id, ", ".join(self.processes))
        # The fork server imports the processes' modules before it answers: now, not in a job.
        await asyncio.to_thread(multiprocessing.forkserver.ensure_running)
        tasks = [
            asyncio.create_task(self._listen(stop)),
            asyncio.create_task(self._janitor(stop)),
            *(asyncio.create_task(self._slot(stop)) for _ in range(self.settings.concurrency)),
        ]
        await stop.wait()
        self._wake.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _listen(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True, application_name="terracat-worker"
                ) as conn:
                    await conn.execute(f"LISTEN {JOBS_CHANNEL}")
                    await conn.execute(f"LISTEN {CANCEL_CHANNEL}")
                    self._wake.set()  # catch up on whatever was queued before we listened
                    async for note in conn.notifies():
                        if note.channel == JOBS_CHANNEL:
                            self._wake.set()
                        elif note.channel == CANCEL_CHANNEL:
                            running = self._running.get(uuid.UUID(note.payload))
                            if running is not None:
                                running.cancel.set()
            except (psycopg.Error, OSError) as exc:
                logger.warning("worker %s: listener lost (%s); reconnecting", self.worker_id, exc)
                await asyncio.sleep(1)

    async def _janitor(self, stop: asyncio.Event) -> None:
        period = min(self.settings.idle_wake_s, self.settings.stale_after_s / 3)
        while not stop.is_set():
            try:
                stale = await self.jobs.requeue_stale(self.settings.stale_after_s)
                for job in stale:
                    logger.warning("job %s: worker %s lost; now %s", job.id, "?", job.status)
                    process = self.processes.get(job.process_id)
                    if process is not None and job.status in ("failed", "dismissed"):
                        code = (
                            "job.Dismissed"
                            if job.status == "dismissed"
                            else job.error_code or "job.WorkerLost"
                        )
                        await process.failed(job, code, job.error_message or code, final=True)
                if stale:
                    self._wake.set()
                for task in self.housekeeping:
                    await task()
            except Exception:
                logger.exception("worker %s: housekeeping failed", self.worker_id)
            await asyncio.sleep(period)

    async def _slot(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                job = await self.jobs.claim(self.worker_id, list(self.processes))
            except Exception:
                logger.exception("worker %s: claim failed", self.worker_id)
                job = None
                await asyncio.sleep(1)
            if job is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.settings.idle_wake_s)
                except TimeoutError:
                    pass
                continue
            await self._run(job)

    # -- one job -----------------------------------------------------------------------------
    async def _run(self, job: JobRecord) -> None:
        process = self.processes[job.process_id]
        state = _Running(job)
        self._running[job.id] = state
        beat = asyncio.create_task(self._heartbeat(state))
        deadline = time.monotonic() + job.timeout_s
        logger.info("job %s (%s): attempt %d", job.id, job.process_id, job.attempts)
        try:
            if job.cancel_requested:
                raise JobCancelled()
            plan = await self._until(process.prepare(job, state.cancel.is_set), state, deadline)
            result = await self._child(process, plan, state, deadline)
            async with self.jobs.connect() as conn:
                outputs = await process.commit(conn, job, result)
                if not await self.jobs.mark_successful(conn, job.id, self.worker_id, outputs):
                    raise _Lost()
            await process.after_commit(job, outputs)
            logger.info("job %s: successful", job.id)
        except asyncio.CancelledError:  # the worker is stopping: hand the job back at once
            if await self.jobs.release(job.id, self.worker_id):
                logger.info("job %s: handed back (worker stopping)", job.id)
            raise
        except _Lost:
            logger.warning("job %s: no longer ours, dropped", job.id)
        except JobCancelled:
            if state.lost:
                logger.warning("job %s: no longer ours, dropped", job.id)
            elif await self.jobs.mark_dismissed(job.id, self.worker_id):
                await process.failed(job, "job.Dismissed", "the job was dismissed", final=True)
                logger.info("job %s: dismissed", job.id)
        except _Timeout:
            message = f"the job ran longer than its timeout of {job.timeout_s} s"
            await self._fail(process, job, "job.Timeout", message, False)
        except (CatalogError, ChildError) as exc:
            await self._fail(process, job, exc.code, exc.description,
                             bool(getattr(exc, "retriable", False)))  # fmt: skip
        except Exception as exc:
            logger.exception("job %s: failed", job.id)
            await self._fail(process, job, "job.InternalError", f"{type(exc).__name__}: {exc}",
                             True)  # fmt: skip
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            self._running.pop(job.id, None)

    async def _fail(
        self, process: Process, job: JobRecord, code: str, message: str, retry: bool
    ) -> None:
        if await self.jobs.mark_dismissed(job.id, self.worker_id, requested_only=True):
            # Its cancel was asked for: whatever its interrupted work raised (the bytes it read
            # deleted, its record gone), the job was dismissed, not failed.
            logger.info("job %s: dismissed (%s on the way)", job.id, code)
            await process.failed(job, "job.Dismissed", "the job was dismissed", final=True)
            return
        logger.info("job %s: %s %s", job.id, code, message)
        updated = await self.jobs.mark_failed(job, self.worker_id, code, message, retry)
        if updated is not None:
            await process.failed(updated, code, message, final=updated.status == "failed")

    async def _heartbeat(self, state: _Running) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                answer = await self.jobs.beat(
                    state.job.id, self.worker_id, state.progress, state.message
                )
            except Exception as exc:  # a database hiccup: the next beat tries again
                logger.warning("job %s: heartbeat failed: %s", state.job.id, exc)
                continue
            if answer is None:
                state.lost = True
                state.cancel.set()
            elif answer:
                state.cancel.set()

    async def _until(self, work: Awaitable[Any], state: _Running, deadline: float) -> Any:
        """Await ``work`` unless the job is cancelled or times out first."""
        task = asyncio.ensure_future(work)
        cancel = asyncio.create_task(state.cancel.wait())
        try:
            done, _ = await asyncio.wait(
                {task, cancel},
                timeout=max(0.0, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            cancel.cancel()
        if task in done:
            return task.result()
        timed_out = not state.cancel.is_set()
        state.cancel.set()  # threads started by ``work`` see cancelled() and stop on their own
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if timed_out:
            raise _Timeout()
        raise JobCancelled()

    async def _child(
        self, process: Process, plan: dict[str, Any], state: _Running, deadline: float
    ) -> dict[str, Any]:
        target = f"{type(process).__module__}:{type(process).__qualname__}"
        ours, theirs = self._mp.Pipe(duplex=False)
        child = self._mp.Process(
            target=_child_main,
            args=(target, plan, str(state.job.id), theirs, os.getpid(), dict(os.environ)),
            name=f"terracat-job-{state.job.id}",
            daemon=True,
        )
        await asyncio.to_thread(child.start)  # the first start waits for the fork server
        theirs.close()
        outcome: tuple[Any, ...] | None = None
        closed = False  # the child's end of the pipe is gone: it exited or was killed
        try:
            while outcome is None:
                while not closed and ours.poll():
                    try:
                        message = ours.recv()
                    except EOFError:
                        closed = True
                        break
                    if message[0] == "progress":
                        state.progress, state.message = message[1], message[2] or state.message
                    elif message[0] == "log":
                        await self.jobs.append_log(state.job.id, message[1])
                    else:
                        outcome = message
                        break
                if outcome is not None:
                    break
                if state.cancel.is_set():
                    raise JobCancelled()
                if time.monotonic() > deadline:
                    raise _Timeout()
                if not child.is_alive() and (closed or not ours.poll()):
                    raise ChildCrashed(
                        f"the job's process ended unexpectedly (exit code {child.exitcode})"
                    )
                await asyncio.sleep(0.05)
        finally:
            # A child that answered exits by itself; one being cancelled is stopped at once.
            await asyncio.to_thread(_reap, child, 0.5 if outcome is not None else 0.0)
            ours.close()
        if outcome[0] == "result":
            return dict(outcome[1])
        raise ChildError(outcome[1], outcome[2], outcome[3])


def _reap(child: multiprocessing.process.BaseProcess, grace_s: float) -> None:
    """Wait ``grace_s`` for the child to end, then SIGTERM (unwinds it), then SIGKILL."""
    child.join(grace_s)
    if child.is_alive():
        child.terminate()
        child.join(2)
    if child.is_alive():
        child.kill()
        child.join()


class ChildCrashed(CatalogError):
    """The child process died without an answer (killed by the OS, out of memory, a crash)."""

    code = "job.Crashed"
    retriable = True


class ChildError(Exception):
    """An error the child process reported, with its code."""

    def __init__(self, code: str, description: str, retriable: bool) -> None:
        super().__init__(description)
        self.code, self.description, self.retriable = code, description, retriable
