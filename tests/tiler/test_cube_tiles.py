"""Tiles, TileJSON and tilesets of a datacube collection (tiler/cubes/), on a real Zarr store.

The cube (tests/tiler/cubes.py) is Sentinel-2-like: bands B02..B12 by id only, 64 x 64 px
of 10 m in EPSG:32631, 40 dates, values known formulas; B04 has no data in one box at t=3.
Tiles are fetched as ``.npy`` (float32 values and mask) and compared, pixel by pixel, with the
same formula computed here with numpy on the cube cells under each tile pixel's centre.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pyproj import Transformer

from server.settings import Settings
from tests.conftest import ADMIN, Databases
from tests.factories import item
from tests.tiler.conftest import TMS, SharedCatalogue, decode, npy, shared_catalogue
from tests.tiler.cubes import (
    NODATA_BOX,
    PIXEL,
    X0,
    Y0,
    MadeCube,
    band_values,
    make_cube,
    times,
)

BASE = "/collections/cube/tiles/WebMercatorQuad"
MAXZOOM = TMS.zoom_for_res(PIXEL)  # 14: the TileJSON maxzoom of 10 m pixels, as for COGs
NATIVE = MAXZOOM + 1  # tiles of 4.8 m pixels at 45 degrees north: each cube cell is several
TO_LONLAT = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)
TO_UTM = Transformer.from_crs("EPSG:3857", "EPSG:32631", always_xy=True)


@pytest.fixture(scope="module")
def cube_catalogue(
    databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SharedCatalogue, MadeCube]]:
    """The cube, made once for the tests that only read it."""
    with shared_catalogue(databases, "cubes", tmp_path_factory) as shared:
        made = make_cube(shared.client, shared.settings.ingest.data_dir)
        yield shared, made


@pytest.fixture
def cube(cube_catalogue: tuple[SharedCatalogue, MadeCube]) -> TestClient:
    """A client on the shared cube (read only)."""
    return cube_catalogue[0].client


def centre_tile(zoom: int) -> tuple[int, int, int]:
    """The tile at the middle of the cube."""
    lon, lat = TO_LONLAT.transform(X0 + 320, Y0 - 320)
    tile = TMS.tile(lon, lat, zoom)
    return tile.z, tile.x, tile.y


def cells(z: int, x: int, y: int, size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cube cell (row j, column i) under each tile pixel's centre, and which pixels are
    clearly inside one cell (not within 1 % of a cell edge, nor outside the cube)."""
    box = TMS.xy_bounds(x, y, z)
    step = (box.right - box.left) / size
    centres = box.left + step * (np.arange(size) + 0.5)
    mx, my = np.meshgrid(centres, box.top - step * (np.arange(size) + 0.5))
    ux, uy = TO_UTM.transform(mx, my)
    fi, fj = (ux - X0) / PIXEL, (Y0 - uy) / PIXEL
    i, j = np.floor(fi).astype(int), np.floor(fj).astype(int)
    clear = (np.abs(fi - np.round(fi)) > 0.01) & (np.abs(fj - np.round(fj)) > 0.01)
    inside = (i >= 0) & (i < 64) & (j >= 0) & (j < 64)
    return np.clip(j, 0, 63), np.clip(i, 0, 63), clear & inside


def tile_npy(client: TestClient, tile: tuple[int, int, int], **params: Any) -> np.ndarray:
    z, x, y = tile
    r = client.get(f"{BASE}/{z}/{x}/{y}.npy", params=params)
    assert r.status_code == 200, r.text
    return npy(r.content)


def ndvi(t: int | slice) -> np.ndarray:
    shape = (40, 64, 64)
    nir = band_values("B08", shape)[t].astype("float64")
    red = band_values("B04", shape)[t].astype("float64")
    return (nir - red) / (nir + red)


def test_ndvi_tile_equals_the_numpy_formula(cube: TestClient) -> None:
    tile = centre_tile(NATIVE)
    array = tile_npy(cube, tile, layers="NDVI", datetime=times(40)[7].isoformat())
    assert array.shape == (2, 256, 256)  # NDVI and the mask
    j, i, clear = cells(*tile)
    expected = ndvi(7)[j, i]
    assert clear.sum() > 1000
    np.testing.assert_allclose(array[0][clear], expected[clear], rtol=1e-5)


