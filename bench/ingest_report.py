"""The ingest benchmark's markdown section: context, the three tables, targets, what dominates."""

import argparse
import math
import statistics
from pathlib import Path

import rasterio

from .cog_compare import GDAL_COG, CogRuns
from .memory import SAMPLE_S
from .orthophoto import Orthophoto
from .report import fmt, gdal_bin_version, gdal_versions, package_versions, run_context
from .uploads import BASELINE_S, Upload

TARGET_RSS_DELTA = 50 * 2**20
TARGET_COG_RATIO = 1.2


def _versions(db: dict[str, str]) -> str:
    found = package_versions(["terracat", "rasterio", "rio-cogeo", "numpy", "tuspy", "httpx",
                              "uvicorn", "uvloop", "httptools", "python-multipart"])  # fmt: skip
    return ", ".join(f"{k} {v}" for k, v in {**found, **gdal_versions(), **db}.items())


def _mib(value: float) -> str:
    return f"{value / 2**20:,.0f}"


def _valid_fraction(path: Path) -> float:
    with rasterio.open(path) as src:
        scale = max(1, src.width // 1000)
        mask = src.dataset_mask(out_shape=(src.height // scale, src.width // scale))
    return float((mask > 0).mean())


def _child_s(up: Upload) -> float:
    """Seconds the job's child process was seen."""
    return up.child[1] - up.child[0] if up.child else math.nan


def _context(
    args: argparse.Namespace, ortho: Orthophoto, path: Path, db_versions: dict[str, str]
) -> list[str]:
    raw = ortho.size**2 * (4 if ortho.edge == "alpha" else 3)
    return [
        f"## Ingest: {ortho.size:,} x {ortho.size:,} px orthophoto",
        "",
        *run_context("bench.ingest"),
        f"- Versions: {_versions(db_versions)}",
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
    ]


def _searchable(args: argparse.Namespace, uploads: list[Upload]) -> list[str]:
    lines = [
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
        before_child = up.child[0] - started if up.child else math.nan
        lines.append(
            f"| {up.transport} | {_mib(up.size)} | {fmt(up.upload_s)} | {fmt(up.rate, 0)} "
            f"| {fmt(max(0.0, started - up.sent), 2)} | {fmt(finished - started)} "
            f"| {fmt(up.searchable - finished, 2)} | **{fmt(up.searchable - up.t0)}** "
            f"| {fmt(before_child)} | {fmt(_child_s(up))} | {fmt(up.cog_s, 0)} |"
        )
    lines += [
        "",
        "Progress messages of each job as first seen, in s after its `started` (the heartbeat "
        "stores one a second, so a step shorter than that may not show):",
        "",
    ]
    lines += [f"- {up.transport}: {up.phases()}" for up in uploads if up.expect_item]
    return lines


def _memory(uploads: list[Upload]) -> list[str]:
    lines = [
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
    return lines


def _cog(ours: CogRuns, gdal: CogRuns | None) -> list[str]:
    inspect_s = statistics.median(ours.inspect_s) if ours.inspect_s else math.nan
    lines = [
        "",
        "### COG step against GDAL",
        "",
        f"Same input, {len(ours.seconds)} runs each, alternating which goes first. "
        "`catalog.ingest.cog.to_cog(src, dst, inspect(src, settings), settings)` in a fresh "
        "Python process, timed inside (rio-cogeo on the GDAL of the rasterio wheel, "
        f"{rasterio.__gdal_version__}; includes its final cog_validate; `inspect` took "
        f"{fmt(inspect_s, 2)} s more), "
        f"against `gdal_translate {' '.join(GDAL_COG)}` of Debian's gdal-bin "
        f"({gdal_bin_version() or 'not installed'}; another GDAL than rasterio's; its COG driver "
        "makes cubic overviews by default, to_cog average ones), timed as a process.",
        "",
        "| tool | runs s | **median s** | peak RSS MiB | output MiB |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for runs in (r for r in (ours, gdal) if r is not None):
        lines.append(
            f"| {runs.name} | {', '.join(fmt(s) for s in runs.seconds)} | **{fmt(runs.median)}** "
            f"| {_mib(runs.peak_rss)} | {fmt(runs.size / 2**20)} |"
        )
    if gdal is not None:
        lines += ["", f"to_cog / gdal_translate: **{ours.median / gdal.median:.2f}x**"]
    return lines


def _targets(uploads: list[Upload], ours: CogRuns, gdal: CogRuns | None) -> list[str]:
    over = [u for u in uploads if u.api_peak - u.api_before > TARGET_RSS_DELTA]
    missed = "; ".join(
        f"{u.label} over {u.transport}: {_mib(u.api_peak - u.api_before)} MiB" for u in over
    )
    ratio = math.nan if gdal is None else ours.median / gdal.median
    verdict = "not measured (no gdal_translate)" if gdal is None else (
        "met" if ratio <= TARGET_COG_RATIO else "MISSED"
    )  # fmt: skip
    return [
        "",
        "### Targets",
        "",
        f"- API memory while receiving, peak - before <= {TARGET_RSS_DELTA / 2**20:.0f} MiB: "
        + ("met" if not over else f"MISSED ({missed})"),
        f"- to_cog <= {TARGET_COG_RATIO}x gdal_translate: {verdict} ({fmt(ratio, 2)}x)",
    ]


def _where_the_time_goes(uploads: list[Upload], ours: CogRuns) -> list[str]:
    lines = ["", "### Where the time goes", ""]
    for up in (u for u in uploads if u.expect_item):
        total = up.searchable - up.t0
        job = up.stamp("finished") - up.stamp("started")
        lines.append(
            f"- {up.transport}: the ingest job is {job / total:.0%} of the {fmt(total)} s "
            f"(upload {up.upload_s / total:.0%}); in the job, the child process ran "
            f"{fmt(_child_s(up))} s, of which to_cog about {fmt(up.cog_s, 0)} s (alone, above: "
            f"{fmt(ours.median)} s)."
        )
    return [*lines, ""]


def report(
    args: argparse.Namespace,
    ortho: Orthophoto,
    path: Path,
    uploads: list[Upload],
    cog: tuple[CogRuns, CogRuns | None],
    db_versions: dict[str, str],
) -> list[str]:
    """The markdown section: context, the three tables, targets, what dominates."""
    ours, gdal = cog
    return [
        *_context(args, ortho, path, db_versions),
        *_searchable(args, uploads),
        *_memory(uploads),
        *_cog(ours, gdal),
        *_targets(uploads, ours, gdal),
        *_where_the_time_goes(uploads, ours),
    ]
