"""Deleting an item or a collection through the API removes the files we stored for it, and
only those (local folder; tests/server/test_storage_s3.py does it in a bucket)."""

import copy
from pathlib import Path

from fastapi.testclient import TestClient

from tests import rasters
from tests.factories import collection
from tests.stored import ingest_local, store_items


def test_deleting_items_and_collections_removes_only_their_own_files(
    client: TestClient, admin: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    source = rasters.utm_rgb_tif(tmp_path, size=128, border=8)
    for name in ("c", "d"):
        assert client.post("/collections", json=collection(name), headers=admin).is_success
    items = {(c, i): ingest_local(source, c, i, data_dir, when=None) for c, i in
             [("c", "a"), ("c", "b"), ("d", "a")]}  # fmt: skip
    # An item that names another item's files, and one whose files are elsewhere.
    borrower = copy.deepcopy(items[("c", "a")]) | {"id": "borrower"}
    foreign = copy.deepcopy(items[("c", "a")]) | {"id": "foreign"}
    foreign["assets"] = {"data": foreign["assets"]["data"] | {"href": "https://x.example/a.tif"}}
    # as the ingest job writes them: the API refuses storage: hrefs from clients
    store_items(client.app.state.settings.db.url, [*items.values(), borrower, foreign])
    assets = data_dir / "assets"

    def files(folder: Path) -> list[str]:
        return sorted(p.name for p in folder.glob("*")) if folder.is_dir() else []

    for item_id in ("borrower", "foreign"):
        assert client.delete(f"/collections/c/items/{item_id}", headers=admin).status_code == 204
    assert files(assets / "c" / "a") == ["a.tif", "overview.png", "thumbnail.png"]
    assert client.delete("/collections/c/items/a", headers=admin).status_code == 204
    assert not (assets / "c" / "a").exists()
    assert files(assets / "c" / "b") == ["b.tif", "overview.png", "thumbnail.png"]
    assert files(assets / "d" / "a") == ["a.tif", "overview.png", "thumbnail.png"]
    assert client.delete("/collections/c", headers=admin).status_code == 204
    assert not (assets / "c").exists()
    assert files(assets / "d" / "a") == ["a.tif", "overview.png", "thumbnail.png"]
