"""footprint(): valid-data outlines in EPSG:4326 for UTM, polar and antimeridian rasters."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
import shapely.geometry
from pyproj import Transformer
from rasterio.transform import from_origin

from catalog.ingest.errors import EmptyRaster
from catalog.ingest.footprint import footprint, geometry_bbox
from catalog.stac.serializers import item_row
from tests import rasters


def _shape(geometry: dict[str, Any]) -> shapely.Geometry:
    shape = shapely.geometry.shape(geometry)
    assert shape.is_valid, shapely.is_valid_reason(shape)
    return shape


def _lonlat(polygon: shapely.Polygon, crs: str) -> shapely.Geometry:
    to_wgs84 = Transformer.from_crs(crs, 4326, always_xy=True)
    dense = shapely.segmentize(polygon, 100.0)
    return shapely.transform(dense, lambda c: np.column_stack(to_wgs84.transform(*c.T)))


def _stored_unchanged(geometry: dict[str, Any]) -> None:
    item = {
        "type": "Feature", "id": "i", "properties": {"datetime": "2024-01-01T00:00:00Z"},
        "geometry": geometry, "bbox": geometry_bbox(geometry), "assets": {},
    }  # fmt: skip
    assert item_row(item, "c")["geometry"] == geometry


def test_utm_nodata_border_is_left_out(tmp_path: Path) -> None:
    geometry = footprint(rasters.utm_rgb_tif(tmp_path, size=512, border=64))
    x0, y0 = rasters.UTM_ORIGIN
    inner = shapely.box(x0 + 640, y0 - 5120 + 640, x0 + 5120 - 640, y0 - 640)
    expected = _lonlat(inner, "EPSG:32633")
    shape = _shape(geometry)
    assert geometry["type"] == "Polygon"
    assert shape.symmetric_difference(expected).area < 0.01 * expected.area
    assert shape.area < 0.6 * _lonlat(shapely.box(x0, y0 - 5120, x0 + 5120, y0), "EPSG:32633").area
    assert shapely.is_ccw(shape.exterior)
    _stored_unchanged(geometry)


def test_full_raster_is_its_extent(tmp_path: Path) -> None:
    geometry = footprint(rasters.rgbn_uint16_tif(tmp_path))
    x0, y0 = rasters.UTM_ORIGIN
    expected = _lonlat(shapely.box(x0, y0 - 6000, x0 + 6000, y0), "EPSG:32633")
    # Edges are simplified to within a quarter pixel (5 m here) after projection: the curved
    # UTM edges become chords, about 0.3 m off, 2e-4 of the area.
    assert _shape(geometry).symmetric_difference(expected).area < 1e-3 * expected.area
    assert len(geometry["coordinates"][0]) == 5  # a rectangle, not its densified edges
    west, south, east, north = geometry_bbox(geometry)
    assert west == pytest.approx(15.0) and west < east and south < north


def test_coordinates_are_rounded(tmp_path: Path) -> None:
    coords = shapely.get_coordinates(_shape(footprint(rasters.rgbn_uint16_tif(tmp_path))))
    assert np.array_equal(coords, np.round(coords, 7))
    assert all(isinstance(v, float) for v in geometry_bbox(footprint(rasters.float_tif(tmp_path))))


def test_float_nodata_and_decimation(tmp_path: Path) -> None:
    path = rasters.float_tif(tmp_path, size=400)
    for max_size in (1024, 64):
        shape = _shape(footprint(path, max_size=max_size))
        assert shape.bounds == pytest.approx((10.1, 45.6, 10.4, 46.0), abs=0.4 / max_size)


def test_internal_mask_and_alpha_are_honoured(tmp_path: Path) -> None:
    transform = from_origin(10.0, 46.0, 0.01, 0.01)
    masked = rasters.write_geotiff(
        tmp_path / "mask.tif", width=100, height=100, count=1, dtype="uint8", crs="EPSG:4326",
        transform=transform, mask=np.pad(np.ones((50, 50), bool), 25),
    )  # fmt: skip

    def half_alpha(count: int, height: int, width: int) -> np.ndarray:
        data = rasters.gradient(count, height, width)
        data[3] = np.where(np.arange(width) < width // 2, 255, 0)
        return data

    alpha = rasters.write_geotiff(
        tmp_path / "rgba.tif", width=100, height=100, count=4, dtype="uint8", crs="EPSG:4326",
        transform=transform, photometric="RGB", alpha="YES", fill=half_alpha,
    )  # fmt: skip
    assert _shape(footprint(masked)).equals(shapely.box(10.25, 45.25, 10.75, 45.75))
    assert _shape(footprint(alpha)).equals(shapely.box(10.0, 45.0, 10.5, 46.0))


def test_separate_valid_areas_make_a_multipolygon(tmp_path: Path) -> None:
    def two_blocks(count: int, height: int, width: int) -> np.ndarray:
        data = np.zeros((count, height, width), "uint8")
        data[:, 10:40, 10:40] = 5
        data[:, 60:90, 60:90] = 5
        return data

    path = rasters.write_geotiff(
        tmp_path / "two.tif", width=100, height=100, count=1, dtype="uint8", crs="EPSG:4326",
        transform=from_origin(0.0, 1.0, 0.01, 0.01), nodata=0, fill=two_blocks,
    )  # fmt: skip
    geometry = footprint(path)
    assert geometry["type"] == "MultiPolygon" and len(geometry["coordinates"]) == 2
    assert _shape(geometry).area == pytest.approx(2 * 0.3 * 0.3)


def test_north_pole_inside(tmp_path: Path) -> None:
    geometry = footprint(rasters.polar_north_tif(tmp_path))
    shape = _shape(geometry)
    assert geometry["type"] == "Polygon"
    assert shape.contains(shapely.Point(0, 89.99)) and shape.contains(shapely.Point(135, 89.99))
    assert shape.contains(shapely.Point(-45, 82)) and not shape.contains(shapely.Point(-45, 80))
    west, south, east, north = geometry_bbox(geometry)
    assert (west, east, north) == (-180, 180, 90) and 76 < south < 78
    _stored_unchanged(geometry)


def test_south_pole_inside(tmp_path: Path) -> None:
    geometry = footprint(rasters.polar_south_tif(tmp_path))
    shape = _shape(geometry)
    assert shape.contains(shapely.Point(0, -89.99)) and shape.contains(shapely.Point(-170, -89.9))
    assert not shape.contains(shapely.Point(0, 89.99))
    assert geometry_bbox(geometry)[1] == -90 and geometry_bbox(geometry)[3] < -76
    _stored_unchanged(geometry)


def test_hole_around_the_pole(tmp_path: Path) -> None:
    def ring(count: int, height: int, width: int) -> np.ndarray:
        y, x = np.mgrid[0:height, 0:width]
        data = np.full((count, height, width), 7, "uint8")
        data[:, (x - width / 2) ** 2 + (y - height / 2) ** 2 < (width / 8) ** 2] = 0
        return data

    path = rasters.write_geotiff(
        tmp_path / "polehole.tif", width=200, height=200, count=1, dtype="uint8",
        crs="EPSG:3413", transform=from_origin(-1e6, 1e6, 1e4, 1e4), nodata=0, fill=ring,
    )  # fmt: skip
    shape = _shape(footprint(path))
    assert not shape.contains(shapely.Point(0, 89.99)) and not shape.contains(shapely.Point(0, 88))
    assert shape.contains(shapely.Point(0, 85)) and shape.contains(shapely.Point(179, 85))


def test_utm_zone_60_across_the_antimeridian(tmp_path: Path) -> None:
    geometry = footprint(rasters.antimeridian_utm_tif(tmp_path))
    assert geometry["type"] == "MultiPolygon" and len(geometry["coordinates"]) == 2
    east_part, west_part = sorted(
        (shapely.Polygon(p[0]) for p in geometry["coordinates"]), key=lambda p: -p.bounds[0]
    )
    assert east_part.bounds[2] == 180 and west_part.bounds[0] == -180
    assert all(abs(x) <= 180 for x, _ in shapely.get_coordinates(_shape(geometry)))
    west, south, east, north = geometry_bbox(geometry)
    assert west > east and 178 < west < 179 and -178 < east < -177 and 47 < south < north < 51
    _stored_unchanged(geometry)


def test_geographic_raster_written_past_180(tmp_path: Path) -> None:
    geometry = footprint(rasters.antimeridian_geographic_tif(tmp_path))
    shape = _shape(geometry)
    assert geometry["type"] == "MultiPolygon"
    assert shape.area == pytest.approx(50.0)
    assert shape.contains(shapely.Point(-177.5, -2.5)) and shape.contains(shapely.Point(177.5, -2))
    assert not shape.contains(shapely.Point(0, -2.5))
    assert geometry_bbox(geometry) == [175.0, -5.0, -175.0, 0.0]


def test_whole_world(tmp_path: Path) -> None:
    path = rasters.write_geotiff(
        tmp_path / "world.tif", width=360, height=180, count=1, dtype="uint8",
        crs="EPSG:4326", transform=from_origin(-180, 90, 1, 1),
    )  # fmt: skip
    geometry = footprint(path)
    assert geometry_bbox(geometry) == [-180, -90, 180, 90]
    assert _shape(geometry).area == pytest.approx(360 * 180)


def test_no_valid_pixel(tmp_path: Path) -> None:
    path = rasters.write_geotiff(
        tmp_path / "empty.tif", width=20, height=20, count=1, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(*rasters.UTM_ORIGIN, 10, 10), nodata=0,
        fill=lambda c, h, w: np.zeros((c, h, w), "uint8"),
    )  # fmt: skip
    with pytest.raises(EmptyRaster, match="no valid pixel") as caught:
        footprint(path)
    assert caught.value.code == "ingest.Empty"


def test_small_holes_are_dropped(tmp_path: Path) -> None:
    def speckled(count: int, height: int, width: int) -> np.ndarray:
        data = np.full((count, height, width), 9, "uint8")
        data[:, 50, 50] = 0  # one nodata pixel: no hole
        data[:, 100:140, 100:140] = 0  # a real gap: a hole
        return data

    path = rasters.write_geotiff(
        tmp_path / "speckled.tif", width=200, height=200, count=1, dtype="uint8",
        crs="EPSG:32633", transform=from_origin(*rasters.UTM_ORIGIN, 10, 10), nodata=0,
        fill=speckled,
    )  # fmt: skip
    geometry = footprint(path)
    assert geometry["type"] == "Polygon" and len(geometry["coordinates"]) == 2
