"""What a geotagged picture says of itself, read by geopic-tag-reader (Panoramax's reader).

geopic-tag-reader reads EXIF, XMP (GPano, camera pose) and Mapillary tags through exiv2, picks
the best of the GPS and camera clocks with their sub-seconds and time zone (from the offset
tags, else from the position), and refuses what Panoramax refuses; we turn its refusals into
our stable codes. Pillow checks that the bytes decode as an image at all.
"""

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from geopic_tag_reader import reader as gtr
from PIL import UnidentifiedImageError

from catalog.settings import IngestSettings

from .errors import InvalidCoordinates, NoCaptureTime, NoPosition, TooLarge, Unreadable
from .images import open_picture


@dataclass(frozen=True)
class PictureMeta:
    """The tags of one picture that Terracat keeps (JSON-able through ``to_json``)."""

    lon: float
    lat: float
    datetime: str  # ISO 8601 with its offset and microseconds
    gps_datetime: str | None
    camera_datetime: str | None
    heading: int | None
    pitch: float | None
    roll: float | None
    yaw: float | None
    altitude: float | None
    make: str | None
    model: str | None
    focal_length: float | None
    field_of_view: int | None
    sensor_width: float | None
    gps_accuracy: float | None
    type: str  # "flat" or "equirectangular"
    width: int
    height: int

    def to_json(self) -> dict[str, Any]:
        """As a plain dict (job plans and the ``pictures`` table)."""
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> "PictureMeta":
        """Back from ``to_json``."""
        return cls(**value)

    @property
    def when(self) -> dt.datetime:
        """The capture time, aware."""
        return dt.datetime.fromisoformat(self.datetime)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _size(path: Path, settings: IngestSettings) -> tuple[int, int]:
    size = path.stat().st_size
    if size > settings.picture_max_bytes:
        raise TooLarge(f"{size} bytes is more than the limit of {settings.picture_max_bytes}")
    try:
        with open_picture(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, RuntimeError) as exc:
        raise Unreadable(f"not a picture we read: {exc}") from exc
    if width * height > settings.picture_max_pixels:
        raise TooLarge(
            f"{width} x {height} pixels is more than the limit of {settings.picture_max_pixels}"
        )
    return width, height


def read_picture(path: Path, settings: IngestSettings) -> PictureMeta:
    """The tags of the picture at ``path``; the IngestError of the first thing it lacks."""
    width, height = _size(path, settings)
    try:
        tags = gtr.readPictureMetadata(path.read_bytes())
    except gtr.PartialExifException as exc:
        missing, partial = exc.missing_mandatory_tags, exc.tags
        if partial.lat == 0 and partial.lon == 0:
            raise InvalidCoordinates("the position is 0, 0 (null island)") from None
        if {"lat", "lon"} & missing:
            raise NoPosition("no GPS position in the picture's EXIF or XMP tags") from None
        raise NoCaptureTime("no capture date and time in the picture's tags") from None
    except gtr.InvalidExifException as exc:
        message = str(exc)
        if "bounds" in message or "GPS" in message:
            raise InvalidCoordinates(message) from None
        raise Unreadable(f"tags that cannot be read: {message}") from None
    except Exception as exc:  # exiv2 refusing the bytes (its own RuntimeError, ValueError)
        raise Unreadable(f"not a picture we read: {exc}") from None
    if not (-90 <= tags.lat <= 90 and -180 <= tags.lon <= 180):
        raise InvalidCoordinates(f"position {tags.lon}, {tags.lat} is out of range")
    by_source = tags.ts_by_source
    return PictureMeta(
        lon=tags.lon,
        lat=tags.lat,
        datetime=tags.ts.isoformat(),
        gps_datetime=_iso(by_source.gps) if by_source else None,
        camera_datetime=_iso(by_source.camera) if by_source else None,
        heading=tags.heading,
        pitch=tags.pitch,
        roll=tags.roll,
        yaw=tags.yaw,
        altitude=tags.altitude,
        make=tags.make,
        model=tags.model,
        focal_length=tags.focal_length,
        field_of_view=tags.field_of_view,
        sensor_width=tags.sensor_width,
        gps_accuracy=tags.gps_accuracy,
        type=tags.type or "flat",
        width=width,
        height=height,
    )
