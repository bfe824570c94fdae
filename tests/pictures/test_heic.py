"""HEIC pictures (made by the test with pillow-heif from the same pixels and EXIF tags as the
JPEGs) take the JPEGs' road: told by their bytes, tags read, JPEG web copies turned upright
and without tags, the original kept as ``image/heic``; through a real worker too."""

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from catalog.ingest.errors import IngestError
from catalog.pictures.derivatives import make_derivatives
from catalog.pictures.formats import is_picture, picture_format
from catalog.pictures.reader import read_picture
from catalog.settings import IngestSettings
from server.settings import Settings
from tests.catalog.vector_uploads import start_worker
from tests.workers import MakeWorker

from .photos import along, heic, photo
from .test_dispatch import START
from .uploads import by_name, items_of, new_set, ready, send

GPS_IFD = 0x8825
# The first box of an MP4 video: ISO base media too, but no HEIF image brand.
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
FAKE_HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_heic_is_told_by_its_bytes(tmp_path: Path) -> None:
    assert picture_format(_file(tmp_path, "a.jpg", heic())) == "heic"  # misnamed: still HEIC
    assert picture_format(_file(tmp_path, "b.heic", photo())) == "jpeg"
    assert not is_picture(_file(tmp_path, "c.heic", b"not a picture at all"))
    assert not is_picture(_file(tmp_path, "d.heic", MP4_HEAD))
    assert is_picture(_file(tmp_path, "e.heic", FAKE_HEIC))


def test_heic_tags_are_read(tmp_path: Path) -> None:
    data = heic(-73.9857, 40.7484, when=START, heading=271.5)
    meta = read_picture(_file(tmp_path, "p.heic", data), IngestSettings())
    assert (meta.lon, meta.lat) == pytest.approx((-73.9857, 40.7484), abs=1e-7)
    assert meta.when == START and meta.when.utcoffset() == START.utcoffset()
    assert meta.heading in (271, 272)
    assert (meta.make, meta.model, meta.focal_length) == ("Terracam", "T-1", 4.0)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (heic(lon=None, lat=None), "picture.NoPosition"),
        (heic(when=None), "picture.NoCaptureTime"),
        (FAKE_HEIC, "picture.Unreadable"),
        (heic()[:400], "picture.Unreadable"),
    ],
    ids=["no-gps", "no-time", "fake", "truncated"],
)
def test_heic_refusals(tmp_path: Path, data: bytes, code: str) -> None:
    with pytest.raises(IngestError) as caught:
        read_picture(_file(tmp_path, "p.heic", data), IngestSettings())
    assert caught.value.code == code


def test_heic_web_copies_are_upright_jpegs_without_tags(tmp_path: Path) -> None:
    # Orientation 6 becomes the HEIF rotation: 800 x 600 stored, 600 x 800 shown, and the red
    # top-left corner of the stored pixels is the top-right one of the shown picture.
    source = _file(tmp_path, "turned.heic", heic(size=(800, 600), orientation=6))
    made = {d.name: d for d in make_derivatives(source, tmp_path, 500, 2048, False)}
    assert (made["thumbnail"].width, made["thumbnail"].height) == (375, 500)
    for derived in made.values():
        with Image.open(derived.path) as image:
            assert image.format == "JPEG" and image.size == (derived.width, derived.height)
            rgb = image.convert("RGB")
            r, g, b = rgb.getpixel((image.width - 3, 2))  # type: ignore[misc]
            assert r > 200 and g < 60 and b < 60
            assert rgb.getpixel((2, 2))[0] < 60  # type: ignore[index]
            assert len(image.getexif()) == 0 and "exif" not in image.info


@pytest.fixture
def worker(settings: Settings, make_worker: MakeWorker) -> None:
    start_worker(settings, make_worker)


def test_heic_pictures_are_published(
    client: TestClient, admin: dict[str, str], worker: None
) -> None:
    set_id = new_set(client, admin, "heic")
    where = along(2.35, 48.85, 10)
    shots = {
        "turned.heic": heic(size=(800, 600), orientation=6, when=START, seed=1),
        "next.HEIC": heic(*where, when=START.replace(second=2), seed=2),
        "nogps.heic": heic(lon=None, lat=None, seed=3),
        "fake.heic": FAKE_HEIC,
        "text.heic": b"this is no picture, whatever its name says",
    }
    for name, data in shots.items():
        send(client, admin, set_id, name, data)
    doc = ready(client, admin, set_id)
    files = by_name(doc)
    assert doc["counts"]["ready"] == 2, doc["files"]
    assert files["nogps.heic"]["error"]["code"] == "picture.NoPosition"
    assert files["fake.heic"]["error"]["code"] == "picture.Unreadable"
    # Not a HEIF box at all: not a picture, so the raster road refuses it, as any such file.
    assert files["text.heic"]["status"] == "rejected"
    assert not files["text.heic"]["error"]["code"].startswith("picture.")
    items = {i["id"]: i for i in items_of(client, admin, "heic")}
    assert set(items) == {"turned", "next"}
    turned = items["turned"]
    assert turned["geometry"]["coordinates"] == pytest.approx([2.35, 48.85], abs=1e-7)
    assert turned["properties"]["datetime"] == "2026-06-01T08:00:00.250000Z"
    assert items["next"]["geometry"]["coordinates"] == pytest.approx(list(where), abs=1e-7)
    assets = turned["assets"]
    assert assets["original"]["type"] == "image/heic"
    assert {assets[n]["type"] for n in ("sd", "thumbnail")} == {"image/jpeg"}
    r = client.get(assets["original"]["href"], headers=admin)
    assert r.status_code == 200 and r.headers["content-type"] == "image/heic"
    assert 'filename="original.heic"' in r.headers["content-disposition"]
    assert r.content == shots["turned.heic"]  # the original, tags and all
    for name in ("sd", "thumbnail"):
        r = client.get(assets[name]["href"], headers=admin)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        image = Image.open(io.BytesIO(r.content))
        assert image.format == "JPEG" and image.height > image.width  # turned upright
        assert len(image.getexif()) == 0 and not image.getexif().get_ifd(GPS_IFD)
        assert b"SN-12345" not in r.content
