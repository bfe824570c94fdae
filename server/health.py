"""Readiness: ``GET /_mgmt/health`` asks every dependency whether it answers.

Liveness stays stac-fastapi's ``GET /_mgmt/ping``, which touches nothing: a process whose
database is away is alive (it answers 503 and recovers by itself) and must not be restarted
for it; it is only not ready. Health answers 503 with ``Retry-After`` while a check fails, so
a load balancer takes the instance out of rotation and puts it back when the checks pass.
"""

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import connect
from catalog.errors import Unavailable
from catalog.storage.base import Storage
from catalog.web import json_response

Check = Callable[[], Awaitable[None]]  # returns when healthy; raises Unavailable otherwise


def database_check(engine: AsyncEngine) -> Check:
    """``SELECT 1`` on a pooled connection (pre-pinged, so a dead one is replaced first)."""

    async def check() -> None:
        async with connect(engine) as conn:
            await conn.execute(text("SELECT 1"))

    return check


def storage_check(root: Path, storage: Storage | None = None) -> Check:
    """The data folder (uploads, staging) is a directory this process may write to, and
    object storage answers (its bucket exists and takes our credentials)."""

    async def check() -> None:
        if not (root.is_dir() and os.access(root, os.W_OK | os.X_OK)):
            raise Unavailable(f"the data folder {root} is missing or not writable")
        check_store = getattr(storage, "check", None)  # object storage only
        if check_store is not None:
            try:
                await asyncio.to_thread(check_store)
            except Exception as exc:
                raise Unavailable(
                    f"the object storage does not answer ({type(exc).__name__})"
                ) from exc

    return check


async def _run(check: Check, timeout_s: float) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            await check()
    except Unavailable as exc:
        return {"status": "DOWN", "description": exc.description}
    except TimeoutError:
        return {"status": "DOWN", "description": f"no answer within {timeout_s:g} s"}
    return {"status": "UP", "latency_ms": round((time.perf_counter() - start) * 1000, 1)}


def checks_of(request: Request) -> dict[str, Check]:
    """The app's dependencies, as its lifespan connected them."""
    state = request.app.state
    return {
        "database": database_check(state.repository.engine),
        "storage": storage_check(Path(state.settings.ingest.data_dir), state.storage),
    }


async def health(request: Request) -> Any:
    """Readiness: 200 and ``UP`` when every dependency answers, else 503 and ``DOWN``."""
    timeout_s = request.app.state.settings.api.health_timeout_s
    checks = checks_of(request)
    results = await asyncio.gather(*(_run(check, timeout_s) for check in checks.values()))
    report = dict(zip(checks, results, strict=True))
    up = all(result["status"] == "UP" for result in results)
    headers = {"Cache-Control": "no-store"}
    if not up:
        headers["Retry-After"] = str(Unavailable.retry_after_s)
    body = {"status": "UP" if up else "DOWN", "checks": report}
    return json_response(body, 200 if up else 503, headers)
