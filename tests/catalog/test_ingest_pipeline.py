"""Storage, previews, the STAC item and ingest_file() end to end (files only, no database)."""

import hashlib
import json
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
from pystac.validation import JsonSchemaSTACValidator, set_validator
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

from catalog.ingest.errors import EmptyRaster, IngestError
from catalog.ingest.footprint import footprint
from catalog.ingest.metadata import build_item, render_previews
from catalog.ingest.pipeline import IngestRequest, ingest_file
from catalog.settings import IngestSettings
from catalog.stac.serializers import item_row
from catalog.stac.validation import SCHEMA_DIR, _urlmap, check_extensions
from catalog.storage.base import stored_key
from catalog.storage.local import LocalStorage, asset_key
from tests import rasters

UPLOADED = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
HREFS = {
    "data": "file:///srv/assets/c/i/i.tif",
    "thumbnail": "file:///srv/assets/c/i/thumbnail.png",
    "overview": "file:///srv/assets/c/i/overview.png",
}


@pytest.fixture(scope="module", autouse=True)
def _offline_schemas() -> Iterator[None]:
    """pystac validates against catalog/schemas, never the network."""
    validator = JsonSchemaSTACValidator()
    for url, relative in _urlmap().items():
        validator.schema_cache[url] = json.loads((SCHEMA_DIR / relative).read_text())
    set_validator(validator)
    yield
    set_validator(JsonSchemaSTACValidator())


def stored(href: str) -> str:
    """The key of a ``storage:`` href (fails for any other)."""
    key = stored_key(href)
    assert key is not None, href
    return key


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _item(cog: Path, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "item_id": "i", "collection_id": "c", "assets": HREFS, "sha256": _digest(cog),
        "size": cog.stat().st_size, "datetime_value": None, "upload_time": UPLOADED,
    }  # fmt: skip
    return build_item(cog, **{**arguments, **overrides})


def _assert_valid_item(item: dict[str, Any]) -> None:
    check_extensions(item, "item")
    row = item_row(item, item["collection"])
    assert row["geometry"] == item["geometry"]
    again = pystac.Item.from_dict(item).to_dict(include_self_link=False, transform_hrefs=False)
    assert again == item
    assert pystac.Item.from_dict(item).validate()


