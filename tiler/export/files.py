"""Where finished archives live: publishing one, and sweeping those no job serves."""

import os
import time
import uuid
from pathlib import Path

from catalog.jobs.queue import JobRepository, JobStatus

from ..archives import WRITERS


def exports_dir(data_dir: Path) -> Path:
    """Where finished archives live."""
    return Path(data_dir).absolute() / "exports"


def archive_path(data_dir: Path, job_id: str, extension: str) -> Path:
    """The published archive of a job."""
    return exports_dir(data_dir) / f"{job_id}.{extension}"


async def sweep_exports(jobs: JobRepository, data_dir: Path, min_age_s: float = 60.0) -> int:
    """Delete the archives no job serves any more; how many.

    The download route serves an archive only while its job is successful. A failed job's
    archive is deleted when it fails (``ExportProcess.failed``), but dismissing a successful
    job (``DELETE /jobs/{id}``) or deleting its row leaves the file: this removes it. Archives
    of queued or running jobs stay (a job publishes before it commits, and a dismissed job
    may be restarted), as does anything younger than ``min_age_s``.
    """
    folder = exports_dir(data_dir)
    if not folder.is_dir():
        return 0
    found: dict[Path, uuid.UUID] = {}
    for path in folder.iterdir():
        if path.suffix.removeprefix(".") not in WRITERS:
            continue
        try:
            found[path] = uuid.UUID(path.stem)
        except ValueError:
            continue
    statuses = await jobs.statuses(sorted(set(found.values())))
    live = {JobStatus.accepted, JobStatus.running, JobStatus.successful}
    cutoff = time.time() - min_age_s
    removed = 0
    for path, job_id in found.items():
        if statuses.get(job_id) in live:
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def publish(temp: Path, target: Path) -> int:
    """fsync ``temp``, rename it to ``target`` and fsync the folder; its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(temp, "rb") as file:
        os.fsync(file.fileno())
        size = os.fstat(file.fileno()).st_size
    os.replace(temp, target)
    fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return size
