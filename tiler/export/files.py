"""Where finished archives live (``exports/{job id}.{ext}`` of the storage), and the sweep of
those no job serves."""

import asyncio
import time
import uuid
from datetime import datetime

from catalog.jobs.queue import JobRepository, JobStatus
from catalog.storage.base import Storage, StoredObject, check_part

from ..archives import WRITERS

EXPORTS = "exports"


def archive_key(job_id: str, extension: str) -> str:
    """The storage key of a job's published archive."""
    return f"{EXPORTS}/{check_part(f'{job_id}.{extension}', 'archive name')}"


async def sweep_exports(jobs: JobRepository, storage: Storage, min_age_s: float = 60.0) -> int:
    """Delete the archives no job serves any more; how many.

    The download route serves an archive only while its job is successful. A failed job's
    archive is deleted when it fails (``ExportProcess.failed``), but dismissing a successful
    job (``DELETE /jobs/{id}``) or deleting its row leaves the object: this removes it.
    Archives of queued or running jobs stay (a job publishes before it commits, and a
    dismissed job may be restarted), as does anything younger than ``min_age_s``.
    """
    listed: list[StoredObject] = await asyncio.to_thread(lambda: list(storage.keys(EXPORTS)))
    found: dict[StoredObject, uuid.UUID] = {}
    for stored in listed:
        name = stored.key.rsplit("/", 1)[-1]
        stem, _, extension = name.rpartition(".")
        if extension not in WRITERS or "/" in stored.key.removeprefix(EXPORTS + "/"):
            continue
        try:
            found[stored] = uuid.UUID(stem)
        except ValueError:
            continue
    statuses = await jobs.statuses(sorted(set(found.values())))
    live = {JobStatus.accepted, JobStatus.running, JobStatus.successful}
    cutoff = time.time() - min_age_s
    removed = 0
    for stored, job_id in found.items():
        if statuses.get(job_id) in live or _timestamp(stored.modified) >= cutoff:
            continue
        await asyncio.to_thread(storage.delete, stored.key)
        removed += 1
    return removed


def _timestamp(moment: datetime) -> float:
    return moment.timestamp()
