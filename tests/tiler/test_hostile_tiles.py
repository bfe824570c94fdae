"""Tile-route inputs that once answered 500: each is a 4xx with a stable code now (issue 13)."""

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.settings import Settings
from tests import rasters
from tests.tiler.conftest import (
    COLLECTION,
    PREFIX,
    MakeItem,
    SharedCatalogue,
    centre_tile,
    decode,
)


def _seen(client: TestClient, url: str) -> Any:
    """The answer a client sees (a 500 stays a response, not a re-raised exception)."""
    return TestClient(client.app, raise_server_exceptions=False).get(url)


@pytest.mark.parametrize(
    "query",
    [
        "preview.png?dst_crs=IAU_2015:49900",
        "preview.png?dst_crs=IAU_2015:30100",
        "preview.png?color_formula=gamma%20r%201e308",
        "preview.png?color_formula=sigmoidal%20rgb%201e308%201e308",
        "preview.png?color_formula=saturation%201e308",
        "preview.png?color_formula=gamma%20r%20-1e308",
        "preview.png?rescale=0,1e309",
    ],
)
def test_rendering_parameters(maps: TestClient, query: str) -> None:
    answer = _seen(maps, f"{PREFIX}/rgb/{query}")
    assert answer.status_code < 500, answer.text[:300]
    if answer.status_code >= 400:
        assert answer.json()["code"].startswith(("tiler.", "request.")), answer.text


def test_saved_search_algorithm_params_null(
    maps_catalogue: SharedCatalogue, admin: dict[str, str]
) -> None:
    client = maps_catalogue.client
    try:
        saved = client.post("/searches", json={"collections": [COLLECTION]}, headers=admin)
        assert saved.status_code in (200, 201), saved.text
        z, x, y = centre_tile(client, "rgb")
        url = f"/searches/{saved.json()['id']}/tiles/WebMercatorQuad/{z}/{x}/{y}.png"
        answer = _seen(client, url + "?algorithm=max&algorithm_params=null")
        assert answer.status_code == 400, answer.text
        same_on_item = _seen(client, f"{PREFIX}/rgb/tiles/WebMercatorQuad/{z}/{x}/{y}.png"
                             "?algorithm=max&algorithm_params=null")  # fmt: skip
        assert answer.json()["code"] == same_on_item.json()["code"]
    finally:
        maps_catalogue.forget_searches()


def test_an_asset_that_is_not_a_raster_is_422(
    client: TestClient, make_item: MakeItem, tmp_path: Path, settings: Settings
) -> None:
    """A registered asset whose file is not a GeoTIFF (overwritten, or a wrong upload)."""
    folder = tmp_path / "src"
    folder.mkdir()
    item = make_item(rasters.utm_rgb_tif(folder), "junk")
    z, x, y = centre_tile(client, "junk")
    for cog in (settings.ingest.data_dir / "assets" / COLLECTION / "junk").glob("*.tif"):
        cog.write_bytes(b"not a tiff at all" * 100)
    routes = [
        f"{PREFIX}/junk/tiles/WebMercatorQuad/{z}/{x}/{y}.png",
        f"{PREFIX}/junk/preview.png",
        f"{PREFIX}/junk/info",
        f"{PREFIX}/junk/statistics",
        f"{PREFIX}/junk/point/{item['bbox'][0] + 0.001},{item['bbox'][1] + 0.001}",
    ]
    for url in routes:
        answer = _seen(client, url)
        assert answer.status_code == 422, (url, answer.status_code, answer.text[:200])
        assert answer.json()["code"] == "tiler.AssetNotReadable"
        assert "/" not in answer.json()["description"].split("'")[1]  # no local path shown
    # A mosaic leaves the item out rather than failing the whole tile.
    mosaic = _seen(client, f"/collections/{COLLECTION}/tiles/WebMercatorQuad/{z}/{x}/{y}.png")
    assert mosaic.status_code == 204, mosaic.text[:200]


@pytest.mark.parametrize("prefix", [f"/collections/{COLLECTION}/tiles", f"{PREFIX}/rgb/tiles"])
def test_tile_padding(maps: TestClient, prefix: str) -> None:
    """``padding`` reads around the tile; rio-tiler's transform warning is no 500 (schemathesis)."""
    z, x, y = centre_tile(maps, "rgb")
    answer = _seen(maps, f"{prefix}/WebMercatorQuad/{z}/{x}/{y}.tif?padding=1")
    assert answer.status_code == 200, answer.text[:300]
    assert decode(answer.content).shape[1:] == (256, 256)


def test_one_pixel_png_tile(maps: TestClient) -> None:
    """``tilesize=1`` made libpng refuse the array: a 500 (schemathesis, make fuzz)."""
    answer = _seen(maps, f"{PREFIX}/rgb/tiles/WebMercatorQuad/0/0/0.png?tilesize=1")
    assert answer.status_code == 200, answer.text[:300]
    assert decode(answer.content).shape[1:] == (1, 1)


@pytest.mark.parametrize("query", ["maxzoom=500000", "maxzoom=45", "minzoom=-106480049"])
def test_tileset_zoom_out_of_range(maps: TestClient, query: str) -> None:
    """titiler built a tile matrix per zoom up to ``maxzoom`` (schemathesis, make fuzz)."""
    answer = _seen(maps, f"{PREFIX}/rgb/tiles/WebMercatorQuad?{query}")
    assert answer.status_code == 400, answer.text[:300]
    assert answer.json()["code"] == "tiler.InvalidZoom"


def test_tileset_zoom_in_range(maps: TestClient) -> None:
    answer = _seen(maps, f"{PREFIX}/rgb/tiles/WebMercatorQuad?minzoom=2&maxzoom=10")
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["tileMatrixSetLimits"][0]["tileMatrix"] == "2"
