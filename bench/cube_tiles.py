"""Datacube tiles: Terracat against titiler's own xarray application on the same Zarr store,
and against the same pixels stored as a COG item, per zoom from 0 to the native one.

    python -m bench.cube_tiles --size 1024 --times 12 --tiles 30 --runs 2

A Sentinel-2-like cube (B02, B03, B04, B08 uint16, ``--size`` px square of 10 m in UTM 31N,
``--times`` dates) goes through cube-ingest's ``build_cube`` (rechunking and the overview
pyramid, as an upload would) into a local storage; its datacubes row is stored with
``put_cube``. Band B08 at the last date is also written as a GeoTIFF and ingested as a COG
item (``ingest_file``), in a collection of its own. Terracat serves both; titiler-xarray
2.4.0 (``titiler.xarray.main:app``, from its own venv under var/) serves the cube's full
resolution store by path (``url=``), which is what it can be given: it knows no overviews.

Every target draws the same layer (B08 at the last date, ``rescale=0,5000``, PNG) on the same
lists of tiles (random points of the cube per zoom), closed-loop passes on keep-alive clients
(bench.mvt's), warm-up first, alternating which target goes first. Printed: p50/p95 per zoom
at c=1 for the three targets, tiles/s at c=8 per zoom for Terracat and titiler-xarray, and
the ratios; written to docs/benchmarks.md. Timings are never asserted.
"""

import argparse
import asyncio
import os
import random
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import morecantile
import numpy as np
import pandas as pd
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from pyproj import Transformer
from rasterio.transform import from_origin

from catalog.cubes.ingest import build_cube
from catalog.cubes.model import Cube, put_cube
from catalog.db.engine import create_engine
from catalog.ingest.pipeline import IngestRequest, file_digest, ingest_file
from catalog.settings import DatabaseSettings, IngestSettings
from catalog.stac.repository import CatalogRepository
from catalog.stac.serializers import item_row
from catalog.storage.local import LocalStorage
from tiler.cubes.export import cube_from_json

from .mvt import Cell, http_pass
from .report import fmt, log, package_versions, run_context, write_section
from .servers import ROOT, Server, Stacks, peer_python

TITILER_XARRAY_VERSION = "2.4.0"
CUBE, COG = "cube-bench", "cog-bench"
TERRACAT, XARRAY, COG_ITEM = "Terracat cube", "titiler-xarray", "Terracat COG item"
X0, Y0, PIXEL = 500_000.0, 5_000_000.0, 10.0
WEB = morecantile.tms.get("WebMercatorQuad")
RESCALE = "0,5000"


def cube_dataset(size: int, count: int) -> xr.Dataset:
    """Smooth uint16 bands with a little noise (so PNGs are not trivially small)."""
    rng = np.random.default_rng(19)
    j, i = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    base = 1500 + 1000 * np.sin(i / 97.0) * np.cos(j / 131.0)
    data = {}
    for k, band in enumerate(("B02", "B03", "B04", "B08")):
        values = np.stack([base * (0.6 + 0.1 * k) + 20 * t + rng.integers(0, 60, base.shape)
                           for t in range(count)])  # fmt: skip
        data[band] = (("time", "y", "x"), values.clip(1, 65535).astype("uint16"))
    centres = np.arange(size) + 0.5
    coords = {"time": pd.date_range("2024-04-01", periods=count, freq="5D"),
              "y": Y0 - PIXEL * centres, "x": X0 + PIXEL * centres}  # fmt: skip
    cube: xr.Dataset = xr.Dataset(data, coords=coords).rio.write_crs("EPSG:32631")
    return cube


def build(
    folder: Path, size: int, count: int, overview_min_px: int | None = None
) -> tuple[Cube, dict[str, Any], Path]:
    """The ingested cube, the COG item of B08 at the last date, and the data folder."""
    data_dir = folder / "data"
    settings = IngestSettings(data_dir=data_dir)
    if overview_min_px is not None:  # else the ingest's default, as a user gets
        settings.cube_overview_min_px = overview_min_px
    storage = LocalStorage(data_dir)
    ds = cube_dataset(size, count)
    out = build_cube(ds, collection_id=CUBE, href=None, fmt="zarr", prefix=f"assets/{CUBE}/cube",
                     storage=storage, settings=settings, fallback_datetime=None,
                     progress=lambda _p, _m: None, log=lambda _m: None)  # fmt: skip
    cube = cube_from_json(out["cube"])
    tif = folder / "b08.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=size, height=size, count=1,
                       dtype="uint16", crs="EPSG:32631",
                       transform=from_origin(X0, Y0, PIXEL, PIXEL)) as dst:  # fmt: skip
        dst.write(ds["B08"].isel(time=-1).values, 1)
    sha256, nbytes = file_digest(tif)
    request = IngestRequest(source=tif, collection_id=COG, item_id="b08", sha256=sha256,
                            size=nbytes, filename=tif.name, datetime_value=cube.times[-1],
                            upload_time=datetime.now(UTC))  # fmt: skip
    item = ingest_file(request, storage, settings)
    return cube, item, data_dir


