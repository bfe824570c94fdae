"""Footprint vector tiles: Terracat against tipg on the same table, side by side in one run.

    python -m bench.mvt --items 10000 --tiles 60 --runs 3

Starts a private PostgreSQL cluster with the Terracat database, Terracat under uvicorn
(``--workers``, default 2), loads ``--items`` synthetic items (bench.generate, one collection)
through ``bulk_items``, and exposes the same rows to tipg through a view (id, collection,
datetime, the properties Terracat puts in its features, the footprint). tipg runs from its own
venv (var/tipg-venv) with the same uvicorn options and ``--tipg-workers`` (default 1). Then,
per zoom (2, 4, 6, 8) and concurrency (1, 8): a warm-up pass and ``--runs`` timed passes of
``--tiles`` tiles under item centres (the same list for both, servers alternating which goes
first), every request with ``Accept-Encoding: gzip``. A cross-check decodes some tiles of
each zoom from both and compares the footprints they hold. Last, where a z2 tile's CPU goes:
``--cpu-tiles`` tiles at c=8 against each server, with the CPU time of its processes, of
PostgreSQL's and of this client read from /proc before and after (0 skips it).

Prints the tables (measured, never asserted); writes them to docs/benchmarks.md unless
--no-docs.
"""

import argparse
import asyncio
import itertools
import os
import random
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import mapbox_vector_tile
import morecantile
import orjson
import psycopg

from .cpu import CpuClock
from .generate import collection_id, dataset
from .load import load_terracat
from .report import database_versions, fmt, log, package_versions, run_context, write_section
from .runner import run_async
from .servers import ROOT, Server, Stacks, peer_python

TIPG_VERSION = "1.6.1"
ZOOMS = (2, 4, 6, 8)
LEVELS = (1, 8)
COLLECTION = collection_id(0)
SCHEMA = "tipg_bench"
VIEW = f"{SCHEMA}.footprints"
TERRACAT, TIPG = "Terracat", "tipg"
WEB = morecantile.tms.get("WebMercatorQuad")
HEADERS = {"Accept-Encoding": "gzip"}
# The view tipg serves: the rows and feature properties Terracat's tiles carry.
VIEW_SQL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE OR REPLACE VIEW {VIEW} AS
SELECT id, collection_id AS collection,
       to_char(datetime AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS datetime,
       properties->>'title' AS title, properties->>'platform' AS platform,
       (properties->>'gsd')::float8 AS gsd, (properties->>'eo:cloud_cover')::float8 AS cloud_cover,
       geometry::geometry(Geometry, 4326) AS geom
FROM public.items WHERE collection_id = '{COLLECTION}';
"""


def tipg_python() -> Path:
    """The Python of ``var/tipg-venv``, made with tipg and uvicorn[standard] if needed.

    tipg pins its own FastAPI/starlette range, so it never goes into the project venv.
    """
    return peer_python("tipg", TIPG_VERSION, f"tipg=={TIPG_VERSION}", "uvicorn[standard]")


def start_tipg(stacks: Stacks, workers: int) -> Server:
    """tipg on the view (its own venv, same uvicorn flags); wait until it answers."""
    with psycopg.connect(stacks.terracat_url, autocommit=True) as conn:
        conn.execute(VIEW_SQL)
    server = stacks._spawn(
        "tipg",
        ["tipg.main:app"],
        {
            "DATABASE_URL": stacks.terracat_url,
            "TIPG_DB_SCHEMAS": f'["{SCHEMA}"]',
            "TIPG_MAX_FEATURES_PER_TILE": "10000",
            "TIPG_TILE_BUFFER": "64",  # the buffer Terracat pads by: same footprints
        },
        python=tipg_python(),
        workers=workers,
    )
    server.wait()
    return server


Tile = tuple[int, int, int]


def tile_lists(items: Path, count: int, seed: int, passes: int) -> dict[int, list[list[Tile]]]:
    """Per zoom, ``passes`` lists of ``count`` tiles, each under a random item's centre."""
    centres = []
    for line in items.read_bytes().splitlines():
        doc = orjson.loads(line)
        if doc["collection"] == COLLECTION:
            west, south, east, north = doc["bbox"]
            centres.append(((west + east) / 2, (south + north) / 2))
    rng = random.Random(seed)
    lists: dict[int, list[list[Tile]]] = {}
    for z in ZOOMS:
        lists[z] = []
        for _ in range(passes):
            tiles = [WEB.tile(lon, lat, z) for lon, lat in rng.choices(centres, k=count)]
            lists[z].append([(t.z, t.x, t.y) for t in tiles])
    return lists


def tile_url(target: str, tile: Tile) -> str:
    """The tile's URL (relative) on ``target``."""
    z, x, y = tile
    if target == TIPG:
        return f"collections/{VIEW}/tiles/WebMercatorQuad/{z}/{x}/{y}"
    return f"collections/{COLLECTION}/items/tiles/WebMercatorQuad/{z}/{x}/{y}.mvt"


@dataclass
class Cell:
    """Timings and sizes of one target at one zoom and concurrency."""

    latencies: list[float] = field(default_factory=list)
    wire: list[int] = field(default_factory=list)
    decoded: list[int] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0
    first_error: str = ""
    encodings: set[str] = field(default_factory=set)

    def pct(self, q: float) -> float:
        """Latency percentile in ms."""
        if not self.latencies:
            return float("nan")
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q) - 1] * 1e3

    @property
    def rate(self) -> float:
        """Tiles per second over the timed passes."""
        return len(self.latencies) / self.seconds if self.seconds else float("nan")


