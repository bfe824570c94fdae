"""Why a datacube was refused, or a datacube request. Codes are stable (docs/errors.md)."""

from catalog.errors import NotFound
from catalog.ingest.errors import IngestError


class CubeUnreadable(IngestError):
    """xarray cannot open the upload as a Zarr store or a NetCDF4 file (or the URL as one)."""

    code = "cube.Unreadable"


class NoSpatialDims(IngestError):
    """No data variable has two spatial dimensions (x/y, lon/lat, or CF axis attributes)."""

    code = "cube.NoSpatialDims"


class IrregularGrid(IngestError):
    """The x or y coordinate is not evenly spaced: the cube has no affine transform."""

    code = "cube.IrregularGrid"


class UnknownCrs(IngestError):
    """No CRS in the store (grid mapping, ``crs_wkt``, ``spatial_ref``) and coordinates
    that are not longitude/latitude, or a CRS pyproj cannot read."""

    code = "cube.UnknownCrs"


class NoTimeCoordinate(IngestError):
    """A non-spatial dimension that is no time coordinate (nor a band dimension), or a cube
    without time whose upload set gives no ``datetime`` either."""

    code = "cube.NoTimeCoordinate"


class UnsupportedDtype(IngestError):
    """A data variable of a type tiles cannot carry (complex, float16, text, bool, dates)."""

    code = "cube.UnsupportedDtype"


class UnsupportedDimensions(IngestError):
    """A data variable with more than one dimension besides time, y and x."""

    code = "cube.UnsupportedDimensions"


class ChunksTooLarge(IngestError):
    """A chunk larger than TERRACAT_INGEST_CUBE_MAX_CHUNK_BYTES, in a cube that cannot be
    rechunked (registered in place, or rechunking turned off)."""

    code = "cube.ChunksTooLarge"


class TooManyTimes(IngestError):
    """More time steps than TERRACAT_INGEST_CUBE_MAX_TIMES."""

    code = "cube.TooManyTimes"
    status = 413


class NotACubeCollection(IngestError):
    """A cube sent to a collection that holds other items or vector features."""

    code = "cube.NotACubeCollection"
    status = 409


class NotACube(NotFound):
    """The collection exists but is no datacube collection."""

    code = "cube.NotACube"


class CubeFileNotFound(NotFound):
    """No file of that path in the cube's store (or the store is not held here)."""

    code = "cube.FileNotFound"
