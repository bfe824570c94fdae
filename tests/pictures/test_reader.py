"""What read_picture makes of pictures the test writes with Pillow and piexif (no database)."""

import datetime as dt
from pathlib import Path

import pytest

from catalog.ingest.errors import IngestError
from catalog.pictures.derivatives import TILE_COLS, TILE_ROWS, make_derivatives
from catalog.pictures.formats import is_picture
from catalog.pictures.reader import PictureMeta, read_picture
from catalog.settings import IngestSettings

from .photos import photo

SETTINGS = IngestSettings()


def _read(tmp_path: Path, data: bytes, settings: IngestSettings = SETTINGS) -> PictureMeta:
    path = tmp_path / "p.jpg"
    path.write_bytes(data)
    return read_picture(path, settings)


def test_tags_are_read(tmp_path: Path) -> None:
    when = dt.datetime(2025, 12, 31, 23, 59, 58, 125000, tzinfo=dt.timezone(-dt.timedelta(hours=5)))
    meta = _read(tmp_path, photo(-73.9857, 40.7484, when=when, heading=271.5, altitude=12.0))
    assert meta.lon == pytest.approx(-73.9857, abs=1e-7)
    assert meta.lat == pytest.approx(40.7484, abs=1e-7)
    assert meta.when == when
    assert meta.when.utcoffset() == dt.timedelta(hours=-5)
    assert meta.heading in (271, 272)  # geopic-tag-reader keeps whole degrees
    assert meta.altitude == pytest.approx(12.0, abs=0.5)
    assert (meta.make, meta.model, meta.focal_length) == ("Terracam", "T-1", 4.0)
    assert meta.type == "flat" and (meta.width, meta.height) == (640, 480)


def test_gpano_marks_a_360_picture(tmp_path: Path) -> None:
    meta = _read(tmp_path, photo(pano=True, size=(800, 400), heading=45))
    assert meta.type == "equirectangular"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (photo(lon=None, lat=None), "picture.NoPosition"),
        (photo(when=None), "picture.NoCaptureTime"),
        (photo(lon=0.0, lat=0.0), "picture.InvalidCoordinates"),
        (photo(lat=95.0), "picture.InvalidCoordinates"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "picture.Unreadable"),
    ],
    ids=["no-gps", "no-time", "null-island", "lat-95", "broken"],
)
def test_refusals(tmp_path: Path, data: bytes, code: str) -> None:
    with pytest.raises(IngestError) as caught:
        _read(tmp_path, data)
    assert caught.value.code == code


def test_limits(tmp_path: Path) -> None:
    data = photo(size=(400, 300))
    with pytest.raises(IngestError) as caught:
        _read(tmp_path, data, IngestSettings(picture_max_pixels=400 * 300 - 1))
    assert caught.value.code == "picture.TooLarge"
    with pytest.raises(IngestError) as caught:
        _read(tmp_path, data, IngestSettings(picture_max_bytes=len(data) - 1))
    assert caught.value.code == "picture.TooLarge"
    assert _read(tmp_path, data, IngestSettings(picture_max_pixels=400 * 300))


def test_only_jpegs_are_pictures(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(photo())
    (tmp_path / "b").write_bytes(b"II*\x00" + b"\x00" * 10)
    assert is_picture(tmp_path / "a") and not is_picture(tmp_path / "b")


def test_tiles_cover_the_sphere(tmp_path: Path) -> None:
    (tmp_path / "pano.jpg").write_bytes(photo(pano=True, size=(1600, 800)))
    made = {d.name: d for d in make_derivatives(tmp_path / "pano.jpg", tmp_path, 500, 2048, True)}
    tiles = [d for n, d in made.items() if n.startswith("tile_")]
    assert len(tiles) == TILE_COLS * TILE_ROWS
    assert {(d.width, d.height) for d in tiles} == {(1600 // TILE_COLS, 800 // TILE_ROWS)}
    assert (made["thumbnail"].width, made["thumbnail"].height) == (500, 250)
    assert (made["sd"].width, made["sd"].height) == (1600, 800)  # never enlarged
