"""Why an upload was refused. Every code is stable and listed in docs/errors.md.

A rejection is final for that file (re-running the job cannot change the answer) unless the
class says ``retriable``: then a restart of the job may succeed (a URL that was down, say).
"""

from typing import ClassVar

from ..errors import CatalogError


class IngestError(CatalogError):
    """Base of every refusal of an uploaded or linked file."""

    code = "ingest.Error"
    status = 422
    retriable: ClassVar[bool] = False


class NotARaster(IngestError):
    """GDAL cannot open the file as a raster."""

    code = "ingest.NotARaster"
    status = 415


class Corrupt(IngestError):
    """The file opens as a raster but its pixels cannot be read (truncated, bad blocks)."""

    code = "ingest.Corrupt"


class NotGeoreferenced(IngestError):
    """The raster has no CRS or no geotransform (GCP-only rasters included)."""

    code = "ingest.NotGeoreferenced"


class UnsupportedDataType(IngestError):
    """A pixel type we do not convert (complex numbers)."""

    code = "ingest.UnsupportedDataType"


class TooManyBands(IngestError):
    """More bands than TERRACAT_INGEST_MAX_BANDS."""

    code = "ingest.TooManyBands"


class TooLarge(IngestError):
    """More bytes than TERRACAT_INGEST_MAX_FILE_BYTES or pixels than ..._MAX_PIXELS."""

    code = "ingest.TooLarge"
    status = 413


class Implausible(IngestError):
    """Far more pixels than the file's bytes can honestly hold (a sparse or "bomb" TIFF)."""

    code = "ingest.ImplausibleSize"
    status = 413


class Duplicate(IngestError):
    """A file with the same SHA-256 is already in (or on its way into) the collection."""

    code = "ingest.Duplicate"
    status = 409


class ChecksumMismatch(IngestError):
    """The bytes received do not match the checksum the client sent."""

    code = "upload.ChecksumMismatch"
    status = 400  # over plain HTTP; the tus server answers 460 itself, as tus says


class UrlForbidden(IngestError):
    """A URL whose scheme or address (after DNS resolution) we refuse to fetch."""

    code = "url.Forbidden"
    status = 400


class UrlUnreachable(IngestError):
    """A URL that did not answer with the file (DNS, connection, HTTP error, time limit)."""

    code = "url.Unreachable"
    status = 502
    retriable = True


class UrlTooManyRedirects(IngestError):
    """A URL whose redirects loop or outnumber TERRACAT_INGEST_URL_MAX_REDIRECTS.

    Final, unlike UrlUnreachable: the server answers, and answers the same way every time.
    """

    code = "url.TooManyRedirects"
    status = 502


class EmptyRaster(IngestError):
    """Every pixel of the raster is nodata or masked: there is nothing to show."""

    code = "ingest.Empty"
