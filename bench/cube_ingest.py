"""Datacube ingest: how long the ingest job's child takes for a cube of a given size.

    python -m bench.cube_ingest --gb 2 --size 2048 --bands 4

A synthetic float32 cube (``--bands`` variables of ``--size`` x ``--size`` pixels, as many
daily time steps as make ``--gb`` gigabytes) is written as a Zarr v3 store in chunks of one
time step by 512 px (what a client uploads), zipped without compression (Zarr chunks are
compressed already), then taken through what the ``ingest`` job's child does with an upload:
safe extraction, opening and checking (``describe``), the copy with overviews (one time slab
in memory at a time) and publishing into a local storage. ``--source-chunk-times N`` makes the
source's chunks N time steps deep, so that they exceed the 8 MiB limit and the copy rechunks.

Printed: seconds and MB/s of each step (MB of the cube's uncompressed values), the number of
files published, and the peak resident memory of this process (which is the job's). Nothing
is asserted; figures go to docs/benchmarks.md by hand. The database part of a job (the commit
of one item per time step) is not in it: tests/catalog/test_cube_ingest.py covers it.
"""

import argparse
import resource
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from catalog.cubes.ingest import build_cube, detect_cube, open_upload
from catalog.settings import IngestSettings
from catalog.storage.local import LocalStorage

MB = 1 << 20


def _write_source(folder: Path, size: int, bands: int, times: int, depth: int) -> Path:
    """The cube, written slab by slab (never whole in memory)."""
    path = folder / "source.zarr"
    x = 500_000 + 5 + 10 * np.arange(size)
    y = 5_000_000 - 5 - 10 * np.arange(size)
    dates = pd.date_range("2024-01-01", periods=times, freq="D")
    rng = np.random.default_rng(19)
    for start in range(0, times, depth):
        stop = min(start + depth, times)
        shape = (stop - start, size, size)
        data = {f"B{b:02d}": (("time", "y", "x"), rng.random(shape, dtype=np.float32))
                for b in range(bands)}  # fmt: skip
        slab = xr.Dataset(data, coords={"time": dates[start:stop], "y": y, "x": x})
        slab = slab.rio.write_crs("EPSG:32631")
        if start == 0:
            chunks = (depth, min(512, size), min(512, size))
            encoding = {name: {"chunks": chunks} for name in data}
            slab.to_zarr(path, mode="w", zarr_format=3, consolidated=False, encoding=encoding)
        else:
            slab.to_zarr(path, mode="a", append_dim="time", zarr_format=3, consolidated=False)
    return path


def _zip(store: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for file in sorted(store.rglob("*")):
            if file.is_file():
                zf.write(file, f"{store.name}/{file.relative_to(store).as_posix()}")
    return archive


def _timed(label: str, megabytes: float, started: float) -> float:
    took = time.perf_counter() - started
    print(f"  {label:<28} {took:8.2f} s  {megabytes / took:8.1f} MB/s")
    return took


def run(gb: float, size: int, bands: int, depth: int, folder: Path) -> None:
    """Make, zip and ingest one cube in ``folder``; print each step's figures."""
    per_step = bands * size * size * 4
    times = max(1, round(gb * 1e9 / per_step))
    megabytes = times * per_step / MB
    print(f"cube: {bands} bands x {times} days x {size} x {size} px float32 = "
          f"{megabytes:.0f} MB, source chunks {depth} x 512 x 512")  # fmt: skip
    started = time.perf_counter()
    store = _write_source(folder, size, bands, times, depth)
    _timed("write the source store", megabytes, started)
    started = time.perf_counter()
    archive = _zip(store, folder / "cube.zip")
    _timed("zip it", megabytes, started)
    shutil.rmtree(store)
    print(f"  zip: {archive.stat().st_size / MB:.0f} MB")
    settings = IngestSettings(data_dir=folder / "data")
    storage = LocalStorage(settings.data_dir)
    work = folder / "work"
    work.mkdir()
    total = time.perf_counter()
    started = time.perf_counter()
    kind = detect_cube(archive)
    ds = open_upload(archive, kind or "zarr-zip", work, settings)
    _timed("extract and open", megabytes, started)
    started = time.perf_counter()
    out = build_cube(ds, collection_id="bench", href=None, fmt="zarr", prefix="assets/bench/cube",
                     storage=storage, settings=settings, fallback_datetime=None,
                     progress=lambda _p, _m: None, log=lambda _m: None)  # fmt: skip
    _timed("check, copy, overviews, publish", megabytes, started)
    _timed("whole child job", megabytes, total)
    files = sum(1 for p in (settings.data_dir / "assets").rglob("*") if p.is_file())
    factors = [o["factor"] for o in out["cube"]["overviews"]]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  {len(out['items'])} items, overviews {factors}, {files} files published, "
          f"peak RSS {peak:.0f} MB")  # fmt: skip


def main() -> None:
    """Parse the arguments and run once in a temporary folder (removed afterwards)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=2.0, help="cube size (uncompressed)")
    parser.add_argument("--size", type=int, default=2048, help="width and height in px")
    parser.add_argument("--bands", type=int, default=4)
    parser.add_argument("--source-chunk-times", type=int, default=1,
                        help="time steps per source chunk (8+ at 2048 px: rechunked)")  # fmt: skip
    parser.add_argument("--dir", type=Path, default=None, help="where to work (a temp folder)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="terracat-cube-bench-", dir=args.dir))
    try:
        run(args.gb, args.size, args.bands, args.source_chunk_times, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
