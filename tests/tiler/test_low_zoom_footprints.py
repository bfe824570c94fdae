"""Where a small item's pixels fall in its tiles at every zoom, item and mosaic tiles over HTTP.

Each case is one small item in a collection of its own (so its mosaic is that item alone):
UTM, polar stereographic, and next to the antimeridian. For both tile matrix sets, at every
zoom from 0 to the item's maxzoom, the tiles holding the item and one neighbour are fetched
from the item tile route and the mosaic tile route; the set of non-transparent pixels must be
rio-tiler's for the same tile.

The reference is rio-tiler's ``Reader.part`` of the tile's pixels over the data (the read
``ItemReader`` makes for the options the tile grids leave to rio-tiler), not ``Reader.tile``:
for a tile thousands of times larger than the data, ``Reader.tile`` warps one VRT over the
whole tile and draws the same stray band at zoom 0 the tile grids drew before they were
bounded by the data (see ``tiler/readers/grids.py: _span``).
"""

from collections.abc import Iterator

import morecantile
import numpy as np
import pytest
from fastapi.testclient import TestClient
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rio_tiler.io import Reader

from tests import rasters
from tests.conftest import Databases
from tests.factories import collection
from tests.tiler.conftest import SharedCatalogue, add_collection, decode, shared_catalogue

SIZE = 256  # tile size
# name: (CRS, top-left corner, pixel size, pixels a side). Before the fix, 10 m x 256 px in
# UTM 33N drew a 178 x 12 px band at zoom 0, next to the antimeridian (UTM 60N) a 65 x 1 px line.
CASES: dict[str, tuple[str, tuple[float, float], float, int]] = {
    "utm": ("EPSG:32633", rasters.UTM_ORIGIN, 10.0, 256),
    "polar": ("EPSG:3413", (-100_000.0, -1_900_000.0), 100.0, 64),
    "antimeridian, utm": ("EPSG:32660", (700_000.0, 5_600_000.0), 20.0, 128),  # 179.8 E
    "antimeridian, lon/lat": ("EPSG:4326", (179.85, -10.0), 0.001, 64),  # to 179.914 E
}
TMS_IDS = ("WebMercatorQuad", "WorldCRS84Quad")


def _collection(name: str) -> str:
    return "fp-" + "".join(c if c.isalnum() else "-" for c in name)


@pytest.fixture(scope="module")
def footprints(
    databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedCatalogue]:
    """One collection per case, each holding its one item."""
    with shared_catalogue(databases, "footprints", tmp_path_factory) as shared:
        folder = shared.source_folder("sources")
        for n, (name, (crs, corner, pixel, count)) in enumerate(CASES.items()):
            source = rasters.write_geotiff(
                folder / f"case-{n}.tif", width=count, height=count, count=1, dtype="uint8",
                crs=crs, transform=from_origin(*corner, pixel, pixel), nodata=0,
            )  # fmt: skip
            add_collection(shared.client, collection(_collection(name)))
            shared.ingest(source, _collection(name), _collection(name))
        yield shared