async def http_pass(base: str, paths: list[str], c: int, cell: Cell | None) -> None:
    """One closed-loop pass over the tile ``paths``: ``c`` tasks on one keep-alive client,
    next tile each (bench.vector's passes too)."""
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    counter = itertools.count()
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=120, headers=HEADERS
    ) as client:

        async def worker() -> None:
            while (i := next(counter)) < len(paths):
                started = time.perf_counter()
                response = await client.get(paths[i])
                elapsed = time.perf_counter() - started
                if cell is None:
                    continue
                if response.status_code not in (200, 204):
                    cell.errors += 1
                    cell.first_error = cell.first_error or response.text[:300]
                    continue
                cell.latencies.append(elapsed)
                cell.wire.append(response.num_bytes_downloaded)
                cell.decoded.append(len(response.content))
                cell.encodings.add(response.headers.get("content-encoding", "identity"))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c)))
        if cell is not None:
            cell.seconds += time.perf_counter() - started


def measure(
    servers: dict[str, str], lists: dict[int, list[list[Tile]]], runs: int
) -> dict[tuple[str, int, int], Cell]:
    """Every (target, zoom, concurrency): a warm-up pass, then ``runs`` timed passes, the two
    targets alternating which goes first."""
    cells: dict[tuple[str, int, int], Cell] = {}
    order = list(servers)
    for turn, c in enumerate(LEVELS):
        for z in ZOOMS:
            for run in range(runs + 1):
                tiles = lists[z][turn * (runs + 1) + run]
                for target in order if (run + turn) % 2 == 0 else order[::-1]:
                    cell = cells.setdefault((target, z, c), Cell())
                    run_async(
                        http_pass(
                            servers[target],
                            [tile_url(target, t) for t in tiles],
                            c,
                            cell if run else None,
                        )
                    )
            for target in order:
                cell = cells[(target, z, c)]
                log(
                    f"{target:9s} z={z} c={c} p50={fmt(cell.pct(50))} ms "
                    f"p95={fmt(cell.pct(95))} ms {fmt(cell.rate)} tiles/s errors={cell.errors}"
                    + (f" ({cell.first_error})" if cell.errors else "")
                )
    return cells


def _features(content: bytes) -> dict[str, Any]:
    """Footprints of a tile by id (one layer whatever its name)."""
    if not content:
        return {}
    layers = mapbox_vector_tile.decode(content)
    return {f["properties"]["id"]: f for layer in layers.values() for f in layer["features"]}


