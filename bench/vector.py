"""Vector collections: MVT tiles of 100k polygons, Terracat against tipg on the same table.

    python -m bench.vector --features 100000 --tiles 30 --runs 2

Starts a private PostgreSQL cluster with the Terracat database, loads ``--features`` polygons
(irregular rings of 8 to 24 points, sizes log-uniform from 50 m to 30 km, over Europe) with six
typed properties into one vector collection through the catalogue's own COPY path, then serves
that very table (``features.l1``) with Terracat (``--workers``) and tipg (its own venv,
``--tipg-workers``), same uvicorn flags, same per-tile cap and buffer. Per zoom (2 to 12) and
concurrency (1, 8): a warm-up pass and ``--runs`` timed passes of ``--tiles`` tiles under
feature centres, the same list for both, the servers alternating which goes first; every
request sends ``Accept-Encoding: gzip`` and asks for each server's default attributes.
A cross-check decodes tiles of each zoom from both and compares their features.

Then the items (OGC API - Features) of the same table on both: a bbox page of 100, a CQL2
filter on two properties, and a sort on a number, each with 64 seeded variants, at c=1 and c=8
for ``--duration`` seconds a cell, servers alternating. Prints the tables; writes
docs/benchmarks.md unless --no-docs.
"""

import argparse
import math
import os
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import mapbox_vector_tile
import morecantile
import psycopg
import shapely

from catalog.db.engine import create_engine
from catalog.settings import DatabaseSettings
from catalog.stac.repository import CatalogRepository
from catalog.stac.serializers import collection_row
from catalog.vector.repository import copy_features, create_layer, refresh_extent
from catalog.vector.schema import PropertyType

from .mvt import TIPG_VERSION, Cell, http_pass, tables, tipg_python
from .queries import QueryType, Request
from .report import database_versions, fmt, log, package_versions, run_context, write_section
from .runner import CellResult, run_async, run_cell
from .servers import ROOT, Server, Stacks

COLLECTION = "fields"
ZOOMS = (2, 4, 6, 8, 10, 12)
LEVELS = (1, 8)
TERRACAT, TIPG = "Terracat", "tipg"
WEB = morecantile.tms.get("WebMercatorQuad")
HEADERS = {"Accept-Encoding": "gzip"}
CAP = 8000  # Terracat's default per-tile cap, given to tipg too
PROPERTIES = [
    ("crop", PropertyType.STRING),
    ("farmer", PropertyType.STRING),
    ("area_ha", PropertyType.NUMBER),
    ("plots", PropertyType.INTEGER),
    ("organic", PropertyType.BOOLEAN),
    ("sown", PropertyType.DATETIME),
]
CROPS = ("wheat", "maize", "barley", "rye", "rapeseed", "sunflower", "potato", "sugar beet")
Tile = tuple[int, int, int]


def polygons(count: int, seed: int) -> list[tuple[Any, ...]]:
    """``count`` rows: an irregular ring and the six properties."""
    rng = random.Random(seed)
    start = datetime(2024, 3, 1, tzinfo=UTC)
    rows = []
    for _ in range(count):
        lon, lat = rng.uniform(-10, 30), rng.uniform(36, 60)
        radius = math.exp(rng.uniform(math.log(0.0005), math.log(0.3)))
        n = rng.randint(8, 24)
        ring = [
            (lon + radius * rng.uniform(0.6, 1.0) * math.cos(2 * math.pi * k / n),
             lat + radius * rng.uniform(0.6, 1.0) * math.sin(2 * math.pi * k / n))
            for k in range(n)
        ]  # fmt: skip
        polygon = shapely.Polygon(ring)
        rows.append((
            shapely.to_wkb(polygon), rng.choice(CROPS), f"farmer-{rng.randrange(2000)}",
            round(polygon.area * 1e4, 3), rng.randrange(1, 40), rng.random() < 0.2,
            start + timedelta(hours=rng.randrange(24 * 200)),
        ))  # fmt: skip
    return rows


