"""Map tile benchmark: item tiles over HTTP against rio-tiler in-process and titiler-pgstac, and
the MBTiles export against GDAL.

    python -m bench.tiles --size 10000 --tiles 300

Uses the ingest benchmark's synthetic orthophoto (bench.orthophoto, cached in
var/bench/ingest), starts a private PostgreSQL cluster (Terracat and pgstac databases),
Terracat under uvicorn and one ``terracat worker``, uploads the orthophoto over tus and
waits for its item (the ingest job makes the COG). The same item and its collection go
into pgstac, served by titiler-pgstac (from its own venv, var/titiler-pgstac-venv) with
the same uvicorn options. Then:

- a seeded set of tiles over z12-18, each touching the item's footprint, the same list for
  everyone: rio-tiler in-process on the COG (the floor), Terracat's item tile endpoint and
  titiler-pgstac's, at concurrency 1 and 8, one warm-up pass then ``--runs`` timed passes;
  p50/p95/mean latency and tiles/s; a few tiles decoded and compared between the three;
- PNG encoder sizes and CPU times on the same pixels: the peer's PNG tiles decoded and encoded
  again by GDAL at titiler's level and by Terracat's encoder at each level (bench.tiles_encode);
- the ``mbtiles`` process (PNG and JPEG, z12-18) against ``gdal_translate -of MBTILES`` +
  ``gdaladdo`` on the same COG, ``--runs`` times each, alternating which goes first; JPEG at
  ``--quality`` for both.

Prints the tables and the targets (measured, never asserted); writes them to
docs/benchmarks.md unless --no-docs.
"""

import argparse
import functools
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rasterio.errors import NotGeoreferencedWarning

from catalog.storage.base import stored_href
from catalog.storage.local import LocalStorage

from .memory import worker_memory
from .orthophoto import Orthophoto, make_orthophoto
from .report import log, write_section
from .servers import ROOT, Stacks
from .tiles_encode import EncoderRow, compare_png_encoders, peer_pngs
from .tiles_export import ExportRun, compare_exports
from .tiles_measure import (
    ASSET,
    COLLECTION,
    FLOOR,
    INPROC,
    LEVELS,
    TITILER,
    Tile,
    cross_check,
    measure_tiles,
    render_floor,
    terracat_renderer,
    tile_sets,
)
from .tiles_report import report, zoom_counts
from .tiles_setup import cog_description, lock_conflicts, start, titiler_pgstac_versions


def write_docs(path: Path, size: int, section: list[str]) -> None:
    """Replace (or append) this size's tiles section in docs/benchmarks.md."""
    write_section(path, f"tiles={size}", section)


def _as_stored(item: dict[str, Any], cog: Path, data_dir: Path) -> dict[str, Any]:
    """The item as the database keeps it (the COG's ``storage:`` key), as the tile endpoint
    renders it; the setup's copy names the file (``file://``) for titiler-pgstac."""
    key = Path(cog).resolve().relative_to(Path(data_dir).resolve()).as_posix()
    asset = {**item["assets"][ASSET], "href": stored_href(key)}
    return {**item, "assets": {**item["assets"], ASSET: asset}}