def test_every_zoom_from_0_to_native_draws_the_cube(cube: TestClient) -> None:
    for zoom in range(NATIVE + 1):
        z, x, y = centre_tile(zoom)
        r = cube.get(f"{BASE}/{z}/{x}/{y}.png", params={"layers": "NDVI"})
        assert r.status_code == 200, (zoom, r.text)
        pixels = decode(r.content)
        assert pixels.shape == (4, 256, 256), zoom
        # the 640 m cube is less than a pixel below zoom 9: nearest sampling may miss it
        pixel = 2 * np.pi * 6378137 / 256 / 2**zoom
        drawn = int((pixels[3] == 255).sum())
        if pixel < 640 / 2 / 0.71:  # two pixels across, at 45 degrees north
            assert drawn > 0, f"zoom {zoom}: nothing drawn"
            # the cube's area, within a pixel's rim: every pixel of data is drawn
            area = (640 / 0.71 / pixel) ** 2
            assert 0.5 * area < drawn < 2 * area + 4 * 640 / 0.71 / pixel, zoom


def test_a_tile_beside_the_cube_is_204(cube: TestClient) -> None:
    z, x, y = centre_tile(NATIVE)
    assert cube.get(f"{BASE}/{z}/{x + 5}/{y}").status_code == 204


def test_low_zooms_read_an_overview_whose_pixels_are_the_block_means(cube: TestClient) -> None:
    # zoom 13 pixels are ~13 m in UTM: the factor 1 store is the finest that is not finer
    # than needed... zoom 12 (~27 m): the factor 2 overview, whose cells are 2x2 means.
    tile = centre_tile(12)
    array = tile_npy(cube, tile, layers="B08", datetime=times(40)[0].isoformat())
    box = TMS.xy_bounds(tile[1], tile[2], tile[0])
    step = (box.right - box.left) / 256
    col, row = np.meshgrid(np.arange(256), np.arange(256))
    ux, uy = TO_UTM.transform(box.left + step * (col + 0.5), box.top - step * (row + 0.5))
    fi, fj = (ux - X0) / (2 * PIXEL), (Y0 - uy) / (2 * PIXEL)
    i, j = np.floor(fi).astype(int), np.floor(fj).astype(int)
    keep = (i >= 0) & (i < 32) & (j >= 0) & (j < 32)
    keep &= (np.abs(fi - np.round(fi)) > 0.02) & (np.abs(fj - np.round(fj)) > 0.02)
    full = band_values("B08", (1, 64, 64))[0].astype("float64")
    means = np.floor(full.reshape(32, 2, 32, 2).mean(axis=(1, 3)))  # stored as uint16
    assert keep.sum() > 100
    np.testing.assert_allclose(array[0][keep], means[j[keep], i[keep]], atol=1)
    # the overview has half the columns: the native store would show odd columns too
    assert not np.allclose(array[0][keep], full[2 * j[keep] + 1, 2 * i[keep] + 1])


@pytest.mark.parametrize("aggregation", ["mean", "max", "min", "median", "last"])
def test_an_interval_reduced_per_pixel(cube: TestClient, aggregation: str) -> None:
    tile = centre_tile(NATIVE)
    when = times(40)
    array = tile_npy(cube, tile, layers="NDVI", datetime=f"{when[2].isoformat()}/"
                     f"{when[9].isoformat()}", temporal_aggregation=aggregation)  # fmt: skip
    series = ndvi(slice(2, 10))
    t, rows, cols = NODATA_BOX
    series[t - 2, rows, cols] = np.nan  # B04 has no data there: that date does not count
    reduce = {"mean": np.nanmean, "max": np.nanmax, "min": np.nanmin, "median": np.nanmedian,
              "last": lambda a, axis: a[-1]}[aggregation]  # fmt: skip
    expected = reduce(series, axis=0)
    j, i, clear = cells(*tile)
    np.testing.assert_allclose(array[0][clear], expected[j, i][clear], rtol=1e-5)


