"""CRS text from clients and items, parsed without touching files or the network."""

import re

from rasterio.crs import CRS
from rasterio.errors import CRSError

from .errors import UnsafeCrs

_AUTHORITY_CODE = re.compile(r"^(EPSG|OGC|ESRI|IAU_2015):([A-Za-z0-9_.]{1,32})$", re.IGNORECASE)
_CRS_URI = re.compile(
    r"^(?:https?://www\.opengis\.net/def/crs/(EPSG|OGC|ESRI|IAU_2015)/[^/]{1,16}/"
    r"|urn:ogc:def:crs:(EPSG|OGC|ESRI|IAU_2015):[^:]{0,16}:)([A-Za-z0-9_.]{1,32})$",
    re.IGNORECASE,
)


def safe_crs(text: str) -> CRS:
    """A CRS from an ``AUTH:CODE`` or an OGC CRS URI/URN, parsed without any file or network.

    GDAL's "user input" parser also opens file names and fetches URLs; PROJ strings may read
    ``+init`` files. Anything but these plain forms raises ``UnsafeCrs``.
    """
    value = text.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    if match := _AUTHORITY_CODE.match(value):
        authority, code = match.groups()
    elif match := _CRS_URI.match(value):
        authority, code = match.group(1) or match.group(2), match.group(3)
    else:
        raise UnsafeCrs(f"unsupported CRS {text[:80]!r}: use EPSG:<code> or an opengis.net CRS URI")
    try:
        return CRS.from_user_input(f"{authority.upper()}:{code}")
    except CRSError as exc:
        raise UnsafeCrs(f"unknown CRS {text[:80]!r}") from exc
