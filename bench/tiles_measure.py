"""What the tile benchmark times: the tile sets, the targets (in-process renderers and HTTP
servers), a pass over a tile list, every cell of targets x concurrency, and the cross-check.
"""

import asyncio
import itertools
import math
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import morecantile
import numpy as np
import rasterio
import shapely
from rasterio.io import MemoryFile
from rio_tiler.io import Reader

from .report import log
from .runner import run_async

if TYPE_CHECKING:
    from catalog.storage.base import Storage

MINZOOM, MAXZOOM = 12, 18
LEVELS = (1, 8)
COLLECTION = "bench-tiles"
ASSET = "data"  # the ingest job's COG asset: Terracat's default, titiler-pgstac needs it named
# What Terracat's reader sets for every asset read; titiler-pgstac gets it in its environment.
GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
FLOOR, TERRACAT, TITILER = "rio-tiler in-process", "Terracat", "titiler-pgstac"
# Terracat's own tile renderer without HTTP (what its MBTiles export runs per tile).
INPROC = "Terracat renderer in-process"
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
    west, south, east, north = shape.bounds
    for i, z in enumerate(zooms):
        candidates = [
            (t.z, t.x, t.y)
            for t in tms.tiles(west, south, east, north, [z])
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


def terracat_renderer(item: dict[str, Any], storage: "Storage") -> Callable[[Tile], bytes]:
    """Terracat's item tile renderer in-process (tiler.render: the endpoint's steps, no HTTP),
    reading the item's assets from ``storage``."""
    from tiler.dependencies import ReaderOptions
    from tiler.readers.shared import ReaderResources
    from tiler.render import RenderOptions, render_item_tile, tile_layer
    from tiler.settings import TilerSettings

    # files kept open between tiles, as the app keeps them (closed when the benchmark exits)
    reader = ReaderOptions.shared(ReaderResources(storage), TilerSettings().max_image_size)
    layer = tile_layer(item, RenderOptions(assets=[ASSET]), "png", 256, reader)

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
                    run_async(http_pass(servers[target], urls, c, timed))
            cells[(target, c)] = cell
            if not cell.ok:
                raise RuntimeError(f"{target} rendered no tile at c={c}: {cell.first_error}")
            log(
                f"{target:29s} c={c} p50={cell.pct(50):7.1f} ms p95={cell.pct(95):7.1f} ms "
                f"mean={cell.mean:7.1f} ms {cell.rate:6.1f} tiles/s errors={cell.errors}"
                + (f" ({cell.first_error})" if cell.errors else "")
            )
    return cells


# -- cross-check --------------------------------------------------------------------------------
def _decode(content: bytes) -> np.ndarray:
    with MemoryFile(content) as mem, mem.open() as src:
        pixels: np.ndarray = src.read()
    return pixels


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
    sources: list[tuple[str, Callable[[Tile], bytes] | str]]
    sources = [*inproc.items(), *servers.items()]
    lines = []
    for tile in sample:
        floor = render_floor(cog, tile)
        reference = _decode(floor)
        parts = [f"z{tile[0]}/{tile[1]}/{tile[2]}: floor {_shape(reference)} {len(floor)} B"]
        for name, target in sources:
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
