"""Geotagged JPEGs made by the tests with Pillow (pixels, XMP) and piexif (EXIF tags), and
HEICs made from them with pillow-heif (the same pixels and EXIF tags, HEVC-coded)."""

import datetime as dt
import io
import math
from fractions import Fraction
from typing import Any

import numpy as np
import piexif
from PIL import Image

GPANO = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:GPano="http://ns.google.com/photos/1.0/panorama/" '
    'GPano:ProjectionType="equirectangular" GPano:UsePanoramaViewer="True" '
    'GPano:FullPanoWidthPixels="{w}" GPano:FullPanoHeightPixels="{h}" '
    'GPano:CroppedAreaImageWidthPixels="{w}" GPano:CroppedAreaImageHeightPixels="{h}" '
    'GPano:CroppedAreaLeftPixels="0" GPano:CroppedAreaTopPixels="0" '
    'GPano:PoseHeadingDegrees="{heading}"/></rdf:RDF></x:xmpmeta>'
)


def _rational(value: float, denominator: int = 1000) -> tuple[int, int]:
    f = Fraction(value).limit_denominator(denominator)
    return (f.numerator, f.denominator)


def _dms(value: float) -> tuple[tuple[int, int], ...]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = (value - degrees - minutes / 60) * 3600
    return ((degrees, 1), (minutes, 1), (round(seconds * 10000), 10000))


def gradient(width: int, height: int) -> Image.Image:
    """An RGB picture whose top-left corner is red and the rest a gradient (orientation tests
    look for the red corner)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)),
                    np.full_like(x, 128)], axis=-1).astype(np.uint8)  # fmt: skip
    corner_w, corner_h = max(width // 8, 1), max(height // 8, 1)
    rgb[:corner_h, :corner_w] = (255, 0, 0)
    return Image.fromarray(rgb, "RGB")


def photo(
    lon: float | None = 2.35,
    lat: float | None = 48.85,
    when: dt.datetime | None = dt.datetime(
        2026, 6, 1, 10, 0, 0, 250000, tzinfo=dt.timezone(dt.timedelta(hours=2))
    ),  # fmt: skip
    heading: float | None = 90.0,
    size: tuple[int, int] = (640, 480),
    orientation: int | None = None,
    pano: bool = False,
    altitude: float | None = 35.5,
    serial: str | None = "SN-12345",
    seed: int = 0,
) -> bytes:
    """A JPEG with GPS position, capture time (sub-second, offset), heading, camera tags.

    ``seed`` changes a few pixels so that pictures of the same spot differ in bytes.
    """
    image = gradient(*size)
    image.putpixel((size[0] - 1, size[1] - 1), (seed % 256, seed // 256 % 256, 7))
    zeroth: dict[int, Any] = {piexif.ImageIFD.Make: b"Terracam", piexif.ImageIFD.Model: b"T-1"}
    exif: dict[int, Any] = {piexif.ExifIFD.FocalLength: (4, 1)}
    gps: dict[int, Any] = {}
    if orientation is not None:
        zeroth[piexif.ImageIFD.Orientation] = orientation
    if serial is not None:
        exif[piexif.ExifIFD.BodySerialNumber] = serial.encode()
    if when is not None:
        exif[piexif.ExifIFD.DateTimeOriginal] = when.strftime("%Y:%m:%d %H:%M:%S").encode()
        exif[piexif.ExifIFD.SubSecTimeOriginal] = f"{when.microsecond // 1000:03d}".encode()
        offset = when.utcoffset() or dt.timedelta()
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        text = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        exif[piexif.ExifIFD.OffsetTimeOriginal] = text.encode()
    if lon is not None and lat is not None:
        gps = {
            piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
            piexif.GPSIFD.GPSLatitude: _dms(lat),
            piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
            piexif.GPSIFD.GPSLongitude: _dms(lon),
        }
        if heading is not None:
            gps[piexif.GPSIFD.GPSImgDirectionRef] = b"T"
            gps[piexif.GPSIFD.GPSImgDirection] = _rational(heading)
        if altitude is not None:
            gps[piexif.GPSIFD.GPSAltitudeRef] = 0
            gps[piexif.GPSIFD.GPSAltitude] = _rational(altitude)
    raw = piexif.dump({"0th": zeroth, "Exif": exif, "GPS": gps})
    out = io.BytesIO()
    options: dict[str, Any] = {"exif": raw, "quality": 90}
    if pano:
        options["xmp"] = GPANO.format(w=size[0], h=size[1], heading=heading or 0).encode()
    image.save(out, "JPEG", **options)
    return out.getvalue()


def heic(*args: Any, orientation: int | None = None, **options: Any) -> bytes:
    """A HEIC with the pixels and EXIF tags ``photo(*args, **options)`` gives a JPEG.

    An ``orientation`` becomes the HEIF rotation (``irot``) as cameras write it, and the EXIF
    orientation then says 1: pillow-heif moves it there when it saves.
    """
    from pillow_heif import register_heif_opener

    register_heif_opener()
    with Image.open(io.BytesIO(photo(*args, orientation=orientation, **options))) as jpeg:
        pixels, exif = jpeg.convert("RGB"), jpeg.info["exif"]
    out = io.BytesIO()
    pixels.save(out, "HEIF", exif=exif, quality=90)
    return out.getvalue()


EARTH = 6371008.8


def along(lon: float, lat: float, metres_east: float) -> tuple[float, float]:
    """The point ``metres_east`` east of ``lon``, ``lat`` (spherical Earth)."""
    return lon + math.degrees(metres_east / (EARTH * math.cos(math.radians(lat)))), lat


def haversine(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two lon/lat points."""
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH * math.asin(math.sqrt(h))
