"""The ingest input: a synthetic drone orthomosaic written the way photogrammetry software writes
one, and a big file of random bytes. Both are made once and cached under their parameters.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from rasterio.windows import Window

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

    def _cells(
        self, y: np.ndarray, x: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Grid cell of each coordinate and the smoothstep weights inside it: iy, ix, fy, fx."""
        gy = y / np.float32(self.cell) + self.MARGIN
        gx = x / np.float32(self.cell) + self.MARGIN
        last = self.values.shape[0] - 2
        iy = np.clip(np.floor(gy), 0, last).astype(np.intp)
        ix = np.clip(np.floor(gx), 0, last).astype(np.intp)
        fy, fx = np.clip(gy - iy, 0, 1), np.clip(gx - ix, 0, 1)
        return iy, ix, fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)

    def __call__(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        iy, ix, fy, fx = self._cells(y, x)
        g = self.values
        top = g[iy, ix] + (g[iy, ix + 1] - g[iy, ix]) * fx
        bottom = g[iy + 1, ix] + (g[iy + 1, ix + 1] - g[iy + 1, ix]) * fx
        out: np.ndarray = top + (bottom - top) * fy
        return out

    def grid(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The noise on the rows ``y`` x columns ``x`` (1-D): interpolate along x once per
        grid row, then along y (much cheaper than ``__call__`` on full 2-D coordinates)."""
        iy, ix, fy, fx = self._cells(y, x)
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
