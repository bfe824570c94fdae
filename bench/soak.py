"""Soak: many clients mixing search and tiles for minutes; the API worker's memory over time.

    python -m bench.soak --minutes 10 --clients 20

One uvicorn worker (so the figure is per worker) and one ``terracat worker`` on a private
cluster; the orthophoto of bench.ingest (``--size``) ingested over tus, and ``--items``
synthetic items (bench.generate) bulk-loaded. Then ``--clients`` threads, each looping over a
seeded mix: item searches (bbox, datetime, filter, sortby, paging), item tiles at z12-18,
collection mosaic tiles, footprint vector tiles, and item pages. Tiles are drawn from a set
far larger than any cache, so bounded caches fill and stay full while a leak keeps growing.

Every ``--every`` seconds it prints the resident memory (VmRSS) of the API worker, the
requests done and failed. At the end: RSS at each minute, and the growth over the first
and the second half (MB/min). Measured, never asserted. Written to docs/benchmarks.md
unless --no-docs. ``--env`` passes settings to the API (``--env MALLOC_ARENA_MAX=2``).
"""

import argparse
import random
import signal
import sys
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from rasterio.errors import NotGeoreferencedWarning

from .generate import collection_id, iter_items, make_collection
from .memory import _tree_rss
from .orthophoto import Orthophoto, make_orthophoto
from .report import log, write_section
from .servers import ROOT, Stacks
from .tiles_measure import COLLECTION, TERRACAT, tile_sets
from .tiles_setup import start

BULK = 1000  # items per bulk request
COLLECTIONS = 4


