"""Exports and rights: an item or collection export needs ``write`` on its collection, and a
saved search's export holds only what its submitter reads (``world``: tests/tiler/rights.py)."""

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.settings import Settings
from tests.tiler.conftest import decode
from tests.tiler.rights import HIDDEN_COLOUR, SECRET, World
from tests.tiler.test_export import FAST, download, exports, mbtiles_tiles
from tests.workers import MakeWorker, wait_for
from tiler.export.inputs import READABLE_INPUT

SOURCES: dict[str, dict[str, Any]] = {
    "collection": {"collection": SECRET},
    "item": {"item": {"collection": SECRET, "id": "hidden"}},
}


def execute(world: World, caller: str, **inputs: Any) -> Any:
    return world.client.post(
        "/processes/mbtiles/execution",
        json={"inputs": {"minzoom": 11, "maxzoom": 12, **inputs}},
        headers=world.callers[caller],
    )


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_exporting_a_collection_or_its_item_needs_the_write_right(
    world: World, source: str
) -> None:
    inputs = SOURCES[source]
    assert execute(world, "anonymous", **inputs).status_code == 401
    # no right: as if the collection did not exist, in the words a missing one gets
    r = execute(world, "stranger", **inputs)
    assert r.status_code == 400, r.text
    missing = {k: v.replace(SECRET, "nothere") if isinstance(v, str) else v
               for k, v in inputs.items()}  # fmt: skip
    if source == "item":
        missing = {"item": {"collection": "nothere", "id": "hidden"}}
    other = execute(world, "stranger", **missing)
    assert other.status_code == 400
    assert r.json() == {**other.json(), "description": other.json()["description"].replace(
        "nothere", SECRET)}  # fmt: skip
    assert r.json()["type"] == "InvalidParameterValue"  # as other bad inputs (OGC)
    r = execute(world, "reader", **inputs)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "auth.Forbidden"
    for caller in ("writer", "admin"):
        r = execute(world, caller, **inputs)
        assert r.status_code == 201, (caller, r.text)


def test_a_public_collection_export_needs_write_too(world: World) -> None:
    r = execute(world, "stranger", collection="maps")
    assert r.status_code == 403 and r.json()["code"] == "auth.Forbidden"


def test_the_inputs_cannot_name_the_readable_collections(world: World) -> None:
    r = execute(world, "stranger", search="0" * 32, **{READABLE_INPUT: ["maps", SECRET]})
    assert r.status_code == 400, r.text


def stored_inputs(world: World, job_id: str) -> dict[str, Any]:
    jobs = world.client.app.state.jobs  # type: ignore[attr-defined]
    return dict(world.call(jobs.get, uuid.UUID(job_id)).inputs)


def test_a_search_export_holds_only_what_its_submitter_reads(
    world: World, settings: Settings, make_worker: MakeWorker, tmp_path: Path
) -> None:
    r = world.client.post(
        "/searches", json={"collections": ["maps", SECRET]}, headers=world.callers["admin"]
    )
    search = r.json()["id"]
    worker = make_worker(exports(settings), FAST)
    worker.start()
    archives: dict[str, dict[tuple[int, int, int], bytes]] = {}
    for caller in ("stranger", "reader"):
        r = execute(world, caller, search=search)
        assert r.status_code == 201, r.text
        job_id = r.json()["jobID"]
        readable = stored_inputs(world, job_id)[READABLE_INPUT]
        assert (SECRET in readable) is (caller == "reader")
        admin = world.callers["admin"]
        doc = wait_for(world.client, admin, job_id, "successful", "failed", timeout=120)
        assert doc["status"] == "successful", doc
        export = world.client.get(f"/jobs/{job_id}/results", headers=admin).json()
        archive = {"job": job_id, **export["archive"]["value"]}
        archives[caller] = mbtiles_tiles(download(world.client, admin, archive, tmp_path))
    for tile, content in archives["stranger"].items():
        z, x, y = tile
        public = world.get(f"/collections/maps/tiles/WebMercatorQuad/{z}/{x}/{y}.png", "stranger")
        assert np.array_equal(decode(content), decode(public.content)), tile
        assert not has_hidden_pixels(content), tile
    assert any(has_hidden_pixels(content) for content in archives["reader"].values())


def has_hidden_pixels(content: bytes) -> bool:
    pixels = decode(content)
    hidden = np.all([pixels[b] == v for b, v in enumerate(HIDDEN_COLOUR)], axis=0)
    return bool((hidden & (pixels[3] > 0)).any())
