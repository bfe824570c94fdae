"""Asset downloads: throughput and server memory while clients read big assets with Range.

    python -m bench.assets --size-mb 1024 --clients 8 --chunk-mb 8

One public collection with one item per client, each with a ``--size-mb`` data asset, stored
as the ingest job stores files (``storage.publish`` under ``assets/...``, a ``storage:`` href
in the database). Every client reads its own asset from start to end in ``--chunk-mb`` Range
requests (as GDAL's /vsicurl/ and geotiff.js read a COG, with bigger ranges), all at once; the
bytes are counted and dropped. Measured per server, one after the other on the same files:

- **terracat-local**: Terracat's download route, assets in a local folder (streamed from disk);
- **static-local** (the peer): Starlette's ``FileResponse`` (what FastAPI and titiler apps use
  for files, with Range support) serving the same files, same uvicorn options;
- **terracat-s3**: Terracat's route with the asset in a bucket of moto in server mode
  (``TERRACAT_STORAGE_DOWNLOAD=stream``: the API streams the store's bytes); moto holds its
  objects in memory, so here all clients read one and the same object;
- **moto-direct** (the peer of s3): the same object read straight from moto with presigned
  URLs, which is what ``download=redirect`` hands clients.

moto reads and copies a whole object for every request it answers, Range or not (its
``FakeKey.value``), so a 1 GB object costs it seconds per 8 MB range: ``--s3-size-mb`` keeps the
S3 rows to a size moto serves in reasonable time.

Printed: MB/s over all clients, per-request p50, and the resident memory (VmRSS) of the
server's process tree before and at its peak (sampled every 50 ms). Nothing is asserted; the
figures go to docs/benchmarks.md by hand. moto is one Python process on this 2-core machine:
the s3 rows measure the proxy path, not a real store's throughput.
"""

import argparse
import os
import statistics
import subprocess
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from catalog.settings import StorageSettings
from catalog.storage import build_storage
from catalog.storage.base import Storage, asset_key, stored_href

from .memory import RssTimeline
from .report import log
from .servers import Server, Stacks
from .storage import KEY_ID, SECRET, moto_server

COLLECTION = "downloads"
MB = 1 << 20


def _collection() -> dict[str, Any]:
    return {
        "type": "Collection", "id": COLLECTION, "stac_version": "1.1.0",
        "description": "asset download benchmark", "license": "proprietary", "links": [],
        "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]},
                   "temporal": {"interval": [["2026-01-01T00:00:00Z", None]]}},
    }  # fmt: skip


def _item(item_id: str, key: str, size: int) -> dict[str, Any]:
    return {
        "type": "Feature", "stac_version": "1.1.0", "id": item_id, "collection": COLLECTION,
        "geometry": {"type": "Point", "coordinates": [0.5, 0.5]}, "bbox": [0.5, 0.5, 0.5, 0.5],
        "properties": {"datetime": "2026-01-01T00:00:00Z"}, "links": [],
        "assets": {"data": {"href": stored_href(key), "type": "application/octet-stream",
                            "roles": ["data"], "file:size": size}},
    }  # fmt: skip