def cross_check(
    servers: dict[str, str], lists: dict[int, list[list[Tile]]], per_zoom: int
) -> list[str]:
    """Per zoom: features in both servers' tiles, and ids one has that the other lacks."""
    rows = [
        "| zoom | tiles | features Terracat | features tipg | only in tipg | only in Terracat |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for z in ZOOMS:
        tiles = list(dict.fromkeys(lists[z][-1]))[:per_zoom]
        counts = {TERRACAT: 0, TIPG: 0}
        only = {TERRACAT: 0, TIPG: 0}
        for tile in tiles:
            got = {}
            for target, base in servers.items():
                response = httpx.get(base + tile_url(target, tile), headers=HEADERS, timeout=120)
                got[target] = set(_features(response.content))
                counts[target] += len(got[target])
            only[TIPG] += len(got[TIPG] - got[TERRACAT])
            only[TERRACAT] += len(got[TERRACAT] - got[TIPG])
        rows.append(f"| {z} | {len(tiles)} | {counts[TERRACAT]} | {counts[TIPG]} | "
                    f"{only[TIPG]} | {only[TERRACAT]} |")  # fmt: skip
    return rows


def cpu_split(stacks: Stacks, servers: dict[str, str], tiles: list[Tile], c: int) -> list[str]:
    """CPU per tile over one pass of ``tiles`` at concurrency ``c`` for each server (after a
    warm-up): its uvicorn processes, the cluster's PostgreSQL processes, and this client."""
    postmaster = stacks.postmaster_pid()
    rows = [
        "| server | tiles | tiles/s | server ms | PostgreSQL ms | client ms | total ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for target, base in servers.items():
        paths = [tile_url(target, t) for t in tiles]
        run_async(http_pass(base, paths[:40], c, None))
        clock = CpuClock(stacks.servers[target.lower()].process.pid, postmaster)
        before = clock.read()
        cell = Cell()
        run_async(http_pass(base, paths, c, cell))
        spent = clock.since(before)
        per = [s / len(paths) * 1e3 for s in (spent.server, spent.postgres, spent.client)]
        rows.append(
            f"| {target} | {len(paths)} | {fmt(cell.rate)} | {fmt(per[0], 2)} | "
            f"{fmt(per[1], 2)} | {fmt(per[2], 2)} | {fmt(sum(per), 2)} |"
        )
    return rows


def tables(cells: dict[tuple[str, int, int], Cell], zooms: Sequence[int] = ZOOMS) -> list[str]:
    """Latency, throughput and size per zoom and concurrency; Terracat's rate over tipg's
    (bench.vector's tables too, with its zooms)."""
    rows = [
        "| zoom | c | server | p50 ms | p95 ms | tiles/s | x tipg | wire kB (mean) "
        "| decoded kB (mean / max) | encoding |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in LEVELS:
        for z in zooms:
            peer = cells[(TIPG, z, c)].rate
            for target in (TERRACAT, TIPG):
                cell = cells[(target, z, c)]
                wire = statistics.fmean(cell.wire) / 1e3 if cell.wire else float("nan")
                mean = statistics.fmean(cell.decoded) / 1e3 if cell.decoded else float("nan")
                top = max(cell.decoded, default=0) / 1e3
                rows.append(
                    f"| {z} | {c} | {target} | {fmt(cell.pct(50))} | {fmt(cell.pct(95))} | "
                    f"{fmt(cell.rate)} | {fmt(cell.rate / peer, 2)} | {fmt(wire)} | "
                    f"{fmt(mean)} / {fmt(top)} | {', '.join(sorted(cell.encodings))} |"
                )
    return rows


def run(args: argparse.Namespace) -> list[str]:
    """The whole benchmark; the markdown section."""
    items, collections = dataset(args.data, args.items, 1, args.seed)
    load_before = os.getloadavg()[0]
    stacks = Stacks(workers=args.workers)
    try:
        stacks.start_cluster(pgstac=False)
        terracat = stacks.start_terracat()
        loaded = run_async(load_terracat(terracat.url, stacks.token, items, collections, 1))
        log(f"loaded {loaded.items} items in {loaded.seconds:.1f} s")
        with psycopg.connect(stacks.terracat_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        tipg = start_tipg(stacks, args.tipg_workers)
        servers = {TERRACAT: terracat.url, TIPG: tipg.url}
        lists = tile_lists(items, args.tiles, args.seed, len(LEVELS) * (args.runs + 1) + 1)
        cells = measure(servers, lists, args.runs)
        check = cross_check(servers, lists, args.check)
        cpu = []
        if args.cpu_tiles:
            cpu_tiles = tile_lists(items, args.cpu_tiles, args.seed + 1, 1)[2][0]
            cpu = cpu_split(stacks, servers, cpu_tiles, 8)
        versions = database_versions(stacks.terracat_url)
        load_after = os.getloadavg()[0]
    finally:
        stacks.close()
    peer = subprocess.run(
        [str(tipg_python()), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout.split()
    ours = package_versions(["terracat", "fastapi", "starlette", "uvicorn", "sqlalchemy",
                             "psycopg"])  # fmt: skip
    return [
        f"## Footprint vector tiles against tipg ({args.items} items)",
        "",
        *run_context("bench.mvt"),
        f"- Terracat: {args.workers} uvicorn workers; tipg: {args.tipg_workers}; uvloop + "
        "httptools for both; every request sends `Accept-Encoding: gzip`.",
        f"- Load average (1 min) before / after: {load_before:.1f} / {load_after:.1f} on "
        f"{os.cpu_count()} cores: ratios only mean something side by side in one run.",
        f"- {args.tiles} tiles per pass under random item centres, warm-up + {args.runs} timed "
        "passes, both servers on the same list, alternating which goes first.",
        "- Versions: "
        + ", ".join(f"{k} {v}" for k, v in {**ours, **versions}.items())
        + ", peer venv: "
        + ", ".join(p for p in peer if p.lower().startswith(("tipg", "fastapi", "starlette"))),
        "",
        *tables(cells),
        "",
        f"Cross-check (the first {args.check} distinct tiles of a list per zoom, ids compared):",
        "",
        *check,
        *_cpu_section(args.cpu_tiles, cpu),
    ]


def _cpu_section(tiles: int, cpu: list[str]) -> list[str]:
    """The CPU split under its title (nothing when it was skipped)."""
    if not cpu:
        return []
    return [
        "",
        f"CPU per z2 tile ({tiles} tiles at c=8 after a warm-up; process CPU from /proc: the "
        "server's uvicorn processes, the cluster's PostgreSQL, this client):",
        "",
        *cpu,
    ]


def main(argv: list[str] | None = None) -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--tiles", type=int, default=60, help="tiles per pass and zoom")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--check", type=int, default=8, help="tiles cross-checked per zoom")
    parser.add_argument("--cpu-tiles", type=int, default=300, help="z2 tiles of the CPU split")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tipg-workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--data", type=Path, default=ROOT / "var" / "bench" / "mvt")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)
    section = run(args)
    print("\n".join(section))
    if not args.no_docs:
        write_section(ROOT / "docs" / "benchmarks.md", f"mvt={args.items}", section)


if __name__ == "__main__":
    main()
