"""The tile benchmark's stacks: Terracat with the ingested orthophoto, and the same collection and
item in pgstac behind titiler-pgstac (from its own venv).
"""

import argparse
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import rasterio

from .report import database_versions, log
from .servers import ROOT, TITILER_PGSTAC_VERSION, Stacks, titiler_pgstac_python
from .tiles_measure import ASSET, COLLECTION, GDAL_ENV, TERRACAT, TITILER
from .uploads import IngestStack, TerracatClient, Upload, measure_upload


def load_pgstac(stacks: Stacks, collection: dict[str, Any], item: dict[str, Any]) -> None:
    """The same collection and item (same asset hrefs) into pgstac, through its SQL API."""
    with psycopg.connect(stacks.pgstac_url, autocommit=True) as conn:
        conn.execute("SELECT pgstac.create_collection(%s::jsonb)", (json.dumps(collection),))
        conn.execute("SELECT pgstac.create_item(%s::jsonb)", (json.dumps(item),))


def titiler_pgstac_versions() -> dict[str, str]:
    """Versions of the packages that matter in titiler-pgstac's venv."""
    names = ["titiler-pgstac", "titiler-core", "rio-tiler", "rasterio", "fastapi", "starlette",
             "uvicorn", "uvloop", "httptools", "psycopg"]  # fmt: skip
    code = (
        "import json, sys; from importlib.metadata import version; "
        "print(json.dumps({n: version(n) for n in sys.argv[1:]}))"
    )
    done = subprocess.run([str(titiler_pgstac_python()), "-c", code, *names],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return dict(json.loads(done.stdout))


def lock_conflicts() -> list[str]:
    """titiler-pgstac's requirements that the project's requirements.lock does not satisfy."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    code = (
        "import json; from importlib.metadata import requires; "
        "print(json.dumps(requires('titiler-pgstac')))"
    )
    done = subprocess.run([str(titiler_pgstac_python()), "-c", code],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        name, _, pinned = line.partition("==")
        if pinned:
            pins[canonicalize_name(name.strip())] = pinned.split(";")[0].strip()
    conflicts = []
    for text in json.loads(done.stdout) or []:
        requirement = Requirement(text)
        if requirement.marker is not None:  # extras (psycopg, telemetry...)
            continue
        locked = pins.get(canonicalize_name(requirement.name))
        if locked and not requirement.specifier.contains(locked, prereleases=True):
            conflicts.append(f"{requirement} (lock: {locked})")
    return conflicts


def cog_description(cog: Path) -> str:
    """Size, blocks, compression and overviews of the ingest job's COG."""
    with rasterio.open(cog) as src:
        overviews = src.overviews(1)
        return (
            f"{src.width:,} x {src.height:,} px, {src.count} bands {src.dtypes[0]}, "
            f"{cog.stat().st_size / 2**20:,.1f} MiB, {src.block_shapes[0][0]} px blocks, "
            f"{src.compression.value if src.compression else 'no'} compression, "
            f"{len(overviews)} overviews ({', '.join(str(o) for o in overviews)}), "
            f"nodata {src.nodata}, {src.crs}"
        )


@dataclass
class Setup:
    """What the measurements need from the running stacks."""

    stacks: Stacks
    client: TerracatClient
    servers: dict[str, str]
    item: dict[str, Any]
    cog: Path
    data_dir: Path
    db: dict[str, str]
    ingest_s: float


def start(
    args: argparse.Namespace, ortho: Path, stacks: Stacks, api_env: dict[str, str] | None = None
) -> Setup:
    """Cluster, Terracat, worker, ingest; pgstac and titiler-pgstac unless skipped."""
    with_titiler = not args.skip_titiler_pgstac
    terracat = IngestStack.start(stacks, pgstac=with_titiler, api_env=api_env)
    client, data_dir = terracat.client, terracat.data_dir
    client.create_collection(COLLECTION)
    log(f"ingesting {ortho.name} over tus")
    timeline = terracat.timeline()
    try:
        up = measure_upload(client, timeline, Upload("orthophoto", "tus", ortho, COLLECTION, True),
                            0.25, args.timeout)  # fmt: skip
    finally:
        timeline.stop()
    if up.searchable != up.searchable:
        raise RuntimeError(f"the ingest did not make an item: {up.outcome} {up.job}")
    ingest_s = up.searchable - up.t0
    item_id = _item_id(ortho)  # a new collection: the id is the file's stem
    item = client.get(f"collections/{COLLECTION}/items/{item_id}")
    href = item["assets"][ASSET]["href"]  # the download route's URL
    [cog] = (Path(data_dir) / "assets" / COLLECTION / item_id).glob("*.tif")
    # titiler-pgstac reads the same file from disk, as Terracat's own renderer does
    item = {**item, "assets": {**item["assets"], ASSET: {**item["assets"][ASSET],
                                                         "href": cog.as_uri()}}}  # fmt: skip
    log(f"item {item_id} searchable after {ingest_s:.1f} s; COG {cog} ({href})")
    servers = {TERRACAT: terracat.api.url}
    db = database_versions(stacks.terracat_url)
    if with_titiler:
        collection = client.get(f"collections/{COLLECTION}")
        load_pgstac(stacks, collection, item)
        db = database_versions(stacks.pgstac_url, pgstac=True)
        log(f"starting titiler-pgstac {TITILER_PGSTAC_VERSION} from its venv")
        servers[TITILER] = stacks.start_titiler_pgstac(dict(GDAL_ENV)).url
    return Setup(stacks, client, servers, item, cog, data_dir, db, ingest_s)


def _item_id(ortho: Path) -> str:
    from catalog.uploads.repository import item_id_from_filename

    return item_id_from_filename(ortho.name)