async def load(url: str, rows: list[tuple[Any, ...]]) -> str:
    """The collection, its layer and features; returns the feature table's name."""
    engine = create_engine(url, DatabaseSettings())
    try:
        doc = {"type": "Collection", "stac_version": "1.1.0", "id": COLLECTION,
               "description": "Benchmark fields", "license": "CC0-1.0", "links": [],
               "extent": {"spatial": {"bbox": [[-10, 36, 30, 60]]},
                          "temporal": {"interval": [[None, None]]}}}  # fmt: skip
        await CatalogRepository(engine).create_collection(collection_row(doc))
        async with engine.begin() as conn:
            layer = await create_layer(conn, COLLECTION, PROPERTIES, "Polygon",
                                       datetime_property="sown")  # fmt: skip
            await copy_features(conn, layer, [name for name, _ in PROPERTIES], rows)
            await refresh_extent(conn, layer)
        return layer.table_name
    finally:
        await engine.dispose()


def start_tipg(stacks: Stacks, workers: int) -> Server:
    """tipg on the feature table (schema ``features``), from its own venv."""
    server = stacks._spawn(
        "tipg",
        ["tipg.main:app"],
        {
            "DATABASE_URL": stacks.terracat_url,
            "TIPG_DB_SCHEMAS": '["features"]',
            "TIPG_MAX_FEATURES_PER_TILE": str(CAP),
            "TIPG_TILE_BUFFER": "64",
        },
        python=tipg_python(),
        workers=workers,
    )
    server.wait()
    return server


def tile_lists(rows: list[tuple[Any, ...]], count: int, seed: int, passes: int) -> Any:
    """Per zoom, ``passes`` lists of ``count`` tiles under random features' centres."""
    rng = random.Random(seed)
    centres = [shapely.from_wkb(row[0]).centroid for row in rng.sample(rows, 2000)]
    lists: dict[int, list[list[Tile]]] = {}
    for z in ZOOMS:
        lists[z] = []
        for _ in range(passes):
            tiles = [WEB.tile(p.x, p.y, z) for p in rng.choices(centres, k=count)]
            lists[z].append([(t.z, t.x, t.y) for t in tiles])
    return lists


def urls(table: str) -> dict[str, str]:
    """The tile URL template of each target (relative)."""
    return {
        TERRACAT: f"collections/{COLLECTION}/items/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}",
        TIPG: f"collections/features.{table}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}",
    }


def measure(servers: dict[str, str], templates: dict[str, str], lists: Any, runs: int) -> Any:
    """Every (target, zoom, concurrency): warm-up, then ``runs`` timed passes, alternating."""
    cells: dict[tuple[str, int, int], Cell] = {}
    order = list(servers)
    for turn, c in enumerate(LEVELS):
        for z in ZOOMS:
            for run in range(runs + 1):
                tiles = lists[z][turn * (runs + 1) + run]
                for target in order if (run + turn) % 2 == 0 else order[::-1]:
                    cell = cells.setdefault((target, z, c), Cell())
                    paths = [templates[target].format(z=a, x=b, y=d) for a, b, d in tiles]
                    run_async(http_pass(servers[target], paths, c, cell if run else None))
            for target in order:
                cell = cells[(target, z, c)]
                log(f"{target:9s} z={z} c={c} p50={fmt(cell.pct(50))} ms "
                    f"{fmt(cell.rate)} tiles/s errors={cell.errors} "
                    f"{cell.first_error[:200]}")  # fmt: skip
    return cells


def _decoded(content: bytes) -> list[dict[str, Any]]:
    if not content:
        return []
    return [f for layer in mapbox_vector_tile.decode(content).values() for f in layer["features"]]


