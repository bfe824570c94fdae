"""Ingest benchmark: upload to searchable item, server memory while uploading, COG step vs GDAL.

    python -m bench.ingest --size 10000 --multipart-gb 2

Makes (once, cached) a synthetic drone orthomosaic the way photogrammetry software writes it,
starts a private PostgreSQL cluster, Terracat under uvicorn and one ``terracat worker``, then:

- uploads the orthophoto over tus (tuspy, the uploader of ``terracat ingest``) and over
  multipart (httpx streaming the file) and times each until ``GET /search`` returns its item,
  split into upload, queue wait, ingest job and the rest;
- samples the resident memory of the API's and the worker's process trees every 50 ms from
  /proc during every upload, including one big upload per transport of random bytes (refused
  afterwards as not a raster: only the memory while receiving it matters);
- times ``catalog.ingest.cog.to_cog`` against ``gdal_translate -of COG`` on the same file.

Prints the tables; writes them to docs/benchmarks.md unless --no-docs. Nothing is asserted.
"""

import argparse
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from rasterio.windows import Window

from .report import database_versions, fmt, log, machine, package_versions, write_section
from .servers import ROOT, Server, Stacks

# -- the orthophoto -------------------------------------------------------------------------------
GENERATOR_VERSION = 1  # bump when the pixels change: it is part of the cache key
EPSG = 32633  # UTM 33N
PIXEL_M = 0.5
ORIGIN = (480_000.0, 5_310_000.0)  # upper-left corner, Lower Austria
TILE = 256
STRIP = 64  # rows computed at once (~250 MB of temporaries); written a row of tiles at a time
FIELD_W, FIELD_H = 700, 460  # parcel grid in px (350 m x 230 m), warped
# Summer crops seen from above: ripe cereal, green cereal, maize, meadow, bare soil, stubble.
PALETTE = np.array(
    [
        (196, 172, 112),
        (104, 132, 62),
        (72, 102, 46),
        (122, 148, 78),
        (138, 108, 80),
        (176, 152, 118),
        (182, 166, 104),
        (150, 160, 90),
    ],
    dtype=np.float32,
)
TREE = np.array((46, 74, 40), dtype=np.float32)
TRACK = np.array((158, 142, 116), dtype=np.float32)
ASPHALT = np.array((120, 119, 115), dtype=np.float32)
# Roads: (x, y) of a point in units of the raster size, direction in degrees, width in px.
ROADS = [((0.30, 0.0), 78.0, 8.0), ((0.0, 0.62), -8.0, 7.0), ((0.75, 0.0), 101.0, 6.0)]


@dataclass(frozen=True)
class Orthophoto:
    """Parameters of the synthetic orthomosaic; they name its cache file."""

    size: int = 10_000
    seed: int = 7
    edge: str = "nodata"  # "nodata": RGB with nodata 0; "alpha": RGBA

    @property
    def filename(self) -> str:
        """Cache file name: every parameter and the generator version."""
        return (
            f"ortho-{self.size}px-seed{self.seed}-{self.edge}-lzw-tiled{TILE}"
            f"-v{GENERATOR_VERSION}.tif"
        )

    @property
    def description(self) -> str:
        """One line for the report."""
        bands = "3-band RGB uint8, nodata 0" if self.edge == "nodata" else "RGBA uint8 (alpha)"
        return (
            f"{self.size:,} x {self.size:,} px {bands}, {PIXEL_M} m pixels, EPSG:{EPSG}, "
            f"GeoTIFF tiled {TILE} x {TILE}, LZW without predictor, pixel-interleaved, "
            "no overviews"
        )


