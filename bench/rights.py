"""Rights benchmark (issue 15): searches of an account that reads 10 of 100 collections, and
the cost of recognising the caller.

    python -m bench.rights --items 100000 --collections 100 --readable 10 --duration 6

Starts a private PostgreSQL cluster and one Terracat server (uvicorn, the flags of
bench.search), loads the synthetic items through bulk_items with the bootstrap token, then
makes two accounts through ``AccountRepository``: ``bench-owner`` owns every collection, all
private; ``bench-reader`` has a ``read`` grant on the first ``--readable`` of them and a
read-only token. Private collections with grants are the path with the most work for the
rights check (grants looked up, not just a visibility).

The search mix of bench.search, its variants naming only readable collections and their items,
runs twice per cell: as the reader (the queries as they are: the server narrows them to what
the reader may read), and as the bootstrap admin with ``collections=<the readable ids>`` added
wherever a query names none, so both should return the same items. Which caller goes first
alternates per cell. First pages of both are compared. Then, in this process, the rights
dependency and whole ``GET /conformance`` requests are timed with and without a token
(bench/rights_overhead.py). Results go to docs/benchmarks.md (section ``rights``) unless
--no-docs. Nothing is asserted.
"""

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import httpx
import psycopg

from catalog.accounts.repository import AccountRepository
from catalog.db.engine import create_engine
from catalog.settings import DatabaseSettings

from . import queries as query_mix
from . import rights_overhead
from .generate import collection_id, dataset
from .load import LoadResult, load_terracat
from .queries import QueryType, Request
from .report import database_versions, fmt, log, run_context, write_section
from .runner import CellResult, first_pages, run_async, run_cell
from .servers import ROOT, Stacks, versions

CALLERS = ("user", "admin")
TARGET_SLOWER = 0.10  # the reader within 10% of the admin: p50 and operations per second
EMPTY_PAGE = "no features in the response"  # bench.runner's words for an empty page


@dataclass(frozen=True)
class Callers:
    """The reader's token, the ids it reads, and each caller's headers and query mix."""

    user_token: str
    readable: list[str]
    headers: dict[str, dict[str, str]]
    mixes: dict[str, list[QueryType]]


def restrict(query: QueryType, ids: list[str]) -> QueryType:
    """``query`` with ``collections=ids`` in every variant that names no collections."""
    variants = []
    for req in query.variants:
        if req.method == "GET":
            path, _, raw = req.path.partition("?")
            params = parse_qsl(raw, keep_blank_values=True)
            if not any(name == "collections" for name, _ in params):
                params.append(("collections", ",".join(ids)))
            variants.append(Request("GET", f"{path}?{urlencode(params)}", None, req.expect))
        else:
            body = dict(req.body or {})
            body.setdefault("collections", list(ids))
            variants.append(Request(req.method, req.path, body, req.expect))
    return QueryType(query.name, query.description, variants, query.follow)


async def make_accounts(database_url: str, k: int, r: int) -> tuple[str, list[str]]:
    """The owner of every (private) collection and a reader granted the first ``r``; the
    reader's read-only token and the ids it reads."""
    engine = create_engine(database_url, DatabaseSettings())
    try:
        accounts = AccountRepository(engine)
        owner = await accounts.create_account("bench-owner")
        reader = await accounts.create_account("bench-reader")
        issued = await accounts.create_token(reader["id"], "bench.rights", scopes=("read",))
        readable = []
        for c in range(k):
            cid = collection_id(c)
            await accounts.set_owner(cid, owner["id"])
            await accounts.set_visibility(cid, "private")
            if c < r:
                await accounts.grant(cid, "account", str(reader["id"]), "read")
                readable.append(cid)
    finally:
        await engine.dispose()
    return issued.token, readable


async def check_rights(base_url: str, callers: Callers, k: int) -> str:
    """One readable and one unreadable collection, as the reader and as the admin."""
    hidden = collection_id(k - 1)
    seen = []
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0) as client:
        for who in CALLERS:
            for cid in (callers.readable[0], hidden):
                r = await client.get(f"collections/{cid}", headers=callers.headers[who])
                seen.append(f"{who} GET /collections/{cid}: {r.status_code}")
    return "; ".join(seen)


def _collection_of(item: str) -> str:
    return item.rsplit("-item-", 1)[0]