def _big_file(folder: Path, size: int) -> Path:
    """A file of ``size`` pseudo-random bytes (not sparse: real pages to read)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "big.bin"
    block = os.urandom(MB)
    with open(path, "wb") as file:
        for _ in range(size // MB):
            file.write(block)
    return path


def _publish(storage: Storage, source: Path, keys: list[str]) -> None:
    for key in keys:
        staged = storage.temp_path(".bin")
        if storage.kind == "local":
            os.link(source, staged)  # a hard link: the same bytes, no copy
        else:
            _copy(source, staged)
        storage.publish(staged, key)


def _copy(source: Path, target: Path) -> None:
    subprocess.run(["cp", "--reflink=auto", str(source), str(target)], check=True)


def _store_items(database_url: str, items: list[dict[str, Any]]) -> None:
    import asyncio

    from catalog.db.engine import create_engine
    from catalog.settings import DatabaseSettings
    from catalog.stac.repository import CatalogRepository
    from catalog.stac.serializers import item_row

    async def write() -> None:
        engine = create_engine(database_url, DatabaseSettings())
        try:
            rows = [item_row(item, COLLECTION) for item in items]
            await CatalogRepository(engine).write_items(COLLECTION, rows, upsert=True)
        finally:
            await engine.dispose()

    asyncio.run(write())


def _read(url: str, size: int, chunk: int, latencies: list[float]) -> int:
    """Read ``url`` from 0 to ``size`` in Range requests of ``chunk`` bytes; bytes read."""
    got = 0
    with httpx.Client(timeout=120, follow_redirects=True) as http:
        for start in range(0, size, chunk):
            end = min(size, start + chunk) - 1
            t0 = time.perf_counter()
            with http.stream("GET", url, headers={"Range": f"bytes={start}-{end}"}) as r:
                if r.status_code != 206:
                    raise RuntimeError(f"{url}: {r.status_code} {r.read()[:200]!r}")
                for part in r.iter_raw(1 << 16):
                    got += len(part)
            latencies.append(time.perf_counter() - t0)
    return got


def measure(name: str, pid: int, urls: list[str], size: int, chunk: int) -> dict[str, Any]:
    """All clients at once; MB/s, request p50 and the RSS of ``pid``'s process tree."""
    timeline = RssTimeline({name: pid}).start()
    time.sleep(1.2)
    latencies: list[float] = []
    totals: list[int] = []
    errors: list[BaseException] = []

    def client(url: str) -> None:
        try:
            totals.append(_read(url, size, chunk, latencies))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(url,)) for url in urls]
    t0 = time.time()  # the timeline's clock
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    t1 = time.time()
    timeline.stop()
    log(f"{name}: {len(urls)} clients, {sum(totals) / MB:.0f} MB in {t1 - t0:.1f} s")
    if errors:
        raise RuntimeError(f"{name}: {errors[0]!r}")
    if sum(totals) != size * len(urls):
        raise RuntimeError(f"{name}: read {sum(totals)} bytes, expected {size * len(urls)}")
    return {
        "name": name,
        "mb_s": sum(totals) / MB / (t1 - t0),
        "seconds": t1 - t0,
        "p50_ms": statistics.median(latencies) * 1000,
        "rss_before": timeline.before(name, t0) / MB,
        "rss_peak": timeline.peak(name, t0, t1) / MB,
    }


STATIC_APP = textwrap.dedent(
    """
    import os
    from pathlib import Path
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, Response
    from starlette.routing import Route

    ROOT = Path(os.environ["BENCH_STATIC_ROOT"]).resolve()

    async def asset(request):
        path = (ROOT / request.path_params["path"]).resolve()
        if not path.is_relative_to(ROOT) or not path.is_file():
            return Response(status_code=404)
        return FileResponse(path, media_type="application/octet-stream")

    app = Starlette(routes=[Route("/{path:path}", asset, methods=["GET", "HEAD"])])
    """
)


