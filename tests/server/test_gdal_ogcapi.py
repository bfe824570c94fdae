"""Debian's GDAL 3.6 (``/usr/bin/gdalinfo``, ``gdal_translate``, ``ogrinfo``) reads a live server.

Its OGCAPI driver opens a collection URL and reads the map tilesets (AUTO or ``API=TILES``)
and the OGC API - Maps ``map`` (``API=MAP``). Debian builds that driver without its vector
tile layers (the binary has no ``vectorType`` string), so the footprint tiles are read as GDAL
3.6 can: one tile of the tileset's templated link, with its MVT driver.

One 512 px RGB COG (10 m, EPSG:32633) is ingested into a server of its own; what GDAL reads is
compared with the source warped by rasterio onto the grid GDAL reports.
"""

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import morecantile
import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, reproject

from tests import rasters
from tests.factories import collection
from tests.server.conftest import LiveServer, _start, _stop
from tests.stored import ingest_local, store_item

BIN = Path("/usr/bin")
pytestmark = pytest.mark.skipif(
    not (BIN / "gdal_translate").exists(), reason="Debian gdal-bin is not installed"
)
REL = "http://www.opengis.net/def/rel/ogc/1.0/"


@dataclass
class Served:
    """The live server, the item as stored and the GeoTIFF it was made from."""

    server: LiveServer
    item: dict[str, Any]
    source: Path

    @property
    def dataset(self) -> str:
        """The collection, as GDAL's OGCAPI driver names it."""
        return f"OGCAPI:{self.server.url}/collections/scenes"


@pytest.fixture(scope="module")
def served(databases: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data = tmp_path_factory.mktemp("gdal-data")
    url = databases.create(f"terracat_gdal_{databases.suffix}")
    proc, server = _start(url, TERRACAT_INGEST_DATA_DIR=str(data))
    try:
        source = rasters.utm_rgb_tif(tmp_path_factory.mktemp("gdal-source"))
        item = ingest_local(source, "scenes", "rgb", data)
        with httpx.Client(base_url=server.url, headers=server.auth) as http:
            r = http.post("/collections", json=collection("scenes", bbox=item["bbox"]))
            assert r.status_code == 201, r.text
        store_item(url, item)
        yield Served(server, item, source)
    finally:
        _stop(proc, server)


def gdal(tool: str, *args: str) -> str:
    """Run a GDAL 3.6 tool; its stdout (fails with its stderr)."""
    env = {**os.environ, "GDAL_HTTP_TIMEOUT": "60"}
    done = subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, f"{tool} {args}: {done.stderr}"
    return done.stdout


def warped_source(source: Path, grid: Path) -> np.ndarray:
    """The source's RGB warped (nearest) onto ``grid``'s pixels; 0 where it has none."""
    with rasterio.open(grid) as target, rasterio.open(source) as src:
        out = np.zeros((3, target.height, target.width), "uint8")
        reproject(rasterio.band(src, [1, 2, 3]), out, dst_transform=target.transform,
                  dst_crs=target.crs, resampling=Resampling.nearest)  # fmt: skip
    return out


def matches_source(read: Path, source: Path) -> float:
    """Share of the opaque pixels GDAL read whose RGB is within 12 of the source's."""
    with rasterio.open(read) as dataset:
        pixels = dataset.read()
    expected = warped_source(source, read)
    opaque = (pixels[3] == 255) & (expected > 0).all(axis=0)
    assert opaque.sum() > 0.5 * opaque.size, "GDAL read mostly nothing"
    close = (np.abs(pixels[:3].astype(int) - expected).max(axis=0) <= 12) & opaque
    return float(close.sum() / opaque.sum())


def test_gdalinfo_opens_the_collection_at_the_data_resolution(served: Served) -> None:
    info = json.loads(gdal("gdalinfo", "-json", served.dataset))
    with httpx.Client(base_url=served.server.url) as http:
        tileset = http.get("/collections/scenes/tiles/WorldCRS84Quad").json()
        tms = http.get("/tileMatrixSets/WorldCRS84Quad").json()
    finest = tileset["tileMatrixSetLimits"][-1]["tileMatrix"]
    cell = next(m["cellSize"] for m in tms["tileMatrices"] if m["id"] == finest)
    # GDAL picks WorldCRS84Quad and reads down to the last tile matrix the limits list
    assert info["geoTransform"][1] == pytest.approx(cell) == -info["geoTransform"][5]
    west, south, east, north = served.item["bbox"]
    width, height = info["size"]
    assert abs(width - (east - west) / cell) <= 1 and abs(height - (north - south) / cell) <= 1
    assert [band["colorInterpretation"] for band in info["bands"]] == [
        "Red", "Green", "Blue", "Alpha"]  # fmt: skip
    overviews = info["bands"][0]["overviews"]
    assert len(overviews) == len(tileset["tileMatrixSetLimits"]) - 1
    assert abs(overviews[0]["size"][0] - width / 2) <= 1


@pytest.mark.parametrize("api", ["AUTO", "TILES"])
def test_gdal_translate_reads_the_map_tiles(served: Served, tmp_path: Path, api: str) -> None:
    out = tmp_path / "tiles.tif"
    gdal("gdal_translate", "-q", "-oo", f"API={api}", "-oo", "CACHE=NO",
         "-srcwin", "150", "100", "300", "200", served.dataset, str(out))  # fmt: skip
    assert matches_source(out, served.source) > 0.95


def test_gdal_translate_reads_the_map(served: Served, tmp_path: Path) -> None:
    west, south, east, north = served.item["bbox"]
    window = [west + (east - west) / 4, north - (north - south) / 4,
              east - (east - west) / 4, south + (north - south) / 4]  # fmt: skip
    out = tmp_path / "map.tif"
    gdal("gdal_translate", "-q", "-oo", "API=MAP", "-oo", "CACHE=NO", "-outsize", "256", "0",
         "-projwin", *(str(v) for v in window), served.dataset, str(out))  # fmt: skip
    with rasterio.open(out) as dataset:
        assert dataset.width == 256 and dataset.crs.to_epsg() == 4326
    assert matches_source(out, served.source) > 0.95


def test_ogrinfo_reads_a_footprint_tile(served: Served) -> None:
    with httpx.Client(base_url=served.server.url) as http:
        tileset = http.get("/collections/scenes/items/tiles/WebMercatorQuad").json()
    (link,) = [lk for lk in tileset["links"] if lk["rel"] == "item"]
    west, south, east, north = served.item["bbox"]
    tile = morecantile.tms.get("WebMercatorQuad").tile((west + east) / 2, (south + north) / 2, 14)
    url = (link["href"].replace("{tileMatrix}", str(tile.z))
           .replace("{tileCol}", str(tile.x)).replace("{tileRow}", str(tile.y)))  # fmt: skip
    listing = gdal("ogrinfo", "-ro", "-al", "-q", f"/vsicurl/{url}")
    assert listing.count("OGRFeature(scenes)") == 1
    assert "id (String) = rgb" in listing and "POLYGON" in listing
