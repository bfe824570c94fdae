"""Bulk-load benchmark: Terracat's bulk_items API against pypgstac's loader, side by side.

    python -m bench.bulk --items 100000 --collections 10 --runs 3

Starts a private PostgreSQL cluster with a Terracat and a pgstac database (every index in
place, as after migrations), starts Terracat alone, loads the same synthetic items into both
(Terracat through ``POST /collections/{id}/bulk_items``, pgstac with ``pypgstac load``) and
prints items per second: ``--runs`` (default 3) whole loads, each on a fresh cluster,
alternating which loader goes first, judged on each loader's median. Then, into a fresh
collection, one batch with items whose footprints reach longitude 185 shows they are stored
(normalised) rather than refusing the batch. The CPU time each load took, per item, is read
from /proc: the server's processes, the cluster's PostgreSQL, and the loading side (this
client, or the pypgstac command). Results go to docs/benchmarks.md (section ``bulk-items=N``)
unless --no-docs. Nothing is asserted.

``--without-indexes 'items_prop_%'`` drops the Terracat indexes on ``items`` whose names match
(SQL LIKE) before loading, to measure what they cost a load; such a run is printed only, since
Terracat has no setting without them.
"""

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from .cpu import Cpu, CpuClock
from .generate import dataset, make_item
from .load import LoadResult, load_pgstac, load_terracat
from .report import database_versions, log, run_context, write_section
from .runner import run_async
from .servers import ROOT, Stacks, versions

TARGETS = {100_000: 17_000.0, 1_000_000: 12_000.0}


async def _mixed_batch(url: str, token: str, valid: int, crossing: int) -> dict[str, object]:
    """One bulk request of ``valid`` items plus ``crossing`` reaching longitude 185."""
    items = {}
    for i in range(valid + crossing):
        doc = make_item(i, 1, 7)
        doc["id"] = f"mixed-{i:06d}"
        del doc["collection"]
        if i >= valid:
            ring = [[180.0, 10.0], [185.0, 10.0], [185.0, 11.0], [180.0, 11.0], [180.0, 10.0]]
            doc["geometry"] = {"type": "Polygon", "coordinates": [ring]}
            doc["bbox"] = [180.0, 10.0, 185.0, 11.0]
        items[doc["id"]] = doc
    headers = {"Authorization": f"Bearer {token}"}
    collection = {
        "type": "Collection", "id": "mixed", "description": "mixed batch", "license": "other",
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                   "temporal": {"interval": [[None, None]]}},
    }  # fmt: skip
    async with httpx.AsyncClient(base_url=url, timeout=600.0) as client:
        r = await client.post("collections", json=collection, headers=headers)
        r.raise_for_status()
        r = await client.post(
            "collections/mixed/bulk_items", json={"items": items}, headers=headers
        )
    body: dict[str, object] = r.json()
    return {"status": r.status_code, **body}


@dataclass
class Run:
    """One load of both: each loader's result, the mixed batch, the database versions."""

    tc: LoadResult
    pg: LoadResult
    mixed: dict[str, object]
    db: dict[str, str]
    # CPU of each load: the Terracat server (idle during pypgstac's), the cluster, and the
    # loading side (this client, or the pypgstac command).
    tc_cpu: Cpu
    pg_cpu: Cpu


def _per_item(cpu: Cpu, items: int) -> str:
    """A load's CPU split in microseconds an item."""
    spent = (cpu.server, cpu.postgres, cpu.client)
    us = [v / items * 1e6 if items else float("nan") for v in spent]
    return f"server {us[0]:.0f}, PostgreSQL {us[1]:.0f}, loader {us[2]:.0f} us an item"


def _median(runs: list[Run], pick: Callable[[Run], LoadResult]) -> LoadResult:
    return sorted((pick(r) for r in runs), key=lambda r: r.rate)[len(runs) // 2]


def _section(args: argparse.Namespace, runs: list[Run]) -> list[str]:
    """The markdown of all runs: every run's rates, the verdict on the median of each loader
    (one run on this shared 2-core machine varies by several percent)."""
    tc, pg = _median(runs, lambda r: r.tc), _median(runs, lambda r: r.pg)
    mixed, db = runs[-1].mixed, runs[-1].db
    target = TARGETS.get(args.items)
    verdict = (
        f"target >= {target:,.0f} items/s: {'met' if tc.rate >= target else 'MISSED'}"
        if target
        else "no target at this size"
    )
    normalised = mixed.get("normalised")
    errors = mixed.get("errors")
    return [
        f"## Bulk load, {args.items:,} items over {args.collections} collections",
        "",
        *run_context("bench.bulk"),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in {**versions(), **db}.items()),
        f"- Machine load (1-minute load average, other processes included): "
        f"{args.load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after it",
        f"- Server: uvicorn `--workers {args.workers} --loop uvloop --http httptools`; both "
        "databases in one private PostgreSQL cluster (fsync on), every index and trigger in "
        "place before the load"
        + (
            f", but Terracat's indexes of items matching {args.without_indexes!r}."
            if args.without_indexes
            else "."
        ),
        "",
        f"- {len(runs)} run(s), each on a fresh cluster, alternating which loader goes first; "
        "the median of each loader is in bold.",
        "",
        "| loader | items | seconds | items/s | every run, items/s |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| Terracat, `POST /collections/{{id}}/bulk_items` ({tc.batch_size} per batch, "
        f"{tc.in_flight} in flight) | {tc.items:,} | {tc.seconds:.1f} | **{tc.rate:,.0f}** "
        f"| {', '.join(f'{r.tc.rate:,.0f}' for r in runs)} |",
        f"| pgstac, `pypgstac load items --method insert` (straight into the database) "
        f"| {pg.items:,} | {pg.seconds:.1f} | **{pg.rate:,.0f}** "
        f"| {', '.join(f'{r.pg.rate:,.0f}' for r in runs)} |",
        "",
        f"- Terracat / pypgstac (medians): {tc.rate / pg.rate if pg.rate else float('nan'):.2f}x;"
        f" {verdict}",
        f"- One batch of {args.mixed_valid:,} valid items and {args.mixed_crossing} reaching "
        f"longitude 185: HTTP {mixed.get('status')}, {mixed.get('success')} stored, "
        f"{len(errors) if isinstance(errors, list) else '?'} refused, "
        f"{len(normalised) if isinstance(normalised, list) else '?'} normalised.",
        *_cpu_lines(runs, tc),
        "",
    ]