@dataclass
class Tally:
    """Requests per kind, failures, and the RSS samples (seconds, bytes)."""

    done: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    samples: list[tuple[float, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, kind: str, ok: bool) -> None:
        """One request of ``kind``."""
        with self.lock:
            (self.done if ok else self.failed)[kind] += 1


def load_items(url: str, token: str, n: int, seed: int) -> None:
    """``n`` synthetic items over COLLECTIONS collections, through the bulk API."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=300) as http:
        for c in range(COLLECTIONS):
            http.post("collections", json=make_collection(c)).raise_for_status()
        batches: dict[str, dict[str, Any]] = {}
        for item in iter_items(n, COLLECTIONS, seed):
            batch = batches.setdefault(item["collection"], {})
            batch[item["id"]] = item
            if len(batch) >= BULK:
                _bulk(http, item["collection"], batches.pop(item["collection"]))
        for cid, batch in batches.items():
            _bulk(http, cid, batch)


def _bulk(http: httpx.Client, cid: str, items: dict[str, Any]) -> None:
    body = orjson.dumps({"items": items, "method": "insert"})
    response = http.post(f"collections/{cid}/bulk_items", content=body,
                         headers={"Content-Type": "application/json"})  # fmt: skip
    response.raise_for_status()


KINDS = {  # kind: the top of its share of the mix (cumulative)
    "search": 0.35, "item tile": 0.70, "mosaic tile": 0.80, "vector tile": 0.92,
    "items page": 1.0,
}  # fmt: skip


def request_mix(
    item_id: str, tiles: list[tuple[int, int, int]], rng: random.Random, only: str | None = None
) -> tuple[str, str]:
    """One request of the mix (or of kind ``only``): (kind, path)."""
    roll = rng.random()
    if only is not None:  # a roll inside that kind's share
        low = max([0.0, *(top for top in KINDS.values() if top < KINDS[only])])
        roll = low + roll * (KINDS[only] - low)
    if roll < KINDS["search"]:
        west, south = rng.uniform(-180, 170), rng.uniform(-80, 70)
        size = rng.choice([1, 5, 20])
        params = (f"bbox={west},{south},{west + size},{south + size}&limit={rng.choice([10, 100])}"
                  f"&datetime=202{rng.randint(0, 3)}-01-01T00:00:00Z/..")  # fmt: skip
        if rng.random() < 0.3:
            params += "&filter=eo:cloud_cover<30&sortby=-properties.datetime"
        return "search", f"search?{params}"
    z, x, y = rng.choice(tiles)
    if roll < KINDS["item tile"]:
        item = f"collections/{COLLECTION}/items/{item_id}"
        return "item tile", f"{item}/tiles/WebMercatorQuad/{z}/{x}/{y}.png"
    if roll < KINDS["mosaic tile"]:
        return "mosaic tile", f"collections/{COLLECTION}/tiles/WebMercatorQuad/{z}/{x}/{y}.png"
    if roll < KINDS["vector tile"]:
        vz = rng.randint(0, 6)
        vx, vy = rng.randrange(2**vz), rng.randrange(2**vz)
        cid = collection_id(rng.randrange(COLLECTIONS))
        return "vector tile", f"collections/{cid}/items/tiles/WebMercatorQuad/{vz}/{vx}/{vy}.mvt"
    return "items page", f"collections/{collection_id(rng.randrange(COLLECTIONS))}/items?limit=50"


def client_loop(
    url: str, item_id: str, tiles: list[tuple[int, int, int]], seed: int, until: float,
    tally: Tally, only: str | None,
) -> None:  # fmt: skip
    """One client: requests of the mix, one after the other, until ``until``."""
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=120) as http:
        while time.time() < until:
            kind, path = request_mix(item_id, tiles, rng, only)
            try:
                ok = http.get(path).status_code < 500
            except httpx.HTTPError:
                ok = False
            tally.count(kind, ok)


def watch(pid: int, started: float, until: float, every: float, tally: Tally) -> None:
    """Sample the API worker's RSS every second; print a line every ``every`` seconds."""
    last_print = started
    while time.time() < until:
        now = time.time()
        rss = _tree_rss(pid)
        tally.samples.append((now - started, rss))
        if now - last_print >= every:
            last_print = now
            with tally.lock:
                done, failed = sum(tally.done.values()), sum(tally.failed.values())
            log(f"t={now - started:5.0f} s  RSS {rss / 2**20:6.0f} MB  requests {done:,} "
                f"failed {failed}")  # fmt: skip
        time.sleep(1.0)


def growth(samples: list[tuple[float, int]], start: float, end: float) -> float:
    """Least-squares slope of RSS (MB/min) over samples in [start, end) seconds."""
    points = [(t, rss / 2**20) for t, rss in samples if start <= t < end]
    if len(points) < 2:
        return float("nan")
    mean_t = sum(t for t, _ in points) / len(points)
    mean_r = sum(r for _, r in points) / len(points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    cov = sum((t - mean_t) * (r - mean_r) for t, r in points)
    return cov / var * 60 if var else float("nan")


def report(args: argparse.Namespace, tally: Tally, before: int, seconds: float) -> list[str]:
    """The markdown section."""
    per_minute = []
    for minute in range(1, int(seconds // 60) + 1):
        near = min(tally.samples, key=lambda s: abs(s[0] - minute * 60))
        per_minute.append(f"{near[1] / 2**20:.0f}")
    half = seconds / 2
    done = sum(tally.done.values())
    env = ", ".join(args.env) if args.env else "defaults"
    env += f"; {args.only} only" if args.only else ""
    lines = [
        f"### Soak: {args.clients} clients for {args.minutes:g} min ({env})",
        "",
        f"`python -m bench.soak --minutes {args.minutes:g} --clients {args.clients} "
        f"--items {args.items} --size {args.size}" + "".join(f" --env {e}" for e in args.env) + "`",
        "",
        f"- one uvicorn worker; {done:,} requests "
        f"({', '.join(f'{k} {v:,}' for k, v in sorted(tally.done.items()))}), "
        f"{sum(tally.failed.values())} failed",
        f"- RSS of the API worker: {before / 2**20:.0f} MB before the load, then at each minute: "
        + ", ".join(per_minute)
        + " MB; peak "
        + f"{max(r for _, r in tally.samples) / 2**20:.0f} MB",
        f"- growth: {growth(tally.samples, 0, half):.1f} MB/min over the first half, "
        f"{growth(tally.samples, half, seconds + 1):.1f} MB/min over the second",
        "",
    ]
    return lines


def run(args: argparse.Namespace) -> list[str]:
    """Set up, load, soak; the markdown section."""
    ortho = make_orthophoto(args.data, Orthophoto(args.size))
    stacks = Stacks(workers=1)
    try:
        env = dict(e.split("=", 1) for e in args.env)
        setup_args = argparse.Namespace(skip_titiler_pgstac=True, timeout=600.0)
        setup = start(setup_args, ortho, stacks, env)
        url = setup.servers[TERRACAT]
        log(f"bulk-loading {args.items:,} items")
        load_items(url, stacks.token, args.items, args.seed)
        tiles = tile_sets(setup.item["geometry"], 20_000, args.seed, 1)[0]
        pid = stacks.servers["terracat"].process.pid
        before = _tree_rss(pid)
        started = time.time()
        until = started + args.minutes * 60
        tally = Tally()
        threads = [threading.Thread(target=client_loop,
                                    args=(url, setup.item["id"], tiles, args.seed + i, until,
                                          tally, args.only), daemon=True)
                   for i in range(args.clients)]  # fmt: skip
        log(f"{args.clients} clients for {args.minutes:g} min; {len(tiles):,} distinct tiles")
        for thread in threads:
            thread.start()
        watch(pid, started, until, args.every, tally)
        for thread in threads:
            thread.join()
        return report(args, tally, before, time.time() - started)
    finally:
        stacks.close()


def main(argv: list[str] | None = None) -> None:
    """Parse, run, print and write the section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--items", type=int, default=20_000, help="synthetic items to load")
    parser.add_argument("--size", type=int, default=10_000, help="orthophoto width = height")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between lines")
    parser.add_argument("--only", choices=list(KINDS), help="one kind of request, not the mix")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the API")
    parser.add_argument("--data", type=Path, default=ROOT / "var" / "bench" / "ingest",
                        help="orthophoto cache (shared with bench.ingest)")  # fmt: skip
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    section = run(args)
    print("\n".join(section))
    if not args.no_docs:
        write_section(args.docs, "soak", section)
        log(f"written to {args.docs}")


if __name__ == "__main__":
    main()
