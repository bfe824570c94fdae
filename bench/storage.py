"""Assets on local disk against assets in S3-compatible object storage: tiles and exports.

    python -m bench.storage --size 4000 --tiles 200 --runs 2

The ingest benchmark's synthetic orthophoto (bench.orthophoto, cached in var/bench/ingest) is
ingested once into each storage by ``ingest_file`` (the ingest job's pipeline): a local folder,
and a bucket of moto in server mode on a loopback port (the object store the tests use; any
S3-compatible server at ``--endpoint`` instead). Then, for each storage:

- the same seeded tiles over z12-18 touching the item (bench.tiles_measure.tile_sets),
  rendered in-process by ``tiler.render`` (the tile endpoint's steps, without HTTP) one at a
  time on one thread (c=1), through the app's ``ReaderResources`` (pooled datasets): one
  warm-up pass (files opened, headers read), then ``--runs`` timed passes of other tiles,
  alternating which storage goes first; p50/p95/mean per tile;
- the ``mbtiles`` export of the item (``write_archive``, the export job's child: forked
  renderers, then the publish: a rename locally, an upload to the bucket) at z12 to
  ``--export-maxzoom``, ``--runs`` times, alternating which storage goes first.

Prints the figures (measured, never asserted); writes nothing to docs/benchmarks.md. moto is
a Python server on this machine: its latency is a loopback's and its throughput a single
process's, so the S3 figures say what the /vsis3/ path costs, not what a remote store adds.
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import shapely

from catalog.db.cluster import free_port
from catalog.ingest.pipeline import IngestRequest, file_digest, ingest_file
from catalog.jobs.queue import JobContext
from catalog.settings import IngestSettings, StorageSettings
from catalog.storage import build_storage
from catalog.storage.base import Storage

from .orthophoto import Orthophoto, make_orthophoto
from .report import log
from .servers import ROOT
from .tiles_measure import Tile, tile_sets

KEY_ID, SECRET = "bench-key", "bench-secret"


@contextmanager
def moto_server() -> Iterator[str]:
    """moto in server mode on a free loopback port; its endpoint URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)


def s3_storage(endpoint: str, data_dir: Path) -> Storage:
    """A storage on a new bucket of ``endpoint`` (path style, the bench's credentials)."""
    import boto3

    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
    )  # fmt: skip
    client.create_bucket(Bucket=bucket)
    settings = StorageSettings(
        kind="s3", s3_endpoint_url=endpoint, s3_bucket=bucket, s3_path_style=True,
        s3_access_key_id=KEY_ID, s3_secret_access_key=SECRET,  # type: ignore[arg-type]
    )  # fmt: skip
    return build_storage(settings, data_dir)


def ingest(source: Path, storage: Storage, data_dir: Path) -> tuple[dict[str, Any], float]:
    """The orthophoto as item ``ortho`` of collection ``bench`` in ``storage``; seconds."""
    settings = IngestSettings(data_dir=data_dir)
    sha256, size = file_digest(source)
    request = IngestRequest(source, "bench", "ortho", sha256, size, source.name, None,
                            datetime.now(UTC))  # fmt: skip
    started = time.perf_counter()
    item = ingest_file(request, storage, settings)
    return item, time.perf_counter() - started


def tile_renderer(item: dict[str, Any], storage: Storage) -> tuple[Callable[[Tile], Any], Any]:
    """The item tile endpoint's steps in-process on ``storage``; and the resources to close."""
    from tiler.dependencies import ReaderOptions
    from tiler.readers.shared import ReaderResources
    from tiler.render import RenderOptions, render_item_tile, tile_layer
    from tiler.settings import TilerSettings

    resources = ReaderResources(storage)
    reader = ReaderOptions.shared(resources, TilerSettings().max_image_size)
    layer = tile_layer(item, RenderOptions(assets=["data"]), "png", 256, reader)

    def render(tile: Tile) -> Any:
        z, x, y = tile
        return render_item_tile(item, z, x, y, layer)

    return render, resources


def time_tiles(render: Callable[[Tile], Any], tiles: list[Tile]) -> list[float]:
    """Milliseconds of each tile, one at a time."""
    times = []
    for tile in tiles:
        started = time.perf_counter()
        render(tile)
        times.append((time.perf_counter() - started) * 1000)
    return times


