"""Feature pages of a vector collection: Terracat's engine against pygeoapi's PostgreSQL provider.

    python -m bench.features_pygeoapi --features 20000 --requests 100

Starts a private PostgreSQL cluster with the Terracat database, loads ``--features`` polygons
with 6 typed properties into one vector collection (the foundation's COPY path), and serves the
same table twice: by Terracat (``/collections/{id}/items``) and by pygeoapi 0.24's PostgreSQL
provider under uvicorn (its Starlette app, configured by a YAML file written here). Both get 1
uvicorn worker. Then, sequentially (c=1) and with 8 concurrent clients: a warm-up pass and a
timed pass of ``--requests`` requests per query, the same list for both servers, which go in
turn: ``limit=100`` under a random bbox, and ``limit=100`` with a property filter
(``crop='wheat' AND plots > 3``; pygeoapi: its ``properties`` query parameters, equality only,
so ``crop=wheat`` there). The counts of features returned are compared.

Prints the table (measured, never asserted); writes it to docs/benchmarks.md unless --no-docs.
Why it exists: the issue asks to keep our engine on a hot path only where measured faster.
"""

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import shapely
import yaml

from catalog.db.cluster import free_port
from catalog.db.engine import create_engine
from catalog.settings import DatabaseSettings
from catalog.stac.repository import CatalogRepository
from catalog.stac.serializers import collection_row
from catalog.vector.repository import copy_features, create_layer, refresh_extent
from catalog.vector.schema import Layer, PropertyType

from .report import database_versions, fmt, log, package_versions, run_context, write_section
from .runner import run_async
from .servers import ROOT, UVICORN_FLAGS, Server, Stacks

COLLECTION = "bench_parcels"
CROPS = ["wheat", "maize", "barley", "rapeseed", "sunflower"]
PROPERTIES = [
    ("crop", PropertyType.STRING), ("farmer", PropertyType.STRING),
    ("area", PropertyType.NUMBER), ("plots", PropertyType.INTEGER),
    ("organic", PropertyType.BOOLEAN), ("sown", PropertyType.DATETIME),
]  # fmt: skip
WEST, SOUTH, SPAN = -5.0, 42.0, 10.0  # features over a 10 x 10 degree square


