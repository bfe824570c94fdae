"""to_cog(): real COGs (validated by rio-cogeo), masks kept, valid COGs linked not rewritten."""

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

from catalog.ingest.cog import overview_level, predictor, to_cog
from catalog.ingest.errors import Corrupt
from catalog.ingest.validate import inspect
from catalog.settings import IngestSettings
from tests import rasters


def _convert(source: Path, tmp_path: Path, **settings: object) -> tuple[bool, Path]:
    ingest = IngestSettings(data_dir=tmp_path / "data", **settings)  # type: ignore[arg-type]
    target = tmp_path / "out.tif"
    return to_cog(source, target, inspect(source, ingest), ingest), target


def _assert_clean_cog(path: Path) -> None:
    valid, errors, warnings = cog_validate(path, quiet=True)
    assert (valid, errors, warnings) == (True, [], [])


@pytest.mark.parametrize(("compression", "tag"), [("DEFLATE", "DEFLATE"), ("ZSTD", "ZSTD")])
def test_utm_rgb_becomes_a_cog(tmp_path: Path, compression: str, tag: str) -> None:
    source = rasters.utm_rgb_tif(tmp_path, size=1100, border=100)
    converted, cog = _convert(source, tmp_path, compression=compression)
    assert converted
    _assert_clean_cog(cog)
    with rasterio.open(cog) as dst, rasterio.open(source) as src:
        structure = dst.tags(ns="IMAGE_STRUCTURE")
        assert structure["LAYOUT"] == "COG"
        assert structure["COMPRESSION"] == tag and structure["PREDICTOR"] == "2"
        assert dst.block_shapes == [(512, 512)] * 3
        assert dst.overviews(1) == [2, 4]
        assert dst.nodata == 0 and dst.crs == src.crs and dst.transform == src.transform
        assert dst.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        assert np.array_equal(dst.read(), src.read())
        assert np.array_equal(dst.dataset_mask(), src.dataset_mask())
    assert source.exists()


def test_float_gets_the_floating_point_predictor(tmp_path: Path) -> None:
    converted, cog = _convert(rasters.float_tif(tmp_path, size=700), tmp_path)
    assert converted
    _assert_clean_cog(cog)
    with rasterio.open(cog) as dst:
        assert dst.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
        assert dst.nodata == -9999 and dst.dtypes == ("float32",)
        assert dst.read(1)[0, 0] == -9999 and dst.overviews(1) == [2]


def test_internal_mask_is_kept(tmp_path: Path) -> None:
    valid = np.pad(np.ones((500, 700), bool), 100)
    source = rasters.write_geotiff(
        tmp_path / "mask.tif", width=900, height=700, count=3, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(*rasters.UTM_ORIGIN, 10, 10), mask=valid, tiled=True,
    )  # fmt: skip
    _, cog = _convert(source, tmp_path)
    _assert_clean_cog(cog)
    with rasterio.open(cog) as dst:
        assert dst.mask_flag_enums[0] == [MaskFlags.per_dataset]
        assert dst.count == 3 and dst.nodata is None
        assert np.array_equal(dst.dataset_mask() > 0, valid)


def test_alpha_band_is_kept(tmp_path: Path) -> None:
    def fill(count: int, height: int, width: int) -> np.ndarray:
        data = rasters.gradient(count, height, width)
        data[3] = 255
        data[3, :100] = 0
        return data

    source = rasters.write_geotiff(
        tmp_path / "rgba.tif", width=900, height=700, count=4, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(*rasters.UTM_ORIGIN, 10, 10), photometric="RGB", alpha="YES",
        fill=fill,
    )  # fmt: skip
    _, cog = _convert(source, tmp_path)
    _assert_clean_cog(cog)
    with rasterio.open(cog) as dst:
        assert dst.colorinterp[3] == ColorInterp.alpha
        assert (dst.dataset_mask()[:100] == 0).all() and (dst.dataset_mask()[100:] == 255).all()


def test_uint16_four_bands_keep_colour_interpretation(tmp_path: Path) -> None:
    converted, cog = _convert(rasters.rgbn_uint16_tif(tmp_path), tmp_path)
    assert converted  # its IFD moved to the end when the colour interpretation was set
    with rasterio.open(cog) as dst:
        assert dst.colorinterp[3] == ColorInterp.nir and dst.dtypes[0] == "uint16"
        assert dst.block_shapes[0] == (512, 512)


def test_long_strip_gets_overviews(tmp_path: Path) -> None:
    source = rasters.write_geotiff(
        tmp_path / "strip.tif", width=3000, height=200, count=1, dtype="int16",
        crs="EPSG:32633", transform=from_origin(*rasters.UTM_ORIGIN, 10, 10), nodata=-1,
    )  # fmt: skip
    _, cog = _convert(source, tmp_path)
    _assert_clean_cog(cog)
    with rasterio.open(cog) as dst:
        assert dst.overviews(1) == [2, 4, 8] and dst.nodata == -1


def test_valid_cog_is_linked_not_rewritten(tmp_path: Path) -> None:
    source = rasters.cog_tif(rasters.utm_rgb_tif(tmp_path, size=700), tmp_path / "in.tif")
    before = source.read_bytes()
    converted, target = _convert(source, tmp_path)
    assert not converted
    assert os.path.samefile(source, target) and source.stat().st_nlink == 2
    assert target.read_bytes() == before


def test_link_falls_back_to_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = rasters.cog_tif(rasters.utm_rgb_tif(tmp_path, size=700), tmp_path / "in.tif")

    def cross_device(src: object, dst: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    converted, target = _convert(source, tmp_path)
    assert not converted and not os.path.samefile(source, target)
    assert target.read_bytes() == source.read_bytes()


def test_damaged_middle_tile_is_corrupt(tmp_path: Path) -> None:
    source = rasters.utm_rgb_tif(
        tmp_path, size=1024, border=0, tiled=True, compress="DEFLATE", blocksize=256
    )
    ingest = IngestSettings(data_dir=tmp_path / "data")
    info = inspect(source, ingest)  # before the damage (a big file is only probed at its ends)
    with rasterio.open(source) as src:
        offset = int(src.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
    with source.open("r+b") as file:
        file.seek(offset)
        file.write(b"\xff" * 64)
    target = tmp_path / "out.tif"
    with pytest.raises(Corrupt) as caught:
        to_cog(source, target, info, ingest)
    assert caught.value.code == "ingest.Corrupt" and "pixels cannot be read" in str(caught.value)
    assert not target.exists()
    with pytest.raises(Corrupt):  # small enough for the probe's decimated read to see it
        inspect(source, ingest)


def test_overview_levels_and_predictors() -> None:
    assert overview_level(512, 512, 512) == 0
    assert overview_level(513, 10, 512) == 1
    assert overview_level(4000, 4000, 512) == 3
    assert overview_level(100_000, 2, 512) == 1  # never a level under one pixel
    assert [predictor(t) for t in ("uint8", "int16", "uint64", "float32", "float64")] == [
        2, 2, 2, 3, 3,
    ]  # fmt: skip