async def store(url: str, cube: Cube, item: dict[str, Any]) -> None:
    """The cube's row and the COG item, as the ingest jobs commit them."""
    engine = create_engine(url, DatabaseSettings())
    try:
        async with engine.begin() as conn:
            await put_cube(conn, cube)
        await CatalogRepository(engine).write_items(COG, [item_row(item, COG)], upsert=False)
    finally:
        await engine.dispose()


def start_titiler_xarray(stacks: Stacks) -> Server:
    """titiler-xarray from var/titiler-xarray-venv, same uvicorn flags and workers."""
    pin = f"titiler-xarray=={TITILER_XARRAY_VERSION}"
    python = peer_python("titiler-xarray", TITILER_XARRAY_VERSION, pin, "uvicorn[standard]")
    server = stacks._spawn("titiler-xarray", ["titiler.xarray.main:app"], {}, python=python)
    server.wait()
    return server


def tile_lists(
    cube: Cube, zooms: range, count: int, passes: int, seed: int
) -> dict[int, list[list[str]]]:
    """Per zoom, ``passes`` lists of ``count`` z/x/y under random points of the cube."""
    to_lonlat = Transformer.from_crs(cube.crs, "EPSG:4326", always_xy=True)
    west, south, east, north = cube.bounds
    rng = random.Random(seed)
    lists: dict[int, list[list[str]]] = {}
    for z in zooms:
        lists[z] = []
        for _ in range(passes):
            tiles = []
            for _ in range(count):
                lon, lat = to_lonlat.transform(rng.uniform(west, east), rng.uniform(south, north))
                t = WEB.tile(lon, lat, z)
                tiles.append(f"{t.z}/{t.x}/{t.y}")
            lists[z].append(tiles)
    return lists


def paths(target: str, tiles: list[str], store_path: str, when: str) -> list[str]:
    """The tile URLs (relative) of ``target``."""
    if target == TERRACAT:
        q = f"layers=B08&datetime={when}Z&rescale={RESCALE}"
        return [f"collections/{CUBE}/tiles/WebMercatorQuad/{t}.png?{q}" for t in tiles]
    if target == COG_ITEM:
        return [f"collections/{COG}/items/b08/tiles/WebMercatorQuad/{t}.png?rescale={RESCALE}"
                for t in tiles]  # fmt: skip
    q = f"url={store_path}&variable=B08&sel=time={when}&rescale={RESCALE}"
    return [f"tiles/WebMercatorQuad/{t}.png?{q}" for t in tiles]


def measure(servers: dict[str, str], lists: dict[int, list[list[str]]], runs: int, c: int,
            store_path: str, when: str) -> dict[tuple[str, int], Cell]:  # fmt: skip
    """Every (target, zoom) at concurrency ``c``: warm-up, then ``runs`` timed passes."""
    cells: dict[tuple[str, int], Cell] = {}
    order = list(servers)
    for z, passes in lists.items():
        for run in range(runs + 1):
            for target in order if run % 2 == 0 else order[::-1]:
                cell = cells.setdefault((target, z), Cell())
                urls = paths(target, passes[run], store_path, when)
                asyncio.run(http_pass(servers[target], urls, c, cell if run else None))
        for target in order:
            cell = cells[(target, z)]
            log(f"c={c} z={z:2d} {target:18s} p50={fmt(cell.pct(50))} ms "
                f"{fmt(cell.rate)} tiles/s errors={cell.errors} "
                f"{cell.first_error[:120]}")  # fmt: skip
    return cells