def _reference(path: str, tms: morecantile.TileMatrixSet, tile: morecantile.Tile) -> np.ndarray:
    """rio-tiler's valid pixels of ``tile``: a ``part`` of the tile's pixels over the data."""
    crs = tms.rasterio_crs
    found = np.zeros((SIZE, SIZE), bool)
    with Reader(path, tms=tms) as src:
        left, bottom, right, top = transform_bounds(src.crs, crs, *src.bounds, densify_pts=21)
        tx0, ty0, tx1, ty1 = tms.xy_bounds(tile)
        xres, yres = (tx1 - tx0) / SIZE, (ty1 - ty0) / SIZE
        col0, col1 = int(max(0, (left - tx0) // xres)), int(min(SIZE, -((tx0 - right) // xres)))
        row0, row1 = int(max(0, (ty1 - top) // yres)), int(min(SIZE, -((bottom - ty1) // yres)))
        if col0 >= col1 or row0 >= row1:
            return found
        window = (tx0 + col0 * xres, ty1 - row1 * yres, tx0 + col1 * xres, ty1 - row0 * yres)
        part = src.part(window, dst_crs=crs, bounds_crs=crs, width=col1 - col0,
                        height=row1 - row0, max_size=None)  # fmt: skip
    found[row0:row1, col0:col1] = ~part.array.mask.any(axis=0)
    return found


def _near(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether every pixel of ``a`` is at most one pixel (8-neighbourhood) from one of ``b``."""
    grown = np.pad(b, 1)
    near = np.zeros_like(b)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            near |= grown[dy : dy + SIZE, dx : dx + SIZE]
    return bool(not (a & ~near).any())


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())


def _same_footprint(ours: np.ndarray, theirs: np.ndarray) -> bool:
    """The footprints agree to one pixel along their edges.

    Both sample by nearest neighbours, but on different grids (the tile's own; the data's,
    then resampled to the tile's), so a pixel whose centre is within a source pixel of the
    data's edge may be in one and not the other: an item smaller than a pixel may show as a
    dot in one and not at all in the other.
    """
    if not ours.any() or not theirs.any():
        either = ours | theirs
        if not either.any():
            return True
        x0, y0, x1, y1 = _box(either)
        return x1 - x0 <= 1 and y1 - y0 <= 1
    boxes = np.array(_box(ours)) - np.array(_box(theirs))
    return bool(np.abs(boxes).max() <= 1) and _near(ours, theirs) and _near(theirs, ours)


def _served(client: TestClient, url: str) -> np.ndarray:
    """The non-transparent pixels of a PNG tile; none for an empty answer (204, 404)."""
    r = client.get(url)
    if r.status_code in (204, 404):
        return np.zeros((SIZE, SIZE), bool)
    assert r.status_code == 200, (url, r.text)
    pixels = decode(r.content)
    assert pixels.shape[1:] == (SIZE, SIZE)
    return pixels[-1] > 0


def _tiles(
    tms: morecantile.TileMatrixSet, bbox: list[float], zoom: int
) -> tuple[list[morecantile.Tile], morecantile.Tile | None]:
    """The tiles holding ``bbox`` at ``zoom``, and a neighbour in their row that does not."""
    holding = list(tms.tiles(*bbox, zooms=[zoom]))
    width = tms.matrix(zoom).matrixWidth
    row, columns = holding[0].y, {t.x for t in holding}
    free = [x for x in (max(columns) + 1, min(columns) - 1) if 0 <= x < width]
    free = [x for x in free if x not in columns]
    return holding, morecantile.Tile(free[0], row, zoom) if free else None


@pytest.mark.parametrize("tms_id", TMS_IDS)
@pytest.mark.parametrize("case", list(CASES))
def test_a_small_items_pixels_are_rio_tilers_at_every_zoom(
    footprints: SharedCatalogue, case: str, tms_id: str
) -> None:
    client, item = footprints.client, footprints.items[_collection(case)]
    tms = morecantile.tms.get(tms_id)
    name = _collection(case)
    routes = (
        f"/collections/{name}/items/{name}/tiles/{tms_id}",
        f"/collections/{name}/tiles/{tms_id}",
    )
    path = str(footprints.settings.ingest.data_dir / "assets" / name / name / f"{name}.tif")
    tilejson = client.get(f"/collections/{name}/items/{name}/{tms_id}/tilejson.json").json()
    seen = 0
    for zoom in range(0, tilejson["maxzoom"] + 1):
        holding, neighbour = _tiles(tms, item["bbox"], zoom)
        for tile in holding:
            theirs = _reference(path, tms, tile)
            for route in routes:
                ours = _served(client, f"{route}/{zoom}/{tile.x}/{tile.y}.png")
                assert _same_footprint(ours, theirs), (route, tile, _box(ours | theirs))
                seen += int(ours.any())
        if neighbour is not None:
            for route in routes:
                url = f"{route}/{zoom}/{neighbour.x}/{neighbour.y}.png"
                assert not _served(client, url).any(), url
    assert seen >= tilejson["maxzoom"]  # the item shows from a few zooms up, on both routes
