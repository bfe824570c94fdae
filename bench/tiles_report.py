"""The tile benchmark's markdown section: context, tile tables, cross-check, exports, targets."""

import argparse
import math
import statistics
from collections import Counter

from tiler.settings import TilerSettings

from .orthophoto import Orthophoto
from .report import fmt, gdal_versions, package_versions, run_context
from .tiles_encode import EncoderRow, png_section
from .tiles_export import ExportRun
from .tiles_measure import (
    ASSET,
    FLOOR,
    GDAL_ENV,
    INPROC,
    LEVELS,
    MAXZOOM,
    MINZOOM,
    TERRACAT,
    TITILER,
    Cell,
    Tile,
)
from .tiles_setup import Setup

TARGET_OVERHEAD = 0.10
TARGET_VS_TITILER = 1.2
TARGET_EXPORT = 1.5


def _repeats(passes: list[list[Tile]]) -> str:
    """Which zooms have tiles in more than one pass (too few tiles for all passes)."""
    seen = Counter(t for tiles in passes for t in set(tiles))
    repeated = Counter(t[0] for t, n in seen.items() if n > 1)
    if not repeated:
        return "no tile is in two passes"
    used = Counter(t[0] for tiles in passes for t in tiles)
    return "tiles in more than one pass: " + ", ".join(
        f"z{z} {n} of {used[z]} uses" for z, n in sorted(repeated.items())
    )


def zoom_counts(tiles: list[Tile]) -> str:
    counts = Counter(t[0] for t in tiles)
    return ", ".join(f"z{z}: {counts[z]}" for z in sorted(counts))


