"""One ``Settings`` configures everything: the export and mosaic settings are nested in it."""

import os
from pathlib import Path
from typing import Any

import morecantile
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from server.app import create_app
from server.settings import Settings
from tests import rasters
from tests.factories import collection
from tests.stored import ingest_local, store_item
from tiler.settings import ExportSettings, MosaicSettings


def test_export_and_mosaic_settings_keep_their_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TERRACAT_EXPORT_MAX_TILES", "123")
    monkeypatch.setenv("TERRACAT_EXPORT_ZOOM_LEVELS", "3")
    monkeypatch.setenv("TERRACAT_MOSAIC_MAX_ITEMS_PER_TILE", "7")
    monkeypatch.setenv("TERRACAT_MOSAIC_TILE_CACHE_CONTROL", "no-store")
    settings = Settings()
    assert (settings.export.max_tiles, settings.export.zoom_levels) == (123, 3)
    assert settings.mosaic.max_items_per_tile == 7
    assert settings.mosaic.tile_cache_control == "no-store"


def _add_item(
    client: TestClient, admin: dict[str, str], settings: Settings, folder: Path
) -> dict[str, Any]:
    """A real COG item in collection ``maps``, as the ingest process makes it."""
    source = rasters.utm_rgb_tif(folder)
    item = ingest_local(source, "maps", "rgb", settings.ingest.data_dir, settings.ingest, None)
    assert client.post("/collections", json=collection("maps"), headers=admin).status_code == 201
    assert settings.db.url is not None
    store_item(settings.db.url, item)
    return item


def test_injected_export_and_mosaic_settings_reach_the_app(
    settings: Settings, admin: dict[str, str], tmp_path: Path
) -> None:
    settings.export = ExportSettings(max_tiles=5, timeout_s=600)
    settings.mosaic = MosaicSettings(
        max_items_per_tile=3, search_cache_ttl_s=0, tile_cache_control="public, max-age=7"
    )
    with TestClient(create_app(settings)) as client:
        # exports: the processes (shared with the workers) carry the injected settings
        inputs = {"collection": "maps", "bbox": [15, 50, 15.5, 50.5], "minzoom": 0, "maxzoom": 8}
        r = client.post("/processes/mbtiles/execution", json={"inputs": inputs}, headers=admin)
        assert r.status_code == 400 and r.json()["code"] == "export.TooManyTiles", r.text
        assert "limit of 5" in r.json()["description"]
        processes = client.app.state.processes  # type: ignore[attr-defined]
        for name in ("mbtiles", "pmtiles"):
            assert processes[name].settings is settings.export
            assert processes[name].description.timeout_s == 600

        # mosaics: the tile routes and the repository they use
        west, south, east, north = _add_item(client, admin, settings, tmp_path)["bbox"]
        mosaic = "/collections/maps/tiles/WebMercatorQuad"
        tilejson = client.get(f"{mosaic}/tilejson.json").json()
        tms = morecantile.tms.get("WebMercatorQuad")
        tile = tms.tile((west + east) / 2, (south + north) / 2, tilejson["maxzoom"])
        r = client.get(f"{mosaic}/{tile.z}/{tile.x}/{tile.y}.png")
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "public, max-age=7"
        repository = client.app.state.mosaics  # type: ignore[attr-defined]
        assert (repository.max_items, repository.search_ttl) == (3, 0)


def test_listed_tile_matrix_sets_must_be_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    """A map tileset in a set the tile routes lack would list tiles that are all 404s."""
    monkeypatch.setenv("TERRACAT_TILES_TILE_MATRIX_SETS", '["WebMercatorQuad","WorldCRS84Quad"]')
    monkeypatch.setenv("TERRACAT_TILER_TILE_MATRIX_SETS", '["WebMercatorQuad"]')
    with pytest.raises(ValidationError, match=r"lists \['WorldCRS84Quad'\]"):
        Settings()
    monkeypatch.setenv("TERRACAT_TILER_TILE_MATRIX_SETS", '["WebMercatorQuad","WorldCRS84Quad"]')
    monkeypatch.setenv("TERRACAT_TILES_TILE_MATRIX_SETS", '["WebMercatorQuad"]')
    assert Settings().tiles.tile_matrix_sets == ["WebMercatorQuad"]


def test_the_app_sizes_gdals_block_cache_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files stay open between tiles, so GDAL keeps their blocks: the cache gets a size of ours
    (GDAL's default is 5% of RAM per process); an operator's GDAL_CACHEMAX wins."""
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    monkeypatch.setenv("TERRACAT_TILER_GDAL_CACHE_MB", "123")
    create_app(Settings())
    assert os.environ["GDAL_CACHEMAX"] == "123"
    monkeypatch.setenv("GDAL_CACHEMAX", "512")
    create_app(Settings())
    assert os.environ["GDAL_CACHEMAX"] == "512"


def test_the_app_bounds_its_open_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiler's open files, their idle time and that of a burst's spare handles are settings."""
    monkeypatch.setenv("TERRACAT_TILER_OPEN_FILES", "9")
    monkeypatch.setenv("TERRACAT_TILER_OPEN_FILE_IDLE_S", "30")
    monkeypatch.setenv("TERRACAT_TILER_SPARE_HANDLE_IDLE_S", "2.5")
    pool = create_app(Settings()).state.readers.datasets
    assert (pool.size, pool.idle_s, pool.spare_idle_s) == (9, 30.0, 2.5)


def test_the_app_sizes_its_thread_pool(settings: Settings) -> None:
    """Blocking work (tile rendering) runs on TERRACAT_API_THREADS threads, not anyio's 40."""
    app = create_app(settings.model_copy(update={"api": settings.api.model_copy(
        update={"threads": 3})}))  # fmt: skip
    seen: list[float] = []

    @app.get("/_test/threads")
    async def threads() -> dict[str, float]:
        import anyio.to_thread

        seen.append(anyio.to_thread.current_default_thread_limiter().total_tokens)
        return {}

    assert settings.api.admin_token is not None
    admin = {"Authorization": f"Bearer {settings.api.admin_token.get_secret_value()}"}
    with TestClient(app) as client:  # a route the rights table does not name: admins only
        assert client.get("/_test/threads").status_code == 401
        assert client.get("/_test/threads", headers=admin).status_code == 200
    assert seen == [3]
    assert Settings().api.threads == min(32, 4 * (os.cpu_count() or 2))