class _Noise:
    """Smooth value noise: seeded random values on a grid of ``cell`` px, interpolated."""

    MARGIN = 4  # grid cells beyond each edge (warped coordinates reach past the raster)

    def __init__(self, rng: np.random.Generator, size: int, cell: float) -> None:
        self.cell = cell
        n = int(size / cell) + 2 * self.MARGIN + 2
        self.values = rng.random((n, n), dtype=np.float32)

    def __call__(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        gy = y / np.float32(self.cell) + self.MARGIN
        gx = x / np.float32(self.cell) + self.MARGIN
        last = self.values.shape[0] - 2
        iy = np.clip(np.floor(gy), 0, last).astype(np.intp)
        ix = np.clip(np.floor(gx), 0, last).astype(np.intp)
        fy, fx = np.clip(gy - iy, 0, 1), np.clip(gx - ix, 0, 1)
        fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)
        g = self.values
        top = g[iy, ix] + (g[iy, ix + 1] - g[iy, ix]) * fx
        bottom = g[iy + 1, ix] + (g[iy + 1, ix + 1] - g[iy + 1, ix]) * fx
        out: np.ndarray = top + (bottom - top) * fy
        return out

    def grid(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The noise on the rows ``y`` x columns ``x`` (1-D): interpolate along x once per
        grid row, then along y (much cheaper than ``__call__`` on full 2-D coordinates)."""
        gy = y / np.float32(self.cell) + self.MARGIN
        gx = x / np.float32(self.cell) + self.MARGIN
        last = self.values.shape[0] - 2
        iy = np.clip(np.floor(gy), 0, last).astype(np.intp)
        ix = np.clip(np.floor(gx), 0, last).astype(np.intp)
        fy, fx = np.clip(gy - iy, 0, 1), np.clip(gx - ix, 0, 1)
        fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)
        lo = int(iy.min())
        rows = self.values[lo : int(iy.max()) + 2]
        along = rows[:, ix] + (rows[:, ix + 1] - rows[:, ix]) * fx
        top, bottom = along[iy - lo], along[iy - lo + 1]
        out: np.ndarray = top + (bottom - top) * fy[:, None]
        return out


class _Scene:
    """Fields, tracks, hedges, woods and roads as functions of the pixel position."""

    def __init__(self, ortho: Orthophoto) -> None:
        rng = np.random.default_rng(ortho.seed)
        n = ortho.size
        self.size = n
        self.seed = ortho.seed
        noise = {cell: _Noise(rng, n, cell) for cell in (2048, 512, 96, 40, 14, 5)}
        self.noise = noise
        self.warp = (_Noise(rng, n, 900), _Noise(rng, n, 900))
        self.edge_noise = _Noise(rng, n, 300)
        nx, ny = n // FIELD_W + 8, n // FIELD_H + 8
        self.parcel_colour = PALETTE[rng.integers(0, len(PALETTE), (nx, ny))] + rng.normal(
            0, 7, (nx, ny, 3)
        ).astype(np.float32)
        angle = rng.uniform(0, np.pi, (nx, ny)).astype(np.float32)
        self.parcel_cos, self.parcel_sin = np.cos(angle), np.sin(angle)
        self.parcel_period = rng.uniform(5, 12, (nx, ny)).astype(np.float32)
        self.parcel_wood = rng.random((nx, ny)) < 0.08  # a few parcels are woods

    def strip(self, row: int, rows: int) -> np.ndarray:
        """Bands x rows x size uint8 pixels of rows ``row`` to ``row + rows``; 0 outside."""
        n = self.size
        y1, x1 = np.arange(row, row + rows, dtype=np.float32), np.arange(n, dtype=np.float32)
        y, x = y1[:, None], x1[None, :]
        y2 = np.broadcast_to(y, (rows, n))
        x2 = np.broadcast_to(x, (rows, n))
        # Parcels: a grid bent by low-frequency noise, so boundaries are long gentle curves.
        wx = x2 + 320 * (self.warp[0](y2, x2) - 0.5)
        wy = y2 + 320 * (self.warp[1](y2, x2) - 0.5)
        px, py = np.floor(wx / FIELD_W), np.floor(wy / FIELD_H)
        dx, dy = wx - px * FIELD_W, wy - py * FIELD_H
        border = np.minimum(np.minimum(dx, FIELD_W - dx), np.minimum(dy, FIELD_H - dy))
        pi, pj = px.astype(np.intp) + 4, py.astype(np.intp) + 4
        colour = self.parcel_colour[pi, pj]  # rows x n x 3
        # Texture inside a parcel: soil moisture, crop density, tractor lines.
        n512, n96, n40 = (self.noise[c].grid(y1, x1) for c in (512, 96, 40))
        along = x2 * self.parcel_cos[pi, pj] + y2 * self.parcel_sin[pi, pj]
        lines = np.sin(along * np.float32(2 * np.pi) / self.parcel_period[pi, pj])
        n14, n5 = self.noise[14].grid(y1, x1), self.noise[5].grid(y1, x1)
        shade = 0.78 + 0.20 * n512 + 0.12 * n96 + 0.07 * n40 + 0.05 * n5 + 0.035 * lines
        shade *= 0.94 + 0.12 * self.noise[2048].grid(y1, x1)  # exposure drift between photos
        rgb = colour * shade[..., None]
        # Tracks between parcels, hedges along some of them, a few parcels of wood.
        track = border < 3.0
        crowns = (0.55 + 0.7 * n5 + 0.25 * n14)[..., None]
        trees = ((border < 16) & (n14 > 0.5) & (n96 > 0.45)) | (
            self.parcel_wood[pi, pj] & (n14 > 0.28)
        )
        rgb = np.where(track[..., None], TRACK * (0.9 + 0.2 * n40[..., None]), rgb)
        rgb = np.where(trees[..., None], TREE * crowns, rgb)
        bend = 60 * (self.warp[1].grid(y1 * 0.5, x1 * 0.5) - 0.5)  # roads bend gently
        for (ox, oy), heading, width in ROADS:
            t = np.radians(heading)
            dist = np.abs((x2 - ox * n) * np.sin(t) - (y2 - oy * n) * np.cos(t) + bend)
            road = dist < width / 2
            kerb = (dist >= width / 2) & (dist < width / 2 + 1.5)
            rgb = np.where(road[..., None], ASPHALT * (0.95 + 0.1 * n5[..., None]), rgb)
            rgb = np.where(kerb[..., None], rgb * 0.7 + 60, rgb)
        # Sensor noise, seeded per strip so any strip can be remade alone.
        grain = np.random.default_rng([self.seed, row]).standard_normal(rgb.shape, np.float32)
        rgb += 2.5 * grain
        # The ragged outline of a drone survey: valid inside, empty outside.
        cx = cy = n / 2
        theta = np.arctan2(y2 - cy, x2 - cx)
        radius = np.hypot(y2 - cy, x2 - cx)
        outline = 0.46 * n * (
            1 + 0.06 * np.sin(3 * theta + 0.7) + 0.035 * np.sin(5 * theta + 2.1)
        ) + 0.03 * n * (self.edge_noise.grid(y1, x1) - 0.5)
        valid = radius < outline
        out = np.clip(rgb, 1, 255).astype(np.uint8)
        out[~valid] = 0
        return np.moveaxis(out, -1, 0)


def make_orthophoto(folder: Path, ortho: Orthophoto) -> Path:
    """The orthophoto's cache file, made first if missing (strip by strip, low memory)."""
    path = folder / ortho.filename
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    scene = _Scene(ortho)
    n = ortho.size
    alpha = ortho.edge == "alpha"
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": n,
        "height": n,
        "count": 4 if alpha else 3,
        "dtype": "uint8",
        "crs": f"EPSG:{EPSG}",
        "transform": from_origin(*ORIGIN, PIXEL_M, PIXEL_M),
        "tiled": True,
        "blockxsize": TILE,
        "blockysize": TILE,
        "compress": "lzw",
        "interleave": "pixel",
        "photometric": "RGB",
        "bigtiff": "IF_SAFER",
    }
    if alpha:
        profile["alpha"] = "YES"
    else:
        profile["nodata"] = 0
    partial = path.with_suffix(".partial")
    # A small block cache: GDAL writes finished tiles out instead of holding the whole image.
    with rasterio.Env(GDAL_CACHEMAX=64), rasterio.open(partial, "w", **profile) as dst:
        dst.update_tags(
            TIFFTAG_DATETIME="2024:06:14 10:42:17",
            TIFFTAG_SOFTWARE="bench.ingest synthetic orthomosaic",
        )
        if alpha:
            dst.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue,
                               ColorInterp.alpha)  # fmt: skip
        # Whole rows of tiles: GTiff compresses a tile again (and appends it) when it is
        # written in several pieces, which would bloat the file.
        for top in range(0, n, TILE):
            height = min(TILE, n - top)
            pixels = np.empty((profile["count"], height, n), np.uint8)
            for row in range(top, top + height, STRIP):
                rows = min(STRIP, top + height - row)
                pixels[:3, row - top : row - top + rows] = scene.strip(row, rows)
            if alpha:
                pixels[3] = (pixels[:3].max(axis=0) > 0) * np.uint8(255)
            dst.write(pixels, window=Window(0, top, n, height))
    partial.rename(path)
    return path


