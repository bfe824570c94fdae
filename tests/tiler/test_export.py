"""The mbtiles and pmtiles processes end to end: real COG items, a real worker, HTTP downloads.

Every archive tile is compared byte for byte with what the tile endpoints serve for the same
z/x/y and options; the expected tile set is computed independently, with morecantile and shapely
(``expected_tiles``).
"""

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import shapely
from fastapi.testclient import TestClient
from pmtiles.reader import MmapSource, Reader
from rasterio.transform import from_origin
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.jobs.queue import Process
from catalog.settings import JobSettings
from catalog.stac.repository import CatalogRepository
from catalog.storage import build_storage
from ogc.processes import resolve_outputs
from server.settings import Settings
from server.worker import sweep_temp
from tests import rasters
from tests.tiler.conftest import COLLECTION, PREFIX, MakeItem, decode, expected_tiles
from tests.workers import MakeWorker, Processes, WorkerThread, wait_for
from tiler.export import export_processes
from tiler.settings import ExportSettings

FAST = JobSettings(heartbeat_s=0.2, stale_after_s=2, idle_wake_s=0.5, max_attempts=2)


def exports(settings: Settings, export: ExportSettings | None = None) -> Processes:
    """The export processes on the worker's engine, writing into the settings' data folder."""

    def make(engine: AsyncEngine) -> dict[str, Process]:
        storage = build_storage(settings.storage, settings.ingest.data_dir)
        processes = export_processes(CatalogRepository(engine), storage, settings.tiler,
                                     export)  # fmt: skip
        return {p.description.id: p for p in processes}

    return make


@pytest.fixture
def worker(settings: Settings, make_worker: MakeWorker) -> WorkerThread:
    """A worker running the export processes, started by the test."""
    return make_worker(exports(settings), FAST)


def submit(client: TestClient, admin: dict[str, str], process: str, **inputs: Any) -> str:
    r = client.post(f"/processes/{process}/execution", json={"inputs": inputs}, headers=admin)
    assert r.status_code == 201, r.text
    return str(r.json()["jobID"])


def run_export(
    client: TestClient, admin: dict[str, str], process: str, **inputs: Any
) -> dict[str, Any]:
    job_id = submit(client, admin, process, **inputs)
    doc = wait_for(client, admin, job_id, "successful", "failed", "dismissed", timeout=120)
    assert doc["status"] == "successful", doc
    results = client.get(f"/jobs/{job_id}/results", headers=admin).json()
    return {"job": job_id, **results["archive"]["value"]}


def download(
    client: TestClient, admin: dict[str, str], export: dict[str, Any], folder: Path
) -> Path:
    url = urlsplit(urljoin("http://testserver/", export["href"])).path
    assert url.startswith(f"/exports/{export['job']}.")
    r = client.get(url, headers=admin)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == export["type"]
    assert len(r.content) == export["bytes"]
    path = folder / url.rsplit("/", 1)[1]
    path.write_bytes(r.content)
    return path


def mbtiles_tiles(path: Path) -> dict[tuple[int, int, int], bytes]:
    """XYZ -> bytes of every tile of an MBTiles file (rows are TMS)."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles")
        return {(z, x, (1 << z) - 1 - row): bytes(data) for z, x, row, data in rows}


def mbtiles_metadata(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT name, value FROM metadata"))


def footprint(item: dict[str, Any]) -> shapely.Geometry:
    return shapely.geometry.shape(item["geometry"])


def endpoint_tile(client: TestClient, url: str) -> bytes | None:
    """A tile from the API; None when it is a 404/204 or every pixel is transparent."""
    r = client.get(url)
    if r.status_code in (204, 404):
        return None
    assert r.status_code == 200, r.text
    if r.headers["content-type"] == "image/png" and not decode(r.content)[-1].any():
        return None
    return r.content


def assert_endpoint_tiles(
    client: TestClient,
    archive: dict[tuple[int, int, int], bytes],
    candidates: set[tuple[int, int, int]],
    url: str,
    empty_url: str | None = None,
) -> None:
    """Archive tiles are the endpoint's bytes; candidates left out are empty there."""
    assert archive, "the archive has no tile"
    assert set(archive) <= candidates
    for z, x, y in sorted(candidates):
        if (z, x, y) in archive:
            r = client.get(url.format(z=z, x=x, y=y))
            assert r.status_code == 200, r.text
            assert r.content == archive[z, x, y], f"tile {z}/{x}/{y} differs"
        else:
            assert endpoint_tile(client, (empty_url or url).format(z=z, x=x, y=y)) is None


