"""Why a vector file was refused, or a feature write. Codes are stable (docs/errors.md)."""

from catalog.errors import CatalogError
from catalog.ingest.errors import IngestError


class Unreadable(IngestError):
    """GDAL/Arrow cannot read the vector file (or one of its layers)."""

    code = "ingest.UnreadableVector"


class NoGeometry(IngestError):
    """A layer without a geometry column (a plain table, a CSV without lon/lat or WKT)."""

    code = "ingest.NoGeometry"


class MixedCrs(IngestError):
    """A layer whose geometry columns are in different CRSs."""

    code = "ingest.MixedCrs"


class InvalidGeometry(IngestError):
    """A geometry that is not valid and that ST_MakeValid cannot turn into one of its kind."""

    code = "ingest.InvalidGeometry"


class TooManyFeatures(IngestError):
    """More features in the file than TERRACAT_INGEST_VECTOR_MAX_FEATURES."""

    code = "ingest.TooManyFeatures"
    status = 413


class UnsafeArchive(IngestError):
    """A zip member whose name leaves the extraction folder (``../``, absolute) or a link."""

    code = "ingest.UnsafeArchive"


class ArchiveBomb(IngestError):
    """A zip that inflates beyond TERRACAT_INGEST_ZIP_MAX_BYTES or ..._ZIP_MAX_RATIO."""

    code = "ingest.ArchiveBomb"
    status = 413


class LayerChoiceNeeded(IngestError):
    """A multi-layer file appended to an existing vector collection: which layer?"""

    code = "ingest.LayerChoiceNeeded"


class UnknownLayer(IngestError):
    """The upload set names a layer the file does not have."""

    code = "ingest.UnknownLayer"


class TypeConflict(IngestError):
    """An appended file whose property has another type than the collection's."""

    code = "ingest.TypeConflict"
    status = 409


class InvalidDatetimeProperty(IngestError):
    """The datetime property the upload set names is missing, or not a date or datetime."""

    code = "ingest.InvalidDatetimeProperty"


class NotAVectorCollection(IngestError):
    """Vector data sent to a collection that holds STAC items (or a collection id taken)."""

    code = "ingest.NotAVectorCollection"
    status = 409


class VectorCollection(CatalogError):
    """STAC items sent to a collection of vector features (``bulk_items``)."""

    code = "stac.VectorCollection"
    status = 409


class InvalidFeature(CatalogError):
    """A feature body (Part 4 transactions) that is not a GeoJSON Feature the layer can hold."""

    code = "features.InvalidFeature"


class FeatureTypeConflict(InvalidFeature):
    """A feature write whose property value has another type than the collection's property
    (the feature-write twin of ``ingest.TypeConflict``)."""

    code = "features.TypeConflict"
    status = 409
