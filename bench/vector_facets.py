"""Facets and aggregations of a vector collection: 100,000 polygons with 6 typed properties.

    python -m bench.vector_facets --features 100000 --runs 40

Starts a private PostgreSQL cluster (the Terracat database only, bench.servers settings),
loads ``--features`` seeded polygons with ``load_polygons`` (the foundation's create_layer,
copy_features and refresh_extent in one transaction; other benchmarks may reuse it), runs
VACUUM ANALYZE, and starts Terracat under uvicorn (``--workers``, default 1). Then, for each
query, 3 warm-up requests and ``--runs`` timed ones, one at a time (c=1) over HTTP, and the
same number of in-process calls of the service (catalog/vector/facets.py, aggregate.py) on
one connection, to tell the SQL's time from the HTTP and JSON around it.

The queries run twice: on the table as the loader makes it (a GiST index on the geometry
only), then after btree indexes on the six property columns; the tables show both.

Prints the tables (measured, never asserted); writes them to docs/benchmarks.md unless
--no-docs.
"""

import argparse
import asyncio
import datetime as dt
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import shapely
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.engine import create_engine
from catalog.settings import DatabaseSettings
from catalog.stac.cql2 import parse
from catalog.stac.repository import CatalogRepository
from catalog.stac.serializers import collection_row
from catalog.vector.aggregate import aggregate, parse_group_by, parse_metrics
from catalog.vector.facets import facet_counts
from catalog.vector.query import FeatureQuery
from catalog.vector.repository import copy_features, create_layer, refresh_extent
from catalog.vector.schema import Layer, PropertyType

from .report import database_versions, fmt, log, package_versions, run_context, write_section
from .servers import ROOT, Stacks

COLLECTION = "parcels"
PROPERTIES = [
    ("crop", PropertyType.STRING),
    ("farmer", PropertyType.STRING),
    ("organic", PropertyType.BOOLEAN),
    ("parcels", PropertyType.INTEGER),
    ("yield", PropertyType.NUMBER),
    ("sown", PropertyType.DATETIME),
]
CROPS = ["wheat", "maize", "barley", "rye", "oats", "rapeseed", "sunflower", "beet", "soy",
         "potato", "peas", "flax"]  # fmt: skip
ALL = "crop,farmer,organic,parcels,yield,sown"
BBOX = "1.0,45.0,3.0,47.0"  # ~1/10 of the area the polygons cover
QUERIES: list[tuple[str, str, dict[str, str]]] = [
    ("facets", "facetby on 6 properties, every feature", {"facetby": ALL}),
    ("facets", "facetby on 6 properties, crop = 'wheat'",
     {"facetby": ALL, "filter": "crop = 'wheat'"}),
    ("facets", "facetby on 6 properties, yield > 10", {"facetby": ALL, "filter": "yield > 10"}),
    ("facets", "facetby on 6 properties, bbox 1/10", {"facetby": ALL, "bbox": BBOX}),
    ("facets", "facetby crop,farmer (terms only)", {"facetby": "crop,farmer"}),
    ("aggregate", "group_by crop: count, sum, mean, stddev, area",
     {"group_by": "crop", "metrics": "count,sum(yield),mean(yield),stddev(yield),area"}),
    ("aggregate", "group_by P1M: count, mean(yield), area",
     {"group_by": "P1M", "metrics": "count,mean(yield),area"}),
    ("aggregate", "group_by crop,P1M, crop IN 3, CSV",
     {"group_by": "crop,P1M", "metrics": "count,sum(yield),area",
      "filter": "crop IN ('wheat','maize','rye')", "f": "csv"}),
]  # fmt: skip


def polygon_rows(count: int, seed: int = 18) -> list[tuple[Any, ...]]:
    """``count`` seeded field-like quadrilaterals over France with the 6 properties' values."""
    rng = random.Random(seed)
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    rows = []
    for _ in range(count):
        x, y = rng.uniform(-4.5, 7.5), rng.uniform(42.5, 51.0)
        w, h = rng.uniform(0.002, 0.02), rng.uniform(0.002, 0.02)
        quad = shapely.Polygon([(x, y), (x + w, y + h * 0.1), (x + w * 0.9, y + h), (x, y + h)])
        rows.append(
            (
                shapely.to_wkb(quad),
                rng.choices(CROPS, weights=range(len(CROPS) + 1, 1, -1))[0],
                f"farmer {rng.randrange(2000):04d}",
                rng.random() < 0.25,
                rng.randrange(1, 500) if rng.random() > 0.02 else None,
                rng.uniform(0.5, 12.0) if rng.random() > 0.02 else None,
                start + dt.timedelta(seconds=rng.randrange(5 * 365 * 86400)),
            )
        )
    return rows