@dataclass(frozen=True)
class PageCheck:
    """First pages of one query type: the reader's against the restricted admin's."""

    pages: int
    identical: int  # same ids in the same order, or the same error (both empty)
    leaked: int  # items of collections the reader may not read, on the reader's pages
    errors: list[str]

    def note(self) -> str:
        """One line for the report."""
        return (
            f"{self.identical}/{self.pages} identical first pages; {self.leaked} items of "
            "unreadable collections on the reader's pages"
            + (f"; {len(self.errors)} errors, e.g. {self.errors[0][:200]}" if self.errors else "")
        )


async def cross_check(base_url: str, callers: Callers) -> dict[str, PageCheck]:
    """First pages of the reader and of the restricted admin: same ids in the same order? And
    did the reader see any item of a collection it may not read?"""
    checks = {}
    allowed = set(callers.readable)
    user_mix, admin_mix = callers.mixes["user"], callers.mixes["admin"]
    for mine, theirs in zip(user_mix, admin_mix, strict=True):
        ours = await first_pages(base_url, mine, callers.headers["user"])
        admin = await first_pages(base_url, theirs, callers.headers["admin"])
        check = PageCheck(
            len(ours),
            sum(1 for a, b in zip(ours, admin, strict=True) if a == b),  # same page, same error
            sum(
                1
                for a in ours
                if isinstance(a, list)
                for i in a
                if _collection_of(i) not in allowed
            ),
            [x for x in ours + admin if isinstance(x, str)],
        )
        checks[mine.name] = check
        log(f"cross-check {mine.name}: {check.note()}")
    return checks


def _merge(a: CellResult | None, b: CellResult) -> CellResult:
    """Two slices of one cell as one."""
    if a is None:
        return b
    return CellResult(
        a.latencies + b.latencies, a.elapsed + b.elapsed, a.errors + b.errors,
        a.first_error or b.first_error, a.returned + b.returned,
    )  # fmt: skip


async def measure(
    base_url: str, callers: Callers, levels: list[int], duration: float, slices: int
) -> dict[tuple[str, int, str], CellResult]:
    """Every query at every concurrency, as the reader and as the admin: each cell in
    ``slices`` slices taking turns (A B | B A | ...), which caller opens alternating per cell."""
    results: dict[tuple[str, int, str], CellResult] = {}
    turn = 0
    for i, query in enumerate(callers.mixes["user"]):
        for c in levels:
            first = CALLERS if turn % 2 == 0 else CALLERS[::-1]
            turn += 1
            for who in first:  # warm-up, not measured
                mine, headers = callers.mixes[who][i], callers.headers[who]
                await run_cell(base_url, mine, c, min(1.0, duration / 4), 31, headers)
            for s in range(slices):
                for who in first if s % 2 == 0 else first[::-1]:
                    mine, headers = callers.mixes[who][i], callers.headers[who]
                    part = await run_cell(
                        base_url, mine, c, duration / slices, offset=s * 13, headers=headers
                    )
                    results[(query.name, c, who)] = _merge(results.get((query.name, c, who)), part)
            for who in first:
                cell = results[(query.name, c, who)]
                log(
                    f"{query.name:14s} c={c} {who:5s} p50={cell.pct(50):8.1f} ms "
                    f"p95={cell.pct(95):8.1f} ms {cell.ops:8.1f} op/s errors={cell.errors}"
                    + (f" ({cell.first_error[:200]})" if cell.errors else "")
                )
    return results


def _ratios(u: CellResult, a: CellResult) -> tuple[float, float]:
    """Reader / admin: p50 ratio and op/s ratio."""
    p50 = u.pct(50) / a.pct(50) if a.latencies else float("nan")
    ops = u.ops / a.ops if a.ops else float("nan")
    return p50, ops


