"""Which URLs a datacube may be read from: http(s) as URL ingest allows them, and s3://.

A URL is checked when the client registers it (the upload-set route) and again by the job
before it reads: http(s) URLs by ``check_url`` (scheme, and every address the host resolves
to: no loopback, private or link-local one unless TERRACAT_INGEST_URL_ALLOW_PRIVATE), s3://
URLs by form (a bucket name, a key), read without credentials on the storage's S3 service or
AWS. Nothing else ever makes the server read a cube: tiles and time series open the href of
the collection's ``datacubes`` row, never a URL from a request.
"""

import re
from urllib.parse import urlsplit

from catalog.ingest.errors import UrlForbidden
from catalog.ingest.fetch import check_url

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def check_cube_url(url: str, allow_private: bool) -> None:
    """Raise UrlForbidden unless ``url`` is an http(s) URL ingest may fetch or an s3:// URL
    of a bucket and key."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        check_url(url, allow_private)
        return
    key = parts.path.strip("/")
    if not _BUCKET.match(parts.netloc) or not key or parts.query or parts.fragment:
        raise UrlForbidden(f"{url!r} is no s3://bucket/key URL")
    if any(part in (".", "..") for part in key.split("/")):
        raise UrlForbidden(f"{url!r}: '.' and '..' are no key parts")
