"""Exports of items whose assets cannot be read fail with the asset and the reason.

An item without the projection extension has no grid until its file is opened: the export used
to take the tile matrix set's zooms (18-24) and fail with ``export.TooManyTiles``; now it opens
the files, for the reason of a failure or for the zooms of the data.
"""

import copy
import shutil
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from server.settings import Settings
from tests import rasters
from tests.factories import collection
from tests.factories import item as item_doc
from tests.stored import store_items
from tests.tiler.conftest import COLLECTION, add_collection
from tests.tiler.test_export import (
    FAST,
    download,
    exports,
    mbtiles_metadata,
    run_export,
    submit,
)
from tests.workers import MakeWorker, wait_for

GEOTIFF = "image/tiff; application=geotiff"


def _item(item_id: str, assets: dict[str, dict[str, Any]], collection_id: str = COLLECTION,
          ) -> dict[str, Any]:  # fmt: skip
    """A STAC item without the projection extension (no grid) and the given assets."""
    doc = item_doc(item_id, lon=15.0, lat=47.0)  # half a degree: zooms 18-24 are vast
    doc["collection"] = collection_id
    doc["assets"] = assets
    return doc


def _failure(client: TestClient, admin: dict[str, str], **inputs: Any) -> dict[str, Any]:
    """The error of an mbtiles export job, read through OGC API - Processes."""
    job_id = submit(client, admin, "mbtiles", **inputs)
    doc = wait_for(client, admin, job_id, "successful", "failed", timeout=120)
    assert doc["status"] == "failed", doc
    assert doc["attempts"] == 1  # not retried
    error: dict[str, Any] = doc["error"]
    return error


def test_exports_of_unreadable_assets_say_which_asset_and_why(
    client: TestClient, admin: dict[str, str], make_worker: MakeWorker,
    rgb_item: dict[str, Any], settings: Settings,
) -> None:  # fmt: skip
    storage = settings.ingest.data_dir / "assets"
    (storage / "broken").mkdir()
    rasters.text_tif(storage / "broken")
    rasters.not_georeferenced_tif(storage / "broken")

    def geotiff(href: str) -> dict[str, dict[str, Any]]:
        return {"data": {"href": href, "type": GEOTIFF, "roles": ["data"]}}

    # An item with the projection extension whose file was deleted since.
    gone = copy.deepcopy(rgb_item) | {"id": "gone", "links": []}
    cog = storage / COLLECTION / "rgb" / "rgb.tif"
    shutil.copy(cog, storage / "broken" / "gone.tif")
    gone["assets"] = {"data": rgb_item["assets"]["data"] | {
        "href": "storage:assets/broken/gone.tif"}}  # fmt: skip
    (storage / "broken" / "gone.tif").unlink()
    items = [
        gone,
        _item("missing", geotiff("storage:assets/broken/nothing.tif")),
        _item("foreign", geotiff("https://example.com/scene.tif")),
        _item("text", geotiff("storage:assets/broken/notes.tif")),
        _item("plain", geotiff("storage:assets/broken/plain.tif")),
        _item("json", {"meta": {"href": "https://example.com/m.json", "type": "application/json"}}),
    ]
    assert settings.db.url is not None
    store_items(settings.db.url, items)  # stored hrefs: as the ingest job writes them
    make_worker(exports(settings), FAST).start()
    expected = {
        "gone": "asset 'data' of item 'gone' is missing from storage",
        "missing": "asset 'data' of item 'missing' is missing from storage",
        "foreign": "asset 'data' of item 'foreign' is not a file of this catalogue's storage",
        "text": "asset 'data' of item 'text': asset file 'notes.tif' is not a GeoTIFF",
        "plain": "asset 'data' of item 'plain' has no coordinate reference system",
        "json": "item 'json' has no raster asset to render: asset 'meta' is application/json, "
        "not a raster the tiler reads",
    }
    for item_id, message in expected.items():
        error = _failure(client, admin, item={"collection": COLLECTION, "id": item_id})
        assert error["code"] == "tiler.AssetNotReadable", error
        assert error["description"].startswith(message), error
        assert str(storage) not in error["description"]  # no local path in the message

    # An asset chosen by the request that is not a raster: named, with its media type.
    error = _failure(client, admin, item={"collection": COLLECTION, "id": "rgb"},
                     assets=["thumbnail"])  # fmt: skip
    assert error["code"] == "tiler.AssetNotReadable", error
    assert error["description"].startswith("item 'rgb': asset 'thumbnail' is image/png, not a "
                                           "raster the tiler reads"), error  # fmt: skip

    # A mosaic none of whose items can be read: the first items and their reasons.
    add_collection(client, collection("broken"))
    store_items(settings.db.url, [doc | {"collection": "broken"} for doc in items
                                  if doc["id"] in ("text", "missing")])  # fmt: skip
    error = _failure(client, admin, collection="broken")
    assert error["code"] == "tiler.AssetNotReadable", error
    assert error["description"].startswith("no item of the export can be rendered: "), error
    assert "item 'text'" in error["description"] and "item 'missing'" in error["description"]


def test_an_item_without_the_projection_extension_exports_at_its_files_zooms(
    client: TestClient, admin: dict[str, str], make_worker: MakeWorker,
    rgb_item: dict[str, Any], settings: Settings, tmp_path: Path,
) -> None:  # fmt: skip
    bare = copy.deepcopy(rgb_item) | {"id": "bare", "links": []}
    for doc in (bare["properties"], *bare["assets"].values()):
        for key in [k for k in doc if k.startswith("proj:")]:
            del doc[key]
    bare["assets"]["data"]["href"] = f"storage:assets/{COLLECTION}/rgb/rgb.tif"  # rgb's file
    assert settings.db.url is not None
    store_items(settings.db.url, [bare])
    make_worker(exports(settings), FAST).start()
    native = run_export(client, admin, "mbtiles", item={"collection": COLLECTION, "id": "rgb"})
    export = run_export(client, admin, "mbtiles", item={"collection": COLLECTION, "id": "bare"})
    ours = mbtiles_metadata(download(client, admin, export, tmp_path))
    theirs = mbtiles_metadata(download(client, admin, native, tmp_path))
    assert (ours["minzoom"], ours["maxzoom"]) == (theirs["minzoom"], theirs["maxzoom"])
    assert int(ours["maxzoom"]) < 18 and export["tiles"] == native["tiles"]