def run(args: argparse.Namespace) -> list[str]:
    """The whole benchmark; the markdown section."""
    ortho = Orthophoto(args.size)
    started = time.perf_counter()
    path = make_orthophoto(args.data, ortho)
    log(f"orthophoto ready in {time.perf_counter() - started:.1f} s: {path}")
    os.sync()
    peer = conflicts = None
    if not args.skip_titiler_pgstac:
        peer = titiler_pgstac_versions()
        conflicts = lock_conflicts()
    stacks = Stacks(workers=args.workers)
    try:
        setup = start(args, path, stacks, dict(args.api_env))
        # one list per pass and concurrency level, and one more for the cross-check
        passes = tile_sets(setup.item["geometry"], args.tiles, args.seed,
                           len(LEVELS) * (args.runs + 1) + 1)  # fmt: skip
        tiles = passes.pop()
        distinct = len({t for tiles_ in passes for t in tiles_})
        log(f"{len(passes)} passes of {len(tiles)} tiles ({zoom_counts(tiles)}), "
            f"{distinct} distinct")  # fmt: skip
        inproc: dict[str, Callable[[Tile], bytes]] = {
            FLOOR: functools.partial(render_floor, setup.cog),
            INPROC: terracat_renderer(
                _as_stored(setup.item, setup.cog, setup.data_dir), LocalStorage(setup.data_dir)
            ),
        }
        checks = cross_check(setup.cog, inproc, setup.servers, tiles, COLLECTION,
                             setup.item["id"])  # fmt: skip
        for line in checks:
            log(f"cross-check {line}")
        peer_name = TITILER if TITILER in setup.servers else FLOOR
        peer_source = setup.servers.get(TITILER) or inproc[FLOOR]
        pngs = peer_pngs(peer_source, tiles, COLLECTION, setup.item["id"])
        log(f"PNG encoders on {len(pngs)} tiles of {peer_name}")
        encoders: list[EncoderRow] = compare_png_encoders(pngs)
        cells = measure_tiles(inproc, setup.servers, passes, COLLECTION, setup.item["id"],
                              args.runs)  # fmt: skip
        memory = worker_memories(stacks, args.settle)
        exports: list[ExportRun] = []
        if not args.skip_export:
            if TITILER in setup.servers:
                stacks.servers["titiler-pgstac"].stop()  # idle, but out of the export's way
            log(f"MBTiles export against GDAL, {args.runs} run(s) each")
            exports = compare_exports(setup.client, COLLECTION, setup.item["id"], setup.cog,
                                      setup.data_dir, args.runs, args.quality)  # fmt: skip
        cog_text = cog_description(setup.cog)
        setup.client.http.close()
        return report(args, ortho, setup, passes, cells, checks, exports, cog_text, peer,
                      conflicts, (peer_name, encoders), memory)  # fmt: skip
    finally:
        stacks.close()


def worker_memories(stacks: Stacks, settle_s: float) -> dict[str, list[tuple[int, int, int]]]:
    """(RSS right after the tiles, RSS ``settle_s`` later, peak RSS) of each server's workers."""
    servers = {n: s for n, s in stacks.servers.items() if n != "worker"}
    now = {name: worker_memory(server.process.pid) for name, server in servers.items()}
    time.sleep(settle_s)
    memory = {}
    for name, server in servers.items():
        later = worker_memory(server.process.pid)
        memory[name] = [(a[0], b[0], b[1]) for a, b in zip(now[name], later, strict=False)]
        log(f"{name} workers after the tiles (RSS, {settle_s:g} s later, peak; MB): "
            + ", ".join(" / ".join(str(v >> 20) for v in w) for w in memory[name]))  # fmt: skip
    return memory


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="orthophoto width = height")
    parser.add_argument("--tiles", type=int, default=300, help="tiles in the set")
    parser.add_argument("--seed", type=int, default=42, help="seed of the tile set")
    parser.add_argument("--runs", type=int, default=2,
                        help="timed passes per tile cell; runs of each export")  # fmt: skip
    parser.add_argument("--quality", type=int, default=75,
                        help="JPEG quality of both exporters (GDAL's default: 75)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per server")
    parser.add_argument("--timeout", type=float, default=600.0, help="ingest job timeout (s)")
    parser.add_argument("--skip-titiler-pgstac", action="store_true")
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT / "var" / "bench" / "ingest",
        help="cache folder of the orthophoto (shared with bench.ingest)",
    )
    parser.add_argument(
        "--api-env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="added to Terracat's environment (e.g. TERRACAT_TILER_GDAL_CACHE_MB=64)",
    )
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds idle before the workers' memory is read again")  # fmt: skip
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args(argv)
    # PNG tiles have no georeferencing: rasterio says so for each one it encodes or decodes.
    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the servers and the cluster.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.perf_counter()
    section = run(args)
    print("\n".join(section))
    log(f"done in {time.perf_counter() - started:.0f} s")
    if not args.no_docs:
        write_docs(args.docs, args.size, section)
        log(f"written to {args.docs}")


if __name__ == "__main__":
    main()