def make_random_file(folder: Path, gigabytes: float, seed: int = 11) -> Path:
    """A file of ``gigabytes`` GiB of random bytes, cached (GeoTIFF name, not a raster)."""
    size = int(gigabytes * 2**30)
    path = folder / f"random-{size}B-seed{seed}.tif"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    partial = path.with_suffix(".partial")
    with partial.open("wb") as f:
        left = size
        while left:
            n = min(left, 64 << 20)
            f.write(rng.bytes(n))
            left -= n
    partial.rename(path)
    return path


# -- memory of the server processes -------------------------------------------------------------
SAMPLE_S = 0.05


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (children of all its threads, recursively)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *_children(kid)]
    return found


def _status_bytes(pid: int, key: str = "VmRSS") -> int:
    """A memory line of /proc/<pid>/status in bytes: VmRSS now, VmHWM the peak (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _is_job_child(pid: int) -> bool:
    """A job's child process: the worker starts it with multiprocessing's ``spawn``."""
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@dataclass(frozen=True)
class Sample:
    """Resident memory of each watched process tree at one moment."""

    t: float  # time.time()
    rss: dict[str, int]
    job_child: bool  # a job's child process of the worker exists


class RssTimeline:
    """Samples the process trees every ``interval`` s from /proc; answers about time windows."""

    def __init__(self, roots: dict[str, int], interval: float = SAMPLE_S) -> None:
        self.roots = roots
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss, job_child = {}, False
            for name, pid in self.roots.items():
                tree = [pid, *_children(pid)]
                rss[name] = sum(_status_bytes(p) for p in tree)
                # uvicorn's own workers are spawned too: only the worker's children are jobs
                job_child = job_child or (name == "worker" and any(map(_is_job_child, tree[1:])))
            self.samples.append(Sample(time.time(), rss, job_child))

    def start(self) -> "RssTimeline":
        """Start sampling in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join()

    def _window(self, t0: float, t1: float) -> list[Sample]:
        return [s for s in list(self.samples) if t0 <= s.t <= t1]

    def peak(self, name: str, t0: float, t1: float) -> int:
        """Highest resident memory of ``name`` between ``t0`` and ``t1``."""
        return max((s.rss[name] for s in self._window(t0, t1)), default=0)

    def before(self, name: str, t0: float, span: float = 1.0) -> int:
        """Median resident memory of ``name`` in the ``span`` s before ``t0``."""
        values = [s.rss[name] for s in self._window(t0 - span, t0)]
        return int(statistics.median(values)) if values else 0

    def child_span(self, t0: float, t1: float) -> tuple[float, float] | None:
        """First and last sample between ``t0`` and ``t1`` that saw a job's child process."""
        seen = [s.t for s in self._window(t0, t1) if s.job_child]
        return (seen[0], seen[-1]) if seen else None


