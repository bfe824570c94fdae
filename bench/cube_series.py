"""Datacube time series: mean NDVI over a 1 km² polygon for every daily step of a year.

    python -m bench.cube_series --size 256 --days 365 --runs 20 --cold 5

Writes a Sentinel-2-like Zarr store (B04 and B08, uint16, nodata 0, daily steps, UTM 31N,
10 m pixels, chunks ``--chunks``) into the data folder of a Terracat started under uvicorn on a
private PostgreSQL cluster, registers it (``put_cube``) as ``--cold`` collections each on its
own copy of the store, and times ``GET /collections/{id}/aggregate/time-series?layers=ndvi``
over a rotated 1 km x 1 km square (100 x 100 pixels, every step: 365 rows) against the
in-process floor: xarray on the same store, in this process, doing only what any client would
do: open the store, select the window of the polygon's bounds, mask its pixels (centre-inside,
nodata), reduce to the mean per step.

- cold: the first request of each copy (a store the server has not opened yet) against
  opening that copy anew; the files are in the OS page cache for both (just written);
- warm: ``--runs`` requests of one collection (its store kept open) against the floor on a
  dataset kept open; 3 warm-ups first.

Prints the table (measured, never asserted); writes it to docs/benchmarks.md unless --no-docs.
"""

import argparse
import asyncio
import shutil
import statistics
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import shapely
import shapely.affinity
import shapely.geometry
import xarray as xr
from affine import Affine
from pyproj import Transformer
from rasterio.features import geometry_mask

from catalog.cubes.model import Cube, CubeLayer, put_cube
from catalog.db.engine import create_engine
from catalog.settings import DatabaseSettings
from catalog.storage.base import stored_href

from .report import fmt, log, package_versions, run_context, write_section
from .servers import ROOT, Stacks

CRS = "EPSG:32631"
X0, Y0, RES = 500_000.0, 5_000_000.0, 10.0
START = datetime(2024, 1, 1, 10, 30, tzinfo=UTC)


def write_store(path: Path, size: int, days: int, chunks: tuple[int, int, int]) -> None:
    """The B04/B08 cube, seeded: smooth fields plus noise, a nodata stripe."""
    rng = np.random.default_rng(19)
    t = np.arange(days, dtype="int32")[:, None, None]
    y, x = np.mgrid[0:size, 0:size].astype("int32")
    season = (300 * np.sin(2 * np.pi * (t - 80) / 365)).astype("int32")
    red = 1200 + 3 * x + 2 * y - season + rng.integers(0, 50, (days, size, size), dtype="int32")
    nir = 3500 + 2 * x - y + 5 * season + rng.integers(0, 80, (days, size, size), dtype="int32")
    red[(x + y + t) % 97 == 0] = 0
    times = np.array([(START + timedelta(days=i)).replace(tzinfo=None) for i in range(days)],
                     dtype="datetime64[ns]")  # fmt: skip
    ds = xr.Dataset(
        {"B04": (("time", "y", "x"), red.astype("uint16")),
         "B08": (("time", "y", "x"), nir.astype("uint16"))},
        coords={"time": times, "y": Y0 - RES * (np.arange(size) + 0.5),
                "x": X0 + RES * (np.arange(size) + 0.5)},
    )  # fmt: skip
    encoding = {name: {"chunks": chunks} for name in ("B04", "B08")}
    with warnings.catch_warnings(action="ignore"):  # consolidated metadata on Zarr 3
        ds.to_zarr(path, mode="w", consolidated=True, encoding=encoding)


def cube_row(collection_id: str, key: str, size: int, days: int) -> Cube:
    """The store's ``datacubes`` row."""
    layers = (CubeLayer("B04", "B04", common_name="red", dtype="uint16", nodata=0),
              CubeLayer("B08", "B08", common_name="nir", dtype="uint16", nodata=0))  # fmt: skip
    return Cube(
        collection_id=collection_id, href=stored_href(key), format="zarr", crs=CRS,
        transform=(X0, RES, 0.0, Y0, 0.0, -RES), width=size, height=size, x_dim="x",
        y_dim="y", time_dim="time", band_dim=None, layers=layers,
        times=tuple(START + timedelta(days=i) for i in range(days)),
    )  # fmt: skip


