"""``terracat worker``: the composition of a job worker (processes, housekeeping, signals)."""

import asyncio
import logging
import signal
import time
from pathlib import Path

from catalog.db.engine import create_engine
from catalog.jobs.queue import JobRepository
from catalog.jobs.worker import Worker
from catalog.stac.repository import CatalogRepository
from catalog.storage import build_storage
from catalog.uploads.repository import UploadRepository
from catalog.uploads.tus_store import expire_uploads
from tiler.export import sweep_exports

from .processes import build_processes
from .settings import Settings

logger = logging.getLogger("terracat.worker")

TEMP_MAX_AGE_S = 24 * 3600


STAGING_MAX_AGE_S = 3600
# Object storage is swept less often than a local folder: each sweep is a LIST request (or
# more) that every worker makes, and an archive or an abandoned multipart upload waiting a few
# minutes more costs nothing.
REMOTE_SWEEP_S = 300.0
MULTIPART_MAX_AGE_S = 24 * 3600


def sweep_temp(
    folder: Path, max_age_s: float, now: float | None = None, keep: set[str] | None = None
) -> int:
    """Delete files in ``folder`` untouched for ``max_age_s``, but those named in ``keep``.

    Killed jobs leave temp files, and staging/ gets partial downloads of a killed worker or
    the raw upload of a worker killed between its commit and its clean-up.
    """
    if not folder.is_dir():
        return 0
    cutoff = (now or time.time()) - max_age_s
    removed = 0
    for path in folder.iterdir():
        try:
            if keep is not None and str(path) in keep:
                continue
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


async def run_worker(settings: Settings, url: str, stop: asyncio.Event | None = None) -> None:
    """Run a worker on the database at ``url`` until SIGTERM/SIGINT (or ``stop``)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    engine = create_engine(url, settings.db)
    catalog = CatalogRepository(engine)
    jobs = JobRepository(engine)
    uploads = UploadRepository(engine, jobs)
    data_dir = Path(settings.ingest.data_dir)
    storage = build_storage(settings.storage, data_dir)  # once: the jobs' children rebuild it
    next_remote_sweep = 0.0

    async def expire() -> None:
        nonlocal next_remote_sweep
        removed = await asyncio.to_thread(expire_uploads, data_dir / "tus")
        removed += await asyncio.to_thread(sweep_temp, data_dir / "tmp", TEMP_MAX_AGE_S)
        referenced = await uploads.staged_paths()
        removed += await asyncio.to_thread(
            sweep_temp, data_dir / "staging", STAGING_MAX_AGE_S, None, referenced
        )
        if storage.kind == "local" or time.monotonic() >= next_remote_sweep:
            next_remote_sweep = time.monotonic() + REMOTE_SWEEP_S
            removed += await sweep_exports(jobs, storage)
            abort = getattr(storage, "abort_stale_uploads", None)
            if abort is not None:  # uploads of processes that died mid-publish
                removed += await asyncio.to_thread(abort, MULTIPART_MAX_AGE_S)
        if removed:
            logger.info("removed %d expired upload(s), stale temp file(s) and archive(s)", removed)

    worker = Worker(
        jobs,
        url,
        build_processes(settings, catalog, uploads, storage),
        settings.jobs,
        housekeeping=[expire],
    )
    try:
        await worker.run(stop)
    finally:
        await engine.dispose()