def tables(
    one: dict[tuple[str, int], Cell], eight: dict[tuple[str, int], Cell], zooms: range
) -> list[str]:
    """Per zoom: c=1 p50/p95 of each target and c=8 tiles/s, with Terracat's ratios."""
    rows = ["| zoom | cube p50 ms (p95) | titiler-xarray p50 ms (p95) | COG item p50 ms (p95) | "
            "cube / COG p50 | cube tiles/s c=8 | titiler-xarray tiles/s c=8 | x titiler-xarray |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for z in zooms:
        cube, peer, cog = one[(TERRACAT, z)], one[(XARRAY, z)], one[(COG_ITEM, z)]
        rate, peer_rate = eight[(TERRACAT, z)].rate, eight[(XARRAY, z)].rate
        rows.append(
            f"| {z} | {fmt(cube.pct(50))} ({fmt(cube.pct(95))}) | {fmt(peer.pct(50))} "
            f"({fmt(peer.pct(95))}) | {fmt(cog.pct(50))} ({fmt(cog.pct(95))}) | "
            f"{fmt(cube.pct(50) / cog.pct(50), 2)} | {fmt(rate)} | {fmt(peer_rate)} | "
            f"{fmt(rate / peer_rate, 2)} |"
        )
    return rows


def run(args: argparse.Namespace) -> list[str]:
    """The whole benchmark; the markdown section."""
    folder = Path(tempfile.mkdtemp(prefix="terracat-cube-tiles-", dir=args.dir))
    stacks = Stacks(workers=args.workers)
    try:
        cube, item, data_dir = build(folder, args.size, args.times, args.overview_min_px)
        maxzoom = WEB.zoom_for_res(PIXEL)
        zooms = range(0, maxzoom + 1)
        log(f"cube {args.size} px x {args.times} dates, overviews "
            f"{[o.factor for o in cube.overviews]}, zooms 0-{maxzoom}")  # fmt: skip
        stacks.start_cluster(pgstac=False)
        terracat = stacks.start_terracat({"TERRACAT_INGEST_DATA_DIR": str(data_dir)})
        auth = {"Authorization": f"Bearer {stacks.token}"}
        with httpx.Client(base_url=terracat.url, headers=auth, timeout=60) as http:
            for cid in (CUBE, COG):
                extent = {
                    "spatial": {"bbox": [[-180, -90, 180, 90]]},
                    "temporal": {"interval": [[None, None]]},
                }
                doc = {"type": "Collection", "id": cid, "stac_version": "1.1.0",
                       "description": cid, "license": "other", "extent": extent,
                       "links": []}  # fmt: skip
                r = http.post("/collections", json=doc)
                r.raise_for_status()
        asyncio.run(store(stacks.terracat_url, cube, item))
        xarray_server = start_titiler_xarray(stacks)
        servers = {TERRACAT: terracat.url, XARRAY: xarray_server.url, COG_ITEM: terracat.url}
        store_path = str(data_dir / "assets" / CUBE / "cube" / "cube.zarr")
        when = cube.times[-1].strftime("%Y-%m-%dT%H:%M:%S")
        lists = tile_lists(cube, zooms, args.tiles, 2 * (args.runs + 1), args.seed)
        first = {z: v[: args.runs + 1] for z, v in lists.items()}
        second = {z: v[args.runs + 1 :] for z, v in lists.items()}
        load_before = os.getloadavg()[0]
        one = measure(servers, first, args.runs, 1, store_path, when)
        eight = measure({k: servers[k] for k in (TERRACAT, XARRAY)}, second, args.runs, 8,
                        store_path, when)  # fmt: skip
        load_after = os.getloadavg()[0]
    finally:
        stacks.close()
        shutil.rmtree(folder, ignore_errors=True)
    ours = package_versions(["rio-tiler", "xarray", "zarr", "titiler-core"])
    return [
        f"## Datacube tiles against titiler-xarray and a COG ({args.size} px, {args.times} dates)",
        "",
        *run_context("bench.cube_tiles"),
        f"- B08 at the last date, rescale {RESCALE}, PNG; {args.tiles} tiles per pass at random "
        f"points of the cube, warm-up + {args.runs} timed passes; {args.workers} uvicorn workers "
        "each; titiler-xarray reads the full-resolution store (it has no overviews), Terracat "
        f"the coarsest of its overviews {[o.factor for o in cube.overviews]} finer than the tile.",
        f"- Load average (1 min) before / after: {load_before:.1f} / {load_after:.1f} on "
        f"{os.cpu_count()} cores: ratios only mean something side by side in one run.",
        "- Versions: "
        + ", ".join(f"{k} {v}" for k, v in ours.items())
        + f", titiler-xarray {TITILER_XARRAY_VERSION} (var/titiler-xarray-venv)",
        "",
        *tables(one, eight, zooms),
    ]


def main(argv: list[str] | None = None) -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="cube width and height, px")
    parser.add_argument("--times", type=int, default=24, help="dates")
    parser.add_argument("--tiles", type=int, default=40, help="tiles per pass and zoom")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument(
        "--overview-min-px",
        type=int,
        default=None,
        help="the ingest's TERRACAT_INGEST_CUBE_OVERVIEW_MIN_PX (its default)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="where to work (a temp folder)")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)
    section = run(args)
    print("\n".join(section))
    if not args.no_docs:
        write_section(ROOT / "docs" / "benchmarks.md", f"cube-tiles={args.size}", section)


if __name__ == "__main__":
    main()