# -- uploads --------------------------------------------------------------------------------------
BASELINE_S = 1.0  # quiet time before each upload: the "before" memory
JOB_POLL_S = 0.25
FINAL = ("successful", "failed", "dismissed")
COG_START = "converting to a Cloud-Optimized GeoTIFF"


@dataclass
class Upload:
    """One measured upload and what became of it."""

    label: str
    transport: str  # "tus" or "multipart"
    path: Path
    collection: str
    expect_item: bool
    t0: float = math.nan  # first request of the upload
    sent: float = math.nan  # last response of the upload
    searchable: float = math.nan  # GET /search returned the item
    job: dict[str, Any] = field(default_factory=dict)
    file: dict[str, Any] = field(default_factory=dict)
    messages: dict[str, float] = field(default_factory=dict)  # job message -> first seen
    api_before: int = 0
    api_peak: int = 0
    worker_before: int = 0
    worker_peak: int = 0
    child: tuple[float, float] | None = None

    @property
    def size(self) -> int:
        """Bytes sent."""
        return self.path.stat().st_size

    def stamp(self, name: str) -> float:
        """A job timestamp (``started``, ``finished``...) as time.time(), NaN if missing."""
        value = self.job.get(name)
        return datetime.fromisoformat(value).timestamp() if value else math.nan

    @property
    def upload_s(self) -> float:
        """Seconds of the upload itself."""
        return self.sent - self.t0

    @property
    def rate(self) -> float:
        """Upload throughput in MiB/s."""
        return self.size / 2**20 / self.upload_s

    @property
    def cog_s(self) -> float:
        """COG conversion inside the job: from its progress message to the next one seen."""
        names = list(self.messages)
        if COG_START not in names or names.index(COG_START) + 1 == len(names):
            return math.nan
        after = names[names.index(COG_START) + 1]
        return self.messages[after] - self.messages[COG_START]

    def phases(self) -> str:
        """The job's progress messages, each with when it was first seen after ``started``."""
        started = self.stamp("started")
        return ", ".join(f"{name!r} {t - started:+.1f}" for name, t in self.messages.items())

    @property
    def outcome(self) -> str:
        """The file's status, with the error code of a refusal."""
        error = self.file.get("error") or {}
        return " ".join(x for x in (self.file.get("status"), error.get("code")) if x)