def cross_check(servers: dict[str, str], templates: dict[str, str], lists: Any) -> list[str]:
    """Per zoom, over 5 tiles: features and attributes each server put in them."""
    rows = ["| zoom | features Terracat | features tipg | attributes Terracat | attributes tipg |",
            "|---:|---:|---:|---|---|"]  # fmt: skip
    for z in ZOOMS:
        counts = {TERRACAT: 0, TIPG: 0}
        keys: dict[str, set[str]] = {TERRACAT: set(), TIPG: set()}
        for tile in list(dict.fromkeys(lists[z][-1]))[:5]:
            for target, base in servers.items():
                z_, x, y = tile
                r = httpx.get(base + templates[target].format(z=z_, x=x, y=y), headers=HEADERS,
                              timeout=120)  # fmt: skip
                features = _decoded(r.content)
                counts[target] += len(features)
                for f in features:
                    keys[target] |= set(f["properties"])
        rows.append(f"| {z} | {counts[TERRACAT]} | {counts[TIPG]} | "
                    f"{', '.join(sorted(keys[TERRACAT])) or '-'} | "
                    f"{', '.join(sorted(keys[TIPG])) or '-'} |")  # fmt: skip
    return rows


def item_queries(table: str, seed: int) -> dict[str, dict[str, QueryType]]:
    """Per item query type, the same seeded variants as each server's paths."""
    rng = random.Random(seed)
    paths = {
        TERRACAT: f"collections/{COLLECTION}/items",
        TIPG: f"collections/features.{table}/items",
    }
    kinds: dict[str, list[dict[str, str]]] = {"bbox": [], "cql2": [], "sortby": []}
    for _ in range(64):
        lon, lat = rng.uniform(-8, 26), rng.uniform(38, 57)
        box = f"{lon:.4f},{lat:.4f},{lon + 2:.4f},{lat + 1.5:.4f}"
        kinds["bbox"].append({"bbox": box, "limit": "100"})
        crop, least = rng.choice(CROPS), rng.choice((1, 5, 10))
        kinds["cql2"].append({"filter": f"crop = '{crop}' AND area_ha > {least}",
                              "filter-lang": "cql2-text", "limit": "10"})  # fmt: skip
        kinds["sortby"].append({"bbox": box, "sortby": "-area_ha", "limit": "10"})
    described = {"bbox": "bbox 2 x 1.5 degrees, limit 100",
                 "cql2": "CQL2 text crop = x AND area_ha > y, limit 10",
                 "sortby": "bbox 2 x 1.5 degrees, sortby=-area_ha, limit 10"}  # fmt: skip
    return {
        name: {
            target: QueryType(
                name,
                described[name],
                [Request("GET", f"{path}?{urlencode(params)}") for params in variants],
            )  # fmt: skip
            for target, path in paths.items()
        }
        for name, variants in kinds.items()
    }


def measure_items(
    servers: dict[str, str], queries: dict[str, dict[str, QueryType]], duration: float
) -> dict[tuple[str, str, int], CellResult]:
    """Every (query, target, concurrency) for ``duration`` s, servers alternating first."""
    cells: dict[tuple[str, str, int], CellResult] = {}
    order = list(servers)
    for turn, c in enumerate(LEVELS):
        for k, (name, per_target) in enumerate(queries.items()):
            for target in order if (turn + k) % 2 == 0 else order[::-1]:
                cell = run_async(run_cell(servers[target], per_target[target], c, duration))
                cells[(name, target, c)] = cell
                log(
                    f"{target:9s} {name} c={c} p50={fmt(cell.pct(50))} ms "
                    f"{fmt(cell.ops)} op/s errors={cell.errors} {cell.first_error[:200]}"
                )
    return cells


