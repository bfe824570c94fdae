"""inspect(): what an upload is, and the refusal (with its stable code) when it is unusable."""

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from catalog.ingest.errors import (
    Corrupt,
    Implausible,
    IngestError,
    NotARaster,
    NotGeoreferenced,
    TooLarge,
    TooManyBands,
    UnsupportedDataType,
)
from catalog.ingest.validate import RasterInfo, inspect
from catalog.settings import IngestSettings
from tests import rasters


@pytest.fixture
def settings(tmp_path: Path) -> IngestSettings:
    return IngestSettings(data_dir=tmp_path / "data")


def _refusal(path: Path, settings: IngestSettings) -> IngestError:
    with pytest.raises(IngestError) as caught:
        inspect(path, settings)
    return caught.value


def test_utm_rgb_with_nodata(tmp_path: Path, settings: IngestSettings) -> None:
    path = rasters.utm_rgb_tif(tmp_path, size=600, tiled=True)
    info = inspect(path, settings)
    assert info == RasterInfo(
        width=600, height=600, count=3, dtypes=("uint8",) * 3, crs="EPSG:32633", nodata=0.0,
        has_alpha_or_mask=False, is_cog=False, driver="GTiff",
    )  # fmt: skip


def test_valid_cog_is_recognised(tmp_path: Path, settings: IngestSettings) -> None:
    source = rasters.utm_rgb_tif(tmp_path, size=700)
    cog = rasters.cog_tif(source, tmp_path / "cog.tif")
    assert inspect(cog, settings).is_cog
    assert not inspect(source, settings).is_cog  # striped and larger than 512 px


def test_alpha_and_internal_mask_are_reported(tmp_path: Path, settings: IngestSettings) -> None:
    transform = from_origin(*rasters.UTM_ORIGIN, 10, 10)
    alpha = rasters.write_geotiff(
        tmp_path / "rgba.tif", width=64, height=64, count=4, dtype="uint8", crs="EPSG:32633",
        transform=transform, photometric="RGB", alpha="YES",
    )  # fmt: skip
    masked = rasters.write_geotiff(
        tmp_path / "mask.tif", width=64, height=64, count=1, dtype="uint8", crs="EPSG:32633",
        transform=transform, mask=np.pad(np.ones((32, 32), bool), 16),
    )  # fmt: skip
    assert inspect(alpha, settings).has_alpha_or_mask
    assert inspect(masked, settings).has_alpha_or_mask
    assert not inspect(rasters.float_tif(tmp_path), settings).has_alpha_or_mask


def test_crs_without_epsg_code_is_wkt(tmp_path: Path, settings: IngestSettings) -> None:
    custom = "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m"
    path = rasters.write_geotiff(
        tmp_path / "laea.tif", width=32, height=32, count=1, dtype="int16", crs=custom,
        transform=from_origin(4_000_000, 3_000_000, 100, 100),
    )  # fmt: skip
    crs = inspect(path, settings).crs
    assert crs.startswith("PROJCS[") and "Lambert_Azimuthal_Equal_Area" in crs