def _cpu_lines(runs: list[Run], median: LoadResult) -> list[str]:
    """CPU per item of the run whose Terracat load is the median."""
    run = next(r for r in runs if r.tc is median)
    return [
        "- CPU per item in that run (process CPU from /proc; PostgreSQL counts every process "
        f"of the cluster): Terracat {_per_item(run.tc_cpu, run.tc.items)}; pypgstac "
        f"{_per_item(run.pg_cpu, run.pg.items)}.",
    ]


def _drop_indexes(url: str, pattern: str) -> list[str]:
    """Drop the indexes of ``items`` whose names match ``pattern`` (LIKE); their names."""
    with psycopg.connect(url, autocommit=True) as conn:
        names = [
            name
            for (name,) in conn.execute(
                "SELECT indexrelid::regclass::text FROM pg_index "
                "WHERE indrelid = 'items'::regclass AND NOT indisprimary "
                "AND indexrelid::regclass::text LIKE %s ORDER BY 1",
                (pattern,),
            )
        ]
        for name in names:
            conn.execute(f'DROP INDEX "{name}"')
    return names


async def _run(args: argparse.Namespace, pgstac_first: bool) -> Run:
    items_path, collections_path = dataset(args.data, args.items, args.collections, args.seed)
    stacks = Stacks(workers=args.workers)
    try:
        stacks.start_cluster()
        if args.without_indexes:
            dropped = _drop_indexes(stacks.terracat_url, args.without_indexes)
            log(f"Terracat without {len(dropped)} indexes: {', '.join(dropped)}")
        server = stacks.start_terracat()
        clock = CpuClock(server.process.pid, stacks.postmaster_pid(), children=True)

        def pgstac() -> tuple[LoadResult, Cpu]:
            log("loading pgstac with pypgstac")
            before = clock.read()
            pg = load_pgstac(stacks, items_path, collections_path, args.items)
            log(f"pgstac: {pg.items} items in {pg.seconds:.1f} s = {pg.rate:,.0f} items/s")
            return pg, clock.since(before)

        first = pgstac() if pgstac_first else None
        log("loading Terracat through bulk_items")
        before = clock.read()
        tc = await load_terracat(server.url, stacks.token, items_path, collections_path,
                                 args.collections, args.batch_size, args.in_flight)  # fmt: skip
        tc_cpu = clock.since(before)
        log(f"Terracat: {tc.items} items in {tc.seconds:.1f} s = {tc.rate:,.0f} items/s")
        pg, pg_cpu = first or pgstac()
        mixed = await _mixed_batch(server.url, stacks.token, args.mixed_valid, args.mixed_crossing)
        db = database_versions(stacks.pgstac_url, pgstac=True)
    finally:
        stacks.close()
    return Run(tc, pg, mixed, db, tc_cpu, pg_cpu)


async def _runs(args: argparse.Namespace) -> list[str]:
    return _section(args, [await _run(args, k % 2 == 1) for k in range(args.runs)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--collections", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=4, help="concurrent bulk batches")
    parser.add_argument("--runs", type=int, default=3, help="whole loads of both, each fresh")
    parser.add_argument("--mixed-valid", type=int, default=10_000)
    parser.add_argument("--mixed-crossing", type=int, default=75)
    parser.add_argument("--data", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    parser.add_argument(
        "--without-indexes", metavar="LIKE", help="drop these indexes of items first (print only)"
    )
    args = parser.parse_args(argv)
    args.load_before = os.getloadavg()[0]
    started = time.perf_counter()
    section = run_async(_runs(args))
    print("\n".join(section))
    log(f"done in {time.perf_counter() - started:.0f} s")
    if not args.no_docs and not args.without_indexes:
        write_section(args.docs, f"bulk-items={args.items}", section)


if __name__ == "__main__":
    main()
