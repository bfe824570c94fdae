"""MBTiles and PMTiles exports of a datacube layer at a date, through the export processes: a
real worker, the archive downloaded over HTTP, every tile the collection tile endpoint's bytes.
"""

from pathlib import Path
from typing import Any

import shapely
from fastapi.testclient import TestClient
from pmtiles.reader import MmapSource, Reader

from server.settings import Settings
from tests.tiler.conftest import expected_tiles
from tests.tiler.cubes import make_cube, times
from tests.tiler.test_export import (
    assert_endpoint_tiles,
    download,
    exports,
    mbtiles_tiles,
    run_export,
    submit,
)
from tests.tiler.test_export import worker as worker  # noqa: F401 - the fixture
from tests.workers import WorkerThread, wait_for

BASE = "/collections/cube/tiles/WebMercatorQuad/{z}/{x}/{y}.png"


def _region(made: Any) -> shapely.Geometry:
    from tiler.cubes.extent import cube_coverage

    bounds = cube_coverage(made.cube).bounds
    assert bounds is not None
    return shapely.box(*bounds)


def test_an_ndvi_export_at_a_date_holds_the_endpoint_tiles(
    client: TestClient, admin: dict[str, str], worker: WorkerThread, data_dir: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    made = make_cube(client, data_dir, count=8)
    worker.start()
    when = times(8)[4].isoformat()
    export = run_export(client, admin, "mbtiles", collection="cube", layers="NDVI",
                        datetime=when, minzoom=12, maxzoom=15)  # fmt: skip
    tiles = mbtiles_tiles(download(client, admin, export, tmp_path))
    url = BASE + "?" + f"layers=NDVI&datetime={when.replace('+', '%2B')}"
    assert_endpoint_tiles(client, tiles, expected_tiles(_region(made), 12, 15), url)

    interval = f"{times(8)[0].isoformat()}/{times(8)[7].isoformat()}"
    export = run_export(client, admin, "pmtiles", collection="cube", layers="RGB",
                        datetime=interval, temporal_aggregation="max", minzoom=14,
                        maxzoom=15)  # fmt: skip
    path = download(client, admin, export, tmp_path)
    url = BASE + f"?layers=RGB&datetime={interval.replace('+', '%2B')}&temporal_aggregation=max"
    candidates = expected_tiles(_region(made), 14, 15)
    with path.open("rb") as f:
        reader = Reader(MmapSource(f))
        found = {t for t in candidates if reader.get(*t) is not None}
        assert_endpoint_tiles(client, {t: reader.get(*t) for t in found}, candidates, url)


def test_bad_cube_inputs_fail_the_job_with_their_code(
    client: TestClient, admin: dict[str, str], worker: WorkerThread, data_dir: Path,
    settings: Settings,
) -> None:  # fmt: skip
    # another id: the app's opener keeps stores by href (never rewritten outside tests)
    make_cube(client, data_dir, "rgbn-cube", count=2, overviews=(),
              bands=("B02", "B03", "B04", "B08"))  # fmt: skip
    worker.start(exports(settings))
    cases = [
        ({"layers": "B99"}, "cube.UnknownLayer"),
        ({"layers": "NDMI"}, "tiler.PresetUnavailable"),
        ({"datetime": "2031-01-01T00:00:00Z"}, "cube.DatetimeOutsideCube"),
    ]
    jobs = [(submit(client, admin, "mbtiles", collection="rgbn-cube", **i), c) for i, c in cases]
    for job_id, code in jobs:
        doc = wait_for(client, admin, job_id, "successful", "failed", timeout=120)
        assert doc["status"] == "failed" and doc["error"]["code"] == code, doc
    # the process description's enum refuses it before a job is made
    inputs = {"collection": "rgbn-cube", "temporal_aggregation": "sum"}
    r = client.post("/processes/mbtiles/execution", json={"inputs": inputs}, headers=admin)
    assert r.status_code == 400 and "temporal_aggregation" in r.json()["description"]