# -- STAC item ---------------------------------------------------------------------------------
def test_item_of_a_utm_rgb_cog(tmp_path: Path) -> None:
    cog = rasters.cog_tif(rasters.utm_rgb_tif(tmp_path), tmp_path / "cog.tif")
    before = datetime.now(UTC)
    item = _item(cog, title="Scene")
    made = item["properties"]["created"]
    assert before <= datetime.fromisoformat(made) <= datetime.now(UTC)
    assert item["properties"]["updated"] == made
    _assert_valid_item(item)
    assert item["id"] == "i" and item["collection"] == "c"
    assert item["geometry"] == footprint(cog)
    west, south, east, north = item["bbox"]
    assert 15.009 < west < east < 15.064 and 50.51 < south < north < 50.55
    props = item["properties"]
    assert props["datetime"] == "2024-05-06T07:08:09Z" and props["title"] == "Scene"
    assert props["gsd"] == 10.0 and props["proj:code"] == "EPSG:32633"
    assert props["proj:shape"] == [512, 512]
    assert props["proj:transform"] == [10.0, 0.0, 500_000.0, 0.0, -10.0, 5_600_000.0]
    assert props["proj:bbox"] == [500_000.0, 5_594_880.0, 505_120.0, 5_600_000.0]
    data = item["assets"]["data"]
    assert data["href"] == HREFS["data"] and data["roles"] == ["data"]
    assert data["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert data["file:checksum"] == "1220" + _digest(cog)
    assert data["file:size"] == cog.stat().st_size
    assert [b.get("common_name") for b in data["eo:bands"]] == ["red", "green", "blue"]
    band = data["raster:bands"][0]
    assert band["data_type"] == "uint8" and band["nodata"] == 0
    assert band["spatial_resolution"] == 10.0 and "histogram" not in band
    assert 0 < band["statistics"]["minimum"] <= band["statistics"]["maximum"] <= 255
    assert item["assets"]["thumbnail"] == {
        "href": HREFS["thumbnail"], "type": "image/png", "roles": ["thumbnail"],
    }  # fmt: skip
    assert item["assets"]["overview"]["roles"] == ["overview"]
    assert set(item["stac_extensions"]) == {
        "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
        "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
        "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    }


def test_item_of_uint16_rgbn(tmp_path: Path) -> None:
    item = _item(rasters.rgbn_uint16_tif(tmp_path))
    _assert_valid_item(item)
    bands = item["assets"]["data"]["eo:bands"]
    assert [b["common_name"] for b in bands] == ["red", "green", "blue", "nir"]
    assert item["properties"]["gsd"] == 20.0
    assert item["assets"]["data"]["raster:bands"][3]["data_type"] == "uint16"


def test_item_of_geographic_float(tmp_path: Path) -> None:
    item = _item(rasters.float_tif(tmp_path))
    _assert_valid_item(item)
    # 0.001 degree at 45.9 N: about 77.5 m east-west and 111.1 m north-south
    assert item["properties"]["gsd"] == pytest.approx(94.3, abs=0.5)
    assert item["properties"]["proj:code"] == "EPSG:4326"
    band = item["assets"]["data"]["raster:bands"][0]
    assert band["nodata"] == -9999 and band["statistics"]["minimum"] > 0


def test_item_of_a_crs_without_epsg_code(tmp_path: Path) -> None:
    path = rasters.write_geotiff(
        tmp_path / "laea.tif", width=32, height=32, count=1, dtype="int16",
        crs="+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m",
        transform=from_origin(4_000_000, 3_000_000, 100, 100),
    )  # fmt: skip
    item = _item(path)
    _assert_valid_item(item)
    assert "proj:code" not in item["properties"]
    assert item["properties"]["proj:wkt2"].startswith("PROJCRS[")


def test_item_across_the_antimeridian_and_the_pole(tmp_path: Path) -> None:
    for path in (rasters.antimeridian_utm_tif(tmp_path), rasters.polar_north_tif(tmp_path)):
        item = _item(path)
        _assert_valid_item(item)
    assert item["bbox"][2:] == [180, 90]


@pytest.mark.parametrize(
    ("tag", "user", "expected"),
    [
        ("2021:03:04 05:06:07", None, "2021-03-04T05:06:07Z"),
        ("2021:03:04 05:06:07", datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC), "2020-01-02T03:04:05Z"),
        ("2021:03:04 05:06:07", datetime(2020, 1, 2, 3, 4, 5), "2020-01-02T03:04:05Z"),
        ("0000:00:00 00:00:00", None, "2024-05-06T07:08:09Z"),
        (None, None, "2024-05-06T07:08:09Z"),
    ],
)
def test_datetime_precedence(
    tmp_path: Path, tag: str | None, user: datetime | None, expected: str
) -> None:
    tags = {"TIFFTAG_DATETIME": tag} if tag else None
    path = rasters.write_geotiff(
        tmp_path / "dated.tif", width=16, height=16, count=1, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(*rasters.UTM_ORIGIN, 10, 10), tags=tags,
    )  # fmt: skip
    item = _item(path, datetime_value=user)
    assert item["properties"]["datetime"] == expected
    _assert_valid_item(item)


# -- previews ----------------------------------------------------------------------------------
def _png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG has no georeferencing
        with rasterio.open(path, driver="PNG") as png:
            data: np.ndarray = png.read()
            return data


def test_previews_of_rgb_with_nodata(tmp_path: Path) -> None:
    cog = rasters.cog_tif(rasters.utm_rgb_tif(tmp_path, size=600, border=60), tmp_path / "c.tif")
    thumbnail, overview = tmp_path / "t.png", tmp_path / "o.png"
    render_previews(cog, thumbnail, overview, 256, 1024)
    small, large = _png(thumbnail), _png(overview)
    assert small.shape == (4, 256, 256) and large.shape == (4, 600, 600)  # never enlarged
    assert (large[3, :60] == 0).all() and (large[3, 60:540, 60:540] == 255).all()
    assert (small[3, :20] == 0).all() and (small[3, 40:200, 40:200] == 255).all()
    with rasterio.open(cog) as src:
        assert np.array_equal(large[:3, 300, 300], src.read()[:, 300, 300])


def test_previews_of_uint16_are_stretched_rgb(tmp_path: Path) -> None:
    thumbnail, overview = tmp_path / "t.png", tmp_path / "o.png"
    render_previews(rasters.rgbn_uint16_tif(tmp_path, size=400), thumbnail, overview, 100, 300)
    small, large = _png(thumbnail), _png(overview)
    assert small.shape == (4, 100, 100) and large.shape == (4, 300, 300)
    assert (large[3] == 255).all()
    for band in large[:3]:
        assert band.min() == 0 and band.max() == 255  # 2-98 % stretch clips both ends


def test_previews_of_a_single_float_band_are_grey(tmp_path: Path) -> None:
    path = rasters.float_tif(tmp_path, size=200)
    thumbnail, overview = tmp_path / "t.png", tmp_path / "o.png"
    render_previews(path, thumbnail, overview, 64, 1024)
    grey = _png(overview)
    assert grey.shape == (2, 200, 200)  # grey + alpha
    assert (grey[1, :, :50] == 0).all() and (grey[1, :, 50:] == 255).all()
    assert _png(thumbnail).shape == (2, 64, 64)


# -- storage -----------------------------------------------------------------------------------
def test_asset_keys_are_checked() -> None:
    assert asset_key("c", "i", "i.tif") == "assets/c/i/i.tif"
    for bad in ("", ".", "..", "a/b", "a\\b", "a\x00b", "x" * 256, "é" * 128):
        with pytest.raises(ValueError):
            asset_key("c", bad, "i.tif")


def test_publish_and_read_back(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    staged = storage.temp_path(".tif")
    assert not staged.exists() and staged.parent == (tmp_path / "data" / "tmp").resolve()
    assert staged.parent.stat().st_dev == storage.root.stat().st_dev
    staged.write_bytes(b"pixels")
    key = asset_key("my coll", "item%1", "item%1.tif")
    assert key == "assets/my coll/item%1/item%1.tif"
    storage.publish(staged, key)
    assert not staged.exists()
    path = storage.gdal_path(key)
    assert path == str(storage.root / "assets/my coll/item%1/item%1.tif")
    assert Path(path).read_bytes() == b"pixels"
    first = storage.stat(key)
    assert first is not None and first.size == 6 and first.key == key
    assert b"".join(storage.open_range(key)) == b"pixels"
    assert b"".join(storage.open_range(key, 1, 3)) == b"ixe"
    assert b"".join(storage.open_range(key, 4)) == b"ls"
    replacement = storage.temp_path(".tif")
    replacement.write_bytes(b"new pixels")
    storage.publish(replacement, key)
    assert Path(path).read_bytes() == b"new pixels"
    second = storage.stat(key)
    assert second is not None and second.etag != first.etag and second.size == 10
    assert [found.key for found in storage.keys("assets/my coll")] == [key]
    storage.delete(key)
    storage.delete(key)  # missing is fine
    assert not Path(path).exists() and storage.stat(key) is None
    assert storage.presigned_url(key, 60) is None and storage.gdal_options() == {}


def test_delete_prefix(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    for name in ("a.tif", "thumbnail.png"):
        staged = storage.temp_path("")
        staged.write_bytes(b"x")
        storage.publish(staged, f"assets/c/i/{name}")
    storage.delete_prefix("assets/c/i/")
    assert not (storage.root / "assets/c/i").exists() and (storage.root / "assets/c").is_dir()
    storage.delete_prefix("assets/c/missing")
    with pytest.raises(ValueError):
        storage.delete_prefix("")


def test_gdal_path_refuses_keys_outside_the_storage(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    assets = storage.root / "assets"
    (assets / "c").mkdir()
    (assets / "c" / "escape").symlink_to(tmp_path)
    (tmp_path / "secret.tif").write_bytes(b"x")
    for key in ("assets/../x", "/etc/passwd", "assets//a", "assets/c/escape/secret.tif"):
        with pytest.raises(ValueError):
            storage.gdal_path(key)


# -- ingest_file -------------------------------------------------------------------------------
def _request(source: Path, item_id: str = "scene-1") -> IngestRequest:
    return IngestRequest(
        source=source, collection_id="imagery", item_id=item_id, sha256=_digest(source),
        size=source.stat().st_size, filename="scene 1.tif", datetime_value=None,
        upload_time=UPLOADED,
    )  # fmt: skip


def test_ingest_converts_and_publishes(tmp_path: Path) -> None:
    source = rasters.utm_rgb_tif(tmp_path, size=700, border=50)
    before = source.read_bytes()
    settings = IngestSettings(data_dir=tmp_path / "data", compression="ZSTD")
    storage = LocalStorage(settings.data_dir)
    steps: list[tuple[int, str]] = []
    item = ingest_file(_request(source), storage, settings, lambda p, m: steps.append((p, m)))
    _assert_valid_item(item)
    assert [p for p, _ in steps] == sorted(p for p, _ in steps) and steps[-1][0] == 95
    assert {5, 60, 80, 90} <= {p for p, _ in steps}
    folder = storage.root / "assets" / "imagery" / "scene-1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "overview.png", "scene-1.tif", "thumbnail.png",
    ]  # fmt: skip
    assert item["assets"]["data"]["href"] == "storage:assets/imagery/scene-1/scene-1.tif"
    cog = Path(storage.gdal_path(stored(item["assets"]["data"]["href"])))
    assert cog == folder / "scene-1.tif"
    assert cog_validate(cog, quiet=True) == (True, [], [])
    with rasterio.open(cog) as dst:
        assert dst.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "ZSTD"
    data = item["assets"]["data"]
    assert data["file:checksum"] == "1220" + _digest(cog)
    assert data["file:size"] == cog.stat().st_size
    for name in ("thumbnail", "overview"):
        assert (
            Path(storage.gdal_path(stored(item["assets"][name]["href"]))).read_bytes()[:4]
            == b"\x89PNG"
        )
    assert item["properties"]["title"] == "scene 1.tif"
    assert source.read_bytes() == before
    assert list(storage.tmp.iterdir()) == []


def test_ingest_keeps_a_valid_cog(tmp_path: Path) -> None:
    source = rasters.cog_tif(rasters.utm_rgb_tif(tmp_path, size=700), tmp_path / "up.tif")
    request = _request(source)
    storage = LocalStorage(tmp_path / "data")
    item = ingest_file(request, storage, IngestSettings(data_dir=tmp_path / "data"))
    cog = Path(storage.gdal_path(stored(item["assets"]["data"]["href"])))
    assert cog.read_bytes() == source.read_bytes() and source.exists()
    assert item["assets"]["data"]["file:checksum"] == "1220" + request.sha256
    assert list(storage.tmp.iterdir()) == []


def test_refused_upload_leaves_nothing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    settings = IngestSettings(data_dir=tmp_path / "data")
    with pytest.raises(IngestError) as caught:
        ingest_file(_request(rasters.text_tif(tmp_path)), storage, settings)
    assert caught.value.code == "ingest.NotARaster"
    empty = rasters.write_geotiff(
        tmp_path / "empty.tif", width=20, height=20, count=1, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(*rasters.UTM_ORIGIN, 10, 10), nodata=0,
        fill=lambda c, h, w: np.zeros((c, h, w), "uint8"),
    )  # fmt: skip
    with pytest.raises(EmptyRaster):
        ingest_file(_request(empty), storage, settings)
    assert list(storage.tmp.iterdir()) == [] and list((storage.root / "assets").iterdir()) == []


def test_failure_while_publishing_unpublishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = LocalStorage(tmp_path / "data")
    publish = storage.publish

    def flaky(local: Path, key: str) -> str:
        if key.endswith("overview.png"):
            raise OSError(28, "No space left on device")
        return publish(local, key)

    monkeypatch.setattr(storage, "publish", flaky)
    source = rasters.utm_rgb_tif(tmp_path, size=700)
    with pytest.raises(OSError, match="No space"):
        ingest_file(_request(source), storage, IngestSettings(data_dir=tmp_path / "data"))
    assert list(storage.tmp.iterdir()) == []
    assert list((storage.root / "assets" / "imagery" / "scene-1").iterdir()) == []
    assert source.exists()


def test_cancel_from_progress_cleans_up(tmp_path: Path) -> None:
    class Cancelled(Exception):
        pass

    def cancel_at_80(percent: int, message: str) -> None:
        if percent >= 80:
            raise Cancelled

    storage = LocalStorage(tmp_path / "data")
    with pytest.raises(Cancelled):
        ingest_file(
            _request(rasters.utm_rgb_tif(tmp_path, size=700)), storage,
            IngestSettings(data_dir=tmp_path / "data"), cancel_at_80,
        )  # fmt: skip
    assert list(storage.tmp.iterdir()) == [] and list((storage.root / "assets").iterdir()) == []