def item_tables(cells: dict[tuple[str, str, int], CellResult], names: list[str]) -> list[str]:
    """p50/p95/op/s per query and concurrency; Terracat's throughput over tipg's."""
    rows = [
        "| query | c | Terracat p50 ms | p95 ms | op/s | tipg p50 ms | p95 ms | op/s "
        "| x tipg | errors T/t |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in LEVELS:
        for name in names:
            ours, theirs = cells[(name, TERRACAT, c)], cells[(name, TIPG, c)]
            ratio = ours.ops / theirs.ops if theirs.ops else float("nan")
            rows.append(
                f"| {name} | {c} | {fmt(ours.pct(50))} | {fmt(ours.pct(95))} | "
                f"{fmt(ours.ops)} | {fmt(theirs.pct(50))} | {fmt(theirs.pct(95))} | "
                f"{fmt(theirs.ops)} | {fmt(ratio, 2)} | {ours.errors}/{theirs.errors} |"
            )
    return rows


def run(args: argparse.Namespace) -> list[str]:
    """The whole benchmark; the markdown section."""
    rows = polygons(args.features, args.seed)
    load_before = os.getloadavg()[0]
    stacks = Stacks(workers=args.workers)
    try:
        stacks.start_cluster(pgstac=False)
        started = time.perf_counter()
        table = run_async(load(stacks.terracat_url, rows))
        loaded = time.perf_counter() - started
        log(f"loaded {len(rows)} features in {loaded:.1f} s")
        with psycopg.connect(stacks.terracat_url, autocommit=True) as conn:
            # A typed column, so tipg reads the SRID from geometry_columns (Terracat's own
            # statements are the same on either); then fresh statistics.
            conn.execute(f"ALTER TABLE features.{table} ALTER COLUMN geom "
                         "TYPE geometry(Geometry, 4326)")  # fmt: skip
            conn.execute("VACUUM ANALYZE")
        terracat = stacks.start_terracat()
        tipg = start_tipg(stacks, args.tipg_workers)
        servers = {TERRACAT: terracat.url, TIPG: tipg.url}
        templates = urls(table)
        lists = tile_lists(rows, args.tiles, args.seed, len(LEVELS) * (args.runs + 1) + 1)
        cells = measure(servers, templates, lists, args.runs)
        check = cross_check(servers, templates, lists)
        queries = item_queries(table, args.seed)
        item_cells = measure_items(servers, queries, args.duration)
        versions = database_versions(stacks.terracat_url)
        load_after = os.getloadavg()[0]
    finally:
        stacks.close()
    ours = package_versions(["terracat", "fastapi", "starlette", "uvicorn", "sqlalchemy"])
    return [
        f"## Vector collection tiles and items against tipg ({args.features} polygons)",
        "",
        *run_context("bench.vector"),
        f"- One table of {args.features} polygons (8-24 points, 50 m to 30 km across, over "
        "Europe) with six typed properties, loaded with the catalogue's COPY path in "
        f"{loaded:.1f} s; tipg {TIPG_VERSION} serves the same table.",
        f"- Terracat: {args.workers} uvicorn workers; tipg: {args.tipg_workers}; uvloop + "
        f"httptools for both; both capped at {CAP} features a tile, 64-unit buffer; gzip asked.",
        "- Each server's default attributes: tipg sends every column at every zoom; Terracat "
        "none below z6 (`properties=` asks), and leaves out polygons under half a pixel.",
        f"- Load average (1 min) before / after: {load_before:.1f} / {load_after:.1f} on "
        f"{os.cpu_count()} cores (shared machine: ratios only mean something side by side).",
        f"- {args.tiles} tiles per pass under random features' centres, warm-up + {args.runs} "
        "timed passes, both servers on the same list, alternating which goes first.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in {**ours, **versions}.items()),
        "",
        *tables(cells, ZOOMS),
        "",
        "Cross-check (5 distinct tiles per zoom):",
        "",
        *check,
        "",
        f"Items of the same table ({args.duration:g} s a cell, 64 seeded variants; GeoJSON, "
        "each server's default properties, numberMatched as each gives it):",
        "",
        *item_tables(item_cells, list(queries)),
    ]


def main(argv: list[str] | None = None) -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=100_000)
    parser.add_argument("--tiles", type=int, default=30, help="tiles per pass and zoom")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tipg-workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per items cell")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)
    section = run(args)
    print("\n".join(section))
    if not args.no_docs:
        write_section(ROOT / "docs" / "benchmarks.md", f"vector={args.features}", section)


if __name__ == "__main__":
    main()
