"""Small real processes for worker tests (importable by the worker's job children)."""

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.jobs.queue import (
    InputDescription,
    JobContext,
    JobRecord,
    JobRepository,
    OutputDescription,
    Process,
    ProcessDescription,
    ProcessError,
)


def _description(process_id: str) -> ProcessDescription:
    return ProcessDescription(
        id=process_id,
        title=process_id,
        description=f"test process {process_id}",
        inputs={
            "value": InputDescription(title="value", schema={"type": "number"}),
            "seconds": InputDescription(title="seconds", schema={"type": "number"}, minOccurs=0),
        },
        outputs={"doubled": OutputDescription(title="doubled", schema={"type": "number"})},
    )


class DoubleProcess(Process):
    """Doubles ``value`` in the child after sleeping ``seconds``, reporting progress."""

    description = _description("double")

    def __init__(self) -> None:
        self.failures: list[tuple[str, str, bool]] = []
        self.committed: list[dict[str, Any]] = []

    async def prepare(self, job: JobRecord, cancelled: Callable[[], bool]) -> dict[str, Any]:
        return {"value": job.inputs["value"], "seconds": job.inputs.get("seconds", 0)}

    @staticmethod
    def execute(plan: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        # At least a step (and a progress report) every 0.1 s: tests that wait for progress
        # before cancelling a long job wait that long, not a tenth of the job.
        steps = max(10, round(plan["seconds"] * 10))
        for step in range(steps):
            time.sleep(plan["seconds"] / steps)
            ctx.progress(int(100 * step / steps), f"step {step}")
        ctx.log(f"doubling {plan['value']}")
        if plan["value"] < 0:
            raise ProcessError("negative values are refused")
        return {"doubled": plan["value"] * 2}

    async def commit(
        self, conn: AsyncConnection, job: JobRecord, result: dict[str, Any]
    ) -> dict[str, Any]:
        self.committed.append(result)
        return result

    async def failed(self, job: JobRecord, code: str, message: str, final: bool) -> None:
        self.failures.append((code, message, final))


class FlakyError(ProcessError):
    code = "test.Flaky"
    retriable = True


class FlakyProcess(DoubleProcess):
    """Fails with a retriable error until its third attempt (attempt count from the job)."""

    description = _description("flaky")

    async def prepare(self, job: JobRecord, cancelled: Callable[[], bool]) -> dict[str, Any]:
        if job.attempts < 3:
            raise FlakyError(f"attempt {job.attempts} fails")
        return await super().prepare(job, cancelled)


class CancelledMidwayProcess(DoubleProcess):
    """Asks for its own job's cancel, then fails at once: the failure its work raises while
    the cancel is under way (its input deleted under it, say)."""

    description = _description("cancelled_midway")

    def __init__(self, jobs: JobRepository) -> None:
        super().__init__()
        self.jobs = jobs

    async def prepare(self, job: JobRecord, cancelled: Callable[[], bool]) -> dict[str, Any]:
        await self.jobs.dismiss(job.id)
        raise ProcessError("the input went away")