def table(
    mix: list[QueryType], results: dict[tuple[str, int, str], CellResult], c: int
) -> list[str]:
    """Markdown table for one concurrency level."""
    rows = [
        "| query | reader p50 ms | p95 ms | op/s | admin p50 ms | p95 ms | op/s "
        "| p50 reader/admin | op/s reader/admin | errors R/A |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for query in mix:
        u, a = results[(query.name, c, "user")], results[(query.name, c, "admin")]
        p50, ops = _ratios(u, a)
        rows.append(
            f"| {query.name} | {fmt(u.pct(50))} | {fmt(u.pct(95))} | {fmt(u.ops)} "
            f"| {fmt(a.pct(50))} | {fmt(a.pct(95))} | {fmt(a.ops)} | {fmt(p50, 2)} "
            f"| {fmt(ops, 2)} | {u.errors}/{a.errors} |"
        )
    return rows


def filtered(checks: dict[str, PageCheck]) -> list[str]:
    """Whether the reader's searches hold only its collections, as the admin's restricted."""
    leaked = sum(c.leaked for c in checks.values())
    identical = sum(c.identical for c in checks.values())
    pages = sum(c.pages for c in checks.values())
    return [
        f"- the reader's first pages hold only readable collections: "
        f"{'met' if not leaked else 'MISSED'} ({leaked} items of unreadable collections)",
        f"- the reader's first pages equal the restricted admin's: "
        f"{'met' if identical == pages else 'MISSED'} ({identical}/{pages} identical)",
    ]


def targets(
    mix: list[QueryType], results: dict[tuple[str, int, str], CellResult], levels: list[int]
) -> list[str]:
    """Per query: the reader within 10% of the admin in p50 and op/s at every level."""
    lines = []
    for query in mix:
        misses, notes = [], []
        for c in levels:
            u, a = results[(query.name, c, "user")], results[(query.name, c, "admin")]
            p50, ops = _ratios(u, a)
            if not (u.latencies and a.latencies):
                misses.append(f"c={c} no successful operation")
                continue
            if not p50 <= 1 + TARGET_SLOWER:
                misses.append(f"c={c} p50 {p50:.2f}x")
            if not ops >= 1 - TARGET_SLOWER:
                misses.append(f"c={c} op/s {ops:.2f}x")
            # A page with no feature is a query that finds nothing in the readable collections
            # (few items per query at small sizes), the same for both callers: noted, not missed.
            if any(x.errors and EMPTY_PAGE not in x.first_error for x in (u, a)):
                misses.append(f"c={c} errors R{u.errors}/A{a.errors}")
            elif u.errors or a.errors:
                notes.append(f"c={c} pages with no feature R{u.errors}/A{a.errors}")
        verdict = "met" if not misses else "MISSED (" + "; ".join(misses) + ")"
        lines.append(
            f"- {query.name}: reader within {TARGET_SLOWER:.0%} of the admin (p50, op/s): {verdict}"
            + (f"; {', '.join(notes)}" if notes else "")
        )
    return lines


@dataclass
class _Measured:
    """Everything the report needs from one run."""

    load: LoadResult
    db_versions: dict[str, str]
    callers: Callers
    rights: str
    checks: dict[str, PageCheck]
    results: dict[tuple[str, int, str], CellResult]
    overhead: rights_overhead.Overhead


def _analyze(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


async def _callers(stacks: Stacks, args: argparse.Namespace) -> Callers:
    token, readable = await make_accounts(stacks.terracat_url, args.collections, args.readable)
    mix = query_mix.build(args.items, args.collections, readable=args.readable)
    if args.only:
        mix = [q for q in mix if q.name in args.only.split(",")]
    return Callers(
        token,
        readable,
        {
            "user": {"Authorization": f"Bearer {token}"},
            "admin": {"Authorization": f"Bearer {stacks.token}"},
        },
        {"user": mix, "admin": [restrict(q, readable) for q in mix]},
    )


async def _run(args: argparse.Namespace, levels: list[int]) -> _Measured:
    """Make the data, start the server, load, make the accounts, measure; stop everything."""
    if args.readable > args.collections:
        raise SystemExit("--readable cannot exceed --collections")
    log(f"data: {args.items} items over {args.collections} collections (seed {args.seed})")
    items_path, collections_path = dataset(args.data, args.items, args.collections, args.seed)
    stacks = Stacks(workers=args.workers)
    try:
        log(f"cluster + migrations in {stacks.tmp}")
        stacks.start_cluster(pgstac=False)
        server = stacks.start_terracat()
        load = await load_terracat(server.url, stacks.token, items_path, collections_path,
                                   args.collections, args.batch_size, args.in_flight)  # fmt: skip
        log(f"loaded {load.items} items in {load.seconds:.1f} s")
        callers = await _callers(stacks, args)
        started = time.perf_counter()
        _analyze(stacks.terracat_url)
        log(f"VACUUM ANALYZE in {time.perf_counter() - started:.1f} s")
        rights = await check_rights(server.url, callers, args.collections)
        log(f"rights: {rights}")
        checks = await cross_check(server.url, callers)
        results = await measure(server.url, callers, levels, args.duration, args.slices)
        server.stop()  # the in-process part has the machine to itself
        settings = rights_overhead.app_settings(stacks.terracat_url, stacks.token, stacks.tmp)
        overhead = await rights_overhead.measure(
            settings, stacks.token, callers.user_token, callers.readable[0],
            args.iterations, args.requests,
        )  # fmt: skip
        db_versions = database_versions(stacks.terracat_url)
    finally:
        stacks.close()
    return _Measured(load, db_versions, callers, rights, checks, results, overhead)


def _section(args: argparse.Namespace, levels: list[int], run: _Measured) -> list[str]:
    """The markdown section: context, one table per concurrency, checks, overhead, targets."""
    mix = run.callers.mixes["user"]
    section = [
        f"## Rights: a reader of {args.readable} of {args.collections} collections, "
        f"{args.items:,} items",
        "",
        *run_context("bench.rights"),
        f"- Machine load (1-minute load average, other processes included): "
        f"{args.load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after it",
        "- Versions: "
        + ", ".join(f"{k} {v}" for k, v in {**versions(), **run.db_versions}.items()),
        f"- Server: one Terracat, uvicorn `--workers {args.workers} --loop uvloop --http "
        "httptools`, on a private PostgreSQL cluster (fsync on); items loaded through "
        f"bulk_items ({run.load.rate:,.0f} items/s), then VACUUM ANALYZE.",
        f"- Rights: every collection private and owned by `bench-owner`; `bench-reader` has a "
        f"`read` grant on {', '.join(run.callers.readable)} and a read-only `tcat_` token. The "
        "reader sends the queries as they are; the admin (bootstrap token) sends them with "
        "`collections=<those ids>` added where a query names none, so both ask for the same "
        "items. The queries name only readable collections and items. Token and readable-set "
        "caches: 1 s (the default).",
        f"- Check: {run.rights}",
        "",
        "### Search, reader against admin",
        "",
        f"Closed loop as in bench.search: c keep-alive clients, {args.duration:g} s per cell "
        f"and caller after a short warm-up, in {args.slices} slices where reader and admin "
        "take turns (A B, B A, ...; which one opens alternates per cell) so drift of the "
        "shared machine falls on both. Errors are mostly pages with no feature (a query that "
        "finds nothing in the readable collections), the same for both callers. `paging` op/s "
        "are chains of 6 requests per second.",
        "",
    ]
    for c in levels:
        section += [f"#### Concurrency {c}", "", *table(mix, run.results, c), ""]
    section += ["### Cross-check of first pages (reader against restricted admin)", ""]
    section += [f"- {name}: {check.note()}" for name, check in run.checks.items()]
    section += ["", *rights_overhead.section(run.overhead)]
    lines = [
        *filtered(run.checks),
        *targets(mix, run.results, levels),
        *rights_overhead.targets(run.overhead),
    ]
    return [*section, "### Targets", "", *lines, ""]


async def main_async(args: argparse.Namespace) -> list[str]:
    """Run the whole benchmark; return the markdown report section."""
    levels = [int(c) for c in args.concurrency.split(",")]
    return _section(args, levels, await _run(args, levels))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--collections", type=int, default=100)
    parser.add_argument("--readable", type=int, default=10, help="collections the reader reads")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--concurrency", default="1,8", help="comma-separated levels")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per cell")
    parser.add_argument(
        "--slices", type=int, default=4, help="turns of reader and admin within each cell"
    )
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=4, help="concurrent bulk batches")
    parser.add_argument("--only", default="", help="comma-separated query names")
    parser.add_argument("--iterations", type=int, default=20_000, help="rights checks per case")
    parser.add_argument(
        "--requests", type=int, default=3000, help="in-process requests per path and caller"
    )
    parser.add_argument(
        "--data", type=Path, default=ROOT / "var" / "bench", help="cache folder for the data"
    )
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args(argv)
    args.load_before = os.getloadavg()[0]
    section = run_async(main_async(args))
    print("\n".join(section))
    if not args.no_docs:
        write_section(args.docs, "rights", section)
        log(f"written to {args.docs}")


if __name__ == "__main__":
    main()
