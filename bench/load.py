"""Bulk loading: Terracat through its HTTP API (bulk_items), pgstac with pypgstac's loader."""

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from .servers import Stacks


@dataclass
class LoadResult:
    """How a load went."""

    items: int
    seconds: float
    batches: int = 0
    batch_size: int = 0
    in_flight: int = 0

    @property
    def rate(self) -> float:
        """Items per second."""
        return self.items / self.seconds if self.seconds else 0.0


def _batches(lines: list[bytes], k: int, batch_size: int) -> list[tuple[str, bytes, int]]:
    """Request bodies (collection, body, count), ordered so two batches of one collection follow
    each other: with several in flight, some run concurrently into the same collection."""
    per_collection: list[list[bytes]] = [lines[c::k] for c in range(k)]
    ids: list[list[str]] = [[] for _ in range(k)]
    for c, chunk in enumerate(per_collection):
        ids[c] = [orjson.loads(line)["id"] for line in chunk]
    chunks: list[list[tuple[str, bytes, int]]] = []
    for c, chunk in enumerate(per_collection):
        cid = orjson.loads(chunk[0])["collection"] if chunk else ""
        bodies = []
        for start in range(0, len(chunk), batch_size):
            part = chunk[start : start + batch_size]
            part_ids = ids[c][start : start + batch_size]
            body = (
                b'{"method":"insert","items":{'
                + b",".join(
                    orjson.dumps(i) + b":" + line for i, line in zip(part_ids, part, strict=True)
                )
                + b"}}"
            )
            bodies.append((cid, body, len(part)))
        chunks.append(bodies)
    ordered: list[tuple[str, bytes, int]] = []
    rounds = max((len(b) for b in chunks), default=0)
    for r in range(0, rounds, 2):
        for bodies in chunks:
            ordered.extend(bodies[r : r + 2])
    return ordered


async def load_terracat(
    base_url: str,
    token: str,
    items_path: Path,
    collections_path: Path,
    k: int,
    batch_size: int = 1000,
    in_flight: int = 4,
) -> LoadResult:
    """POST the collections, then every item through ``bulk_items``; time the items only."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    lines = items_path.read_bytes().splitlines()
    batches = _batches(lines, k, batch_size)
    del lines
    timeout = httpx.Timeout(600.0)
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits) as client:
        for line in collections_path.read_bytes().splitlines():
            response = await client.post("collections", content=line, headers=headers)
            if response.status_code != 201:
                raise RuntimeError(f"POST /collections: {response.status_code} {response.text}")
        queue: asyncio.Queue[tuple[str, bytes, int]] = asyncio.Queue()
        for batch in batches:
            queue.put_nowait(batch)
        loaded = 0

        async def worker() -> None:
            nonlocal loaded
            while not queue.empty():
                cid, body, count = queue.get_nowait()
                response = await client.post(
                    f"collections/{cid}/bulk_items", content=body, headers=headers
                )
                if response.status_code != 200 or response.json()["success"] != count:
                    # Items are refused one by one now: a 200 may still leave some out.
                    raise RuntimeError(
                        f"bulk_items {cid}: {response.status_code} {response.text[:500]}"
                    )
                loaded += count

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed = time.perf_counter() - started
    return LoadResult(loaded, elapsed, len(batches), batch_size, in_flight)


def load_pgstac(stacks: Stacks, items_path: Path, collections_path: Path, n: int) -> LoadResult:
    """Load with ``pypgstac load`` (collections, then items from the ndjson file)."""
    stacks.pypgstac("load", "collections", str(collections_path), "--method", "insert")
    seconds = stacks.pypgstac("load", "items", str(items_path), "--method", "insert")
    return LoadResult(n, seconds)