class TerracatClient:
    """The few HTTP calls of the benchmark (bearer token on every request)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.http = httpx.Client(base_url=url, headers=self.headers, timeout=60)

    def _ok(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise RuntimeError(f"{response.request.url}: HTTP {response.status_code} "
                               f"{response.text[:500]}")  # fmt: skip
        return dict(response.json()) if response.content else {}

    def create_collection(self, collection_id: str) -> None:
        """A minimal STAC collection."""
        doc = {
            "type": "Collection",
            "stac_version": "1.1.0",
            "id": collection_id,
            "description": f"bench.ingest: {collection_id}",
            "license": "CC-BY-4.0",
            "extent": {
                "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
                "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]},
            },
            "links": [],
        }
        self._ok(self.http.post("collections", json=doc))

    def new_set(self, collection: str) -> str:
        """A new upload set for one file; its id."""
        body = {"collection": collection, "expected_files": 1}
        return str(self._ok(self.http.post("upload_sets", json=body))["id"])

    def send_tus(self, set_id: str, path: Path) -> None:
        """Upload over tus the way ``terracat ingest`` does (tuspy, 8 MiB, SHA-256 chunks)."""
        from tusclient import client as tus_client

        from server.ingest_client import CHUNK, Sha256Uploader

        tus = tus_client.TusClient(self.url + "uploads/", headers=self.headers)
        with path.open("rb") as stream:
            uploader = Sha256Uploader(
                file_stream=stream,
                client=tus,
                chunk_size=CHUNK,
                metadata={"filename": path.name, "upload_set": set_id},
                retries=5,
                retry_delay=2,
                upload_checksum=True,
            )
            uploader.upload()

    def send_multipart(self, set_id: str, path: Path) -> None:
        """One multipart POST; httpx reads the open file in 64 KiB pieces while sending."""
        with path.open("rb") as stream:
            files = {"file": (path.name, stream, "image/tiff")}
            timeout = httpx.Timeout(60, read=600)  # the server fsyncs the file before answering
            self._ok(self.http.post(f"upload_sets/{set_id}/files", files=files, timeout=timeout))

    def first_file(self, set_id: str) -> dict[str, Any]:
        """The (only) file of an upload set."""
        files = self._ok(self.http.get(f"upload_sets/{set_id}"))["files"]
        return dict(files[0]) if files else {}

    def get(self, href: str) -> dict[str, Any]:
        """GET any URL of the API as JSON."""
        return self._ok(self.http.get(href))

    def searchable(self, item_id: str, collection: str) -> bool:
        """Does ``GET /search`` return the item?"""
        params = {"ids": item_id, "collections": collection}
        features = self._ok(self.http.get("search", params=params)).get("features", [])
        return any(f.get("id") == item_id for f in features)


def measure_upload(
    client: TerracatClient, timeline: RssTimeline, up: Upload, poll_s: float, timeout: float
) -> Upload:
    """Upload, then follow the job until the item is searchable (or the file is refused)."""
    from catalog.uploads.repository import item_id_from_filename

    set_id = client.new_set(up.collection)
    time.sleep(BASELINE_S)
    up.t0 = time.time()
    if up.transport == "tus":
        client.send_tus(set_id, up.path)
    else:
        client.send_multipart(set_id, up.path)
    up.sent = time.time()
    record = client.first_file(set_id)
    job_href = next(link["href"] for link in record["links"] if link["rel"] == "monitor")
    item_id = item_id_from_filename(up.path.name)  # a new collection: the id is the stem
    deadline, next_job = up.sent + timeout, 0.0
    while time.time() < deadline:
        now = time.time()
        if now >= next_job:
            up.job = client.get(job_href)
            message = up.job.get("message")
            if message and message not in up.messages:
                up.messages[message] = now
            next_job = now + JOB_POLL_S
            if up.job["status"] in FINAL and not (
                up.expect_item and up.job["status"] == "successful"
            ):
                break
        if up.expect_item and client.searchable(item_id, up.collection):
            up.searchable = time.time()
            break
        time.sleep(poll_s)
    for _ in range(100):  # the job row is final by now, or nearly
        up.job = client.get(job_href)
        if up.job["status"] in FINAL:
            break
        time.sleep(0.1)
    up.file = client.first_file(set_id)
    started, finished = up.stamp("started"), up.stamp("finished")
    up.api_before = timeline.before("api", up.t0)
    up.api_peak = timeline.peak("api", up.t0, up.sent)
    up.worker_before = timeline.before("worker", up.t0)
    up.worker_peak = timeline.peak("worker", started, finished + 0.5)
    up.child = timeline.child_span(started, finished + 0.5)
    return up


def _wait_for_worker(stacks: Stacks, worker: Server, timeout: float = 60.0) -> None:
    """Until the worker LISTENs for jobs (its connection is named ``terracat-worker``)."""
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'terracat-worker'"
    with psycopg.connect(stacks.terracat_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if worker.process.poll() is not None:
                raise RuntimeError(f"the worker exited: {worker.log.read_text()[-2000:]}")
            row = conn.execute(query).fetchone()
            if row and row[0]:
                return
            time.sleep(0.2)
    raise RuntimeError(f"the worker did not start: {worker.log.read_text()[-2000:]}")


def run_uploads(
    args: argparse.Namespace, ortho: Path, big: Path | None
) -> tuple[list[Upload], dict[str, str]]:
    """Start the cluster, API and worker; measure every upload; stop everything."""
    stacks = Stacks(workers=args.workers)
    timeline: RssTimeline | None = None
    try:
        log(f"cluster + migrations in {stacks.tmp}")
        stacks.start_cluster(pgstac=False)
        env = {"TERRACAT_INGEST_DATA_DIR": str(stacks.tmp / "data")}
        api = stacks.start_terracat(env)
        worker = stacks.start_worker(env)
        _wait_for_worker(stacks, worker)
        db_versions = database_versions(stacks.terracat_url)
        client = TerracatClient(api.url, stacks.token)
        for transport in ("tus", "multipart"):
            client.create_collection(f"bench-{transport}")
        timeline = RssTimeline({"api": api.process.pid, "worker": worker.process.pid}).start()
        plan = [Upload("orthophoto", t, ortho, f"bench-{t}", True) for t in ("tus", "multipart")]
        if big is not None:
            label = f"random {args.multipart_gb:g} GiB"
            plan += [Upload(label, t, big, f"bench-{t}", False) for t in ("multipart", "tus")]
        uploads = []
        for up in plan:
            log(f"{up.label} over {up.transport}: {up.size / 2**20:,.0f} MiB")
            measure_upload(client, timeline, up, args.poll, args.timeout)
            uploads.append(up)
            log(
                f"  upload {up.upload_s:.1f} s ({up.rate:.0f} MiB/s), outcome {up.outcome}, "
                f"searchable after {up.searchable - up.t0:.1f} s, API RSS "
                f"{up.api_before / 2**20:.0f} -> {up.api_peak / 2**20:.0f} MiB, worker peak "
                f"{up.worker_peak / 2**20:.0f} MiB; job: {up.phases()}"
            )
        client.http.close()
        return uploads, db_versions
    finally:
        if timeline is not None:
            timeline.stop()
        stacks.close()


# -- COG step against gdal_translate ------------------------------------------------------------
TO_COG = """
import json, sys, time
from pathlib import Path
from catalog.ingest.cog import to_cog
from catalog.ingest.validate import inspect
from catalog.settings import IngestSettings
settings = IngestSettings(data_dir=sys.argv[3])
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
started = time.perf_counter()
info = inspect(src, settings)
checked = time.perf_counter()
to_cog(src, dst, info, settings)
print(json.dumps({"inspect": checked - started, "to_cog": time.perf_counter() - checked}))
"""
GDAL_COG = ["-of", "COG", "-co", "COMPRESS=DEFLATE", "-co", "PREDICTOR=2", "-co",
            "BLOCKSIZE=512", "-co", "OVERVIEWS=AUTO", "-co", "NUM_THREADS=ALL_CPUS"]  # fmt: skip


@dataclass
class CogRuns:
    """Timings of one tool over the runs."""

    name: str
    seconds: list[float] = field(default_factory=list)
    peak_rss: int = 0
    size: int = 0
    inspect_s: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median seconds."""
        return statistics.median(self.seconds) if self.seconds else math.nan