def tile_tables(cells: dict[tuple[str, int], Cell], targets: list[str]) -> list[str]:
    """Latency and throughput per target and concurrency; p50 per zoom at c=1."""
    rows = [
        "| target | c | p50 ms | p95 ms | mean ms | **tiles/s** | vs floor (p50) "
        "| vs titiler-pgstac (tiles/s) | ok | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for c in LEVELS:
        floor = cells[(FLOOR, c)]
        peer = cells.get((TITILER, c))
        for target in targets:
            cell = cells[(target, c)]
            errors = ", ".join(f"{n}x {s}" for s, n in cell.statuses.items() if s != "200")
            rows.append(
                f"| {target} | {c} | {fmt(cell.pct(50))} | {fmt(cell.pct(95))} "
                f"| {fmt(cell.mean)} | **{fmt(cell.rate)}** "
                f"| {fmt(cell.pct(50) / floor.pct(50), 2)}x "
                f"| {fmt(cell.rate / peer.rate, 2) + 'x' if peer else '-'} "
                f"| {cell.ok} | {errors or '0'} |"
            )
    zooms = sorted({z for cell in cells.values() for z, _ in cell.latencies})
    rows += [
        "",
        "p50 latency (ms) per zoom at concurrency 1:",
        "",
        "| zoom | samples | " + " | ".join(targets) + " |",
        "| ---: | ---: | " + " | ".join("---:" for _ in targets) + " |",
    ]
    for z in zooms:
        n = len(cells[(FLOOR, 1)].values(z))
        rows.append(
            f"| {z} | {n} | " + " | ".join(fmt(cells[(t, 1)].pct(50, z)) for t in targets) + " |"
        )
    return rows


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _export_rates(runs: list[ExportRun]) -> list[str]:
    """Times and rates per tool and format, then each run's parts."""
    rows = [
        "| tool | format | runs s | best s | median s | tiles | best tiles/s "
        "| **median tiles/s** | MiB | KiB per tile |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for image_format in ("png", "jpeg"):
        for tool in (TERRACAT, "GDAL"):
            mine = [r for r in runs if r.tool == tool and r.format == image_format]
            if not mine:
                continue
            seconds = [r.seconds for r in mine]
            rates = [r.rate for r in mine]
            last = mine[-1]
            name = image_format + (f" q{last.quality}" if last.quality else "")
            rows.append(
                f"| {tool} | {name} | {', '.join(fmt(s) for s in seconds)} "
                f"| {fmt(min(seconds))} | {fmt(_median(seconds))} | {last.tiles} "
                f"| {fmt(max(rates))} | **{fmt(_median(rates))}** "
                f"| {fmt(last.size / 2**20)} | {fmt(last.size / max(last.tiles, 1) / 1024)} |"
            )
    ours = [r for r in runs if r.tool == TERRACAT]
    gdal = [r for r in runs if r.tool == "GDAL"]
    return rows + [
        "",
        "Terracat's job, per run: " + "; ".join(
            f"{r.format} {fmt(r.seconds)} s (render loop {fmt(r.render_s)} s, from submit "
            f"{fmt(r.wall)} s)" for r in ours
        ),
        "",
        "GDAL, per run: " + "; ".join(
            f"{r.format} translate {fmt(r.steps[0])} s + gdaladdo {fmt(r.steps[1])} s"
            for r in gdal
        ),
        "",
    ]  # fmt: skip


def _export_zooms(runs: list[ExportRun]) -> list[str]:
    """Tiles per zoom of the last run of each tool and format, and why they differ."""
    last = {(r.tool, r.format): r for r in runs}
    keys = sorted(last, key=lambda k: (k[1] != "png", k[0] != TERRACAT))
    zooms = sorted({z for r in last.values() for z in r.per_zoom})
    rows = [
        "Tiles per zoom (last run of each):",
        "",
        "| zoom | " + " | ".join(f"{tool} {f}" for tool, f in keys) + " |",
        "| ---: | " + " | ".join("---:" for _ in keys) + " |",
    ]
    for z in zooms:
        rows.append(f"| {z} | " + " | ".join(str(last[k].per_zoom.get(z, 0)) for k in keys) + " |")
    rows += [
        "",
        "Terracat writes the tiles touching the item's footprint and leaves out fully masked "
        "ones; GDAL writes the tiles of the raster's extent and leaves out fully transparent "
        "ones, and gdaladdo stops at the first level that fits in one tile: compare sizes per "
        "tile. Rendering differs too: GDAL warps with bilinear resampling (its MBTiles "
        "default); Terracat renders as its tile endpoint does (nearest). JPEG: the same "
        "quality for both (the table's qN).",
        "",
    ]
    for (tool, image_format), done in sorted(last.items()):
        missing = [z for z in range(MINZOOM, MAXZOOM + 1) if not done.per_zoom.get(z)]
        if missing:
            rows.append(
                f"- {tool} {image_format} has no tile at z"
                + ", z".join(str(z) for z in missing)
                + (" (its extent fits in one tile a zoom above)" if tool == "GDAL" else "")
            )
    return rows


def _common_tiles(runs: list[ExportRun]) -> list[str]:
    """Bytes of the tiles both tools wrote (same z/x/y), last run of each: the encoders and
    rendering compared without the tiles one of them leaves out."""
    last = {(r.tool, r.format): r for r in runs}
    rows = []
    for image_format in ("png", "jpeg"):
        ours, gdal = last.get((TERRACAT, image_format)), last.get(("GDAL", image_format))
        if ours is None or gdal is None:
            continue
        both = ours.tile_bytes.keys() & gdal.tile_bytes.keys()
        mine = sum(ours.tile_bytes[k] for k in both)
        theirs = sum(gdal.tile_bytes[k] for k in both)
        if not both or not theirs:
            continue
        name = image_format + (f" q{ours.quality}" if ours.quality else "")
        rows.append(
            f"- {name}, the {len(both)} tiles both wrote: Terracat "
            f"{fmt(mine / len(both) / 1024)} KiB per tile, GDAL {fmt(theirs / len(both) / 1024)}"
            f" ({mine / theirs - 1:+.1%}); whole archives {ours.size / gdal.size - 1:+.1%}"
        )
    return ["Sizes on the same tiles (last run of each):", "", *rows, ""] if rows else []


def export_tables(runs: list[ExportRun]) -> list[str]:
    """Times and rates per tool and format; sizes on the same tiles; tiles per zoom."""
    return [*_export_rates(runs), *_common_tiles(runs), *_export_zooms(runs)]


def targets(cells: dict[tuple[str, int], Cell], exports: list[ExportRun]) -> list[str]:
    """Each target of the issue with the measured ratio and whether it is met."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    rows = ["| target | measured | |", "| --- | --- | --- |"]
    floor, ours = cells[(FLOOR, 1)], cells[(TERRACAT, 1)]
    p50 = ours.pct(50) / floor.pct(50) - 1
    mean = ours.mean / floor.mean - 1
    rows.append(
        f"| HTTP overhead per tile at c=1 <= {TARGET_OVERHEAD:.0%} over in-process rio-tiler "
        f"| p50 {p50:+.1%} ({fmt(ours.pct(50))} vs {fmt(floor.pct(50))} ms), mean {mean:+.1%} "
        f"| {verdict(p50 <= TARGET_OVERHEAD)} (p50) |"
    )
    http = ours.pct(50) / cells[(INPROC, 1)].pct(50) - 1
    rows.append(
        f"| (reference) HTTP alone: Terracat over its own renderer in-process at c=1 "
        f"| p50 {http:+.1%} ({fmt(ours.pct(50))} vs {fmt(cells[(INPROC, 1)].pct(50))} ms) | |"
    )
    if (TITILER, 8) in cells:
        mine, peer = cells[(TERRACAT, 8)], cells[(TITILER, 8)]
        ratio = mine.rate / peer.rate
        rows.append(
            f"| tiles/s at c=8 >= {TARGET_VS_TITILER}x titiler-pgstac | {ratio:.2f}x "
            f"({fmt(mine.rate)} vs {fmt(peer.rate)} tiles/s) "
            f"| {verdict(ratio >= TARGET_VS_TITILER)} |"
        )
    else:
        rows.append(f"| tiles/s at c=8 >= {TARGET_VS_TITILER}x titiler-pgstac | not measured | |")
    for image_format in ("png", "jpeg"):
        mine_rates = [r.rate for r in exports if r.tool == TERRACAT and r.format == image_format]
        gdal_rates = [r.rate for r in exports if r.tool == "GDAL" and r.format == image_format]
        name = f"MBTiles export {image_format.upper()} tiles/s >= {TARGET_EXPORT}x GDAL"
        if not (mine_rates and gdal_rates):
            rows.append(f"| {name} | not measured | |")
            continue
        ratio = _median(mine_rates) / _median(gdal_rates)
        best = max(mine_rates) / max(gdal_rates)
        rows.append(
            f"| {name} | {ratio:.2f}x median ({fmt(_median(mine_rates))} vs "
            f"{fmt(_median(gdal_rates))} tiles/s), {best:.2f}x best "
            f"| {verdict(ratio >= TARGET_EXPORT)} (median) |"
        )
    return rows


def _context(
    args: argparse.Namespace,
    ortho: Orthophoto,
    setup: Setup,
    cog_text: str,
    peer: dict[str, str] | None,
    conflicts: list[str] | None,
) -> list[str]:
    """Title, run context, versions, input and servers."""
    ours = package_versions(["terracat", "titiler-core", "rio-tiler", "rasterio", "fastapi",
                             "starlette", "uvicorn", "uvloop", "httptools", "httpx"])  # fmt: skip
    lines = [
        f"## Tiles: {ortho.size:,} x {ortho.size:,} px COG",
        "",
        *run_context("bench.tiles"),
        "- Versions (project venv): "
        + ", ".join(f"{k} {v}" for k, v in {**ours, **gdal_versions()}.items()),
        "- Database: " + ", ".join(f"{k} {v}" for k, v in setup.db.items()),
        f"- Input: bench.ingest's synthetic orthophoto ({ortho.description}), uploaded over tus "
        f"and ingested by the worker ({fmt(setup.ingest_s)} s to a searchable item). The "
        f"item's COG, read by all three: {cog_text}.",
        f"- Servers on 127.0.0.1, each uvicorn `--workers {args.workers} --loop uvloop --http "
        "httptools`: Terracat (`server.app:create_app`, default settings, plus one "
        "`terracat worker` for the ingest and the exports)"
        + (
            f" and titiler-pgstac (`titiler.pgstac.main:app`, default settings, on a pgstac "
            "database in the same private PostgreSQL cluster holding the same collection and "
            "item JSON as Terracat serves them, loaded with `pgstac.create_collection` / "
            f"`pgstac.create_item`; `{' '.join(f'{k}={v}' for k, v in GDAL_ENV.items())}` "
            "in its environment, as Terracat's reader sets for every asset)."
            if peer is not None
            else "."
        ),
    ]
    if peer is not None:
        lines.append(
            "- titiler-pgstac runs from its own venv, var/titiler-pgstac-venv (made on first "
            "use): " + ", ".join(f"{k} {v}" for k, v in peer.items()) + ". It does not "
            "install into the project venv under requirements.lock: "
            + ("; ".join(conflicts) if conflicts else "no conflict found in its requirements")
            + "."
        )
    return lines


def _tile_sets(args: argparse.Namespace, passes: list[list[Tile]]) -> list[str]:
    """How the tile lists are made and what each target does with a tile."""
    return [
        f"- Tile sets: each pass (the warm-up and the {args.runs} timed ones, at each "
        f"concurrency) takes its own {len(passes[0])} distinct WebMercatorQuad tiles touching "
        f"the item's footprint, as many per zoom as the zoom has up to an equal share: "
        f"{zoom_counts(passes[0])}; {len({t for p in passes for t in p})} distinct tiles over "
        f"the {len(passes)} passes (seed {args.seed}), so that a cache of warped or rendered "
        f"pixels serves few tiles of a timed pass; {_repeats(passes)}. Shuffled; the same "
        "lists, in the same order, for all three. Both servers get "
        f"`/collections/{{cid}}/items/{{iid}}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png"
        f"?assets={ASSET}` (256 px PNG, no other option); the floor runs "
        "`rio_tiler.io.Reader(cog).tile(x, y, z)` and `ImageData.render(img_format='PNG')` per "
        "tile, opening the COG for each tile as titiler-pgstac does (Terracat keeps files "
        "open between reads: `tiler.readers.DatasetPool`). "
        f"{INPROC}: `tiler.render.render_item_tile` with the endpoint's options (`ItemReader`, "
        "`tiler.encoders.render`; what the export runs per tile): the tile endpoint without "
        "HTTP. The floor and titiler-pgstac read a tile through a VRT made for it at the "
        "data's resolution, then resample it to 256 px; Terracat reads it as a window of one "
        "warped VRT per zoom at the tile's resolution (`tiler.readers.TileGrids`): nearest "
        "neighbours on two grids, so some pixels differ (the cross-check below says how "
        "much). The floor and titiler-pgstac encode PNG with GDAL's driver (zlib), Terracat "
        f"with imagecodecs' libpng on zlib-ng at level {TilerSettings().png_level} "
        "(`TERRACAT_TILER_PNG_LEVEL`; titiler's zlevel: 6).",
        "",
    ]


def _item_tiles(
    args: argparse.Namespace, setup: Setup, cells: dict[tuple[str, int], Cell], checks: list[str]
) -> list[str]:
    """The tile tables and the cross-check."""
    return [
        "### Item tiles",
        "",
        f"Closed loop: c concurrent workers (HTTP: tasks sharing one keep-alive httpx client "
        f"per pass; floor: threads), each taking the next tile of the list, one warm-up pass "
        f"then {args.runs} timed pass(es) per cell, targets one after the other (order "
        "reversed at c=8). Latencies of HTTP 200s only; tiles/s = tiles / wall time of the "
        "passes. The benchmark's client runs on the same 2 cores as the servers.",
        "",
        *tile_tables(cells, [FLOOR, INPROC, *setup.servers]),
        "",
        "### Same tiles from each (decoded, compared with the floor's)",
        "",
        *[f"- {line}" for line in checks],
        "",
    ]


def _exports(args: argparse.Namespace, exports: list[ExportRun]) -> list[str]:
    """The MBTiles export section (nothing when the exports were skipped)."""
    if not exports:
        return []
    return [
        "### MBTiles export against GDAL",
        "",
        f'Terracat: `POST /processes/mbtiles/execution` with `{{"item": ..., "minzoom": '
        f'{MINZOOM}, "maxzoom": {MAXZOOM}, "format": "png"|"jpeg", "quality": '
        f"{args.quality}}}` (quality for JPEG only); seconds = "
        "the job's `started` to `finished` (includes spawning its child process and "
        "preparing; the render loop alone is in its log), tiles = its archive's. GDAL "
        "(Debian gdal-bin): `gdal_translate -of MBTILES -co TILE_FORMAT=PNG|JPEG [-co "
        f"QUALITY={args.quality}] cog out.mbtiles` (native zoom) then `gdaladdo -r average "
        "-oo TILE_FORMAT=... [-oo QUALITY=...] out.mbtiles 2 4 ...` down to "
        f"z{MINZOOM}, seconds = both processes, tiles = `SELECT count(*) FROM tiles`. "
        f"{args.runs} run(s) each, alternating which goes first. tiles/s = tiles / seconds "
        "of each tool (their tile counts differ: each leaves out tiles it finds empty). "
        "Both with their defaults: Terracat's export renders on one thread per CPU "
        "(`TERRACAT_EXPORT_RENDERERS=0`), GDAL's tools run with GDAL's default threading.",
        "",
        *export_tables(exports),
        "",
    ]


TARGET_WORKER_MB = 350


def _worker_memory(
    args: argparse.Namespace, memory: dict[str, list[tuple[int, int, int]]]
) -> list[str]:
    """Resident memory of each server's uvicorn workers once the tile passes are over."""
    if not memory:
        return []
    settings = ", ".join(f"`{k}={v}`" for k, v in args.api_env) or "default settings"
    rows = [
        "### Memory of each API worker after the tiles",
        "",
        f"Read from /proc right after the last timed pass and again {args.settle:g} s later, "
        f"idle (Terracat at {settings}).",
        "",
        f"| server | worker | RSS MB | {args.settle:g} s later | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, workers in memory.items():
        for n, (now, later, peak) in enumerate(workers, 1):
            rows.append(f"| {name} | {n} | {now >> 20} | {later >> 20} | {peak >> 20} |")
    ours = [now for now, _, _ in memory.get("terracat", [])]
    if ours:
        verdict = "met" if max(ours) <= TARGET_WORKER_MB << 20 else "MISSED"
        rows += ["", f"- Largest Terracat worker {max(ours) >> 20} MB; target <= "
                 f"{TARGET_WORKER_MB} MB: {verdict}"]  # fmt: skip
    return [*rows, ""]


def report(
    args: argparse.Namespace,
    ortho: Orthophoto,
    setup: Setup,
    passes: list[list[Tile]],
    cells: dict[tuple[str, int], Cell],
    checks: list[str],
    exports: list[ExportRun],
    cog_text: str,
    peer: dict[str, str] | None,
    conflicts: list[str] | None,
    encoders: tuple[str, list[EncoderRow]] = ("", []),
    memory: dict[str, list[tuple[int, int, int]]] | None = None,
) -> list[str]:
    """The markdown section."""
    return [
        *_context(args, ortho, setup, cog_text, peer, conflicts),
        *_tile_sets(args, passes),
        *_item_tiles(args, setup, cells, checks),
        *_worker_memory(args, memory or {}),
        *png_section(encoders[1], encoders[0], TilerSettings().png_level, cells),
        *_exports(args, exports),
        *["### Targets", "", *targets(cells, exports), ""],
    ]