def shrink(bounds: list[float], share: float) -> list[float]:
    west, south, east, north = bounds
    dx, dy = (east - west) * share, (north - south) * share
    return [west + dx, south + dy, east - dx, north - dy]


# -- item exports -------------------------------------------------------------------------------
ITEM_TILES = PREFIX + "/rgb/tiles/WebMercatorQuad/{z}/{x}/{y}"


def test_mbtiles_export_of_an_item_holds_the_endpoint_tiles(
    client: TestClient, admin: dict[str, str], worker: WorkerThread, rgb_item: dict[str, Any],
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # create_app sized this process's GDAL cache in its environment; the job child is spawned
    # from here and must get the export's size, not inherit the server's
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    worker.start(exports(settings, ExportSettings(gdal_cache_mb=96)))
    bbox = shrink(rgb_item["bbox"], 0.2)
    export = run_export(client, admin, "mbtiles", item={"collection": COLLECTION, "id": "rgb"},
                        bbox=bbox, minzoom=13, maxzoom=17)  # fmt: skip
    assert export["type"] == "application/vnd.sqlite3"
    # absolute once the results route resolves output links (ogc.processes.resolve_outputs)
    href = urljoin("http://testserver/", export["href"])
    assert href == f"http://testserver/exports/{export['job']}.mbtiles"
    path = download(client, admin, export, tmp_path)
    tiles = mbtiles_tiles(path)
    assert export["tiles"] == len(tiles)
    region = footprint(rgb_item) & shapely.box(*bbox)
    candidates = expected_tiles(region, 13, 17)
    assert {z for z, _, _ in tiles} == set(range(13, 18))
    assert_endpoint_tiles(client, tiles, candidates, ITEM_TILES + ".png")

    metadata = mbtiles_metadata(path)
    bounds = tuple(float(v) for v in metadata["bounds"].split(","))
    assert bounds == pytest.approx(region.bounds, abs=1e-7)
    lon, lat, zoom = (float(v) for v in metadata["center"].split(","))
    assert (lon, lat) == pytest.approx(shapely.box(*bounds).centroid.coords[0])
    assert 13 <= zoom <= 17
    assert metadata["name"] == f"{COLLECTION}/rgb" and metadata["format"] == "png"
    assert (metadata["minzoom"], metadata["maxzoom"]) == ("13", "17")
    assert metadata["type"] == "overlay" and metadata["version"] == "1.0.0"
    assert metadata["description"] == f"Item rgb of collection {COLLECTION}"
    assert "attribution" not in metadata  # the collection names no licensor or producer
    log = client.get(f"/jobs/{export['job']}/log", headers=admin).json()["lines"]
    assert any("GDAL_CACHEMAX=96 " in line for line in log)  # ExportSettings.gdal_cache_mb

    info = json.loads(subprocess.run(["gdalinfo", "-json", str(path)], capture_output=True,
                                     check=True, text=True).stdout)  # fmt: skip
    assert info["driverShortName"] == "MBTiles"
    assert info["metadata"][""]["ZOOM_LEVEL"] == "17"
    width, height = info["size"]
    overviews = [o["size"] for o in info["bands"][0]["overviews"]]
    assert len(overviews) == 17 - 13  # zooms 16, 15, 14 and 13
    for level, (w, h) in enumerate(overviews, start=1):
        assert abs(w - width / 2**level) <= 1 and abs(h - height / 2**level) <= 1
    ring = info["wgs84Extent"]["coordinates"][0]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    pixel = 360 / 2**17 / 256
    assert (min(lons), min(lats), max(lons), max(lats)) == pytest.approx(region.bounds,
                                                                         abs=pixel)  # fmt: skip


def test_pmtiles_export_reads_back_with_the_mbtiles_tiles(
    client: TestClient, admin: dict[str, str], worker: WorkerThread, rgb_item: dict[str, Any],
    tmp_path: Path,
) -> None:  # fmt: skip
    worker.start()
    inputs = {"item": {"collection": COLLECTION, "id": "rgb"}, "minzoom": 11, "maxzoom": 15,
              "type": "baselayer"}  # fmt: skip
    pm = run_export(client, admin, "pmtiles", **inputs)
    mb = run_export(client, admin, "mbtiles", **inputs)
    assert pm["type"] == "application/vnd.pmtiles" and pm["href"].endswith(".pmtiles")
    mb_path = download(client, admin, mb, tmp_path)
    assert mbtiles_metadata(mb_path)["type"] == "baselayer"
    tiles = mbtiles_tiles(mb_path)
    assert pm["tiles"] == mb["tiles"] == len(tiles)
    with download(client, admin, pm, tmp_path).open("rb") as f:
        reader = Reader(MmapSource(f))
        header = reader.header()
        assert (header["min_zoom"], header["max_zoom"]) == (11, 15)
        assert header["clustered"] and header["addressed_tiles_count"] == len(tiles)
        bounds = footprint(rgb_item).bounds
        got = [header[k] / 1e7 for k in ("min_lon_e7", "min_lat_e7", "max_lon_e7", "max_lat_e7")]
        assert got == pytest.approx(bounds, abs=1e-6)
        assert reader.metadata()["name"] == f"{COLLECTION}/rgb"
        assert reader.metadata()["type"] == "baselayer"  # the type input, in both formats
        for (z, x, y), data in tiles.items():
            assert reader.get(z, x, y) == data


def test_jpeg_512_px_export_is_the_endpoint_at_2x_at_its_quality(
    client: TestClient, admin: dict[str, str], worker: WorkerThread, rgb_item: dict[str, Any],
    tmp_path: Path,
) -> None:  # fmt: skip
    """quality=85 gives the endpoint's JPEG bytes; the default (75, GDAL's) smaller tiles."""
    worker.start()
    inputs = {"item": {"collection": COLLECTION, "id": "rgb"}, "format": "jpeg",
              "tile_size": 512, "minzoom": 13, "maxzoom": 14, "rescale": ["0,200"],
              "resampling": "bilinear"}  # fmt: skip
    export = run_export(client, admin, "mbtiles", **inputs, quality=85)
    tiles = mbtiles_tiles(download(client, admin, export, tmp_path))
    candidates = expected_tiles(footprint(rgb_item), 13, 14)
    url = ITEM_TILES + "@2x.jpeg?rescale=0,200&resampling=bilinear"
    assert_endpoint_tiles(client, tiles, candidates, url, ITEM_TILES + ".png")
    assert decode(next(iter(tiles.values()))).shape == (3, 512, 512)  # black where no data
    metadata = mbtiles_metadata(tmp_path / f"{export['job']}.mbtiles")
    # an export covers its data, not the world: overlay whatever the format, unless asked
    assert metadata["format"] == "jpg" and metadata["type"] == "overlay"
    assert "rescale=['0,200']" in metadata["description"]

    default = mbtiles_tiles(download(client, admin, run_export(client, admin, "mbtiles",
                                                               **inputs), tmp_path))  # fmt: skip
    assert default.keys() == tiles.keys()
    for key, data in default.items():
        assert len(data) < len(tiles[key]), key
        ours, endpoint = decode(data).astype(int), decode(tiles[key]).astype(int)
        assert ours.shape == endpoint.shape and abs(ours - endpoint).mean() < 3  # same picture


def test_default_zooms_come_from_the_native_resolution(
    client: TestClient, admin: dict[str, str], worker: WorkerThread, rgb_item: dict[str, Any],
    tmp_path: Path,
) -> None:  # fmt: skip
    worker.start()
    native = client.get(f"{PREFIX}/rgb/WebMercatorQuad/tilejson.json").json()["maxzoom"]
    export = run_export(client, admin, "mbtiles", item={"collection": COLLECTION, "id": "rgb"},
                        preset="rgb")  # fmt: skip
    metadata = mbtiles_metadata(download(client, admin, export, tmp_path))
    assert (metadata["minzoom"], metadata["maxzoom"]) == (str(max(0, native - 6)), str(native))
    z, x, y = sorted(mbtiles_tiles(tmp_path / f"{export['job']}.mbtiles"))[-1]
    r = client.get(ITEM_TILES.format(z=z, x=x, y=y) + ".png?preset=rgb")
    assert r.content == mbtiles_tiles(tmp_path / f"{export['job']}.mbtiles")[z, x, y]


# -- mosaics ------------------------------------------------------------------------------------
@pytest.fixture
def two_items(make_item: MakeItem, tmp_path: Path) -> list[dict[str, Any]]:
    """Two overlapping RGB items, the second 1.5 km east and 1 km south of the first."""
    folder = tmp_path / "src-mosaic"
    folder.mkdir()
    first = make_item(rasters.utm_rgb_tif(folder), "west")
    east, north = rasters.UTM_ORIGIN[0] + 1500, rasters.UTM_ORIGIN[1] - 1000
    path = rasters.write_geotiff(
        folder / "east.tif", width=400, height=400, count=3, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(east, north, 10, 10), nodata=0, photometric="RGB",
        fill=lambda c, h, w: (255 - rasters.gradient(c, h, w)).clip(1, 255).astype("uint8"),
    )  # fmt: skip
    return [first, make_item(path, "east")]


def test_collection_and_search_exports_hold_the_mosaic_tiles(
    client: TestClient, admin: dict[str, str], worker: WorkerThread,
    two_items: list[dict[str, Any]], tmp_path: Path,
) -> None:  # fmt: skip
    worker.start()
    region = shapely.union_all([footprint(i) for i in two_items])
    export = run_export(client, admin, "mbtiles", collection=COLLECTION, minzoom=13, maxzoom=15)
    tiles = mbtiles_tiles(download(client, admin, export, tmp_path))
    url = f"/collections/{COLLECTION}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png"
    assert_endpoint_tiles(client, tiles, expected_tiles(region, 13, 15), url)
    assert mbtiles_metadata(tmp_path / f"{export['job']}.mbtiles")["name"] == (
        f"Collection {COLLECTION}"
    )

    body = {"collections": [COLLECTION], "sortby": [{"field": "id", "direction": "asc"}]}
    r = client.post("/searches", json=body, headers=admin)
    assert r.status_code in (200, 201), r.text
    search_id = r.json()["id"]
    bbox = shrink(list(region.bounds), 0.25)
    export = run_export(client, admin, "pmtiles", search=search_id, bbox=bbox, minzoom=14,
                        maxzoom=15, pixel_selection="first")  # fmt: skip
    path = download(client, admin, export, tmp_path)
    url = f"/searches/{search_id}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png"
    candidates = expected_tiles(region & shapely.box(*bbox), 14, 15)
    with path.open("rb") as f:
        reader = Reader(MmapSource(f))
        found = {t for t in candidates if reader.get(*t) is not None}
        assert_endpoint_tiles(client, {t: reader.get(*t) for t in found}, candidates, url)
        assert reader.header()["addressed_tiles_count"] == len(found) == export["tiles"]


# -- cancel, kill, downloads --------------------------------------------------------------------
def _progressing(client: TestClient, admin: dict[str, str], job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        doc = client.get(f"/jobs/{job_id}", headers=admin).json()
        assert doc["status"] in ("accepted", "running"), doc
        if doc["progress"] > 0:
            return doc
        assert time.monotonic() < deadline, doc
        time.sleep(0.05)


def test_cancel_mid_export_publishes_nothing_and_leaves_no_temp_file(
    client: TestClient, admin: dict[str, str], worker: WorkerThread, rgb_item: dict[str, Any],
    settings: Settings,
) -> None:  # fmt: skip
    worker.start()
    job_id = submit(client, admin, "mbtiles", item={"collection": COLLECTION, "id": "rgb"},
                    minzoom=14, maxzoom=20)  # fmt: skip
    doc = _progressing(client, admin, job_id)
    assert doc["message"].endswith(" tiles") and "/" in doc["message"]  # "done/total tiles"
    started = time.monotonic()
    r = client.delete(f"/jobs/{job_id}", headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "dismissed", r.text
    assert time.monotonic() - started < 1.0  # measured 0.3-0.45 s on 2 busy cores
    data = settings.ingest.data_dir
    assert not (data / "exports").exists() or not any((data / "exports").iterdir())
    assert not list((data / "tmp").glob("*.mbtiles*"))  # SIGTERM unwound: the writer deleted it


def test_a_killed_worker_publishes_nothing_and_the_export_runs_again(
    client: TestClient, admin: dict[str, str], worker: WorkerThread, rgb_item: dict[str, Any],
    settings: Settings,
) -> None:  # fmt: skip
    """A worker process killed mid-export leaves no archive; the job runs again elsewhere.

    The export (z13-17, about 600 tiles) lasts seconds: progress is first reported after
    0.5 s of rendering, when the worker is killed, so it is caught running.
    """
    data = settings.ingest.data_dir
    env = {**os.environ, "DATABASE_URL": str(settings.db.url),
           "TERRACAT_INGEST_DATA_DIR": str(data), "TERRACAT_JOBS_HEARTBEAT_S": "0.2"}  # fmt: skip
    doomed = subprocess.Popen([sys.executable, "-m", "server.cli", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        job_id = submit(client, admin, "pmtiles", item={"collection": COLLECTION, "id": "rgb"},
                        minzoom=13, maxzoom=17)  # fmt: skip
        _progressing(client, admin, job_id)
    finally:
        doomed.kill()  # as the OOM killer would: no clean-up; its export child dies with it
        doomed.wait()
    log = client.get(f"/jobs/{job_id}/log", headers=admin).json()["lines"]
    child = int(next(line for line in log if "(pid " in line).rsplit("(pid ", 1)[1].rstrip(")"))
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists():
        assert time.monotonic() < deadline, "the export child outlived its worker"
        time.sleep(0.05)
    assert not (data / "exports" / f"{job_id}.pmtiles").exists()
    assert len(list((data / "tmp").glob("*.pmtiles"))) == 1  # left to the tmp sweep

    worker.start()  # finds the stale job, queues it again and runs it
    doc = wait_for(client, admin, job_id, "successful", "failed", timeout=180)
    assert doc["status"] == "successful" and doc["attempts"] == 2, doc
    assert (data / "exports" / f"{job_id}.pmtiles").stat().st_size > 0
    assert sweep_temp(data / "tmp", 0, now=time.time() + 1) == 1
    assert not list((data / "tmp").glob("*.pmtiles"))


def test_download_supports_ranges_etags_and_needs_the_token(
    client: TestClient, admin: dict[str, str], worker: WorkerThread, rgb_item: dict[str, Any],
) -> None:  # fmt: skip
    worker.start()
    export = run_export(client, admin, "mbtiles", item={"collection": COLLECTION, "id": "rgb"},
                        minzoom=12, maxzoom=13)  # fmt: skip
    url = f"/exports/{export['job']}.mbtiles"
    full = client.get(url, headers={**admin, "Accept-Encoding": "identity"})
    assert full.status_code == 200 and full.content[:16] == b"SQLite format 3\x00"
    assert full.headers["accept-ranges"] == "bytes"
    assert full.headers["content-length"] == str(export["bytes"])
    assert full.headers["content-disposition"] == f'attachment; filename="{export["job"]}.mbtiles"'
    etag = full.headers["etag"]
    part = client.get(url, headers={**admin, "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == full.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{export['bytes']}"
    tail = client.get(url, headers={**admin, "Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == full.content[-16:]
    past = client.get(url, headers={**admin, "Range": f"bytes={export['bytes'] + 10}-"})
    assert past.status_code == 416 and past.json()["code"] == "export.RangeNotSatisfiable"
    assert past.headers["content-range"] == f"bytes */{export['bytes']}"
    for bad in ("bytes=abc", "items=0-9", "bytes=20-10", "0-9"):
        refused = client.get(url, headers={**admin, "Range": bad})
        assert refused.status_code == 400, (bad, refused.text)
        assert refused.json()["code"] == "export.InvalidRange"
    described = client.get("/api").json()["paths"]["/exports/{jobID}.{extension}"]["get"]
    assert {"206", "304", "400", "404", "416"} <= set(described["responses"])
    assert "export.RangeNotSatisfiable" in described["responses"]["416"]["description"]
    several = client.get(url, headers={**admin, "Range": "bytes=0-9,100-109"})
    assert several.status_code == 200 and several.content == full.content  # one range or all
    same = client.get(url, headers={**admin, "If-None-Match": etag})
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == etag
    assert client.get(url, headers={**admin, "If-None-Match": '"other"'}).status_code == 200
    stale = client.get(url, headers={**admin, "Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and len(stale.content) == export["bytes"]
    stale_past = client.get(url, headers={**admin, "Range": f"bytes={export['bytes']}-",
                                          "If-Range": '"other"'})  # fmt: skip
    assert stale_past.status_code == 200  # another version: the whole file, range unchecked
    head = client.head(url, headers=admin)
    assert head.status_code == 200 and int(head.headers["content-length"]) == export["bytes"]
    assert client.get(url).status_code == 401
    for wrong in (f"/exports/{export['job']}.pmtiles", "/exports/nope.mbtiles",
                  "/exports/00000000-0000-0000-0000-000000000000.mbtiles"):  # fmt: skip
        r = client.get(wrong, headers=admin)
        assert r.status_code == 404 and r.json()["code"] == "export.NotFound", r.text
    assert client.delete(f"/jobs/{export['job']}", headers=admin).status_code == 200
    assert client.get(url, headers=admin).status_code == 404  # dismissed: results gone


# -- refusals -----------------------------------------------------------------------------------
def test_processes_are_described(maps: TestClient) -> None:
    ids = {p["id"] for p in maps.get("/processes").json()["processes"]}
    assert {"mbtiles", "pmtiles"} <= ids
    doc = maps.get("/processes/pmtiles").json()
    assert {"item", "collection", "search", "bbox", "minzoom", "maxzoom", "format", "tile_size",
            "preset", "expression", "rescale", "colormap_name"} <= set(doc["inputs"])  # fmt: skip
    assert doc["inputs"]["format"]["schema"]["enum"] == ["png", "jpeg", "webp"]
    assert doc["inputs"]["quality"]["schema"] == {"type": "integer", "minimum": 1,
                                                  "maximum": 100, "default": 75}  # fmt: skip
    assert doc["inputs"]["type"]["schema"]["enum"] == ["overlay", "baselayer"]
    process = maps.app.state.processes["pmtiles"]  # type: ignore[attr-defined]
    assert process.description.timeout_s == ExportSettings().timeout_s  # not the jobs' default
    assert doc["outputs"]["archive"]["schema"]["properties"]["type"]["const"] == (
        "application/vnd.pmtiles"
    )


@pytest.mark.parametrize(
    ("inputs", "code"),
    [
        ({"item": {"collection": "c", "id": "i"}, "collection": "c"}, "request.InvalidParameter"),
        ({"minzoom": 3}, "request.InvalidParameter"),
        ({"collection": "c", "bbox": [10, 50, 9, 51]}, "request.InvalidParameter"),
        ({"collection": "c", "minzoom": 9, "maxzoom": 8}, "request.InvalidParameter"),
        ({"collection": "c", "preset": "nope"}, "tiler.UnknownPreset"),
        ({"collection": "c", "preset": "ndvi", "expression": "b1"}, "tiler.InvalidLayer"),
        ({"collection": "c", "colormap_name": "nope"}, "request.InvalidParameter"),
        ({"collection": "c", "rescale": ["0,1,2"]}, "request.InvalidParameter"),
        ({"collection": "c", "format": "gif"}, "request.InvalidParameter"),
        ({"collection": "c", "tile_size": 300}, "request.InvalidParameter"),
        ({"collection": "c", "format": "jpeg", "quality": 0}, "request.InvalidParameter"),
        ({"collection": "c", "format": "jpeg", "quality": 101}, "request.InvalidParameter"),
        ({"collection": "c", "quality": "best"}, "request.InvalidParameter"),
        ({"collection": "c", "type": "base"}, "request.InvalidParameter"),
        ({"item": {"collection": "c", "id": "i"}, "pixel_selection": "first"},
         "request.InvalidParameter"),
        ({"collection": "c", "bbox": [0, 0, 10, 10], "minzoom": 0, "maxzoom": 16},
         "export.TooManyTiles"),
    ],
)  # fmt: skip
def test_bad_inputs_are_refused_at_submission(
    maps: TestClient, admin: dict[str, str], inputs: dict[str, Any], code: str
) -> None:
    r = maps.post("/processes/mbtiles/execution", json={"inputs": inputs}, headers=admin)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == code, r.json()


def test_quality_and_type_are_checked_at_submission(
    client: TestClient, admin: dict[str, str]
) -> None:
    """1 and 100 are qualities, 0 and 101 are not; the error names the input."""
    for process in ("mbtiles", "pmtiles"):
        for inputs in ({"quality": 1, "type": "baselayer"}, {"quality": 100, "type": "overlay"}):
            submit(client, admin, process, collection="c", format="jpeg", **inputs)
        for quality in (0, 101):
            r = client.post(f"/processes/{process}/execution", headers=admin,
                            json={"inputs": {"collection": "c", "quality": quality}})  # fmt: skip
            assert (r.status_code, r.json()["code"]) == (400, "request.InvalidParameter")
            assert "'quality'" in r.json()["description"], r.json()


def test_what_prepare_finds_wrong_fails_the_job_with_its_code(
    client: TestClient, admin: dict[str, str], worker: WorkerThread, rgb_item: dict[str, Any],
    settings: Settings,
) -> None:  # fmt: skip
    worker.start(exports(settings, ExportSettings(max_tiles=30)))
    item = {"collection": COLLECTION, "id": "rgb"}
    cases = [
        ({"item": {"collection": COLLECTION, "id": "missing"}}, "catalog.NotFound"),
        ({"collection": "missing"}, "catalog.NotFound"),
        ({"search": "0" * 32}, "search.NotFound"),
        ({"item": item, "minzoom": 10, "maxzoom": 18}, "export.TooManyTiles"),
        ({"item": item, "bbox": [0, 0, 1, 1], "maxzoom": 12}, "export.NoData"),
        ({"item": item, "preset": "ndvi"}, "tiler.PresetUnavailable"),
    ]
    jobs = [(submit(client, admin, "mbtiles", **inputs), code) for inputs, code in cases]
    for job_id, code in jobs:
        doc = wait_for(client, admin, job_id, "successful", "failed", timeout=120)
        assert doc["status"] == "failed" and doc["error"]["code"] == code, doc
        assert doc["attempts"] == 1  # not retried


def test_output_links_resolve_against_the_api_root() -> None:
    outputs = {"archive": {"href": "exports/j.mbtiles", "tiles": 3}, "n": 1,
               "other": {"href": "https://example.com/x"}}  # fmt: skip
    resolved = resolve_outputs(outputs, "https://maps.example.com/api")
    assert resolved["archive"] == {"href": "https://maps.example.com/api/exports/j.mbtiles",
                                   "tiles": 3}  # fmt: skip
    assert resolved["n"] == 1 and resolved["other"] == outputs["other"]
