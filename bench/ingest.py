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
import os
import signal
import sys
import time
from pathlib import Path

from .cog_compare import compare_cog
from .ingest_report import report
from .memory import RssTimeline
from .orthophoto import Orthophoto, make_orthophoto, make_random_file
from .report import database_versions, log, write_section
from .servers import ROOT, Stacks
from .uploads import IngestStack, Upload, measure_upload


def run_uploads(
    args: argparse.Namespace, ortho: Path, big: Path | None
) -> tuple[list[Upload], dict[str, str]]:
    """Start the cluster, API and worker; measure every upload; stop everything."""
    stacks = Stacks(workers=args.workers)
    timeline: RssTimeline | None = None
    try:
        terracat = IngestStack.start(stacks)
        db_versions = database_versions(stacks.terracat_url)
        client = terracat.client
        for transport in ("tus", "multipart"):
            client.create_collection(f"bench-{transport}")
        timeline = terracat.timeline()
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
