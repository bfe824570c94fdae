"""``terracat worker``: the composition of a job worker (processes, housekeeping, signals)."""

import asyncio
import logging
import shutil
import signal
import time
from pathlib import Path

from catalog.db.engine import create_engine
from catalog.jobs.queue import JobRepository
from catalog.jobs.worker import Worker
from catalog.stac.repository import CatalogRepository
from catalog.storage import build_storage
from catalog.storage.base import Storage
from catalog.uploads.ingest import STAGING
from catalog.uploads.repository import UploadRepository
from catalog.uploads.tus_store import TusRepository
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
    """Delete files and folders in the local ``folder`` untouched for ``max_age_s``, but
    those named in ``keep``: a killed job leaves its temp files (and the work folder its input
    was fetched into)."""
    if not folder.is_dir():
        return 0
    cutoff = (now or time.time()) - max_age_s
    removed = 0
    for path in folder.iterdir():
        try:
            if keep is not None and str(path) in keep:
                continue
            if path.is_symlink() or path.lstat().st_mtime >= cutoff:
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
    return removed


def sweep_staging(
    storage: Storage, max_age_s: float, keep: set[str], now: float | None = None
) -> int:
    """Delete the ``staging/`` objects older than ``max_age_s`` that no file record names:
    the upload of a process killed before it recorded it, or of a worker killed between its
    commit and its clean-up."""
    cutoff = (now or time.time()) - max_age_s
    removed = 0
    for found in list(storage.keys(STAGING)):
        if found.key not in keep and found.modified.timestamp() < cutoff:
            storage.delete(found.key)
            removed += 1
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
    tus = TusRepository(engine, storage)
    # What stays local: the temp folder of staged work (an object store keeps the rest).
    temp_dir = storage.temp_path("").parent
    next_remote_sweep = 0.0

    async def expire() -> None:
        nonlocal next_remote_sweep
        referenced = await uploads.staged_keys()
        # Listing a bucket costs requests: strays and litter are looked for now and then only.
        listing = storage.kind == "local" or time.monotonic() >= next_remote_sweep
        removed = await tus.expire(referenced, strays=listing)
        removed += await asyncio.to_thread(sweep_temp, temp_dir, TEMP_MAX_AGE_S)
        if listing:
            next_remote_sweep = time.monotonic() + REMOTE_SWEEP_S
            removed += await asyncio.to_thread(
                sweep_staging, storage, STAGING_MAX_AGE_S, referenced
            )
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