async def load_polygons(engine: AsyncEngine, collection_id: str, count: int) -> Layer:
    """A vector collection of ``count`` polygons with 6 typed properties (one transaction)."""
    doc = {
        "type": "Collection", "stac_version": "1.1.0", "id": collection_id,
        "description": "Benchmark parcels", "license": "CC0-1.0", "links": [],
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                   "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]}},
    }  # fmt: skip
    await CatalogRepository(engine).create_collection(collection_row(doc))
    async with engine.begin() as conn:
        layer = await create_layer(
            conn, collection_id, PROPERTIES, "Polygon", "EPSG:4326", datetime_property="sown"
        )
        await copy_features(conn, layer, [n for n, _ in PROPERTIES], polygon_rows(count))
        return await refresh_extent(conn, layer)


async def _time(call: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    for _ in range(3):
        await call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return times


def _ms(times: list[float], q: int) -> float:
    return statistics.quantiles(times, n=100, method="inclusive")[q - 1] * 1000


Timings = tuple[str, list[float], list[float], list[float]]


async def measure(engine: AsyncEngine, layer: Layer, bases: list[str], runs: int) -> list[Timings]:
    """(query, HTTP times, HTTP times of the server on one statement, service times) of every
    query; the two servers' requests alternate, so that both see the same machine."""
    results = []
    async with httpx.AsyncClient(timeout=60) as http, engine.connect() as conn:
        for route, title, params in QUERIES:
            path = f"collections/{COLLECTION}/{route}"
            calls = []
            for base in bases:

                async def over_http(
                    url: str = base + path, params: dict[str, str] = params
                ) -> None:
                    response = await http.get(url, params=params)
                    response.raise_for_status()

                calls.append(over_http)
            shared, single = await _time_both(calls[0], calls[1], runs)
            service = _service(conn, layer, route, params)
            results.append((title, shared, single, await _time(service, runs)))
            log(f"{title}: {_ms(shared, 50):.1f} ms over HTTP ({_ms(single, 50):.1f} on one)")
    return results


async def _time_both(
    first: Callable[[], Awaitable[Any]], second: Callable[[], Awaitable[Any]], runs: int
) -> tuple[list[float], list[float]]:
    for _ in range(3):
        await first()
        await second()
    times: tuple[list[float], list[float]] = ([], [])
    for run in range(runs):
        pair = (first, second) if run % 2 == 0 else (second, first)
        for call in pair:
            started = time.perf_counter()
            await call()
            times[0 if call is first else 1].append(time.perf_counter() - started)
    return times


async def measure_kept(base: str, runs: int) -> list[float]:
    """HTTP times of one facet request asked again (served from the facet cache)."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:

        async def again() -> None:
            response = await http.get(f"collections/{COLLECTION}/facets", params={"facetby": ALL})
            response.raise_for_status()

        return await _time(again, runs)


def _service(conn: Any, layer: Layer, route: str, params: dict[str, str]) -> Any:
    query = FeatureQuery(
        bbox=[float(v) for v in params["bbox"].split(",")] if "bbox" in params else None,
        filter=parse(params["filter"]) if "filter" in params else None,
    )
    if route == "facets":
        names = params["facetby"].split(",")
        return lambda: facet_counts(conn, layer, query, names, 10, 10)
    keys = parse_group_by(layer, params["group_by"].split(","), 8)
    metrics = parse_metrics(layer, params["metrics"].split(","), 32)
    return lambda: aggregate(conn, layer, query, keys, metrics, 10_000)


async def add_indexes(engine: AsyncEngine, layer: Layer) -> float:
    """btree indexes on the property columns; the seconds they took to build."""
    started = time.perf_counter()
    async with engine.begin() as conn:
        for prop in layer.properties:
            await conn.execute(text(f'CREATE INDEX ON {layer.qualified_name} ("{prop.column}")'))
        await conn.execute(text(f"ANALYZE {layer.qualified_name}"))
    return time.perf_counter() - started


def report(
    before: list[Timings],
    after: list[Timings],
    count: int,
    load_s: float,
    index_s: float,
    url: str,
) -> list[str]:
    """The markdown section."""
    versions = {**database_versions(url), **package_versions(["sqlalchemy", "psycopg"])}
    lines = [
        f"## Facets and aggregations: {count:,} polygons, 6 typed properties (issue 18)",
        "",
        *run_context("bench.vector_facets"),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- Load (create_layer + COPY + refresh_extent, one transaction): {load_s:.1f} s; "
        f"btree indexes on the 6 property columns: {index_s:.1f} s",
        "- Times in ms, one request at a time (c=1) after 3 warm-ups; HTTP is the whole "
        "request to uvicorn at default settings (the facets of a request dealt out to 2 "
        "statements side by side), *one statement* the same request to a second server with "
        "`TERRACAT_VECTOR_FACET_STATEMENTS=1` (requests alternating between the two), service "
        "the in-process call of one statement (the SQL and the rows read back).",
        "",
        "| Query | HTTP p50 | HTTP p90 | HTTP p50, one statement | service p50 "
        "| HTTP p50, indexed | HTTP p50, indexed, one statement | service p50, indexed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (title, http, one, service), (_, http2, one2, service2) in zip(before, after, strict=True):
        lines.append(
            f"| {title} | {fmt(_ms(http, 50))} | {fmt(_ms(http, 90))} | {fmt(_ms(one, 50))} | "
            f"{fmt(_ms(service, 50))} | {fmt(_ms(http2, 50))} | {fmt(_ms(one2, 50))} | "
            f"{fmt(_ms(service2, 50))} |"
        )
    return lines


async def _main(args: argparse.Namespace, stacks: Stacks) -> list[str]:
    engine = create_engine(stacks.terracat_url, DatabaseSettings())
    try:
        log(f"loading {args.features} polygons")
        started = time.perf_counter()
        layer = await load_polygons(engine, COLLECTION, args.features)
        load_s = time.perf_counter() - started
        async with engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text(f"VACUUM ANALYZE {layer.qualified_name}"))
        # Every request counted anew: the facet cache would answer repeated ones in ~1 ms.
        server = stacks.start_terracat({"TERRACAT_VECTOR_FACET_CACHE_SIZE": "0"})
        single = stacks._spawn(
            "terracat-one-statement",
            ["--factory", "server.app:create_app"],
            {"DATABASE_URL": stacks.terracat_url, "TERRACAT_API_ADMIN_TOKEN": stacks.token,
             "TERRACAT_VECTOR_FACET_CACHE_SIZE": "0", "TERRACAT_VECTOR_FACET_STATEMENTS": "1"},
        )  # fmt: skip
        single.wait()
        bases = [server.url, single.url]
        before = await measure(engine, layer, bases, args.runs)
        index_s = await add_indexes(engine, layer)
        after = await measure(engine, layer, bases, args.runs)
        cached = stacks._spawn(
            "terracat-cached",
            ["--factory", "server.app:create_app"],
            {"DATABASE_URL": stacks.terracat_url, "TERRACAT_API_ADMIN_TOKEN": stacks.token},
        )
        cached.wait()
        kept = await measure_kept(cached.url, args.runs)
        lines = report(before, after, args.features, load_s, index_s, stacks.terracat_url)
        return [
            *lines,
            "",
            f"With the facet cache on (the default), the same facetby on 6 "
            f"properties over every feature, asked again: p50 {fmt(_ms(kept, 50))} ms, "
            f"p90 {fmt(_ms(kept, 90))} ms over HTTP (the first request counts).",
        ]
    finally:
        await engine.dispose()


def main() -> None:
    """Run the benchmark and print (and write) its section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    stacks = Stacks(workers=args.workers)
    try:
        stacks.start_cluster(pgstac=False)
        lines = asyncio.run(_main(args, stacks))
    finally:
        stacks.close()
    print("\n".join(lines))
    if not args.no_docs:
        write_section(ROOT / "docs" / "benchmarks.md", "vector-facets", lines)


if __name__ == "__main__":
    main()