def _static_server(stacks: Stacks, root: Path) -> Server:
    module = stacks.tmp / "bench_static.py"
    module.write_text(STATIC_APP)
    server = stacks._spawn(
        "static", ["--app-dir", str(stacks.tmp), "bench_static:app"],
        {"BENCH_STATIC_ROOT": str(root)},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(server.url + "missing", timeout=1)
            return server
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("the static server did not start")


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Both storages, Terracat and the peers; the rows printed."""
    size, chunk = args.size_mb * MB, args.chunk_mb * MB
    stacks = Stacks(workers=args.workers)
    rows: list[dict[str, Any]] = []
    try:
        stacks.start_cluster(pgstac=False)
        data_dir = stacks.tmp / "data"
        source = _big_file(Path(tempfile.mkdtemp(dir=stacks.tmp)), size)
        item_ids = [f"asset-{n}" for n in range(args.clients)]
        keys = [asset_key(COLLECTION, i, "big.bin") for i in item_ids]
        _store_collection(stacks, data_dir)
        _store_items(
            stacks.terracat_url, [_item(i, k, size) for i, k in zip(item_ids, keys, strict=True)]
        )

        local = build_storage(StorageSettings(kind="local"), data_dir)
        _publish(local, source, keys)
        for _ in range(2):  # page cache warm for both servers alike
            subprocess.run(["cat", str(local.gdal_path(keys[0]))], stdout=subprocess.DEVNULL)
        api = stacks.start_terracat({"TERRACAT_INGEST_DATA_DIR": str(data_dir)})
        urls = [f"{api.url}collections/{COLLECTION}/items/{i}/assets/data" for i in item_ids]
        rows.append(measure("terracat-local", api.process.pid, urls, size, chunk))
        api.stop()
        static = _static_server(stacks, data_dir)
        rows.append(measure("static-local", static.process.pid,
                            [static.url + k for k in keys], size, chunk))  # fmt: skip
        static.stop()
        if not args.skip_s3:
            s3_size = (args.s3_size_mb or args.size_mb) * MB
            s3_source = source if s3_size == size else _big_file(source.parent / "s3", s3_size)
            rows += _s3_rows(stacks, data_dir, s3_source, item_ids, keys, s3_size, chunk)
    finally:
        stacks.close()
    return rows


def _store_collection(stacks: Stacks, data_dir: Path) -> None:
    api = stacks.start_terracat({"TERRACAT_INGEST_DATA_DIR": str(data_dir)})
    try:
        r = httpx.post(f"{api.url}collections", json=_collection(),
                       headers={"Authorization": f"Bearer {stacks.token}"})  # fmt: skip
        r.raise_for_status()
    finally:
        api.stop()


def _s3_rows(
    stacks: Stacks, data_dir: Path, source: Path, item_ids: list[str], keys: list[str],
    size: int, chunk: int,
) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    with moto_server() as endpoint:
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        env = {"TERRACAT_STORAGE_KIND": "s3", "TERRACAT_STORAGE_S3_ENDPOINT_URL": endpoint,
               "TERRACAT_STORAGE_S3_BUCKET": bucket, "TERRACAT_STORAGE_S3_PATH_STYLE": "true",
               "TERRACAT_STORAGE_S3_ACCESS_KEY_ID": KEY_ID,
               "TERRACAT_STORAGE_S3_SECRET_ACCESS_KEY": SECRET,
               "TERRACAT_STORAGE_DOWNLOAD": "stream"}  # fmt: skip
        settings = StorageSettings.model_validate(
            {k.removeprefix("TERRACAT_STORAGE_").lower(): v for k, v in env.items()}
        )
        s3 = build_storage(settings, data_dir)
        _create_bucket(s3, bucket)
        started = time.monotonic()
        # moto keeps objects in its memory: every client reads the same one object
        _publish(s3, source, keys[:1])
        log(f"{size // MB} MB published to moto in {time.monotonic() - started:.0f} s")
        api = stacks.start_terracat({"TERRACAT_INGEST_DATA_DIR": str(data_dir), **env})
        url = f"{api.url}collections/{COLLECTION}/items/{item_ids[0]}/assets/data"
        rows.append(measure("terracat-s3", api.process.pid, [url] * len(keys), size, chunk))
        api.stop()
        moto_pid = _moto_pid(endpoint)
        presigned = [str(s3.presigned_url(keys[0], 3600))] * len(keys)
        rows.append(measure("moto-direct", moto_pid, presigned, size, chunk))
    return rows


def _create_bucket(storage: Storage, bucket: str) -> None:
    client: Any = getattr(storage, "client", None) or getattr(storage, "_client", None)
    if client is None:
        raise RuntimeError("the S3 storage exposes no boto3 client to make the bucket")
    client.create_bucket(Bucket=bucket)


def _moto_pid(endpoint: str) -> int:
    port = endpoint.rsplit(":", 1)[1]
    found = subprocess.run(["pgrep", "-f", f"moto.server.*-p {port}"],
                           capture_output=True, text=True, check=False)  # fmt: skip
    return int(found.stdout.split()[0])


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The rows as a markdown table, with the ratios to each storage's peer."""
    by = {row["name"]: row for row in rows}
    lines = [
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average before: "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        f"- {args.clients} clients at once, each reading its own {args.size_mb} MB asset in "
        f"{args.chunk_mb} MB Range requests; {args.workers} uvicorn worker(s) per server"
        + (f"; S3 rows: one {args.s3_size_mb} MB object" if args.s3_size_mb else ""),
        "",
        "| server | MB/s | s | request p50 ms | RSS before MB | RSS peak MB | peak - before |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['mb_s']:.0f} | {row['seconds']:.1f} | {row['p50_ms']:.0f} "
            f"| {row['rss_before']:.0f} | {row['rss_peak']:.0f} "
            f"| {row['rss_peak'] - row['rss_before']:.0f} |"
        )
    lines.append("")
    for ours, peer in (("terracat-local", "static-local"), ("terracat-s3", "moto-direct")):
        if ours in by and peer in by:
            lines.append(
                f"- {ours} / {peer} throughput: {by[ours]['mb_s'] / by[peer]['mb_s']:.2f}x"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None, out: Callable[[str], Any] = print) -> None:
    """Parse the options, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of each asset")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--chunk-mb", type=int, default=8, help="bytes per Range request")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per server")
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument(
        "--s3-size-mb",
        type=int,
        default=None,
        help="size of the S3 asset (default: --size-mb); moto copies an object "
        "for every Range it serves, so big objects are slow there",
    )
    args = parser.parse_args(argv)
    rows = run(args)
    out(report(rows, args))


if __name__ == "__main__":
    main()
