"""Closed-loop HTTP load generator: N concurrent keep-alive workers, latencies per operation."""

import asyncio
import statistics
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from .queries import QueryType, Request


def run_async[T](coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, on uvloop's event loop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return asyncio.run(coro, loop_factory=uvloop.new_event_loop)


class BadResponse(Exception):
    """A response that does not count: non-200, or not the features we expect."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status


@dataclass
class CellResult:
    """Latencies of one (query type, server, concurrency) cell."""

    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    errors: int = 0
    first_error: str = ""
    returned: int = 0

    @property
    def ops(self) -> float:
        """Operations per second."""
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def pct(self, q: float) -> float:
        """Latency percentile in milliseconds."""
        if not self.latencies:
            return float("nan")
        if len(self.latencies) == 1:
            return self.latencies[0] * 1000
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q) - 1] * 1000


def _check(response: httpx.Response, req: Request) -> dict[str, Any]:
    if response.status_code != 200:
        raise BadResponse(response.status_code, response.text[:300])
    doc: dict[str, Any] = orjson.loads(response.content)
    features = doc.get("features")
    if not isinstance(features, list) or not features:
        raise BadResponse(200, "no features in the response")
    if req.expect is not None and len(features) != req.expect:
        raise BadResponse(200, f"{len(features)} features, expected {req.expect}")
    return doc


async def send(client: httpx.AsyncClient, req: Request) -> dict[str, Any]:
    """Send one request and return its checked JSON document."""
    if req.method == "GET":
        response = await client.get(req.path)
    else:
        response = await client.post(
            req.path, content=orjson.dumps(req.body), headers={"Content-Type": "application/json"}
        )
    return _check(response, req)


def _next(doc: dict[str, Any], base_url: str) -> Request | None:
    for link in doc.get("links", []):
        if link.get("rel") == "next":
            href = link["href"]
            path = href[len(base_url) :] if href.startswith(base_url) else href
            method = link.get("method", "GET").upper()
            return Request(method, path, link.get("body") if method == "POST" else None)
    return None


async def operation(
    client: httpx.AsyncClient, query: QueryType, req: Request, base_url: str
) -> list[dict[str, Any]]:
    """One operation: a request, plus ``query.follow`` next links. Returns every page."""
    doc = await send(client, req)
    pages = [doc]
    for _ in range(query.follow):
        nxt = _next(doc, base_url)
        if nxt is None:
            raise BadResponse(200, f"no next link after page {len(pages)}")
        doc = await send(client, nxt)
        pages.append(doc)
    return pages


async def run_cell(
    base_url: str,
    query: QueryType,
    concurrency: int,
    duration: float,
    offset: int = 0,
    headers: dict[str, str] | None = None,
) -> CellResult:
    """Run ``query`` with ``concurrency`` workers for ``duration`` seconds (``headers`` sent
    with every request, e.g. a bearer token)."""
    result = CellResult()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(60.0)
    variants = query.variants
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=timeout, headers=headers
    ) as client:
        # Open the keep-alive connections before the clock starts.
        await asyncio.gather(*(client.get("") for _ in range(concurrency)))
        deadline = time.perf_counter() + duration

        async def worker(w: int) -> None:
            i = offset + w * 7
            while time.perf_counter() < deadline:
                req = variants[i % len(variants)]
                i += 1
                started = time.perf_counter()
                try:
                    pages = await operation(client, query, req, base_url)
                except (BadResponse, httpx.HTTPError) as exc:
                    result.errors += 1
                    result.first_error = result.first_error or f"{req.path}: {exc}"
                    continue
                result.latencies.append(time.perf_counter() - started)
                result.returned += sum(len(p["features"]) for p in pages)

        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        result.elapsed = time.perf_counter() - started
    return result


async def first_pages(
    base_url: str, query: QueryType, headers: dict[str, str] | None = None
) -> list[list[str] | str]:
    """Feature ids of the first page of every variant (or the error), for cross-checking."""
    out: list[list[str] | str] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0, headers=headers) as client:
        for req in query.variants:
            try:
                doc = await send(client, req)
                out.append([f["id"] for f in doc["features"]])
            except (BadResponse, httpx.HTTPError) as exc:
                out.append(f"error {exc}")
    return out
