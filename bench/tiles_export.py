"""The MBTiles export against GDAL: Terracat's ``mbtiles`` process and ``gdal_translate -of
MBTILES`` + ``gdaladdo`` on the same COG, both formats, alternating which goes first; JPEG at
the same quality for both (``quality`` input, ``-co QUALITY``).
"""

import math
import re
import shlex
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .report import log
from .tiles_measure import MAXZOOM, MINZOOM, TERRACAT
from .uploads import FINAL, TerracatClient, job_stamp

EXPORT_POLL_S = 0.2
EXPORT_TIMEOUT_S = 3600.0


@dataclass
class ExportRun:
    """One export: its time, tile counts per zoom and size."""

    tool: str
    format: str
    seconds: float  # Terracat: job started -> finished; GDAL: translate + addo
    tiles: int
    per_zoom: dict[int, int]
    size: int
    quality: int | None = None  # JPEG
    tile_bytes: dict[tuple[int, int, int], int] = field(default_factory=dict)  # z, x, row
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


def tile_sizes(path: Path) -> dict[tuple[int, int, int], int]:
    """Bytes of each tile of an MBTiles file by zoom, column and row."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT zoom_level, tile_column, tile_row, length(tile_data) FROM tiles"
        )
        return {(int(z), int(x), int(y)): int(n) for z, x, y, n in rows}


def terracat_export(
    client: TerracatClient,
    collection: str,
    item: str,
    image_format: str,
    data_dir: Path,
    quality: int | None = None,
) -> ExportRun:
    """POST /processes/mbtiles/execution, follow the job to its end, count its archive."""
    inputs = {"item": {"collection": collection, "id": item}, "minzoom": MINZOOM,
              "maxzoom": MAXZOOM, "format": image_format}  # fmt: skip
    if quality is not None:
        inputs["quality"] = quality
    submitted = time.time()
    job = client.execute("mbtiles", inputs)
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
    sizes = tile_sizes(path)
    render_s = math.nan
    for line in client.get(f"jobs/{job_id}/log").get("lines", []):
        if match := re.search(r"tiles written.* in ([\d.]+) s", str(line)):
            render_s = float(match.group(1))
    path.unlink()
    started, finished = job_stamp(job, "started"), job_stamp(job, "finished")
    return ExportRun(TERRACAT, image_format, finished - started, int(archive["tiles"]), per_zoom,
                     int(archive["bytes"]), quality=quality, tile_bytes=sizes,
                     wall=finished - submitted,
                     render_s=render_s)  # fmt: skip


def _timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(cmd)} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started


def gdal_export(cog: Path, image_format: str, work: Path, quality: int | None = None) -> ExportRun:
    """``gdal_translate -of MBTILES`` (the native zoom), then ``gdaladdo`` down to MINZOOM."""
    out = work / f"gdal-{image_format}.mbtiles"
    out.unlink(missing_ok=True)
    # The same tile format and quality as creation options, then as open options of gdaladdo
    # (the driver's open options for the overview tiles it writes).
    options = [f"TILE_FORMAT={image_format.upper()}"]
    if quality is not None:
        options.append(f"QUALITY={quality}")
    translate = _timed(["gdal_translate", "-q", "-of", "MBTILES",
                        *[a for o in options for a in ("-co", o)], str(cog), str(out)])  # fmt: skip
    native = max(count_tiles(out))
    factors = [str(2**k) for k in range(1, native - MINZOOM + 1)]
    addo = _timed(["gdaladdo", "-q", "-r", "average", *[a for o in options for a in ("-oo", o)],
                   str(out), *factors])  # fmt: skip
    per_zoom = count_tiles(out)
    sizes = tile_sizes(out)
    size = out.stat().st_size
    out.unlink()
    return ExportRun("GDAL", image_format, translate + addo, sum(per_zoom.values()), per_zoom,
                     size, quality=quality, tile_bytes=sizes,
                     steps=(translate, addo))  # fmt: skip


def compare_exports(
    client: TerracatClient,
    collection: str,
    item: str,
    cog: Path,
    data_dir: Path,
    runs: int,
    quality: int,
) -> list[ExportRun]:
    """Both exporters, both formats, ``runs`` times each, alternating which goes first; JPEG
    at ``quality`` for both."""
    results = []
    work = Path(tempfile.mkdtemp(prefix="gdal-mbtiles-", dir=data_dir.parent))
    for image_format in ("png", "jpeg"):
        level = quality if image_format == "jpeg" else None
        for run in range(runs):
            order = ["ours", "gdal"] if run % 2 == 0 else ["gdal", "ours"]
            for which in order:
                if which == "ours":
                    done = terracat_export(client, collection, item, image_format, data_dir,
                                           level)  # fmt: skip
                    log(
                        f"  Terracat {image_format} run {run + 1}: {done.tiles} tiles, job "
                        f"{done.seconds:.1f} s ({done.rate:.1f} tiles/s), render "
                        f"{done.render_s:.1f} s, from submit {done.wall:.1f} s"
                    )
                else:
                    done = gdal_export(cog, image_format, work, level)
                    log(
                        f"  GDAL {image_format} run {run + 1}: {done.tiles} tiles, "
                        f"{done.seconds:.1f} s ({done.rate:.1f} tiles/s): translate "
                        f"{done.steps[0]:.1f} s + addo {done.steps[1]:.1f} s"
                    )
                results.append(done)
    return results
