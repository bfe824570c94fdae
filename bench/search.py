"""Search benchmark: Terracat against stac-fastapi-pgstac, same data, same queries, one run.

    python -m bench.search --items 100000 --collections 10 --concurrency 1,8 --duration 6

Starts a private PostgreSQL cluster in a temp folder, one database per stack, loads the same
synthetic items into both (Terracat through its bulk_items API, pgstac with pypgstac), runs
VACUUM ANALYZE, then runs every query type at every concurrency against each server in turn
(alternating which goes first) and prints p50/p95/operations per second. Results are written
to docs/benchmarks.md (one section per item count) unless --no-docs. Nothing is asserted.
"""

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from . import queries as query_mix
from .generate import dataset
from .load import LoadResult, load_pgstac, load_terracat
from .memory import MemoryWatch
from .report import database_versions, fmt, log, run_context, write_section
from .runner import CellResult, first_pages, run_async, run_cell
from .servers import ROOT, Stacks, versions

SERVERS = ("terracat", "pgstac")
TARGET_RATIO = 1.5
TARGET_CQL2_P50_MS = 15.0
TARGET_LOAD_RATE = 10_000.0


def _sizes(stacks: Stacks) -> dict[str, str]:
    out = {}
    for name, url in (("terracat", stacks.terracat_url), ("pgstac", stacks.pgstac_url)):
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
            out[name] = str(row.fetchone()[0])  # type: ignore[index]
    return out


async def _cross_check(stacks: Stacks, mix: list[query_mix.QueryType]) -> dict[str, str]:
    """Compare first pages between the servers: same ids in the same order?"""
    notes = {}
    for query in mix:
        ours = await first_pages(stacks.servers["terracat"].url, query)
        theirs = await first_pages(stacks.servers["pgstac"].url, query)
        same = sum(1 for a, b in zip(ours, theirs, strict=True) if a == b and isinstance(a, list))
        same_set = sum(
            1
            for a, b in zip(ours, theirs, strict=True)
            if isinstance(a, list) and isinstance(b, list) and set(a) == set(b)
        )
        errors = [x for x in ours + theirs if isinstance(x, str)]
        notes[query.name] = (
            f"{same}/{len(ours)} identical first pages, {same_set}/{len(ours)} same id sets"
            + (f"; {len(errors)} errors, e.g. {errors[0][:200]}" if errors else "")
        )
        log(f"cross-check {query.name}: {notes[query.name]}")
    return notes


async def _measure(
    stacks: Stacks, mix: list[query_mix.QueryType], levels: list[int], duration: float
) -> dict[tuple[str, int, str], CellResult]:
    results: dict[tuple[str, int, str], CellResult] = {}
    turn = 0
    for query in mix:
        for c in levels:
            order = SERVERS if turn % 2 == 0 else SERVERS[::-1]
            turn += 1
            for name in order:
                server = stacks.servers[name]
                # Short warm-up with the same mix, not measured.
                await run_cell(server.url, query, c, min(1.0, duration / 4), offset=31)
                cell = await run_cell(server.url, query, c, duration)
                results[(query.name, c, name)] = cell
                log(
                    f"{query.name:14s} c={c} {name:8s} p50={cell.pct(50):8.1f} ms "
                    f"p95={cell.pct(95):8.1f} ms {cell.ops:8.1f} op/s errors={cell.errors}"
                    + (f" ({cell.first_error[:200]})" if cell.errors else "")
                )
    return results


def table(
    mix: list[query_mix.QueryType], results: dict[tuple[str, int, str], CellResult], c: int
) -> list[str]:
    """Markdown table for one concurrency level."""
    rows = [
        "| query | Terracat p50 ms | p95 ms | op/s | pgstac p50 ms | p95 ms | op/s "
        "| throughput ratio | p95 no worse | errors T/P |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: | ---: |",
    ]
    for query in mix:
        t, p = results[(query.name, c, "terracat")], results[(query.name, c, "pgstac")]
        ratio = t.ops / p.ops if p.ops else float("nan")
        rows.append(
            f"| {query.name} | {fmt(t.pct(50))} | {fmt(t.pct(95))} | {fmt(t.ops)} "
            f"| {fmt(p.pct(50))} | {fmt(p.pct(95))} | {fmt(p.ops)} | {fmt(ratio, 2)}x "
            f"| {'yes' if t.pct(95) <= p.pct(95) else 'NO'} | {t.errors}/{p.errors} |"
        )
    return rows


