"""PNG encoder against the peer's: the same pixels, encoded by GDAL's PNG driver (titiler's) and
by Terracat's (imagecodecs: libpng on zlib-ng) at each zlib level.

The peer's PNG tiles (titiler-pgstac over HTTP, else the rio-tiler floor, which encodes the
same way) are decoded; the pixels are encoded again by GDAL at titiler's zlevel 6 (which gives
back the peer's bytes: checked) and by ``tiler.encoders`` at each level, checked lossless.
Sizes in bytes, times as CPU time of this process (``time.process_time``, best of a few
rounds): the other processes on the 2 cores disturb it less than wall time.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
import imagecodecs
import numpy as np
from rasterio.io import MemoryFile

from .report import fmt
from .tiles_measure import TERRACAT, TITILER, Cell, Tile, tile_path

PNG_LEVELS = (1, 3, 4, 5, 6, 7, 8, 9)
ROUNDS = 3
GDAL_PNG = "GDAL PNG driver, zlevel 6 (titiler)"


@dataclass
class EncoderRow:
    """One encoder over the tile sample: total bytes and CPU ms per tile."""

    name: str
    level: int
    tiles: int
    bytes: int
    cpu_ms: float
    same_as_peer: int = 0  # tiles whose bytes are the peer's


def _pixels(content: bytes) -> np.ndarray:
    with MemoryFile(content) as mem, mem.open() as src:
        bands: np.ndarray = src.read()
    return np.ascontiguousarray(np.moveaxis(bands, 0, -1))


def _gdal_png(pixels: np.ndarray) -> bytes:
    height, width, count = pixels.shape
    with MemoryFile() as mem:
        with mem.open(driver="PNG", width=width, height=height, count=count,
                      dtype=str(pixels.dtype), zlevel=6) as dst:  # fmt: skip
            dst.write(np.moveaxis(pixels, -1, 0))
        return bytes(mem.read())


def _timed(encode: Callable[[np.ndarray], bytes], images: Sequence[np.ndarray]) -> tuple[
    list[bytes], float
]:  # fmt: skip
    best, out = float("inf"), []
    for _ in range(ROUNDS):
        started = time.process_time()
        out = [encode(image) for image in images]
        best = min(best, time.process_time() - started)
    return out, 1000 * best / max(len(images), 1)


def peer_pngs(
    source: Callable[[Tile], bytes] | str, tiles: Sequence[Tile], collection: str, item: str
) -> list[bytes]:
    """The peer's PNG for each tile (an HTTP base URL, or an in-process renderer)."""
    found = []
    with httpx.Client(timeout=120) as http:
        for tile in tiles:
            if isinstance(source, str):
                response = http.get(source + tile_path(collection, item, tile))
                if response.status_code == 200:
                    found.append(response.content)
            else:
                found.append(source(tile))
    return found


def compare_png_encoders(pngs: Sequence[bytes]) -> list[EncoderRow]:
    """GDAL at titiler's level and ours at each level on the pixels of ``pngs``."""
    images = [_pixels(content) for content in pngs]
    gdal, gdal_ms = _timed(_gdal_png, images)
    same = sum(a == b for a, b in zip(gdal, pngs, strict=True))
    rows = [EncoderRow(GDAL_PNG, 6, len(images), sum(map(len, gdal)), gdal_ms, same)]
    for level in PNG_LEVELS:

        def ours(image: np.ndarray, level: int = level) -> bytes:
            return bytes(imagecodecs.png_encode(image, level=level))

        encoded, ms = _timed(ours, images)
        for image, content in zip(images, encoded, strict=True):
            if not np.array_equal(imagecodecs.png_decode(content), image):
                raise RuntimeError(f"PNG level {level} is not lossless")
        rows.append(EncoderRow(f"Terracat (imagecodecs) level {level}", level, len(images),
                               sum(map(len, encoded)), ms))  # fmt: skip
    return rows


def png_section(
    rows: list[EncoderRow], peer: str, default_level: int, cells: dict[tuple[str, int], Cell]
) -> list[str]:
    """The markdown of the encoder comparison and of the tiles as served."""
    if not rows:
        return []
    reference = rows[0]
    lines = [
        "### PNG encoder: the same pixels",
        "",
        f"The {peer}'s PNG tiles of the cross-check's tile list ({reference.tiles} tiles; "
        f"{reference.same_as_peer} byte-identical when GDAL encodes their decoded pixels "
        "again), decoded and encoded again: by GDAL's PNG driver at titiler's zlevel 6, and "
        "by Terracat's encoder (imagecodecs: libpng on zlib-ng) at each zlib level "
        "(`TERRACAT_TILER_PNG_LEVEL`, "
        f"default {default_level}), each checked lossless. CPU ms of the encoding alone, best "
        f"of {ROUNDS} rounds.",
        "",
        "| encoder | KiB per tile | vs GDAL (titiler) | CPU ms per tile | vs GDAL |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        default = row.level == default_level and row is not reference
        name = f"**{row.name}** (default)" if default else row.name
        lines.append(
            f"| {name} | {fmt(row.bytes / max(row.tiles, 1) / 1024)} "
            f"| {row.bytes / reference.bytes - 1:+.1%} | {fmt(row.cpu_ms, 2)} "
            f"| {row.cpu_ms / reference.cpu_ms:.2f}x |"
        )
    served = [(name, cells[(name, 1)]) for name in (TERRACAT, TITILER) if (name, 1) in cells]
    if len(served) == 2:
        (_, ours), (_, theirs) = served
        lines += [
            "",
            f"As served (the timed passes at c=1, the same tile lists): Terracat "
            f"{fmt(ours.bytes / max(ours.ok, 1) / 1024)} KiB per tile, titiler-pgstac "
            f"{fmt(theirs.bytes / max(theirs.ok, 1) / 1024)} KiB "
            f"({ours.bytes / max(ours.ok, 1) / (theirs.bytes / max(theirs.ok, 1)) - 1:+.1%}): "
            "the encoder's share is in the table above; the rest is the pixels themselves "
            "(Terracat reads each tile at its own resolution, titiler-pgstac from the overview "
            "GDAL picks, then resamples: see the cross-check).",
        ]
    return [*lines, ""]
