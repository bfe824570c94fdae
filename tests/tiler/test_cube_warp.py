"""The datacube tiles' nearest warp (tiler/cubes/warp.py) against exact projection of every
pixel centre and against GDAL's warp: UTM, polar and lon/lat sources, two tile matrix sets,
zooms from the whole world to finer than the source."""

import warnings

import morecantile
import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import from_bounds, from_origin
from rasterio.warp import reproject, transform_bounds

from tiler.cubes import warp

SOURCES = {
    "utm": ("EPSG:32631", from_origin(500000, 5000000, 40, 40), 512),
    "polar": ("EPSG:3031", from_origin(-200000, 200000, 1000, 1000), 400),
    "lonlat-antimeridian": ("EPSG:4326", from_origin(179.0, 10, 0.01, 0.01), 300),
}


def _tile(tms: morecantile.TileMatrixSet, crs: CRS, transform: Affine, size: int, z: int) -> Affine:
    west, south, east, north = transform_bounds(
        crs, "EPSG:4326", transform.c, transform.f + transform.e * size,
        transform.c + transform.a * size, transform.f,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a point of the polar cube beyond WebMercatorQuad
        tile = tms.tile(min((west + east) / 2, 179.99), (south + north) / 2, z)
    return from_bounds(*tms.xy_bounds(tile), 256, 256)


@pytest.mark.parametrize("tms_id", ["WebMercatorQuad", "WorldCRS84Quad"])
@pytest.mark.parametrize("source", list(SOURCES))
def test_nearest_is_the_exact_pixel_but_within_an_eighth_of_a_pixel_of_an_edge(
    tms_id: str, source: str
) -> None:
    tms = morecantile.tms.get(tms_id)
    crs_text, transform, size = SOURCES[source]
    crs = CRS.from_user_input(crs_text)
    data = np.random.default_rng(1).random((2, size, size), dtype="float32")
    data[:, :10, :10] = np.nan  # no data stays no data
    checked = 0
    for z in range(0, 13, 2):
        grid = _tile(tms, crs, transform, size, z)
        ours = np.full((2, 256, 256), np.nan, "float32")
        warp.warp_nearest(data, transform, crs_text, ours, grid, tms.rasterio_crs)
        to_source = warp.transformer(tms.rasterio_crs, crs_text)
        px, py = np.meshgrid(np.arange(256) + 0.5, np.arange(256) + 0.5)
        x, y = grid.a * px + grid.c, grid.e * py + grid.f
        sx, sy = to_source.transform(x, y, errcheck=False)
        sx, sy = np.where(np.isfinite(sx), sx, np.nan), np.where(np.isfinite(sy), sy, np.nan)
        inverse = ~transform
        sc, sr = inverse.a * sx + inverse.c, inverse.e * sy + inverse.f
        with np.errstate(invalid="ignore"):
            inside = np.isfinite(sc) & np.isfinite(sr) & (sr >= 0) & (sr < size) & (sc >= 0)
            inside &= sc < size
        exact = np.full_like(ours, np.nan)
        rows, cols = np.floor(sr[inside]).astype(int), np.floor(sc[inside]).astype(int)
        exact[:, inside] = data[:, rows, cols]
        differ = ~np.isclose(ours, exact, equal_nan=True).all(axis=0)
        # a pixel may differ only where its centre lies within 1/8 source pixel of an edge
        near = np.minimum(np.abs(sc - np.round(sc)), np.abs(sr - np.round(sr))) <= warp.TOLERANCE
        assert not (differ & ~near).any(), (z, int((differ & ~near).sum()))
        assert differ.sum() <= 0.01 * inside.sum() + 2, (z, int(differ.sum()))
        # GDAL's warp finds data in the same pixels, but for those on the cube's edge
        gdal = np.full_like(ours, np.nan)
        reproject(source=data, destination=gdal, src_transform=transform, src_crs=crs,
                  src_nodata=np.nan, dst_transform=grid, dst_crs=tms.rasterio_crs,
                  dst_nodata=np.nan, resampling=Resampling.nearest)  # fmt: skip
        found, found_gdal = np.isfinite(ours).sum(), np.isfinite(gdal).sum()
        assert abs(int(found) - int(found_gdal)) <= 0.01 * max(found, found_gdal) + 8
        checked += int(inside.sum())
    # the polar cube lies beyond Web Mercator's 85 degrees: nothing to find there
    assert checked > 0 or (source, tms_id) == ("polar", "WebMercatorQuad")


def test_a_destination_outside_the_source_is_left_alone() -> None:
    data = np.ones((1, 10, 10), "float32")
    out = np.full((1, 4, 4), -1.0, "float32")
    far = from_origin(0, 0, 1000, 1000)  # Web Mercator at (0, 0); the data is in UTM 31N
    warp.warp_nearest(data, from_origin(500000, 5000000, 10, 10), "EPSG:32631", out, far,
                      CRS.from_epsg(3857))  # fmt: skip
    assert (out == -1).all()
