"""Pictures benchmark: geotagged 12 MP JPEGs over tus until every one is published.

    python -m bench.pictures --count 1000

Makes one 4000 x 3000 JPEG (a smooth gradient with grain, ~3 MB, as a phone writes), and N
copies of it whose EXIF says another place and time (1 s and 5 m apart along a street), so
that every file has its own bytes; starts a private PostgreSQL cluster, Terracat and one
``terracat worker`` (one job at a time), sends the N files over tus (tuspy, as ``terracat
ingest``) into one upload set that expects them, and times from the first byte until the set
is ``ready`` (every picture read, copied, dispatched into its sequence and published). The
worker's process tree is sampled from /proc meanwhile for its memory peak.

Prints the table; writes it to docs/benchmarks.md unless --no-docs. Nothing is asserted.
"""

import argparse
import datetime as dt
import io
import math
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import piexif
from PIL import Image

from .report import log, machine, write_section
from .servers import ROOT, Stacks
from .uploads import IngestStack, job_stamp

WIDTH, HEIGHT = 4000, 3000
ORIGIN = (2.35, 48.85)


def base_jpeg(path: Path) -> bytes:
    """The 12 MP picture every copy shares (made once, cached)."""
    if path.exists():
        return path.read_bytes()
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    rgb = np.stack([x / WIDTH * 200, y / HEIGHT * 200, (x + y) / (WIDTH + HEIGHT) * 255], -1)
    rgb += rng.normal(0, 6, rgb.shape).astype(np.float32)
    out = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").save(out, "JPEG", quality=88)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())
    return out.getvalue()


def _dms(value: float) -> tuple[tuple[int, int], ...]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = (value - degrees - minutes / 60) * 3600
    return ((degrees, 1), (minutes, 1), (round(seconds * 10000), 10000))


def tagged(base: bytes, n: int) -> bytes:
    """Picture ``n`` of the walk: 5 m east and 1 s after picture n - 1."""
    lon = ORIGIN[0] + math.degrees(5.0 * n / (6371008.8 * math.cos(math.radians(ORIGIN[1]))))
    when = dt.datetime(2026, 6, 1, 10, 0, 0) + dt.timedelta(seconds=n)
    exif = {
        "0th": {piexif.ImageIFD.Make: b"Bench", piexif.ImageIFD.Model: b"12MP"},
        "Exif": {piexif.ExifIFD.DateTimeOriginal: when.strftime("%Y:%m:%d %H:%M:%S").encode(),
                 piexif.ExifIFD.OffsetTimeOriginal: b"+02:00"},
        "GPS": {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: _dms(ORIGIN[1]),
                piexif.GPSIFD.GPSLongitudeRef: b"E", piexif.GPSIFD.GPSLongitude: _dms(lon),
                piexif.GPSIFD.GPSImgDirectionRef: b"T", piexif.GPSIFD.GPSImgDirection: (90, 1)},
    }  # fmt: skip
    out = io.BytesIO()
    piexif.insert(piexif.dump(exif), base, out)
    return out.getvalue()


def run(args: argparse.Namespace, base: bytes) -> dict[str, Any]:
    """Start everything, send the pictures, wait for the set; the figures."""
    from tusclient import client as tus_client

    from server.ingest_client import CHUNK, Sha256Uploader

    stacks = Stacks(workers=1)
    try:
        stack = IngestStack.start(stacks)
        client = stack.client
        client.create_collection("bench-pictures")
        body = {"collection": "bench-pictures", "expected_files": args.count}
        set_id = client._ok(client.http.post("upload_sets", json=body))["id"]
        timeline = stack.timeline()
        tus = tus_client.TusClient(client.url + "uploads/", headers=client.headers)
        t0 = time.time()
        sent = 0
        for n in range(args.count):
            data = tagged(base, n)
            sent += len(data)
            Sha256Uploader(file_stream=io.BytesIO(data), client=tus, chunk_size=CHUNK,
                           metadata={"filename": f"p{n:05d}.jpg", "upload_set": set_id},
                           upload_checksum=True).upload()  # fmt: skip
        t_sent = time.time()
        while True:
            doc = client._ok(client.http.get(f"upload_sets/{set_id}"))
            if doc["ready"] or time.time() - t0 > args.timeout:
                break
            time.sleep(0.25)
        t_ready = time.time()
        timeline.stop()
        jobs = [client.get(f"jobs/{f['job']['id']}") for f in doc["files"] if f.get("job")]
        spans = [job_stamp(j, "finished") - job_stamp(j, "started") for j in jobs]
        dispatch = client._ok(client.http.get("jobs", params={"processID": "pictures_dispatch"}))[
            "jobs"
        ]
        dispatch = [j for j in dispatch if j.get("processID") == "pictures_dispatch"]
        return {
            "count": args.count, "bytes": sent, "ready": doc["ready"], "counts": doc["counts"],
            "upload_s": t_sent - t0, "total_s": t_ready - t0,
            "job_median_s": statistics.median(spans) if spans else math.nan,
            "dispatch_s": (job_stamp(dispatch[0], "finished") - job_stamp(dispatch[0], "started"))
            if dispatch else math.nan,
            "worker_peak": timeline.peak("worker", t0, t_ready),
            "api_peak": timeline.peak("api", t0, t_ready),
        }  # fmt: skip
    finally:
        stacks.close()


def report(found: dict[str, Any]) -> list[str]:
    """The docs/benchmarks.md section."""
    n = found["count"]
    return [
        f"### Pictures: {n} geotagged 12 MP JPEGs over tus (`python -m bench.pictures "
        f"--count {n}`)",
        "",
        f"{machine()}. One API process, one `terracat worker` running one job at a time; "
        f"{found['bytes'] / 2**20:,.0f} MiB in all, each picture {WIDTH} x {HEIGHT}.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| first byte to every picture published (set `ready`) | {found['total_s']:.1f} s |",
        f"| of which sending (tus, one file after the other) | {found['upload_s']:.1f} s |",
        f"| pictures/s per worker (whole run) | {n / found['total_s']:.2f} |",
        f"| ingest job per picture (median: read, thumbnail, SD, publish) | "
        f"{found['job_median_s']:.2f} s |",
        f"| dispatch job (sort, cut, publish {n} items) | {found['dispatch_s']:.2f} s |",
        f"| worker peak RSS (process tree) | {found['worker_peak'] / 2**20:.0f} MiB |",
        f"| API peak RSS | {found['api_peak'] / 2**20:.0f} MiB |",
        f"| outcome | {found['counts']} |",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="pictures to send")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--data", type=Path, default=ROOT / "var" / "bench" / "pictures")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    base = base_jpeg(args.data / "base-12mp.jpg")
    log(f"base picture: {len(base) / 2**20:.1f} MiB")
    found = run(args, base)
    section = report(found)
    print("\n".join(section))
    if not args.no_docs:
        write_section(args.docs, f"pictures={args.count}", section)
        log(f"written to {args.docs}")


if __name__ == "__main__":
    main()
