"""The S3 storage: keys are objects under ``{bucket}/{prefix}`` of an S3-compatible store.

Files are staged in the local data folder's ``tmp`` and uploaded by ``publish``: one PUT up to
``MULTIPART_THRESHOLD`` (S3 stores an object only once its whole body arrived), a multipart
upload above it (the object appears only when the upload is completed; a failed one is
aborted). A crash mid-upload therefore never leaves a half object under a key; at worst an
incomplete multipart upload, invisible and removed by ``abort_stale_uploads`` (or by a bucket
lifecycle rule). GDAL reads objects through ``/vsis3/`` with ``gdal_options()``.
"""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from catalog.settings import StorageSettings
from catalog.storage.base import _PART, Storage, StoredObject, check_key

_CHUNK = 256 * 1024  # open_range's chunks, as the local storage's
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
_PAGE = 1000  # keys of a ListObjectsV2 page (its most)
MULTIPART_THRESHOLD = 64 * 1024**2
MULTIPART_CHUNK = 16 * 1024**2  # 10,000 parts at most: objects up to ~160 GB
_MISSING = {"404", "NoSuchKey", "NotFound"}  # of a key (a missing bucket is an error)


class S3Storage:
    """Objects ``{prefix}{key}`` in one bucket; staging in ``data_dir/tmp``.

    One boto3 client per storage (clients are thread-safe; its connection pool holds
    ``s3_max_connections`` connections, enough for every API thread to stream at once).
    """

    kind = "s3"

    def __init__(self, settings: StorageSettings, data_dir: Path) -> None:
        if settings.s3_bucket is None:
            raise ValueError("an S3 storage needs a bucket")
        self.settings = settings
        self.bucket: str = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self.tmp = Path(data_dir).absolute().resolve() / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        credentials: dict[str, str] = {}
        if settings.s3_access_key_id and settings.s3_secret_access_key:
            credentials = {
                "aws_access_key_id": settings.s3_access_key_id.get_secret_value(),
                "aws_secret_access_key": settings.s3_secret_access_key.get_secret_value(),
            }
        config = Config(
            region_name=settings.s3_region,
            signature_version="s3v4",
            max_pool_connections=settings.s3_max_connections,
            s3={"addressing_style": "path" if settings.s3_path_style else "auto"},
            retries={"max_attempts": 4, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
        )
        # A session of its own: boto3's default session is a module global, not thread-safe.
        session = boto3.session.Session(**credentials)
        self.client: Any = session.client("s3", endpoint_url=settings.s3_endpoint_url,
                                          config=config)  # fmt: skip
        self.transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_CHUNK,
            max_concurrency=4,
        )

    def object_name(self, key: str) -> str:
        """The object key in the bucket of a storage key."""
        return self.prefix + check_key(key)

    def _key(self, name: str) -> str:
        return name[len(self.prefix) :]

    def temp_path(self, suffix: str) -> Path:
        """A fresh, not yet existing path in the local staging folder."""
        if suffix and not _PART.match(suffix):
            raise ValueError(f"invalid suffix: {suffix!r}")
        return self.tmp / f"{uuid.uuid4().hex}{suffix}"

    def publish(self, local: Path, key: str) -> None:
        """Upload ``local`` as ``key`` (one PUT, or a multipart upload aborted on failure);
        ``local`` is removed once the object exists, kept when the upload failed."""
        name = self.object_name(key)
        self.client.upload_file(str(local), self.bucket, name, Config=self.transfer)
        Path(local).unlink()

    def delete(self, key: str) -> None:
        """Remove one object; a missing one is fine (S3 answers 204 either way)."""
        self.client.delete_object(Bucket=self.bucket, Key=self.object_name(key))

    def delete_prefix(self, prefix: str) -> None:
        """Remove the object ``prefix`` and every object under ``prefix/``, 1000 a request."""
        base = self.object_name(prefix.rstrip("/"))
        names = [base] + [self.prefix + found.key for found in self.keys(prefix)]
        batch_size = _DELETE_BATCH
        for start in range(0, len(names), batch_size):
            batch = names[start : start + batch_size]
            answer = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": n} for n in batch], "Quiet": True},
            )
            errors = [e for e in answer.get("Errors", []) if e.get("Code") not in _MISSING]
            if errors:
                first = errors[0]
                raise OSError(f"cannot delete {first.get('Key')!r}: {first.get('Message')}")

    def stat(self, key: str) -> StoredObject | None:
        """HEAD the object: size, Last-Modified and ETag; None when it does not exist."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.object_name(key))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return StoredObject(
            key=key,
            size=int(head["ContentLength"]),
            modified=_aware(head["LastModified"]),
            etag=str(head["ETag"]).strip('"'),
        )

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """A ranged GET, its body read in chunks of at most 256 KiB as they are consumed.

        A range that starts past the end yields nothing (as a local file); a missing object
        raises FileNotFoundError.
        """
        wanted = f"bytes={start}-" if end is None else f"bytes={start}-{end}"
        try:
            answer = self.client.get_object(
                Bucket=self.bucket, Key=self.object_name(key), Range=wanted
            )
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(key) from exc
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return
            raise
        body = answer["Body"]
        try:
            yield from body.iter_chunks(_CHUNK)
        finally:
            body.close()

    def fetch(self, key: str, local: Path) -> None:
        """Download ``key`` to ``local`` (boto3 writes a temporary file and renames it)."""
        try:
            self.client.download_file(self.bucket, self.object_name(key), str(local),
                                      Config=self.transfer)  # fmt: skip
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(key) from exc
            raise

    def keys(self, prefix: str) -> Iterator[StoredObject]:
        """The objects under ``prefix/``, a page of ListObjectsV2 at a time."""
        folder = self.object_name(prefix.rstrip("/")) + "/"
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=folder, PaginationConfig={"PageSize": _PAGE}
        )
        for page in pages:
            for found in page.get("Contents", []):
                yield StoredObject(
                    key=self._key(found["Key"]),
                    size=int(found["Size"]),
                    modified=_aware(found["LastModified"]),
                    etag=str(found["ETag"]).strip('"'),
                )

    def gdal_path(self, key: str) -> str:
        """``/vsis3/{bucket}/{prefix}{key}``."""
        return f"/vsis3/{self.bucket}/{self.object_name(key)}"

    def gdal_options(self) -> dict[str, str]:
        """The GDAL configuration reading ``/vsis3/`` paths of this storage needs."""
        options = {
            "AWS_REGION": self.settings.s3_region,
            # Without it GDAL lists the object's "folder" on every open to find side-car files
            # (.ovr, .aux.xml, .msk): one LIST request a file, for files we never write.
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            # HTTP/2 multiplexing over one connection when the store speaks it (AWS does);
            # HTTP/1.1 stores are unaffected.
            "GDAL_HTTP_MULTIPLEX": "YES",
            # One GET for adjacent blocks of a tile instead of one per block.
            "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
            # A per-handle cache of the bytes read: pooled handles (DatasetPool) read the same
            # header and overview blocks again for neighbouring tiles. Kept small because up
            # to 64 handles stay open; /vsicurl/'s own 16 MB region cache is shared by all.
            "VSI_CACHE": "TRUE",
            "VSI_CACHE_SIZE": str(4 * 1024**2),
            # A throttled (429/503) or reset request is tried again instead of failing a tile.
            "GDAL_HTTP_MAX_RETRY": "3",
            "GDAL_HTTP_RETRY_DELAY": "0.5",
        }
        endpoint = self.settings.s3_endpoint_url
        if endpoint:
            parts = urlsplit(endpoint)
            options["AWS_S3_ENDPOINT"] = parts.netloc  # GDAL takes host[:port], no scheme
            options["AWS_HTTPS"] = "YES" if parts.scheme == "https" else "NO"
        if self.settings.s3_path_style:
            options["AWS_VIRTUAL_HOSTING"] = "FALSE"
        key_id, secret = self.settings.s3_access_key_id, self.settings.s3_secret_access_key
        if key_id is not None and secret is not None:
            # Otherwise GDAL finds credentials as boto3 does (environment, profile, roles).
            options["AWS_ACCESS_KEY_ID"] = key_id.get_secret_value()
            options["AWS_SECRET_ACCESS_KEY"] = secret.get_secret_value()
        return options

    def presigned_url(self, key: str, expires_s: int, filename: str | None = None) -> str | None:
        """A presigned GET of ``key``, saved as ``filename`` when one is given."""
        params: dict[str, str] = {"Bucket": self.bucket, "Key": self.object_name(key)}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        url: str = self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=int(expires_s)
        )
        return url

    def abort_stale_uploads(self, older_than_s: float = 24 * 3600) -> int:
        """Abort multipart uploads under the prefix begun more than ``older_than_s`` ago (a
        process that died mid-upload leaves them, invisible but billed); how many."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        aborted = 0
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for page in pages:
            for upload in page.get("Uploads", []):
                if _aware(upload["Initiated"]) < cutoff:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted += 1
        return aborted

    def check(self) -> None:
        """Raise unless the bucket answers to our credentials (HEAD of the bucket)."""
        self.client.head_bucket(Bucket=self.bucket)

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


def content_disposition(filename: str) -> str:
    """``attachment`` with ``filename`` as an ASCII fallback and RFC 6266's UTF-8 form."""
    plain = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in filename)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _missing(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(error.get("Code")) in _MISSING or status == 404


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_S3_IS_A_STORAGE: type[Storage] = S3Storage