def export(item: dict[str, Any], storage: Storage, maxzoom: int, renderers: int) -> float:
    """Seconds of an ``mbtiles`` export of the item, published to ``storage``."""
    from tiler.archives import ArchiveMetadata
    from tiler.dependencies import ReaderOptions
    from tiler.export.inputs import parse_request
    from tiler.export.rendering import write_archive
    from tiler.readers.shared import ReaderResources
    from tiler.render import item_plan
    from tiler.settings import TilerSettings

    request = parse_request({"item": {"collection": "bench", "id": "ortho"}, "minzoom": 12,
                             "maxzoom": maxzoom})  # fmt: skip
    resources = ReaderResources(storage)
    reader = ReaderOptions.shared(resources, TilerSettings().max_image_size)
    region = shapely.geometry.shape(item["geometry"])
    job_id = str(uuid.uuid4())
    plan = {
        "job_id": job_id, "extension": "mbtiles", "source": item_plan(item, request, reader),
        "minzoom": 12, "maxzoom": maxzoom, "renderers": renderers,
        "metadata": ArchiveMetadata("bench", "png", tuple(region.bounds), 12, maxzoom).__dict__,
    }  # fmt: skip
    context = JobContext(job_id, _ignore, _ignore)
    started = time.perf_counter()
    try:
        write_archive(plan, context, region, resources)
    finally:
        resources.close()
    seconds = time.perf_counter() - started
    storage.delete(f"exports/{job_id}.mbtiles")
    return seconds


def summary(times: list[float]) -> str:
    """p50, p95 and mean of milliseconds."""
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (f"p50 {statistics.median(ordered):7.1f} ms  p95 {p95:7.1f} ms  "
            f"mean {statistics.fmean(ordered):7.1f} ms  ({len(ordered)} tiles)")  # fmt: skip


def run(args: argparse.Namespace) -> None:
    """The whole comparison; prints its figures."""
    os.environ.setdefault("GDAL_CACHEMAX", "256")
    source = make_orthophoto(args.data, Orthophoto(args.size))
    log(f"orthophoto {source.name} ({source.stat().st_size / 1e6:.0f} MB)")
    work = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    with moto_server() if args.endpoint is None else _given(args.endpoint) as endpoint:
        storages = {
            "local": build_storage(StorageSettings(), work / "local"),
            "s3": s3_storage(endpoint, work / "s3"),
        }
        items = {}
        for name, storage in storages.items():
            items[name], seconds = ingest(source, storage, work / name)
            log(f"{name:5s}: ingested in {seconds:.1f} s")
        # Exports first: their renderers fork before this process reads any object through
        # GDAL's HTTP layer (as the export job's child does).
        exports: dict[str, list[float]] = {name: [] for name in storages}
        order = list(storages)
        for run_ in range(args.runs):
            for name in order if run_ % 2 == 0 else reversed(order):
                exports[name].append(export(items[name], storages[name], args.export_maxzoom,
                                            args.renderers))  # fmt: skip
        print(f"\nExport mbtiles z12-{args.export_maxzoom}, {args.renderers} renderers:")
        for name, runs in exports.items():
            shown = ", ".join(f"{s:.2f}" for s in runs)
            print(f"  {name:5s} {statistics.median(runs):6.2f} s median ({shown})")
        sets = tile_sets(items["local"]["geometry"], args.tiles, args.seed, args.runs + 1)
        results: dict[str, list[float]] = {name: [] for name in storages}
        first: dict[str, list[float]] = {}
        renderers = {name: tile_renderer(items[name], storage)
                     for name, storage in storages.items()}  # fmt: skip
        try:
            for name, (render, _) in renderers.items():
                first[name] = time_tiles(render, sets[0])  # opens, reads headers: warm-up
            # Passes alternate between the storages, so that both see the machine's load alike.
            for number, tiles in enumerate(sets[1:]):
                for name in order if number % 2 == 0 else reversed(order):
                    results[name] += time_tiles(renderers[name][0], tiles)
        finally:
            for _, resources in renderers.values():
                resources.close()
        print(f"\nTiles, c=1, in-process (tiler.render), {args.size} px COG, z12-18:")
        for name in storages:
            print(f"  {name:5s} warm-up pass  {summary(first[name])}")
            print(f"  {name:5s} timed passes  {summary(results[name])}")
        ratio = statistics.median(results["s3"]) / statistics.median(results["local"])
        print(f"  S3 p50 / local p50 = {ratio:.2f}")
        for storage in storages.values():
            storage.delete_prefix("assets/bench")


def _ignore(*args: Any) -> None:
    """Progress and log lines of the export: not shown."""


@contextmanager
def _given(endpoint: str) -> Iterator[str]:
    yield endpoint


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4000, help="orthophoto width and height")
    parser.add_argument("--tiles", type=int, default=200, help="tiles per pass")
    parser.add_argument("--runs", type=int, default=2, help="timed passes, export runs")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--export-maxzoom", type=int, default=16)
    parser.add_argument("--renderers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--endpoint", help="an S3 endpoint to use instead of moto (bucket "
                        "made there with the bench's credentials)")  # fmt: skip
    parser.add_argument("--data", type=Path, default=ROOT / "var" / "bench" / "ingest",
                        help="cache folder of the orthophoto")  # fmt: skip
    args = parser.parse_args()
    random.seed(args.seed)
    run(args)


if __name__ == "__main__":
    main()
