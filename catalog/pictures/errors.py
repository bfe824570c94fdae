"""Why a picture was refused. Codes are stable (docs/errors.md) and shown in the upload set's
per-file status, as Panoramax does; a same-bytes file is ``ingest.Duplicate`` as for any file."""

from catalog.ingest.errors import IngestError


class NoPosition(IngestError):
    """No GPS position in the picture's EXIF or XMP tags."""

    code = "picture.NoPosition"


class NoCaptureTime(IngestError):
    """No capture date and time (GPS or camera clock) in the picture's tags."""

    code = "picture.NoCaptureTime"


class InvalidCoordinates(IngestError):
    """A position at 0, 0 ("null island") or out of the WGS 84 range, or broken GPS tags."""

    code = "picture.InvalidCoordinates"


class Unreadable(IngestError):
    """Not a picture we read (JPEG or HEIC bytes that do not decode, tags that cannot be
    parsed)."""

    code = "picture.Unreadable"
    status = 415


class TooLarge(IngestError):
    """More bytes than TERRACAT_INGEST_PICTURE_MAX_BYTES or pixels than ..._MAX_PIXELS."""

    code = "picture.TooLarge"
    status = 413


class CaptureDuplicate(IngestError):
    """Taken at the same spot, facing the same way, as the picture before it in its sequence
    (within the set's ``duplicate_distance`` and ``duplicate_rotation``)."""

    code = "picture.CaptureDuplicate"
    status = 409