def _rows(count: int, seed: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        x, y = WEST + rng.random() * SPAN, SOUTH + rng.random() * SPAN
        size = 0.002 + rng.random() * 0.01
        ring = shapely.Polygon([(x, y), (x + size, y), (x + size * 0.8, y + size), (x, y)])
        rows.append((shapely.to_wkb(ring), CROPS[i % 5], f"farmer {i % 97}", rng.random() * 50,
                     i % 11, i % 3 == 0, f"2024-{1 + i % 12:02d}-15T10:00:00+00:00"))  # fmt: skip
    return rows


async def _load(url: str, count: int, seed: int) -> Layer:
    engine = create_engine(url, DatabaseSettings())
    try:
        doc = {"type": "Collection", "stac_version": "1.1.0", "id": COLLECTION,
               "description": "bench", "license": "CC0-1.0", "links": [],
               "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                          "temporal": {"interval": [[None, None]]}}}  # fmt: skip
        await CatalogRepository(engine).create_collection(collection_row(doc))
        async with engine.begin() as conn:
            layer = await create_layer(conn, COLLECTION, PROPERTIES, "Polygon",
                                       datetime_property="sown")  # fmt: skip
            await copy_features(conn, layer, [n for n, _ in PROPERTIES], _rows(count, seed))
            return await refresh_extent(conn, layer)
    finally:
        await engine.dispose()


def _pygeoapi_config(stacks: Stacks, layer: Layer, port: int) -> dict[str, Any]:
    parts = urlsplit(stacks.terracat_url)
    return {
        "server": {
            "bind": {"host": "127.0.0.1", "port": port},
            "url": f"http://127.0.0.1:{port}", "mimetype": "application/json; charset=UTF-8",
            "encoding": "utf-8", "language": "en-US", "pretty_print": False,
            "limits": {"default_items": 10, "max_items": 10000},
            "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "attribution": ""},
        },
        "logging": {"level": "ERROR"},
        "metadata": {
            "identification": {"title": "bench", "description": "bench", "keywords": ["bench"],
                               "keywords_type": "theme", "terms_of_service": "",
                               "url": "http://127.0.0.1"},
            "license": {"name": "CC0", "url": "http://127.0.0.1"},
            "provider": {"name": "bench", "url": "http://127.0.0.1"},
            "contact": {"name": "bench", "email": "bench@example.org"},
        },
        "resources": {
            COLLECTION: {
                "type": "collection", "title": COLLECTION, "description": "bench",
                "keywords": ["bench"], "links": [],
                "extents": {"spatial": {"bbox": list(layer.bbox or (-180, -90, 180, 90)),
                            "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}},
                "providers": [{
                    "type": "feature", "name": "PostgreSQL",
                    "data": {"host": parts.hostname, "port": parts.port, "dbname": "terracat",
                             "user": parts.username, "password": parts.password,
                             "search_path": ["features", "public"]},
                    "id_field": "fid", "table": layer.table_name, "geom_field": "geom",
                }],
            }
        },
    }  # fmt: skip


def _start_pygeoapi(stacks: Stacks, layer: Layer) -> Server:
    port = free_port()
    config = stacks.tmp / "pygeoapi.yml"
    openapi = stacks.tmp / "pygeoapi-openapi.yml"
    config.write_text(yaml.safe_dump(_pygeoapi_config(stacks, layer, port)))
    env = {**os.environ, "PYGEOAPI_CONFIG": str(config), "PYGEOAPI_OPENAPI": str(openapi)}
    subprocess.run([str(Path(sys.executable).parent / "pygeoapi"), "openapi", "generate",
                    str(config), "--output-file", str(openapi)], env=env, check=True)  # fmt: skip
    log_path = stacks.tmp / "pygeoapi.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "pygeoapi.starlette_app:APP", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", *UVICORN_FLAGS],
        cwd=ROOT, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    server = Server("pygeoapi", port, process, log_path)
    stacks.servers["pygeoapi"] = server
    server.wait()
    return server


def _queries(seed: int, count: int) -> dict[str, list[tuple[dict[str, str], dict[str, str]]]]:
    """Per query: (Terracat params, pygeoapi params) pairs, the same selection for both."""
    rng = random.Random(seed)
    boxes = []
    for _ in range(count):
        x, y = WEST + rng.random() * (SPAN - 1), SOUTH + rng.random() * (SPAN - 1)
        bbox = f"{x:.4f},{y:.4f},{x + 1:.4f},{y + 1:.4f}"
        boxes.append(({"bbox": bbox, "limit": "100"}, {"bbox": bbox, "limit": "100"}))
    cql = {"filter": "crop = 'wheat' AND plots = 3", "limit": "100"}
    plain = {"crop": "wheat", "plots": "3", "limit": "100"}
    return {
        "bbox, limit 100": boxes,
        "crop = wheat AND plots = 3, limit 100": [(cql, plain)] * count,
    }


async def _timed(
    url: str, params: list[dict[str, str]], concurrency: int
) -> tuple[list[float], int]:
    times: list[float] = []
    returned = 0
    queue = list(params)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:

        async def worker() -> None:
            nonlocal returned
            while queue:
                p = queue.pop()
                started = time.perf_counter()
                r = await http.get(f"collections/{COLLECTION}/items", params=p,
                                   headers={"Accept": "application/geo+json"})  # fmt: skip
                times.append(time.perf_counter() - started)
                r.raise_for_status()
                returned += len(r.json()["features"])

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        times.append(-(time.perf_counter() - began))  # the pass's wall time, marked negative
    return times, returned


def measure(servers: dict[str, str], queries: dict[str, Any]) -> list[str]:
    """The markdown table rows."""
    rows = []
    for name, pairs in queries.items():
        for concurrency in (1, 8):
            for index, (server, url) in enumerate(servers.items()):
                params = [pair[index] for pair in pairs]
                run_async(_timed(url, params[:20], concurrency))  # warm-up
                times, returned = run_async(_timed(url, params, concurrency))
                wall = -times.pop()
                p50 = statistics.median(times) * 1000
                p95 = sorted(times)[int(len(times) * 0.95) - 1] * 1000
                rows.append(f"| {name} | {concurrency} | {server} | {fmt(p50)} | {fmt(p95)} | "
                            f"{fmt(len(times) / wall)} | {returned} |")  # fmt: skip
    return rows


def main() -> None:
    """Run the benchmark and print (and write) the section."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    stacks = Stacks(workers=1)
    try:
        stacks.start_cluster(pgstac=False)
        layer = run_async(_load(stacks.terracat_url, args.features, args.seed))
        with psycopg.connect(stacks.terracat_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        log(f"loaded {layer.feature_count} features")
        terracat = stacks.start_terracat()
        pygeoapi = _start_pygeoapi(stacks, layer)
        servers = {"Terracat": terracat.url, "pygeoapi": pygeoapi.url}
        rows = measure(servers, _queries(args.seed, args.requests))
        versions = {**package_versions(["pygeoapi", "fastapi", "uvicorn", "psycopg",
                                        "psycopg2-binary"]),
                    **database_versions(stacks.terracat_url)}  # fmt: skip
    finally:
        stacks.close()
    section = [
        f"## Feature pages: Terracat's engine against pygeoapi's PostgreSQL provider "
        f"({args.features} polygons)", "",
        *run_context("bench.features_pygeoapi"),
        f"- Load average (1 min) after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        "- 1 uvicorn worker each, same table (features.\"l1\"), "
        f"{args.requests} requests per row after 20 of warm-up",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), "",
        "| query | c | server | p50 ms | p95 ms | requests/s | features returned |",
        "|---|---:|---|---:|---:|---:|---:|",
        *rows,
    ]  # fmt: skip
    print("\n".join(section))
    if not args.no_docs:
        write_section(ROOT / "docs" / "benchmarks.md", "features-pygeoapi", section)


if __name__ == "__main__":
    main()