def _run(cmd: list[str], out: Path) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes, VmHWM sampled while it runs) and output of a command."""
    peak = 0
    with out.open("w+") as stdout:
        started = time.perf_counter()
        process = subprocess.Popen(cmd, cwd=ROOT, stdout=stdout, stderr=subprocess.STDOUT)
        done = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.wait(SAMPLE_S):
                peak = max(peak, _status_bytes(process.pid, "VmHWM"))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            process.wait()
        finally:
            wall = time.perf_counter() - started
            done.set()
            watcher.join()
        stdout.seek(0)
        text = stdout.read()
    if process.returncode:
        raise RuntimeError(f"{shlex.join(cmd)} failed: {text[-2000:]}")
    return wall, peak, text


def gdal_bin_version() -> str | None:
    """``GDAL 3.6.2, released ...`` of the gdal_translate on PATH, None without one."""
    if shutil.which("gdal_translate") is None:
        return None
    done = subprocess.run(["gdal_translate", "--version"], capture_output=True, text=True)
    return done.stdout.strip().split(",")[0].removeprefix("GDAL ") or None


def compare_cog(src: Path, runs: int, folder: Path) -> tuple[CogRuns, CogRuns | None]:
    """``to_cog`` (in a fresh process, timed inside) against ``gdal_translate``, alternating."""
    ours = CogRuns("to_cog")
    gdal = CogRuns("gdal_translate") if gdal_bin_version() else None
    work = Path(tempfile.mkdtemp(prefix="cog-", dir=folder))
    try:
        for run in range(runs):
            order = ["ours", "gdal"] if run % 2 == 0 else ["gdal", "ours"]
            for which in order:
                if which == "ours":
                    dst = work / "to_cog.tif"
                    cmd = [sys.executable, "-c", TO_COG, str(src), str(dst), str(work / "data")]
                    _, rss, text = _run(cmd, work / "out.txt")
                    timed = json.loads(text.strip().splitlines()[-1])
                    ours.seconds.append(timed["to_cog"])
                    ours.inspect_s.append(timed["inspect"])
                    ours.peak_rss, ours.size = max(ours.peak_rss, rss), dst.stat().st_size
                    log(f"  to_cog run {run + 1}: {timed['to_cog']:.1f} s")
                elif gdal is not None:
                    dst = work / "gdal.tif"
                    dst.unlink(missing_ok=True)
                    cmd = ["gdal_translate", "-q", *GDAL_COG, str(src), str(dst)]
                    wall, rss, _ = _run(cmd, work / "out.txt")
                    gdal.seconds.append(wall)
                    gdal.peak_rss, gdal.size = max(gdal.peak_rss, rss), dst.stat().st_size
                    log(f"  gdal_translate run {run + 1}: {wall:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ours, gdal


# -- report ---------------------------------------------------------------------------------------
TARGET_RSS_DELTA = 50 * 2**20
TARGET_COG_RATIO = 1.2


def _versions(gdal_bin: str | None, db: dict[str, str]) -> str:
    found = package_versions(["terracat", "rasterio", "rio-cogeo", "numpy", "tuspy", "httpx",
                              "uvicorn", "uvloop", "httptools", "python-multipart"])  # fmt: skip
    found["GDAL (in the rasterio wheel)"] = rasterio.__gdal_version__
    found["GDAL (Debian gdal-bin)"] = gdal_bin or "not installed"
    return ", ".join(f"{k} {v}" for k, v in {**found, **db}.items())


def _mib(value: float) -> str:
    return f"{value / 2**20:,.0f}"


def _valid_fraction(path: Path) -> float:
    with rasterio.open(path) as src:
        scale = max(1, src.width // 1000)
        mask = src.dataset_mask(out_shape=(src.height // scale, src.width // scale))
    return float((mask > 0).mean())


def report(
    args: argparse.Namespace,
    ortho: Orthophoto,
    path: Path,
    uploads: list[Upload],
    cog: tuple[CogRuns, CogRuns | None],
    db_versions: dict[str, str],
) -> list[str]:
    """The markdown section: context, the three tables, targets, what dominates."""
    gdal_bin = gdal_bin_version()
    raw = ortho.size**2 * (4 if ortho.edge == "alpha" else 3)
    command = "python -m bench.ingest " + shlex.join(sys.argv[1:])
    lines = [
        f"## Ingest: {ortho.size:,} x {ortho.size:,} px orthophoto",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}",
        f"- Machine: {machine()}",
        f"- Command: `{command}`",
        f"- Versions: {_versions(gdal_bin, db_versions)}",
        f"- Input: a synthetic drone orthomosaic written the way photogrammetry software writes "
        f"one: {ortho.description}; {path.stat().st_size / 2**20:,.0f} MiB "
        f"({path.stat().st_size / raw:.0%} of the raw pixels), valid area "
        f"{_valid_fraction(path):.0%} inside a ragged survey outline. Fields with tractor "
        "lines, soil and crop texture, tracks, hedges, woods, roads and sensor noise (seeded).",
        f"- Servers on 127.0.0.1: uvicorn `--workers {args.workers} --loop uvloop --http "
        "httptools` (`server.app:create_app`) and one `python -m server.cli worker` (1 job at "
        "a time, each in a spawned child process), private PostgreSQL cluster and ingest "
        "data folder in a temp folder on the same disk; default settings (COG: DEFLATE + "
        "predictor, 512 px blocks, average overviews).",
        "",
        "### Upload to searchable item",
        "",
        "Clock starts at the first request of the upload (the upload set exists already). "
        "**upload**: until the last response (tus: tuspy as in `terracat ingest`, 8 MiB "
        "chunks with SHA-256 checksums; multipart: one POST, httpx streaming the open file). "
        "**queue**: until the job's `started` (0 when the worker claimed the job before the "
        "last response arrived); **job**: `started` to `finished` (GET "
        "/jobs/{id}); **rest**: from `finished` until `GET /search?ids=<item>&collections=<c>` "
        f"returns the item (polled every {args.poll * 1000:.0f} ms). Inside the job: "
        "**before child** (hash when tus, claim, spawn), **child** (the child process seen in "
        f"/proc, sampled every {SAMPLE_S * 1000:.0f} ms: inspect, to_cog, previews, item, "
        "publish), **COG** (from the job's 'converting' progress message to the next one "
        "seen, +/- 1 s: they arrive with the 1 s heartbeat; when 'converted' is missed, it "
        "includes the previews and the item too).",
        "",
        "| transport | MiB | upload s | MiB/s | queue s | job s | rest s | **total s** "
        "| before child s | child s | COG s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for up in (u for u in uploads if u.expect_item):
        started, finished = up.stamp("started"), up.stamp("finished")
        child_s = up.child[1] - up.child[0] if up.child else math.nan
        before_child = up.child[0] - started if up.child else math.nan
        lines.append(
            f"| {up.transport} | {_mib(up.size)} | {fmt(up.upload_s)} | {fmt(up.rate, 0)} "
            f"| {fmt(max(0.0, started - up.sent), 2)} | {fmt(finished - started)} "
            f"| {fmt(up.searchable - finished, 2)} | **{fmt(up.searchable - up.t0)}** "
            f"| {fmt(before_child)} | {fmt(child_s)} | {fmt(up.cog_s, 0)} |"
        )
    lines += [
        "",
        "Progress messages of each job as first seen, in s after its `started` (the heartbeat "
        "stores one a second, so a step shorter than that may not show):",
        "",
    ]
    for up in (u for u in uploads if u.expect_item):
        lines.append(f"- {up.transport}: {up.phases()}")
    lines += [
        "",
        "### Server memory while receiving",
        "",
        "Resident memory (VmRSS) of the uvicorn process tree, from /proc every "
        f"{SAMPLE_S * 1000:.0f} ms: median of the {BASELINE_S:g} s before the upload, peak "
        f"during it. Target: peak - before <= {TARGET_RSS_DELTA / 2**20:.0f} MiB. The random "
        "files are refused by the ingest job afterwards; only the receipt is measured.",
        "",
        "| upload | transport | MiB | upload s | MiB/s | API before MiB | API peak MiB "
        "| **peak - before MiB** | outcome |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for up in uploads:
        lines.append(
            f"| {up.label} | {up.transport} | {_mib(up.size)} | {fmt(up.upload_s)} "
            f"| {fmt(up.rate, 0)} | {_mib(up.api_before)} | {_mib(up.api_peak)} "
            f"| **{_mib(up.api_peak - up.api_before)}** | {up.outcome} |"
        )
    lines += ["", "Worker process tree (worker + the job's child) during each job:", ""]
    for up in uploads:
        lines.append(
            f"- {up.label} over {up.transport}: peak {_mib(up.worker_peak)} MiB "
            f"(idle worker before: {_mib(up.worker_before)} MiB)"
        )
    ours, gdal = cog
    lines += [
        "",
        "### COG step against GDAL",
        "",
        f"Same input, {len(ours.seconds)} runs each, alternating which goes first. "
        "`catalog.ingest.cog.to_cog(src, dst, inspect(src, settings), settings)` in a fresh "
        "Python process, timed inside (rio-cogeo on the GDAL of the rasterio wheel, "
        f"{rasterio.__gdal_version__}; includes its final cog_validate; `inspect` took "
        f"{fmt(statistics.median(ours.inspect_s) if ours.inspect_s else math.nan, 2)} s more), "
        f"against `gdal_translate {' '.join(GDAL_COG)}` of Debian's gdal-bin "
        f"({gdal_bin or 'not installed'}; another GDAL than rasterio's; its COG driver "
        "makes cubic overviews by default, to_cog average ones), timed as a process.",
        "",
        "| tool | runs s | **median s** | peak RSS MiB | output MiB |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    ratio = math.nan
    for runs in (ours, gdal):
        if runs is None:
            continue
        lines.append(
            f"| {runs.name} | {', '.join(fmt(s) for s in runs.seconds)} | **{fmt(runs.median)}** "
            f"| {_mib(runs.peak_rss)} | {fmt(runs.size / 2**20)} |"
        )
    if gdal is not None:
        ratio = ours.median / gdal.median
        lines += ["", f"to_cog / gdal_translate: **{ratio:.2f}x**"]
    lines += ["", "### Targets", ""]
    over = [u for u in uploads if u.api_peak - u.api_before > TARGET_RSS_DELTA]
    lines.append(
        f"- API memory while receiving, peak - before <= {TARGET_RSS_DELTA / 2**20:.0f} MiB: "
        + (
            "met"
            if not over
            else "MISSED ("
            + "; ".join(
                f"{u.label} over {u.transport}: {_mib(u.api_peak - u.api_before)} MiB" for u in over
            )
            + ")"
        )  # fmt: skip
    )
    verdict = "not measured (no gdal_translate)" if gdal is None else (
        "met" if ratio <= TARGET_COG_RATIO else "MISSED"
    )  # fmt: skip
    lines.append(f"- to_cog <= {TARGET_COG_RATIO}x gdal_translate: {verdict} ({fmt(ratio, 2)}x)")
    lines += ["", "### Where the time goes", ""]
    for up in (u for u in uploads if u.expect_item):
        total = up.searchable - up.t0
        job = up.stamp("finished") - up.stamp("started")
        child_s = up.child[1] - up.child[0] if up.child else math.nan
        lines.append(
            f"- {up.transport}: the ingest job is {job / total:.0%} of the {fmt(total)} s "
            f"(upload {up.upload_s / total:.0%}); in the job, the child process ran "
            f"{fmt(child_s)} s, of which to_cog about {fmt(up.cog_s, 0)} s (alone, above: "
            f"{fmt(ours.median)} s)."
        )
    lines.append("")
    return lines


def write_docs(path: Path, size: int, section: list[str]) -> None:
    """Replace (or append) this size's ingest section in docs/benchmarks.md."""
    write_section(path, f"ingest={size}", section)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="orthophoto width = height")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--edge", choices=["nodata", "alpha"], default="nodata")
    parser.add_argument(
        "--multipart-gb", type=float, default=2.0,
        help="GiB of the big upload, sent over multipart and over tus (0: skip)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers")
    parser.add_argument("--cog-runs", type=int, default=3)
    parser.add_argument("--poll", type=float, default=0.1, help="search poll interval (s)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per job (s)")
    parser.add_argument("--data", type=Path, default=ROOT / "var" / "bench" / "ingest",
                        help="cache folder for the generated files")  # fmt: skip
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the servers and the cluster.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    ortho = Orthophoto(args.size, args.seed, args.edge)
    started = time.perf_counter()
    path = make_orthophoto(args.data, ortho)
    log(f"orthophoto ready in {time.perf_counter() - started:.1f} s: {path}")
    big = None
    if args.multipart_gb > 0:
        started = time.perf_counter()
        big = make_random_file(args.data, args.multipart_gb)
        log(f"random file ready in {time.perf_counter() - started:.1f} s: {big}")
    os.sync()  # freshly written files: their writeback must not overlap the measurements
    uploads, db_versions = run_uploads(args, path, big)
    log(f"COG step: to_cog against gdal_translate, {args.cog_runs} runs each")
    cog = compare_cog(path, args.cog_runs, args.data)
    section = report(args, ortho, path, uploads, cog, db_versions)
    print("\n".join(section))
    if not args.no_docs:
        write_docs(args.docs, args.size, section)
        log(f"written to {args.docs}")


if __name__ == "__main__":
    main()