def polygon(size: int) -> tuple[shapely.Polygon, dict[str, Any]]:
    """A 1 km x 1 km square turned 20 degrees at the cube's centre: in UTM, and as GeoJSON."""
    centre = (X0 + RES * size / 2, Y0 - RES * size / 2)
    square = shapely.affinity.rotate(shapely.box(-500, -500, 500, 500), 20)
    utm = shapely.affinity.translate(square, *centre)
    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    ring = [list(to_lonlat.transform(x, y)) for x, y in utm.exterior.coords]
    return utm, {"type": "Polygon", "coordinates": [ring]}


def floor(path: Path, area: shapely.Polygon, ds: xr.Dataset | None = None) -> np.ndarray:
    """The in-process floor: (open,) select the window, mask, reduce to the mean per step."""
    if ds is None:
        ds = xr.open_zarr(path, consolidated=True, chunks=None)
    west, south, east, north = area.bounds
    col0, col1 = int((west - X0) // RES), int(-(-(east - X0) // RES))
    row0, row1 = int((Y0 - north) // RES), int(-(-(Y0 - south) // RES))
    window = ds.isel(y=slice(row0, row1), x=slice(col0, col1))
    red, nir = (window[b].load().astype("float64") for b in ("B04", "B08"))
    transform = Affine(RES, 0, X0 + col0 * RES, 0, -RES, Y0 - row0 * RES)
    inside = geometry_mask([area], (row1 - row0, col1 - col0), transform, invert=True)
    valid = xr.DataArray(inside, dims=("y", "x")) & (red != 0) & (nir != 0)
    ndvi = ((nir - red) / (nir + red)).where(valid)
    return np.asarray(ndvi.mean(dim=("y", "x")))


def timed(call: Callable[[], Any]) -> float:
    """Milliseconds ``call`` takes."""
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


async def register(url: str, cubes: list[Cube]) -> None:
    """Store the rows (their collections exist)."""
    engine = create_engine(url, DatabaseSettings())
    try:
        async with engine.begin() as conn:
            for cube in cubes:
                await put_cube(conn, cube)
    finally:
        await engine.dispose()


def setup(stacks: Stacks, args: argparse.Namespace) -> tuple[list[Path], Any]:
    """Write the store and its copies, start Terracat, make and register the collections."""
    data = stacks.tmp / "data"
    chunks = tuple(int(c) for c in args.chunks.split(","))
    keys = [f"cubes/bench-{i}/cube.zarr" for i in range(args.cold)]
    log(f"writing a {args.days} x {args.size} x {args.size} store and {args.cold - 1} copies")
    write_store(data / keys[0], args.size, args.days, chunks)  # type: ignore[arg-type]
    for key in keys[1:]:
        shutil.copytree(data / keys[0], data / key)
    server = stacks.start_terracat({"TERRACAT_INGEST_DATA_DIR": str(data)})
    headers = {"Authorization": f"Bearer {stacks.token}"}
    for i in range(args.cold):
        doc = {"type": "Collection", "stac_version": "1.1.0", "id": f"bench-{i}",
               "description": "bench cube", "license": "CC-BY-4.0", "links": [],
               "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                          "temporal": {"interval": [[None, None]]}}}  # fmt: skip
        httpx.post(f"{server.url}collections", json=doc, headers=headers).raise_for_status()
    rows = [cube_row(f"bench-{i}", key, args.size, args.days) for i, key in enumerate(keys)]
    asyncio.run(register(stacks.terracat_url, rows))
    return [data / key for key in keys], server


def measure(stacks: Stacks, args: argparse.Namespace) -> dict[str, list[float]]:
    """Cold and warm times of the server and of the floor (ms); checks they agree."""
    paths, server = setup(stacks, args)
    area, geojson = polygon(args.size)
    params = {"intersects": shapely.to_geojson(shapely.geometry.shape(geojson)),
              "layers": "ndvi", "aggregation": "mean"}  # fmt: skip
    times: dict[str, list[float]] = {"http cold": [], "floor cold": [], "http warm": [],
                                     "floor warm": []}  # fmt: skip
    with httpx.Client(base_url=server.url, timeout=120) as http:

        def series(i: int) -> dict[str, Any]:
            response = http.get(f"collections/bench-{i}/aggregate/time-series", params=params)
            response.raise_for_status()
            return dict(response.json())

        for i, path in enumerate(paths):
            times["http cold"].append(timed(partial(series, i)))
            times["floor cold"].append(timed(partial(floor, path, area)))
        answer = series(0)
        kept = xr.open_zarr(paths[0], consolidated=True, chunks=None)
        expected = floor(paths[0], area, kept)
        got = np.array([np.nan if r["ndvi"] is None else r["ndvi"] for r in answer["series"]])
        if len(got) != args.days or not np.allclose(got, expected, rtol=1e-9, equal_nan=True):
            raise RuntimeError("the server's series is not the floor's")
        log(f"{answer['area']['pixels']} pixels in the polygon, {len(got)} steps")
        for _ in range(3):
            series(0), floor(paths[0], area, kept)
        for _ in range(args.runs):
            times["http warm"].append(timed(lambda: series(0)))
            times["floor warm"].append(timed(lambda: floor(paths[0], area, kept)))
    return times


def report(times: dict[str, list[float]], args: argparse.Namespace) -> list[str]:
    """The markdown section."""
    p50 = {name: statistics.median(values) for name, values in times.items()}
    versions = package_versions(["xarray", "zarr", "numpy", "rasterio"])
    lines = [
        "## Datacube time series: mean NDVI over 1 km², one row per daily step (issue 19)",
        "",
        *run_context("bench.cube_series"),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- Store: Zarr 3, B04 and B08 uint16, {args.days} daily steps x {args.size} x "
        f"{args.size} px (10 m, EPSG:32631), chunks ({args.chunks}); polygon: a 1 km square "
        "turned 20 degrees (~10 000 pixels, centre-inside), NDVI with nodata masked.",
        "- HTTP: `GET /collections/{id}/aggregate/time-series?layers=ndvi` to uvicorn (1 worker),"
        " c=1, JSON of 365 rows. Floor: xarray in this process, open (cold) + isel of the "
        "polygon's window + geometry_mask + mean per step. Cold: a store not opened before "
        f"(p50 of {args.cold} copies; files in the page cache); warm: p50 of {args.runs} "
        "after 3 warm-ups. Target: p50 <= 1.2 x the floor.",
        "",
        "| | Terracat HTTP p50 (ms) | floor p50 (ms) | ratio |",
        "|---|---:|---:|---:|",
    ]
    for kind in ("cold", "warm"):
        http, base = p50[f"http {kind}"], p50[f"floor {kind}"]
        lines.append(f"| {kind} | {fmt(http)} | {fmt(base)} | {fmt(http / base, 2)} |")
    return lines


def main() -> None:
    """Run the benchmark and print (and write) its section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="pixels a side (>= 110)")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--chunks", default="73,128,128", help="time,y,x")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--cold", type=int, default=5, help="copies of the store (cold runs)")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    stacks = Stacks(workers=1)
    try:
        stacks.start_cluster(pgstac=False)
        lines = report(measure(stacks, args), args)
    finally:
        stacks.close()
    print("\n".join(lines))
    if not args.no_docs:
        write_section(ROOT / "docs" / "benchmarks.md", "cube-series", lines)


if __name__ == "__main__":
    main()