def targets(
    mix: list[query_mix.QueryType],
    results: dict[tuple[str, int, str], CellResult],
    levels: list[int],
    load: LoadResult,
) -> list[str]:
    """Which of the issue's targets are met, one line each."""
    lines = []
    for query in mix:
        misses = []
        for c in levels:
            t, p = results[(query.name, c, "terracat")], results[(query.name, c, "pgstac")]
            ratio = t.ops / p.ops if p.ops else float("nan")
            if not ratio >= TARGET_RATIO:
                misses.append(f"c={c} throughput {ratio:.2f}x")
            if not t.pct(95) <= p.pct(95):
                misses.append(f"c={c} p95 {t.pct(95):.1f} > {p.pct(95):.1f} ms")
            if t.errors or p.errors:
                misses.append(f"c={c} errors T{t.errors}/P{p.errors}")
        verdict = "met" if not misses else "MISSED (" + "; ".join(misses) + ")"
        lines.append(f"- {query.name}: >= {TARGET_RATIO}x throughput and p95 no worse: {verdict}")
    if "cql2" in {q.name for q in mix} and 1 in levels:
        p50 = results[("cql2", 1, "terracat")].pct(50)
        peer = results[("cql2", 1, "pgstac")].pct(50)
        ok = "met" if p50 < TARGET_CQL2_P50_MS else "MISSED"
        lines.append(
            f"- CQL2 p50 at c=1 < {TARGET_CQL2_P50_MS:.0f} ms: {ok} "
            f"(Terracat {p50:.1f} ms, pgstac {peer:.1f} ms)"
        )
    ok = "met" if load.rate >= TARGET_LOAD_RATE else "MISSED"
    lines.append(
        f"- bulk load through the API >= {TARGET_LOAD_RATE:,.0f} items/s: {ok} "
        f"({load.rate:,.0f} items/s)"
    )
    return lines


def write_docs(path: Path, n: int, section: list[str]) -> None:
    """Replace (or add) this item count's section in docs/benchmarks.md."""
    header = (
        "# Benchmarks\n\n"
        "Search and load figures of Terracat against "
        "[stac-fastapi-pgstac](https://github.com/stac-utils/stac-fastapi-pgstac) on the same "
        "machine, same data and same queries, measured side by side in one run by "
        "`python -m bench.search` (`make bench BENCH_ARGS='...'`). Benchmarks print figures; "
        "they never assert timings. Absolute times drift on a 2-core machine: compare the "
        "ratios within one run.\n"
    )
    write_section(path, f"items={n}", section, header)


@dataclass
class _Measured:
    """Everything the report needs from one run."""

    tc_load: LoadResult
    pg_load: LoadResult
    sizes: dict[str, str]
    db_versions: dict[str, str]
    mix: list[query_mix.QueryType]
    checks: dict[str, str]
    results: dict[tuple[str, int, str], CellResult]
    peak: dict[str, int]


async def _load(
    stacks: Stacks, args: argparse.Namespace, items_path: Path, collections_path: Path
) -> tuple[LoadResult, LoadResult]:
    """Load the same items into both stacks: Terracat over HTTP, pgstac with pypgstac."""
    log("loading Terracat through POST /collections/{id}/bulk_items")
    tc_load = await load_terracat(
        stacks.servers["terracat"].url,
        stacks.token,
        items_path,
        collections_path,
        args.collections,
        batch_size=args.batch_size,
        in_flight=args.in_flight,
    )
    log(
        f"Terracat load: {tc_load.items} items in {tc_load.seconds:.1f} s = "
        f"{tc_load.rate:,.0f} items/s"
    )
    log("loading pgstac with pypgstac load items --method insert")
    pg_load = load_pgstac(stacks, items_path, collections_path, args.items)
    log(
        f"pgstac load: {pg_load.items} items in {pg_load.seconds:.1f} s = "
        f"{pg_load.rate:,.0f} items/s"
    )
    return tc_load, pg_load


async def _run(args: argparse.Namespace, levels: list[int]) -> _Measured:
    """Make the data, start both stacks, load, cross-check and measure; stop everything."""
    log(f"data: {args.items} items over {args.collections} collections (seed {args.seed})")
    started = time.perf_counter()
    items_path, collections_path = dataset(args.data, args.items, args.collections, args.seed)
    log(f"data ready in {time.perf_counter() - started:.1f} s: {items_path}")
    stacks = Stacks(workers=args.workers)
    try:
        log(f"cluster + migrations in {stacks.tmp}")
        stacks.start_cluster()
        stacks.start_servers()
        watch = MemoryWatch(stacks.servers).start()
        tc_load, pg_load = await _load(stacks, args, items_path, collections_path)
        started = time.perf_counter()
        stacks.analyze()
        log(f"VACUUM ANALYZE in {time.perf_counter() - started:.1f} s")
        sizes = _sizes(stacks)
        db_versions = database_versions(stacks.pgstac_url, pgstac=True)
        mix = query_mix.build(args.items, args.collections)
        if args.only:
            mix = [q for q in mix if q.name in args.only.split(",")]
        checks = await _cross_check(stacks, mix)
        results = await _measure(stacks, mix, levels, args.duration)
        peak = watch.stop()
        log("peak server RSS: " + ", ".join(f"{k} {v / 2**20:.0f} MB" for k, v in peak.items()))
    finally:
        stacks.close()
    return _Measured(tc_load, pg_load, sizes, db_versions, mix, checks, results, peak)


