"""Map tile benchmark: item tiles over HTTP against rio-tiler in-process and titiler-pgstac, and
the MBTiles export against GDAL.

    python -m bench.tiles --size 10000 --tiles 300

Uses bench.ingest's synthetic orthophoto (cached in var/bench/ingest), starts a private
PostgreSQL cluster (Terracat and pgstac databases), Terracat under uvicorn and one
``terracat worker``, uploads the orthophoto over tus and waits for its item (the ingest job
makes the COG). The same item and its collection go into pgstac, served by titiler-pgstac
(from its own venv, var/titiler-pgstac-venv) with the same uvicorn options. Then:

- a seeded set of tiles over z12-18, each touching the item's footprint, the same list for
  everyone: rio-tiler in-process on the COG (the floor), Terracat's item tile endpoint and
  titiler-pgstac's, at concurrency 1 and 8, one warm-up pass then ``--runs`` timed passes;
  p50/p95/mean latency and tiles/s; a few tiles decoded and compared between the three;
- the ``mbtiles`` process (PNG and JPEG, z12-18) against ``gdal_translate -of MBTILES`` +
  ``gdaladdo`` on the same COG, ``--runs`` times each, alternating which goes first.

Prints the tables and the targets (measured, never asserted); writes them to
docs/benchmarks.md unless --no-docs.
"""

import argparse
import asyncio
import functools
import itertools
import json
import math
import os
import random
import re
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import morecantile
import numpy as np
import psycopg
import rasterio
import shapely
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from rio_tiler.io import Reader

from .memory import RssTimeline
from .orthophoto import Orthophoto, make_orthophoto
from .report import (
    database_versions,
    fmt,
    gdal_bin_version,
    log,
    machine,
    package_versions,
    write_section,
)
from .servers import ROOT, TITILER_PGSTAC_VERSION, Stacks, titiler_pgstac_python
from .uploads import FINAL, TerracatClient, Upload, measure_upload, wait_for_worker

MINZOOM, MAXZOOM = 12, 18
LEVELS = (1, 8)
COLLECTION = "bench-tiles"
ASSET = "data"  # the ingest job's COG asset: Terracat's default, titiler-pgstac needs it named
# What Terracat's reader sets for every asset read; titiler-pgstac gets it in its environment.
GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
FLOOR, TERRACAT, TITILER = "rio-tiler in-process", "Terracat", "titiler-pgstac"
# Terracat's own tile renderer without HTTP (what its MBTiles export runs per tile).
INPROC = "Terracat renderer in-process"
TARGET_OVERHEAD = 0.10
TARGET_VS_TITILER = 1.2
TARGET_EXPORT = 1.5
EXPORT_POLL_S = 0.2
EXPORT_TIMEOUT_S = 3600.0
CROSS_CHECK_TILES = 7
Tile = tuple[int, int, int]  # z, x, y