def test_inspect_writes_nothing_beside_the_upload(tmp_path: Path, settings: IngestSettings) -> None:
    path = rasters.rgbn_uint16_tif(tmp_path)
    before = path.read_bytes()
    inspect(path, settings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rgbn.tif"]
    assert path.read_bytes() == before


# -- refusals ----------------------------------------------------------------------------------
def test_text_file_is_not_a_raster(tmp_path: Path, settings: IngestSettings) -> None:
    error = _refusal(rasters.text_tif(tmp_path), settings)
    assert isinstance(error, NotARaster) and error.code == "ingest.NotARaster"
    assert error.status == 415


def test_png_is_not_accepted(tmp_path: Path, settings: IngestSettings) -> None:
    path = tmp_path / "image.png"
    with rasterio.open(
        path, "w", driver="PNG", width=8, height=8, count=1, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(*rasters.UTM_ORIGIN, 10, 10),
    ) as dst:  # fmt: skip
        dst.write(np.zeros((1, 8, 8), "uint8"))
    assert _refusal(path, settings).code == "ingest.NotARaster"


@pytest.mark.parametrize("kind", ["directory", "symlink", "missing"])
def test_only_regular_files_are_opened(tmp_path: Path, settings: IngestSettings, kind: str) -> None:
    target = rasters.utm_rgb_tif(tmp_path)
    path = tmp_path / "other.tif"
    if kind == "directory":
        path.mkdir()
    elif kind == "symlink":
        path.symlink_to(target)
    assert _refusal(path, settings).code == "ingest.NotARaster"


def test_too_many_pixels(tmp_path: Path) -> None:
    path = rasters.many_bands_tif(tmp_path, count=1)
    error = _refusal(path, IngestSettings(max_pixels=1000))
    assert isinstance(error, TooLarge) and error.code == "ingest.TooLarge"
    assert "1,024 pixels" in error.description and "1,000" in error.description


def test_too_many_bytes(tmp_path: Path) -> None:
    path = rasters.many_bands_tif(tmp_path, count=1)
    error = _refusal(path, IngestSettings(max_file_bytes=100))
    assert error.code == "ingest.TooLarge" and error.status == 413
    assert f"{path.stat().st_size:,} bytes" in error.description


def test_a_sparse_bomb_is_refused_before_any_pixel_is_read(
    tmp_path: Path, settings: IngestSettings
) -> None:
    """50 KB declaring 40,000 x 40,000 px: converting it cost 36 s of a worker for nothing."""
    path = rasters.bomb_tif(tmp_path)
    assert path.stat().st_size < 100_000
    error = _refusal(path, settings)
    assert isinstance(error, Implausible) and error.code == "ingest.ImplausibleSize"
    assert error.status == 413
    assert "40000 x 40000" in error.description and "1,600,000,000 bytes" in error.description


def test_compression_ratio_applies_above_the_check_size_only(tmp_path: Path) -> None:
    """A small constant raster compresses 1000:1 and more, yet costs nothing to convert."""
    path = rasters.bomb_tif(tmp_path, size=2048)  # 4 MiB of pixels in a few KB
    assert inspect(path, IngestSettings()).width == 2048  # under the default 256 MiB
    strict = IngestSettings(compression_check_bytes=1024**2)
    assert _refusal(path, strict).code == "ingest.ImplausibleSize"
    ratio = 2048 * 2048 / path.stat().st_size
    lenient = IngestSettings(compression_check_bytes=1024**2, max_compression_ratio=ratio + 1)
    assert inspect(path, lenient).width == 2048


def test_too_many_bands(tmp_path: Path) -> None:
    error = _refusal(rasters.many_bands_tif(tmp_path, count=5), IngestSettings(max_bands=4))
    assert isinstance(error, TooManyBands) and error.code == "ingest.TooManyBands"
    assert "5 bands" in error.description and "limit is 4" in error.description


def test_complex_pixels_are_unsupported(tmp_path: Path, settings: IngestSettings) -> None:
    error = _refusal(rasters.complex_tif(tmp_path), settings)
    assert isinstance(error, UnsupportedDataType)
    assert error.code == "ingest.UnsupportedDataType" and "complex64" in error.description


def test_band_count_is_checked_before_pixel_type(tmp_path: Path) -> None:
    path = rasters.complex_tif(tmp_path)
    assert _refusal(path, IngestSettings(max_bands=1)).code == "ingest.UnsupportedDataType"
    with rasterio.open(path) as src:
        assert src.count == 1
    two = rasters.write_geotiff(
        tmp_path / "c2.tif", width=8, height=8, count=2, dtype="complex64", crs="EPSG:32633",
        transform=from_origin(*rasters.UTM_ORIGIN, 10, 10),
        fill=lambda c, h, w: np.ones((c, h, w), "complex64"),
    )  # fmt: skip
    assert _refusal(two, IngestSettings(max_bands=1)).code == "ingest.TooManyBands"


def test_no_crs_no_transform(tmp_path: Path, settings: IngestSettings) -> None:
    error = _refusal(rasters.not_georeferenced_tif(tmp_path), settings)
    assert isinstance(error, NotGeoreferenced) and error.code == "ingest.NotGeoreferenced"
    assert "coordinate reference system" in error.description


def test_world_file_beside_the_upload_is_ignored(tmp_path: Path, settings: IngestSettings) -> None:
    path = rasters.not_georeferenced_tif(tmp_path)
    path.with_suffix(".tfw").write_text("10\n0\n0\n-10\n500000\n5600000\n")
    path.with_suffix(".tif.aux.xml").write_text(
        '<PAMDataset><SRS dataAxisToSRSAxisMapping="1,2">EPSG:32633</SRS></PAMDataset>'
    )
    assert _refusal(path, settings).code == "ingest.NotGeoreferenced"


def test_gcp_only_is_not_georeferenced(tmp_path: Path, settings: IngestSettings) -> None:
    error = _refusal(rasters.gcps_only_tif(tmp_path), settings)
    assert error.code == "ingest.NotGeoreferenced"
    assert "ground control points" in error.description and "4" in error.description


def test_crs_without_geotransform(tmp_path: Path, settings: IngestSettings) -> None:
    path = rasters.write_geotiff(
        tmp_path / "crs_only.tif", width=16, height=16, count=1, dtype="uint8",
        crs="EPSG:32633", transform=None,
    )  # fmt: skip
    error = _refusal(path, settings)
    assert error.code == "ingest.NotGeoreferenced" and "geotransform" in error.description


@pytest.mark.parametrize("tiled", [False, True])
def test_truncated_file_is_corrupt(tmp_path: Path, settings: IngestSettings, tiled: bool) -> None:
    error = _refusal(rasters.truncated_tif(tmp_path, tiled=tiled), settings)
    assert isinstance(error, Corrupt) and error.code == "ingest.Corrupt"
    assert "TIFFReadEncoded" in error.description
    assert str(tmp_path) not in error.description


def test_truncated_cog_is_corrupt(tmp_path: Path, settings: IngestSettings) -> None:
    cog = rasters.cog_tif(rasters.utm_rgb_tif(tmp_path, size=700), tmp_path / "cog.tif")
    os.truncate(cog, cog.stat().st_size - 2000)
    assert _refusal(cog, settings).code == "ingest.Corrupt"


def test_bigtiff_is_accepted(tmp_path: Path, settings: IngestSettings) -> None:
    path = rasters.utm_rgb_tif(tmp_path, size=64, border=8, BIGTIFF="YES")
    assert path.read_bytes()[2:4] == b"\x2b\x00"  # little-endian BigTIFF magic 43
    assert inspect(path, settings).count == 3


def test_rpc_only_is_not_georeferenced(tmp_path: Path, settings: IngestSettings) -> None:
    error = _refusal(rasters.rpc_only_tif(tmp_path), settings)
    assert error.code == "ingest.NotGeoreferenced" and "RPCs" in error.description