def _context(args: argparse.Namespace, run: _Measured) -> list[str]:
    """Title, run context, versions, servers, sizes and the load figures."""
    tc_load, pg_load = run.tc_load, run.pg_load
    return [
        f"## {args.items:,} items over {args.collections} collections",
        "",
        *run_context("bench.search"),
        "- Versions: "
        + ", ".join(f"{k} {v}" for k, v in {**versions(), **run.db_versions}.items()),
        f"- Servers: uvicorn `--workers {args.workers} --loop uvloop --http httptools`, one "
        "process tree per stack on 127.0.0.1; both databases in one private PostgreSQL cluster "
        "(shared_buffers 2GB, work_mem 16MB, otherwise defaults; fsync on). Both stacks use "
        "their default settings (pgstac: default queryables and indexes, context off; "
        "Terracat: numberMatched counted up to 10,000).",
        f"- Database size after load: Terracat {run.sizes['terracat']}, "
        f"pgstac {run.sizes['pgstac']}",
        f"- Peak resident memory of each server (master + {args.workers} workers): Terracat "
        f"{run.peak['terracat'] / 2**20:.0f} MB, pgstac {run.peak['pgstac'] / 2**20:.0f} MB",
        "",
        "### Load",
        "",
        f"- Terracat, HTTP API: {tc_load.items:,} items in {tc_load.seconds:.1f} s = "
        f"**{tc_load.rate:,.0f} items/s** (`POST /collections/{{id}}/bulk_items`, "
        f"{tc_load.batch_size} items per batch, {tc_load.in_flight} batches in flight, two "
        "consecutive batches per collection so some run concurrently into one collection)",
        f"- pgstac, `pypgstac load items --method insert` straight into the database "
        f"(reference, not through an API): {pg_load.items:,} items in {pg_load.seconds:.1f} s "
        f"= {pg_load.rate:,.0f} items/s",
        "",
    ]


def _section(args: argparse.Namespace, levels: list[int], run: _Measured) -> list[str]:
    """The markdown section: context, load, one table per concurrency, cross-check, targets."""
    section = [
        *_context(args, run),
        "### Search",
        "",
        f"Closed loop: c concurrent keep-alive httpx clients, each sending its next request when "
        f"the previous one is answered, {args.duration:g} s per cell after a short warm-up, "
        "servers measured one after the other per cell (alternating which goes first). Every "
        "response is checked (HTTP 200 and at least one feature; `ids` exactly the ids asked "
        "for); errors are counted and excluded from latencies. `paging` is one operation = "
        f"first page + {query_mix.PAGES} `next` links (6 requests); its op/s are chains per "
        "second. Ratio = Terracat op/s / pgstac op/s.",
        "",
        "| query | what |",
        "| --- | --- |",
        *[f"| {q.name} | {q.description} |" for q in run.mix],
        "",
    ]
    for c in levels:
        section += [f"#### Concurrency {c}", "", *table(run.mix, run.results, c), ""]
    section += ["### Cross-check of first pages (same query, both servers)", ""]
    section += [f"- {name}: {note}" for name, note in run.checks.items()]
    targets_met = targets(run.mix, run.results, levels, run.tc_load)
    return [*section, "", "### Targets", "", *targets_met, ""]


async def main_async(args: argparse.Namespace) -> list[str]:
    """Run the whole benchmark; return the markdown report section."""
    levels = [int(c) for c in args.concurrency.split(",")]
    return _section(args, levels, await _run(args, levels))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--collections", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--concurrency", default="1,8", help="comma-separated levels")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per cell")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per server")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=4, help="concurrent bulk batches")
    parser.add_argument("--only", default="", help="comma-separated query names")
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT / "var" / "bench",
        help="cache folder for the generated data",
    )
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args(argv)
    section = run_async(main_async(args))
    print("\n".join(section))
    if not args.no_docs:
        write_docs(args.docs, args.items, section)
        log(f"written to {args.docs}")


if __name__ == "__main__":
    main()