# -- the tile set ---------------------------------------------------------------------------------
def tile_sets(footprint: dict[str, Any], count: int, seed: int, sets: int) -> list[list[Tile]]:
    """``sets`` lists of ``count`` distinct tiles over MINZOOM..MAXZOOM touching ``footprint``.

    Each zoom gets an equal share of what is left; a zoom with fewer tiles than its share
    gives them all and passes the rest on to the finer zooms. The lists share no tile where
    a zoom has tiles enough for all of them (a server keeping warped or rendered pixels
    would otherwise serve a later pass from memory); the coarse zooms, with a few tiles
    only, repeat theirs. Each list is shuffled; all seeded.
    """
    tms = morecantile.tms.get("WebMercatorQuad")
    shape = shapely.geometry.shape(footprint)
    shapely.prepare(shape)
    rng = random.Random(seed)
    zooms = list(range(MINZOOM, MAXZOOM + 1))
    chosen: list[list[Tile]] = [[] for _ in range(sets)]
    left = count
    for i, z in enumerate(zooms):
        candidates = [
            (t.z, t.x, t.y)
            for t in tms.tiles(*shape.bounds, [z])
            if shape.intersects(shapely.box(*tms.bounds(t)))
        ]
        share = min(left // (len(zooms) - i), len(candidates))
        rng.shuffle(candidates)
        for k in range(sets):
            start = (k * share) % len(candidates) if candidates else 0
            chosen[k] += sorted((candidates * 2)[start : start + share])
        left -= share
    for tiles in chosen:
        rng.shuffle(tiles)
    return chosen


# -- measurements ---------------------------------------------------------------------------------
@dataclass
class Cell:
    """One target at one concurrency over the timed passes (latencies of HTTP 200s only)."""

    target: str
    concurrency: int
    latencies: list[tuple[int, float]] = field(default_factory=list)  # (zoom, seconds)
    seconds: float = 0.0  # wall time of the timed passes
    statuses: Counter[str] = field(default_factory=Counter)
    first_error: str = ""
    bytes: int = 0

    def add(self, zoom: int, seconds: float, status: str, size: int, error: str = "") -> None:
        """Record one tile."""
        self.statuses[status] += 1
        if status == "200":
            self.latencies.append((zoom, seconds))
            self.bytes += size
        elif not self.first_error:
            self.first_error = f"{status}: {error[:300]}"

    def values(self, zoom: int | None = None) -> list[float]:
        """Latencies in ms (of one zoom if given)."""
        return [s * 1000 for z, s in self.latencies if zoom is None or z == zoom]

    def pct(self, p: float, zoom: int | None = None) -> float:
        """Latency percentile in ms (NaN without data)."""
        values = self.values(zoom)
        return float(np.percentile(values, p)) if values else math.nan

    @property
    def mean(self) -> float:
        """Mean latency in ms."""
        values = self.values()
        return statistics.fmean(values) if values else math.nan

    @property
    def ok(self) -> int:
        """Tiles answered 200."""
        return self.statuses["200"]

    @property
    def errors(self) -> int:
        """Tiles not answered 200."""
        return sum(self.statuses.values()) - self.ok

    @property
    def rate(self) -> float:
        """Successful tiles per second of wall time."""
        return self.ok / self.seconds if self.seconds else math.nan


def render_floor(cog: Path, tile: Tile) -> bytes:
    """The floor: rio-tiler's Reader opened for the tile, the tile, PNG (as a server would)."""
    z, x, y = tile
    with rasterio.Env(**GDAL_ENV), Reader(str(cog)) as src:
        image = src.tile(x, y, z)
    return bytes(image.render(img_format="PNG"))


def terracat_renderer(item: dict[str, Any], data_dir: Path) -> Callable[[Tile], bytes]:
    """Terracat's item tile renderer in-process (tiler.render: the endpoint's steps, no HTTP)."""
    from tiler.render import RenderOptions, render_item_tile, tile_layer
    from tiler.settings import TilerSettings

    layer = tile_layer(item, RenderOptions(assets=[ASSET]), "png", 256, data_dir,
                       TilerSettings().max_image_size)  # fmt: skip

    def render(tile: Tile) -> bytes:
        z, x, y = tile
        return render_item_tile(item, z, x, y, layer) or b""  # None: every pixel masked

    return render


def inproc_pass(
    render: Callable[[Tile], bytes], tiles: list[Tile], concurrency: int, cell: Cell | None
) -> None:
    """One pass over the tiles in-process, on ``concurrency`` threads (GDAL releases the GIL)."""

    lock = threading.Lock()

    def one(tile: Tile) -> None:
        started = time.perf_counter()
        try:
            size, status, error = len(render(tile)), "200", ""
        except Exception as exc:  # a failed tile is counted, like an HTTP error
            size, status, error = 0, type(exc).__name__, str(exc)
        if cell is not None:
            with lock:
                cell.add(tile[0], time.perf_counter() - started, status, size, error)

    started = time.perf_counter()
    if concurrency == 1:
        for tile in tiles:
            one(tile)
    else:
        pool = ThreadPoolExecutor(concurrency)
        try:
            list(pool.map(one, tiles))
        finally:  # Ctrl-C: drop the queued tiles instead of rendering them all first
            pool.shutdown(cancel_futures=True)
    if cell is not None:
        cell.seconds += time.perf_counter() - started


async def http_pass(
    base: str, urls: list[tuple[int, str]], concurrency: int, cell: Cell | None
) -> None:
    """One closed-loop pass: ``concurrency`` tasks on one keep-alive client, next URL each."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    counter = itertools.count()
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:

        async def worker() -> None:
            while (i := next(counter)) < len(urls):
                zoom, url = urls[i]
                started = time.perf_counter()
                try:
                    response = await client.get(url)
                    status, size, error = str(response.status_code), len(response.content), ""
                    if response.status_code != 200:
                        error = response.text
                except httpx.HTTPError as exc:
                    status, size, error = type(exc).__name__, 0, str(exc)
                if cell is not None:
                    cell.add(zoom, time.perf_counter() - started, status, size, error)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        if cell is not None:
            cell.seconds += time.perf_counter() - started


def tile_path(collection: str, item: str, tile: Tile) -> str:
    """The item tile URL (relative), the same for both servers."""
    z, x, y = tile
    return (
        f"collections/{collection}/items/{item}/tiles/WebMercatorQuad/{z}/{x}/{y}.png"
        f"?assets={ASSET}"
    )


def measure_tiles(
    inproc: dict[str, Callable[[Tile], bytes]],
    servers: dict[str, str],
    passes: list[list[Tile]],
    collection: str,
    item: str,
    runs: int,
) -> dict[tuple[str, int], Cell]:
    """Every target at every concurrency: a warm-up pass, then ``runs`` timed passes.

    Pass ``k`` of a concurrency level takes its own tile list (``tile_sets``), the same for
    every target.
    """
    targets = [*inproc, *servers]
    cells: dict[tuple[str, int], Cell] = {}
    for turn, c in enumerate(LEVELS):
        for target in targets if turn % 2 == 0 else targets[::-1]:
            cell = Cell(target, c)
            for run in range(runs + 1):
                timed = cell if run else None
                tiles = passes[turn * (runs + 1) + run]
                if target in inproc:
                    inproc_pass(inproc[target], tiles, c, timed)
                else:
                    urls = [(t[0], tile_path(collection, item, t)) for t in tiles]
                    asyncio.run(http_pass(servers[target], urls, c, timed), **_loop())
            cells[(target, c)] = cell
            if not cell.ok:
                raise RuntimeError(f"{target} rendered no tile at c={c}: {cell.first_error}")
            log(
                f"{target:29s} c={c} p50={cell.pct(50):7.1f} ms p95={cell.pct(95):7.1f} ms "
                f"mean={cell.mean:7.1f} ms {cell.rate:6.1f} tiles/s errors={cell.errors}"
                + (f" ({cell.first_error})" if cell.errors else "")
            )
    return cells


def _loop() -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:
        return {}
    return {"loop_factory": uvloop.new_event_loop}


# -- cross-check --------------------------------------------------------------------------------
def _decode(content: bytes) -> np.ndarray:
    with MemoryFile(content) as mem, mem.open() as src:
        return src.read()


def cross_check(
    cog: Path,
    inproc: dict[str, Callable[[Tile], bytes]],
    servers: dict[str, str],
    tiles: list[Tile],
    collection: str,
    item: str,
) -> list[str]:
    """Decode a few tiles from every target and compare them with the floor's."""
    by_zoom = {t[0]: t for t in tiles}
    sample = [by_zoom[z] for z in sorted(by_zoom)][:CROSS_CHECK_TILES]
    lines = []
    for tile in sample:
        floor = render_floor(cog, tile)
        reference = _decode(floor)
        parts = [f"z{tile[0]}/{tile[1]}/{tile[2]}: floor {_shape(reference)} {len(floor)} B"]
        for name, target in [*inproc.items(), *servers.items()]:
            if name == FLOOR:
                continue
            if isinstance(target, str):
                response = httpx.get(target + tile_path(collection, item, tile), timeout=120)
                if response.status_code != 200:
                    parts.append(f"{name} HTTP {response.status_code}")
                    continue
                content = response.content
            else:
                content = target(tile)
            image = _decode(content)
            parts.append(f"{name} {_shape(image)} {len(content)} B, "
                         + _difference(reference, image, content == floor))  # fmt: skip
        lines.append("; ".join(parts))
    return lines


def _shape(image: np.ndarray) -> str:
    return "x".join(str(n) for n in image.shape)


def _difference(a: np.ndarray, b: np.ndarray, identical: bool) -> str:
    if identical:
        return "byte-identical"
    if a.shape != b.shape:
        return "different shape"
    if np.array_equal(a, b):
        return "pixel-identical (other PNG encoder)"
    if a.shape[0] == 4:
        alpha = (a[3] > 0) == (b[3] > 0)
        both = (a[3] > 0) & (b[3] > 0)
        rgb = np.abs(a[:3].astype(np.int16) - b[:3].astype(np.int16))[:, both]
        diff = f"{float(rgb.mean()):.2f}" if rgb.size else "n/a"
        return f"alpha agrees on {alpha.mean():.1%} of pixels, mean |RGB diff| {diff}"
    return f"mean |diff| {float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()):.2f}"


# -- MBTiles export -------------------------------------------------------------------------------
@dataclass
class ExportRun:
    """One export: its time, tile counts per zoom and size."""

    tool: str
    format: str
    seconds: float  # Terracat: job started -> finished; GDAL: translate + addo
    tiles: int
    per_zoom: dict[int, int]
    size: int
    wall: float = math.nan  # Terracat: submit -> finished
    render_s: float = math.nan  # Terracat: the render loop alone (from the job log)
    steps: tuple[float, float] = (math.nan, math.nan)  # GDAL: translate, addo

    @property
    def rate(self) -> float:
        """Tiles per second."""
        return self.tiles / self.seconds if self.seconds else math.nan


def count_tiles(path: Path) -> dict[int, int]:
    """Tiles per zoom of an MBTiles file."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT zoom_level, count(*) FROM tiles GROUP BY zoom_level")
        return {int(z): int(n) for z, n in rows}


def _stamp(job: dict[str, Any], name: str) -> float:
    return datetime.fromisoformat(job[name]).timestamp()


def terracat_export(
    client: TerracatClient, collection: str, item: str, image_format: str, data_dir: Path
) -> ExportRun:
    """POST /processes/mbtiles/execution, follow the job to its end, count its archive."""
    body = {"inputs": {"item": {"collection": collection, "id": item}, "minzoom": MINZOOM,
                       "maxzoom": MAXZOOM, "format": image_format}}  # fmt: skip
    submitted = time.time()
    response = client.http.post(
        "processes/mbtiles/execution", json=body, headers={"Prefer": "respond-async"}
    )
    job = client._ok(response)
    job_id = job["jobID"]
    deadline = time.monotonic() + EXPORT_TIMEOUT_S
    while job["status"] not in FINAL:
        if time.monotonic() > deadline:
            raise RuntimeError(f"export job {job_id} still {job['status']} after the timeout")
        time.sleep(EXPORT_POLL_S)
        job = client.get(f"jobs/{job_id}")
    if job["status"] != "successful":
        raise RuntimeError(f"export job {job_id} {job['status']}: {job.get('error')}")
    archive = client.get(f"jobs/{job_id}/results")["archive"]
    archive = archive.get("value", archive)
    path = data_dir / "exports" / f"{job_id}.mbtiles"
    per_zoom = count_tiles(path)
    render_s = math.nan
    for line in client.get(f"jobs/{job_id}/log").get("lines", []):
        if match := re.search(r"tiles written.* in ([\d.]+) s", str(line)):
            render_s = float(match.group(1))
    path.unlink()
    started, finished = _stamp(job, "started"), _stamp(job, "finished")
    return ExportRun(TERRACAT, image_format, finished - started, int(archive["tiles"]), per_zoom,
                     int(archive["bytes"]), wall=finished - submitted,
                     render_s=render_s)  # fmt: skip


def _timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(cmd)} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started


def gdal_export(cog: Path, image_format: str, work: Path) -> ExportRun:
    """``gdal_translate -of MBTILES`` (the native zoom), then ``gdaladdo`` down to MINZOOM."""
    out = work / f"gdal-{image_format}.mbtiles"
    out.unlink(missing_ok=True)
    translate = _timed(["gdal_translate", "-q", "-of", "MBTILES", "-co",
                        f"TILE_FORMAT={image_format.upper()}", str(cog), str(out)])  # fmt: skip
    native = max(count_tiles(out))
    factors = [str(2**k) for k in range(1, native - MINZOOM + 1)]
    addo = _timed(["gdaladdo", "-q", "-r", "average", str(out), *factors])
    per_zoom = count_tiles(out)
    size = out.stat().st_size
    out.unlink()
    return ExportRun("GDAL", image_format, translate + addo, sum(per_zoom.values()), per_zoom,
                     size, steps=(translate, addo))  # fmt: skip


def compare_exports(
    client: TerracatClient, collection: str, item: str, cog: Path, data_dir: Path, runs: int
) -> list[ExportRun]:
    """Both exporters, both formats, ``runs`` times each, alternating which goes first."""
    results = []
    work = Path(tempfile.mkdtemp(prefix="gdal-mbtiles-", dir=data_dir.parent))
    for image_format in ("png", "jpeg"):
        for run in range(runs):
            order = ["ours", "gdal"] if run % 2 == 0 else ["gdal", "ours"]
            for which in order:
                if which == "ours":
                    done = terracat_export(client, collection, item, image_format, data_dir)
                    log(
                        f"  Terracat {image_format} run {run + 1}: {done.tiles} tiles, job "
                        f"{done.seconds:.1f} s ({done.rate:.1f} tiles/s), render "
                        f"{done.render_s:.1f} s, from submit {done.wall:.1f} s"
                    )
                else:
                    done = gdal_export(cog, image_format, work)
                    log(
                        f"  GDAL {image_format} run {run + 1}: {done.tiles} tiles, "
                        f"{done.seconds:.1f} s ({done.rate:.1f} tiles/s): translate "
                        f"{done.steps[0]:.1f} s + addo {done.steps[1]:.1f} s"
                    )
                results.append(done)
    return results


# -- set-up -------------------------------------------------------------------------------------
def load_pgstac(stacks: Stacks, collection: dict[str, Any], item: dict[str, Any]) -> None:
    """The same collection and item (same asset hrefs) into pgstac, through its SQL API."""
    with psycopg.connect(stacks.pgstac_url, autocommit=True) as conn:
        conn.execute("SELECT pgstac.create_collection(%s::jsonb)", (json.dumps(collection),))
        conn.execute("SELECT pgstac.create_item(%s::jsonb)", (json.dumps(item),))


def titiler_pgstac_versions() -> dict[str, str]:
    """Versions of the packages that matter in titiler-pgstac's venv."""
    names = ["titiler-pgstac", "titiler-core", "rio-tiler", "rasterio", "fastapi", "starlette",
             "uvicorn", "uvloop", "httptools", "psycopg"]  # fmt: skip
    code = (
        "import json, sys; from importlib.metadata import version; "
        "print(json.dumps({n: version(n) for n in sys.argv[1:]}))"
    )
    done = subprocess.run([str(titiler_pgstac_python()), "-c", code, *names],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return dict(json.loads(done.stdout))


def lock_conflicts() -> list[str]:
    """titiler-pgstac's requirements that the project's requirements.lock does not satisfy."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    code = (
        "import json; from importlib.metadata import requires; "
        "print(json.dumps(requires('titiler-pgstac')))"
    )
    done = subprocess.run([str(titiler_pgstac_python()), "-c", code],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        name, _, pinned = line.partition("==")
        if pinned:
            pins[canonicalize_name(name.strip())] = pinned.split(";")[0].strip()
    conflicts = []
    for text in json.loads(done.stdout) or []:
        requirement = Requirement(text)
        if requirement.marker is not None:  # extras (psycopg, telemetry...)
            continue
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned and not requirement.specifier.contains(pinned, prereleases=True):
            conflicts.append(f"{requirement} (lock: {pinned})")
    return conflicts


def cog_description(cog: Path) -> str:
    """Size, blocks, compression and overviews of the ingest job's COG."""
    with rasterio.open(cog) as src:
        overviews = src.overviews(1)
        return (
            f"{src.width:,} x {src.height:,} px, {src.count} bands {src.dtypes[0]}, "
            f"{cog.stat().st_size / 2**20:,.1f} MiB, {src.block_shapes[0][0]} px blocks, "
            f"{src.compression.value if src.compression else 'no'} compression, "
            f"{len(overviews)} overviews ({', '.join(str(o) for o in overviews)}), "
            f"nodata {src.nodata}, {src.crs}"
        )


@dataclass
class Setup:
    """What the measurements need from the running stacks."""

    stacks: Stacks
    client: TerracatClient
    servers: dict[str, str]
    item: dict[str, Any]
    cog: Path
    data_dir: Path
    db: dict[str, str]
    ingest_s: float


def start(args: argparse.Namespace, ortho: Path, stacks: Stacks) -> Setup:
    """Cluster, Terracat, worker, ingest; pgstac and titiler-pgstac unless skipped."""
    with_titiler = not args.skip_titiler_pgstac
    log(f"cluster + migrations in {stacks.tmp}")
    stacks.start_cluster(pgstac=with_titiler)
    data_dir = stacks.tmp / "data"
    env = {"TERRACAT_INGEST_DATA_DIR": str(data_dir)}
    api = stacks.start_terracat(env)
    worker = stacks.start_worker(env)
    wait_for_worker(stacks, worker)
    client = TerracatClient(api.url, stacks.token)
    client.create_collection(COLLECTION)
    log(f"ingesting {ortho.name} over tus")
    timeline = RssTimeline({"api": api.process.pid, "worker": worker.process.pid}).start()
    try:
        up = measure_upload(client, timeline, Upload("orthophoto", "tus", ortho, COLLECTION, True),
                            0.25, args.timeout)  # fmt: skip
    finally:
        timeline.stop()
    if up.searchable != up.searchable:
        raise RuntimeError(f"the ingest did not make an item: {up.outcome} {up.job}")
    ingest_s = up.searchable - up.t0
    item_id = _item_id(ortho)  # a new collection: the id is the file's stem
    item = client.get(f"collections/{COLLECTION}/items/{item_id}")
    href = item["assets"][ASSET]["href"]
    from catalog.storage.local import LocalStorage

    cog = Path(LocalStorage(data_dir).gdal_path(href))
    log(f"item {item_id} searchable after {ingest_s:.1f} s; COG {href}")
    servers = {TERRACAT: api.url}
    db = database_versions(stacks.terracat_url)
    if with_titiler:
        collection = client.get(f"collections/{COLLECTION}")
        load_pgstac(stacks, collection, item)
        db = database_versions(stacks.pgstac_url, pgstac=True)
        log(f"starting titiler-pgstac {TITILER_PGSTAC_VERSION} from its venv")
        servers[TITILER] = stacks.start_titiler_pgstac(dict(GDAL_ENV)).url
    return Setup(stacks, client, servers, item, cog, data_dir, db, ingest_s)


def _item_id(ortho: Path) -> str:
    from catalog.uploads.repository import item_id_from_filename

    return item_id_from_filename(ortho.name)


# -- report -------------------------------------------------------------------------------------
def _repeats(passes: list[list[Tile]]) -> str:
    """Which zooms have tiles in more than one pass (too few tiles for all passes)."""
    seen = Counter(t for tiles in passes for t in set(tiles))
    repeated = Counter(t[0] for t, n in seen.items() if n > 1)
    if not repeated:
        return "no tile is in two passes"
    used = Counter(t[0] for tiles in passes for t in tiles)
    return "tiles in more than one pass: " + ", ".join(
        f"z{z} {n} of {used[z]} uses" for z, n in sorted(repeated.items())
    )


def _zoom_counts(tiles: list[Tile]) -> str:
    counts = Counter(t[0] for t in tiles)
    return ", ".join(f"z{z}: {counts[z]}" for z in sorted(counts))


def tile_tables(cells: dict[tuple[str, int], Cell], targets: list[str]) -> list[str]:
    """Latency and throughput per target and concurrency; p50 per zoom at c=1."""
    rows = [
        "| target | c | p50 ms | p95 ms | mean ms | **tiles/s** | vs floor (p50) "
        "| vs titiler-pgstac (tiles/s) | ok | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for c in LEVELS:
        floor = cells[(FLOOR, c)]
        peer = cells.get((TITILER, c))
        for target in targets:
            cell = cells[(target, c)]
            errors = ", ".join(f"{n}x {s}" for s, n in cell.statuses.items() if s != "200")
            rows.append(
                f"| {target} | {c} | {fmt(cell.pct(50))} | {fmt(cell.pct(95))} "
                f"| {fmt(cell.mean)} | **{fmt(cell.rate)}** "
                f"| {fmt(cell.pct(50) / floor.pct(50), 2)}x "
                f"| {fmt(cell.rate / peer.rate, 2) + 'x' if peer else '-'} "
                f"| {cell.ok} | {errors or '0'} |"
            )
    zooms = sorted({z for cell in cells.values() for z, _ in cell.latencies})
    rows += [
        "",
        "p50 latency (ms) per zoom at concurrency 1:",
        "",
        "| zoom | samples | " + " | ".join(targets) + " |",
        "| ---: | ---: | " + " | ".join("---:" for _ in targets) + " |",
    ]
    for z in zooms:
        n = len(cells[(FLOOR, 1)].values(z))
        rows.append(
            f"| {z} | {n} | " + " | ".join(fmt(cells[(t, 1)].pct(50, z)) for t in targets) + " |"
        )
    return rows


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def export_tables(runs: list[ExportRun]) -> list[str]:
    """Times and rates per tool and format; tiles per zoom."""
    rows = [
        "| tool | format | runs s | best s | median s | tiles | best tiles/s "
        "| **median tiles/s** | MiB |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for image_format in ("png", "jpeg"):
        for tool in (TERRACAT, "GDAL"):
            mine = [r for r in runs if r.tool == tool and r.format == image_format]
            if not mine:
                continue
            seconds = [r.seconds for r in mine]
            rates = [r.rate for r in mine]
            rows.append(
                f"| {tool} | {image_format} | {', '.join(fmt(s) for s in seconds)} "
                f"| {fmt(min(seconds))} | {fmt(_median(seconds))} | {mine[-1].tiles} "
                f"| {fmt(max(rates))} | **{fmt(_median(rates))}** "
                f"| {fmt(mine[-1].size / 2**20)} |"
            )
    ours = [r for r in runs if r.tool == TERRACAT]
    gdal = [r for r in runs if r.tool == "GDAL"]
    rows += [
        "",
        "Terracat's job, per run: " + "; ".join(
            f"{r.format} {fmt(r.seconds)} s (render loop {fmt(r.render_s)} s, from submit "
            f"{fmt(r.wall)} s)" for r in ours
        ),
        "",
        "GDAL, per run: " + "; ".join(
            f"{r.format} translate {fmt(r.steps[0])} s + gdaladdo {fmt(r.steps[1])} s"
            for r in gdal
        ),
        "",
        "Tiles per zoom (last run of each):",
        "",
    ]  # fmt: skip
    last = {(r.tool, r.format): r for r in runs}
    keys = sorted(last, key=lambda k: (k[1] != "png", k[0] != TERRACAT))
    zooms = sorted({z for r in last.values() for z in r.per_zoom})
    rows += [
        "| zoom | " + " | ".join(f"{tool} {f}" for tool, f in keys) + " |",
        "| ---: | " + " | ".join("---:" for _ in keys) + " |",
    ]
    for z in zooms:
        rows.append(f"| {z} | " + " | ".join(str(last[k].per_zoom.get(z, 0)) for k in keys) + " |")
    rows += [
        "",
        "Terracat writes the tiles touching the item's footprint and leaves out fully masked "
        "ones; GDAL writes the tiles of the raster's extent and leaves out fully transparent "
        "ones, and gdaladdo stops at the first level that fits in one tile. Rendering differs "
        "too: GDAL warps with bilinear resampling and writes JPEG at quality 75 (its MBTiles "
        "defaults); Terracat renders as its tile endpoint does (nearest, titiler's JPEG "
        "quality 85).",
        "",
    ]
    for (tool, image_format), done in sorted(last.items()):
        missing = [z for z in range(MINZOOM, MAXZOOM + 1) if not done.per_zoom.get(z)]
        if missing:
            rows.append(
                f"- {tool} {image_format} has no tile at z"
                + ", z".join(str(z) for z in missing)
                + (" (its extent fits in one tile a zoom above)" if tool == "GDAL" else "")
            )
    return rows


def targets(cells: dict[tuple[str, int], Cell], exports: list[ExportRun]) -> list[str]:
    """Each target of the issue with the measured ratio and whether it is met."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    rows = ["| target | measured | |", "| --- | --- | --- |"]
    floor, ours = cells[(FLOOR, 1)], cells[(TERRACAT, 1)]
    p50 = ours.pct(50) / floor.pct(50) - 1
    mean = ours.mean / floor.mean - 1
    rows.append(
        f"| HTTP overhead per tile at c=1 <= {TARGET_OVERHEAD:.0%} over in-process rio-tiler "
        f"| p50 {p50:+.1%} ({fmt(ours.pct(50))} vs {fmt(floor.pct(50))} ms), mean {mean:+.1%} "
        f"| {verdict(p50 <= TARGET_OVERHEAD)} (p50) |"
    )
    http = ours.pct(50) / cells[(INPROC, 1)].pct(50) - 1
    rows.append(
        f"| (reference) HTTP alone: Terracat over its own renderer in-process at c=1 "
        f"| p50 {http:+.1%} ({fmt(ours.pct(50))} vs {fmt(cells[(INPROC, 1)].pct(50))} ms) | |"
    )
    if (TITILER, 8) in cells:
        mine, peer = cells[(TERRACAT, 8)], cells[(TITILER, 8)]
        ratio = mine.rate / peer.rate
        rows.append(
            f"| tiles/s at c=8 >= {TARGET_VS_TITILER}x titiler-pgstac | {ratio:.2f}x "
            f"({fmt(mine.rate)} vs {fmt(peer.rate)} tiles/s) "
            f"| {verdict(ratio >= TARGET_VS_TITILER)} |"
        )
    else:
        rows.append(f"| tiles/s at c=8 >= {TARGET_VS_TITILER}x titiler-pgstac | not measured | |")
    for image_format in ("png", "jpeg"):
        mine_rates = [r.rate for r in exports if r.tool == TERRACAT and r.format == image_format]
        gdal_rates = [r.rate for r in exports if r.tool == "GDAL" and r.format == image_format]
        name = f"MBTiles export {image_format.upper()} tiles/s >= {TARGET_EXPORT}x GDAL"
        if not (mine_rates and gdal_rates):
            rows.append(f"| {name} | not measured | |")
            continue
        ratio = _median(mine_rates) / _median(gdal_rates)
        best = max(mine_rates) / max(gdal_rates)
        rows.append(
            f"| {name} | {ratio:.2f}x median ({fmt(_median(mine_rates))} vs "
            f"{fmt(_median(gdal_rates))} tiles/s), {best:.2f}x best "
            f"| {verdict(ratio >= TARGET_EXPORT)} (median) |"
        )
    return rows


def report(
    args: argparse.Namespace,
    ortho: Orthophoto,
    setup: Setup,
    passes: list[list[Tile]],
    cells: dict[tuple[str, int], Cell],
    checks: list[str],
    exports: list[ExportRun],
    cog_text: str,
    peer: dict[str, str] | None,
    conflicts: list[str] | None,
) -> list[str]:
    """The markdown section."""
    command = "python -m bench.tiles " + shlex.join(sys.argv[1:])
    ours = package_versions(["terracat", "titiler-core", "rio-tiler", "rasterio", "fastapi",
                             "starlette", "uvicorn", "uvloop", "httptools", "httpx"])  # fmt: skip
    ours["GDAL (in the rasterio wheel)"] = rasterio.__gdal_version__
    ours["GDAL (Debian gdal-bin)"] = gdal_bin_version() or "not installed"
    targets_list = [FLOOR, INPROC, *setup.servers]
    lines = [
        f"## Tiles: {ortho.size:,} x {ortho.size:,} px COG",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}",
        f"- Machine: {machine()}",
        f"- Command: `{command}`",
        "- Versions (project venv): " + ", ".join(f"{k} {v}" for k, v in ours.items()),
        "- Database: " + ", ".join(f"{k} {v}" for k, v in setup.db.items()),
        f"- Input: bench.ingest's synthetic orthophoto ({ortho.description}), uploaded over tus "
        f"and ingested by the worker ({fmt(setup.ingest_s)} s to a searchable item). The "
        f"item's COG, read by all three: {cog_text}.",
        f"- Servers on 127.0.0.1, each uvicorn `--workers {args.workers} --loop uvloop --http "
        "httptools`: Terracat (`server.app:create_app`, default settings, plus one "
        "`terracat worker` for the ingest and the exports)"
        + (
            f" and titiler-pgstac (`titiler.pgstac.main:app`, default settings, on a pgstac "
            "database in the same private PostgreSQL cluster holding the same collection and "
            "item JSON as Terracat serves them, loaded with `pgstac.create_collection` / "
            f"`pgstac.create_item`; `{' '.join(f'{k}={v}' for k, v in GDAL_ENV.items())}` "
            "in its environment, as Terracat's reader sets for every asset)."
            if peer is not None
            else "."
        ),
    ]
    if peer is not None:
        lines.append(
            "- titiler-pgstac runs from its own venv, var/titiler-pgstac-venv (made on first "
            "use): " + ", ".join(f"{k} {v}" for k, v in peer.items()) + ". It does not "
            "install into the project venv under requirements.lock: "
            + ("; ".join(conflicts) if conflicts else "no conflict found in its requirements")
            + "."
        )
    lines += [
        f"- Tile sets: each pass (the warm-up and the {args.runs} timed ones, at each "
        f"concurrency) takes its own {len(passes[0])} distinct WebMercatorQuad tiles touching "
        f"the item's footprint, as many per zoom as the zoom has up to an equal share: "
        f"{_zoom_counts(passes[0])}; {len({t for p in passes for t in p})} distinct tiles over "
        f"the {len(passes)} passes (seed {args.seed}), so that a cache of warped or rendered "
        f"pixels serves few tiles of a timed pass; {_repeats(passes)}. Shuffled; the same "
        "lists, in the same order, for all three. Both servers get "
        f"`/collections/{{cid}}/items/{{iid}}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png"
        f"?assets={ASSET}` (256 px PNG, no other option); the floor runs "
        "`rio_tiler.io.Reader(cog).tile(x, y, z)` and `ImageData.render(img_format='PNG')` per "
        "tile, opening the COG for each tile as titiler-pgstac does (Terracat keeps files "
        "open between reads: `tiler.reader.DATASETS`). "
        f"{INPROC}: `tiler.render.render_item_tile` with the endpoint's options (`ItemReader`, "
        "`tiler.factory.render`; what the export runs per tile): the tile endpoint without "
        "HTTP. The floor and titiler-pgstac read a tile through a VRT made for it at the "
        "data's resolution, then resample it to 256 px; Terracat reads it as a window of one "
        "warped VRT per zoom at the tile's resolution (`tiler.reader.TileGrids`): nearest "
        "neighbours on two grids, so some pixels differ (the cross-check below says how "
        "much). The floor and titiler-pgstac encode PNG with GDAL's driver (zlib), Terracat "
        "with imagecodecs' libpng on zlib-ng, same level 6.",
        "",
        "### Item tiles",
        "",
        f"Closed loop: c concurrent workers (HTTP: tasks sharing one keep-alive httpx client "
        f"per pass; floor: threads), each taking the next tile of the list, one warm-up pass "
        f"then {args.runs} timed pass(es) per cell, targets one after the other (order "
        "reversed at c=8). Latencies of HTTP 200s only; tiles/s = tiles / wall time of the "
        "passes. The benchmark's client runs on the same 2 cores as the servers.",
        "",
        *tile_tables(cells, targets_list),
        "",
        "### Same tiles from each (decoded, compared with the floor's)",
        "",
        *[f"- {line}" for line in checks],
        "",
    ]
    if exports:
        lines += [
            "### MBTiles export against GDAL",
            "",
            f'Terracat: `POST /processes/mbtiles/execution` with `{{"item": ..., "minzoom": '
            f'{MINZOOM}, "maxzoom": {MAXZOOM}, "format": "png"|"jpeg"}}`; seconds = '
            "the job's `started` to `finished` (includes spawning its child process and "
            "preparing; the render loop alone is in its log), tiles = its archive's. GDAL "
            "(Debian gdal-bin): `gdal_translate -of MBTILES -co TILE_FORMAT=PNG|JPEG cog "
            "out.mbtiles` (native zoom) then `gdaladdo -r average out.mbtiles 2 4 ...` down to "
            f"z{MINZOOM}, seconds = both processes, tiles = `SELECT count(*) FROM tiles`. "
            f"{args.runs} run(s) each, alternating which goes first. tiles/s = tiles / seconds "
            "of each tool (their tile counts differ: each leaves out tiles it finds empty). "
            "Both with their defaults: Terracat's export renders on one thread per CPU "
            "(`TERRACAT_EXPORT_RENDERERS=0`), GDAL's tools run with GDAL's default threading.",
            "",
            *export_tables(exports),
            "",
        ]
    lines += ["### Targets", "", *targets(cells, exports), ""]
    return lines


def write_docs(path: Path, size: int, section: list[str]) -> None:
    """Replace (or append) this size's tiles section in docs/benchmarks.md."""
    write_section(path, f"tiles={size}", section)


def run(args: argparse.Namespace) -> list[str]:
    """The whole benchmark; the markdown section."""
    ortho = Orthophoto(args.size)
    started = time.perf_counter()
    path = make_orthophoto(args.data, ortho)
    log(f"orthophoto ready in {time.perf_counter() - started:.1f} s: {path}")
    os.sync()
    peer = conflicts = None
    if not args.skip_titiler_pgstac:
        peer = titiler_pgstac_versions()
        conflicts = lock_conflicts()
    stacks = Stacks(workers=args.workers)
    try:
        setup = start(args, path, stacks)
        # one list per pass and concurrency level, and one more for the cross-check
        passes = tile_sets(setup.item["geometry"], args.tiles, args.seed,
                           len(LEVELS) * (args.runs + 1) + 1)  # fmt: skip
        tiles = passes.pop()
        distinct = len({t for tiles_ in passes for t in tiles_})
        log(f"{len(passes)} passes of {len(tiles)} tiles ({_zoom_counts(tiles)}), "
            f"{distinct} distinct")  # fmt: skip
        inproc = {
            FLOOR: functools.partial(render_floor, setup.cog),
            INPROC: terracat_renderer(setup.item, setup.data_dir),
        }
        checks = cross_check(setup.cog, inproc, setup.servers, tiles, COLLECTION,
                             setup.item["id"])  # fmt: skip
        for line in checks:
            log(f"cross-check {line}")
        cells = measure_tiles(inproc, setup.servers, passes, COLLECTION, setup.item["id"],
                              args.runs)  # fmt: skip
        exports: list[ExportRun] = []
        if not args.skip_export:
            if TITILER in setup.servers:
                stacks.servers["titiler-pgstac"].stop()  # idle, but out of the export's way
            log(f"MBTiles export against GDAL, {args.runs} run(s) each")
            exports = compare_exports(setup.client, COLLECTION, setup.item["id"], setup.cog,
                                      setup.data_dir, args.runs)  # fmt: skip
        cog_text = cog_description(setup.cog)
        setup.client.http.close()
        return report(args, ortho, setup, passes, cells, checks, exports, cog_text, peer,
                      conflicts)  # fmt: skip
    finally:
        stacks.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="orthophoto width = height")
    parser.add_argument("--tiles", type=int, default=300, help="tiles in the set")
    parser.add_argument("--seed", type=int, default=42, help="seed of the tile set")
    parser.add_argument("--runs", type=int, default=2,
                        help="timed passes per tile cell; runs of each export")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per server")
    parser.add_argument("--timeout", type=float, default=600.0, help="ingest job timeout (s)")
    parser.add_argument("--skip-titiler-pgstac", action="store_true")
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT / "var" / "bench" / "ingest",
        help="cache folder of the orthophoto (shared with bench.ingest)",
    )
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args(argv)
    # PNG tiles have no georeferencing: rasterio says so for each one it encodes or decodes.
    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the servers and the cluster.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.perf_counter()
    section = run(args)
    print("\n".join(section))
    log(f"done in {time.perf_counter() - started:.0f} s")
    if not args.no_docs:
        write_docs(args.docs, args.size, section)
        log(f"written to {args.docs}")


if __name__ == "__main__":
    main()