def test_nearest_and_exact_datetimes(cube: TestClient) -> None:
    tile = centre_tile(NATIVE)
    when = times(40)
    j, i, clear = cells(*tile)
    near = (when[5] + (when[6] - when[5]) / 3).isoformat()  # closer to the 6th date
    array = tile_npy(cube, tile, layers="ndvi", datetime=near)
    np.testing.assert_allclose(array[0][clear], ndvi(5)[j, i][clear], rtol=1e-5)
    exact = tile_npy(cube, tile, layers="ndvi", datetime=when[6].isoformat(),
                     datetime_match="exact")  # fmt: skip
    np.testing.assert_allclose(exact[0][clear], ndvi(6)[j, i][clear], rtol=1e-5)
    default = tile_npy(cube, tile, layers="ndvi")  # the last date
    np.testing.assert_allclose(default[0][clear], ndvi(39)[j, i][clear], rtol=1e-5)
    z, x, y = tile
    r = cube.get(f"{BASE}/{z}/{x}/{y}", params={"datetime": near, "datetime_match": "exact"})
    assert r.status_code == 400 and r.json()["code"] == "cube.DatetimeNotInCube"


def test_nodata_is_masked(cube: TestClient) -> None:
    tile = centre_tile(NATIVE)
    t, rows, cols = NODATA_BOX
    array = tile_npy(cube, tile, layers="B04", datetime=times(40)[t].isoformat())
    j, i, clear = cells(*tile)
    hole = clear & (j >= rows.start) & (j < rows.stop) & (i >= cols.start) & (i < cols.stop)
    assert hole.sum() > 100
    # the mask band, stretched by titiler to the float32 range: lowest where no data
    assert (array[1][hole] < 0).all()
    data = clear & ~hole
    assert (array[1][data] > 0).all()
    np.testing.assert_array_equal(array[0][data], band_values("B04", (40, 64, 64))[t][j, i][data])


def test_stacked_layers_and_composites(cube: TestClient) -> None:
    tile = centre_tile(NATIVE)
    j, i, clear = cells(*tile)
    stacked = tile_npy(cube, tile, layers="B04,green,B02", datetime=times(40)[1].isoformat())
    for band, name in enumerate(("B04", "B03", "B02")):
        values = band_values(name, (40, 64, 64))[1][j, i]
        np.testing.assert_array_equal(stacked[band][clear], values[clear])
    z, x, y = tile
    for composite in ("RGB", "CIR", "AGRICULTURE", "agri", "SWIR"):
        r = cube.get(f"{BASE}/{z}/{x}/{y}.png", params={"layers": composite})
        assert r.status_code == 200, (composite, r.text)
        pixels = decode(r.content)
        assert pixels.shape == (4, 256, 256) and pixels[:3].std() > 0, composite


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"layers": "B99"}, "cube.UnknownLayer"),
        ({"layers": "NDVI,B04"}, "cube.UnknownLayer"),
        ({"datetime": "2030-01-01T00:00:00Z"}, "cube.DatetimeOutsideCube"),
        ({"datetime": "2020-01-01T00:00:00Z/2020-02-01T00:00:00Z"}, "cube.DatetimeOutsideCube"),
        ({"datetime": "yesterday"}, "search.InvalidDatetime"),
        ({"temporal_aggregation": "sum"}, "cube.InvalidAggregation"),
        ({"datetime_match": "closest"}, "cube.InvalidAggregation"),
    ],
)
def test_bad_requests_are_400(cube: TestClient, params: dict[str, str], code: str) -> None:
    z, x, y = centre_tile(NATIVE)
    r = cube.get(f"{BASE}/{z}/{x}/{y}", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == code


def test_tilejson_and_tileset(cube: TestClient) -> None:
    r = cube.get(f"{BASE}/tilejson.json", params={"layers": "NDVI"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["tilejson"] == "3.0.0" and doc["maxzoom"] == MAXZOOM
    assert doc["tiles"][0].startswith("http://testserver" + BASE + "/{z}/{x}/{y}?layers=NDVI")
    west, south, east, north = doc["bounds"]
    lon, lat = TO_LONLAT.transform(X0 + 320, Y0 - 320)
    assert west < lon < east and south < lat < north and east - west < 0.01
    tileset = cube.get(BASE).json()
    limits = tileset["tileMatrixSetLimits"]
    assert limits[-1]["tileMatrix"] == str(MAXZOOM)


def test_a_time_slice_item_tiles_as_the_collection_at_its_datetime(
    client: TestClient, settings: Settings, data_dir: Path
) -> None:
    make_cube(client, data_dir, "slices", count=8, overviews=())
    when = times(8)[5].isoformat().replace("+00:00", "Z")
    r = client.post("/collections/slices/items", json=item("t5", when=when), headers=ADMIN)
    assert r.status_code == 201, r.text
    z, x, y = tile = centre_tile(NATIVE)
    path = f"/collections/slices/items/t5/tiles/WebMercatorQuad/{z}/{x}/{y}.npy"
    r = client.get(path, params={"layers": "NDVI"}, follow_redirects=False)
    assert r.status_code == 307 and r.json()["code"] == "tiles.DatacubeItem"
    assert "/collections/slices/tiles/WebMercatorQuad/" in r.headers["location"]
    r = client.get(path, params={"layers": "NDVI"})
    assert r.status_code == 200, r.text
    j, i, clear = cells(*tile)
    np.testing.assert_allclose(npy(r.content)[0][clear], ndvi(5)[j, i][clear], rtol=1e-5)
    tilejson = client.get("/collections/slices/items/t5/WebMercatorQuad/tilejson.json")
    assert tilejson.status_code == 200, tilejson.text
    assert "datetime_match=exact" in tilejson.json()["tiles"][0]


def test_missing_bands_are_400_naming_them(
    client: TestClient, settings: Settings, data_dir: Path
) -> None:
    make_cube(client, data_dir, "rgbn", count=2, overviews=(),
              bands=("B02", "B03", "B04", "B08"))  # fmt: skip
    z, x, y = centre_tile(NATIVE)
    path = f"/collections/rgbn/tiles/WebMercatorQuad/{z}/{x}/{y}"
    assert client.get(path, params={"layers": "NDVI"}).status_code == 200
    for layer, missing in (("NDMI", "swir16"), ("NDRE", "rededge"), ("SWIR", "swir22")):
        r = client.get(path, params={"layers": layer})
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["code"] == "tiler.PresetUnavailable" and missing in body["description"]


def test_a_private_cube_is_404_to_those_who_may_not_read_it(
    client: TestClient, settings: Settings, data_dir: Path
) -> None:
    make_cube(client, data_dir, "hidden", count=2, overviews=())
    when = times(2)[1].isoformat().replace("+00:00", "Z")
    r = client.post("/collections/hidden/items", json=item("t1", when=when), headers=ADMIN)
    assert r.status_code == 201, r.text
    accounts = client.app.state.accounts  # type: ignore[attr-defined]
    portal = client.portal
    assert portal is not None
    callers: dict[str, dict[str, str]] = {"anonymous": {}, "admin": dict(ADMIN)}
    for name, right in (("stranger", None), ("reader", "read")):
        account = portal.call(accounts.create_account, name)
        issued = portal.call(accounts.create_token, account["id"])
        callers[name] = {"Authorization": f"Bearer {issued.token}"}
        if right is not None:
            portal.call(accounts.grant, "hidden", "account", str(account["id"]), right)
    portal.call(accounts.set_visibility, "hidden", "private")
    z, x, y = centre_tile(NATIVE)
    base = "/collections/hidden/tiles/WebMercatorQuad"
    slice_tile = f"/collections/hidden/items/t1/tiles/WebMercatorQuad/{z}/{x}/{y}.png"
    for path in (f"{base}/{z}/{x}/{y}.png", f"{base}/tilejson.json", base, slice_tile):
        for caller, headers in callers.items():
            r = client.get(path, params={"layers": "NDVI"}, headers=headers)
            if caller in ("anonymous", "stranger"):
                assert r.status_code == 404, (path, caller, r.text)
                assert "location" not in r.headers  # not even the slice's date
                gone = client.get(path.replace("/hidden/", "/nothing-here/"), headers=headers)
                assert r.json()["code"] == gone.json()["code"], path  # as a missing one
            else:
                assert r.status_code == 200, (path, caller, r.text)


def test_a_tilesize_above_the_limit_is_400(cube: TestClient) -> None:
    z, x, y = centre_tile(NATIVE)
    r = cube.get(f"{BASE}/{z}/{x}/{y}", params={"tilesize": 5000})
    assert r.status_code == 400 and r.json()["code"] == "tiler.ImageTooLarge"


def test_a_cube_has_no_map_image_but_a_clear_404(cube: TestClient) -> None:
    # Its time slices' Zarr assets are no mosaic: a map would be a transparent image.
    r = cube.get("/collections/cube/map", params={"bbox": "0,0,1,1", "width": 64, "height": 64})
    assert r.status_code == 404 and r.json()["code"] == "maps.NoMap", r.text
    links = cube.get("/collections/cube").json()["links"]
    assert not [link for link in links if link["rel"].endswith("/ogc/1.0/map")]
