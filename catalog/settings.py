"""Settings of the catalogue package (env prefixes ``TERRACAT_DB_``, ``TERRACAT_CATALOG_``)."""

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseSettings):
    """Where the catalogue lives: a ``DATABASE_URL`` or the embedded private cluster."""

    model_config = SettingsConfigDict(env_prefix="TERRACAT_DB_", extra="ignore")

    url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "TERRACAT_DB_URL"),
        description="PostgreSQL URL. Unset: start the embedded cluster in data_dir.",
    )
    data_dir: Path = Field(default=Path("var/postgres"), description="Embedded cluster folder.")
    embedded_port: int = Field(default=5439, ge=1, le=65535)
    embedded_database: str = "terracat"
    pool_size: int = Field(default=10, ge=1)
    max_overflow: int = Field(default=10, ge=0)
    read_pool_size: int = Field(
        default=5,
        ge=1,
        description="Connections per process of the psycopg pool that runs vector tile "
        "statements (catalog/db/reads.py), next to the engine's pool.",
    )
    statement_timeout_ms: int = Field(default=30_000, ge=0)
    connect_timeout_s: int = Field(
        default=5,
        ge=2,  # libpq's minimum
        description="How long opening a connection may take: a database host that does not "
        "answer at all then gives 503 catalog.Unavailable instead of a request that hangs.",
    )
    parallel_workers: int = Field(
        default=0,
        ge=0,
        description="max_parallel_workers_per_gather for API queries. Paged searches read few "
        "rows; parallel plans only pay off on idle many-core servers and starve concurrent "
        "requests on small ones.",
    )

    @field_validator("url")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None


class CatalogSettings(BaseSettings):
    """Behaviour of the STAC API backend."""

    model_config = SettingsConfigDict(env_prefix="TERRACAT_CATALOG_", extra="ignore")

    default_limit: int = Field(default=10, ge=1)
    max_limit: int = Field(default=10_000, ge=1)
    max_offset: int = Field(
        default=100_000,
        ge=0,
        description="Largest `offset` of an items or collections page: PostgreSQL reads the "
        "rows it skips.",
    )
    validate_extensions: bool = Field(
        default=True,
        description="Check items and collections against the schemas of their declared "
        "stac_extensions before storing them.",
    )
    count_limit: int = Field(
        default=1_000,
        ge=0,
        description=(
            "numberMatched is counted exactly up to this many matches; above it the planner's "
            "estimate is returned (never lower than the limit). 0 leaves numberMatched out."
        ),
    )
    count_max_cost: float = Field(
        default=5_000.0,
        ge=0,
        description=(
            "Largest PostgreSQL planner cost of an exact count. A search whose count would cost "
            "more reports the planner's row estimate as numberMatched instead."
        ),
    )
    count_stale_limit: int = Field(
        default=100_000,
        ge=0,
        description=(
            "While the items table's statistics are stale, numberMatched is counted exactly up "
            "to this many matches and left out above it (never estimated)."
        ),
    )
    count_stale_timeout_ms: int = Field(
        default=1_000,
        ge=1,
        description="Longest such count; numberMatched is left out when it takes longer.",
    )


class IngestSettings(BaseSettings):
    """Uploads, validation limits, conversion and storage (env prefix ``TERRACAT_INGEST_``)."""

    model_config = SettingsConfigDict(env_prefix="TERRACAT_INGEST_", extra="ignore")

    data_dir: Path = Field(
        default=Path("var/data"),
        description="Local storage root: staged uploads, tus uploads, COGs and previews.",
    )
    max_file_bytes: int = Field(default=20 * 1024**3, ge=1, description="Largest upload.")
    max_pixels: int = Field(
        default=2_000_000_000, ge=1, description="Largest width x height of an input raster."
    )
    max_bands: int = Field(default=64, ge=1, description="Most bands of an input raster.")
    max_compression_ratio: float = Field(
        default=1000.0,
        gt=1,
        description="Most pixel bytes per file byte of a raster above "
        "compression_check_bytes: a sparse or highly compressed 'bomb' (50 KB declaring "
        "40000 x 40000 px) costs minutes of conversion for nothing.",
    )
    compression_check_bytes: int = Field(
        default=256 * 1024**2,
        ge=0,
        description="Rasters with fewer pixel bytes than this are converted whatever their ratio.",
    )
    compression: Literal["DEFLATE", "ZSTD"] = Field(
        default="DEFLATE", description="COG compression (a predictor is always used)."
    )
    blocksize: int = Field(default=512, ge=64, le=4096)
    gdal_cache_mb: int = Field(
        default=256,
        ge=16,
        description="GDAL block cache of an ingest job. GDAL's default (5% of RAM) took a "
        "10000x10000x3 conversion from 1.0 to 1.75 GB at the same speed.",
    )
    thumbnail_size: int = Field(default=256, ge=16)
    preview_size: int = Field(default=1024, ge=16)
    tus_expiration_s: int = Field(
        default=24 * 3600,
        ge=60,
        description="An unfinished tus upload is deleted this long after its last byte arrived.",
    )
    url_allow_private: bool = Field(
        default=False,
        description="Let URL ingest reach loopback, private and link-local addresses "
        "(development and tests only).",
    )
    url_timeout_s: float = Field(default=600.0, gt=0, description="Whole-download time limit.")
    url_max_redirects: int = Field(default=5, ge=0)
    vector_max_features: int = Field(
        default=5_000_000, ge=1, description="Most features in one layer of a vector file."
    )
    zip_max_bytes: int = Field(
        default=4 * 1024**3, ge=1, description="Most bytes a zipped vector file may inflate to."
    )
    zip_max_ratio: float = Field(
        default=200.0,
        gt=1,
        description="Most inflated bytes per zipped byte, above 1 MiB inflated: a 'zip bomb' "
        "(gigabytes of zeros in kilobytes) is refused before it fills the disk.",
    )
    zip_max_members: int = Field(default=10_000, ge=1, description="Most files in a zip.")
    cube_zip_max_bytes: int = Field(
        default=20 * 1024**3,
        ge=1,
        description="Most bytes a zipped Zarr store may inflate to (Zarr chunks are compressed "
        "already, so a cube's zip is about its own size; zip_max_bytes is for vector files).",
    )
    cube_zip_max_members: int = Field(
        default=500_000,
        ge=1,
        description="Most files in a zipped Zarr store (one file per chunk: a year of daily "
        "steps of 8 bands in 4 chunks is 11,680 files).",
    )
    cube_max_chunk_bytes: int = Field(
        default=8 * 1024**2,
        ge=64 * 1024,
        description="Largest chunk (uncompressed) a tile may have to read: NASA's Zarr "
        "visualization study found ~8 MB the most for 300 ms tiles. Larger chunks are "
        "rechunked by the ingest job (cube_rechunk), else refused (cube.ChunksTooLarge).",
    )
    cube_rechunk: bool = Field(
        default=True,
        description="Rechunk cubes whose chunks exceed cube_max_chunk_bytes (one time step, "
        "cube_chunk_px square) instead of refusing them. Cubes registered in place cannot be.",
    )
    cube_chunk_px: int = Field(
        default=512, ge=64, le=4096, description="Width and height of the chunks rechunking writes."
    )
    cube_overview_min_px: int = Field(
        default=512,
        ge=2,
        description="Cubes wider or taller than this get overviews (factor 2, 4, ... stored "
        "with the cube), so low zooms read a reduced copy instead of every pixel. The default "
        "is one tile, as a COG gets overviews down to its block size: a 2048 px cube without "
        "them tiled at 5x a COG's time from z0 to z5.",
    )
    cube_overview_tile_px: int = Field(
        default=512,
        ge=1,
        description="Overview levels stop at the first one no wider nor taller than this.",
    )
    cube_max_times: int = Field(
        default=10_000, ge=1, description="Most time steps of a cube (one STAC item each)."
    )
    picture_max_bytes: int = Field(
        default=100 * 1024**2, ge=1, description="Largest geotagged picture (JPEG) in bytes."
    )
    picture_max_pixels: int = Field(
        default=200_000_000,
        ge=1,
        description="Most pixels (width x height) of a geotagged picture: a 360 degree "
        "picture of 16384 x 8192 has 134 M.",
    )
    picture_thumbnail_px: int = Field(
        default=500, ge=16, description="Longest side of a picture's thumbnail."
    )
    picture_sd_px: int = Field(
        default=2048, ge=64, description="Longest side of a picture's standard-definition copy."
    )


class JobSettings(BaseSettings):
    """The job queue and its workers (env prefix ``TERRACAT_JOBS_``)."""

    model_config = SettingsConfigDict(env_prefix="TERRACAT_JOBS_", extra="ignore")

    heartbeat_s: float = Field(default=1.0, gt=0, description="How often a running job beats.")
    stale_after_s: float = Field(
        default=30.0,
        gt=0,
        description="A running job whose heartbeat is older than this lost its worker and is "
        "re-queued (or failed after max_attempts).",
    )
    idle_wake_s: float = Field(
        default=5.0,
        gt=0,
        description="Longest sleep of an idle worker between two checks "
        "for stale jobs and expired uploads (new jobs wake it at once by NOTIFY).",
    )
    default_timeout_s: int = Field(default=3600, ge=1)
    max_attempts: int = Field(default=3, ge=1)
    concurrency: int = Field(default=1, ge=1, description="Jobs one worker process runs at once.")


class LimitSettings(BaseSettings):
    """The largest request each route accepts (env prefix ``TERRACAT_LIMITS_``).

    Every limit bounds work done in Python before the database is asked, which its statement
    timeout cannot stop; a request over one is refused before that work starts.
    """

    model_config = SettingsConfigDict(env_prefix="TERRACAT_LIMITS_", extra="ignore")

    max_body_bytes: int = Field(
        default=1024**2,
        ge=1024,
        description="Largest request body of a JSON route (searches, processes, saved searches).",
    )
    max_write_body_bytes: int = Field(
        default=32 * 1024**2,
        ge=1024,
        description="Largest body of a STAC transaction or bulk item load (uploads have their "
        "own limit, TERRACAT_INGEST_MAX_FILE_BYTES).",
    )
    filter_max_nodes: int = Field(
        default=1_000,
        ge=1,
        description="Most operators, properties and literals in a filter or query (the values "
        "of a list count once, as the list).",
    )
    filter_max_depth: int = Field(
        default=40, ge=1, le=100, description="Deepest nesting of a filter's operators."
    )
    filter_max_values: int = Field(
        default=2_000,
        ge=1,
        description="Most values in the lists (IN, array literals) of a filter, all together.",
    )
    geometry_max_vertices: int = Field(
        default=10_000,
        ge=4,
        description="Most vertices of an `intersects` geometry, and of a filter's geometries "
        "together.",
    )
    # Lists cost the event loop (psycopg writes each value of an array parameter in Python),
    # once per statement that carries them.
    ids_max_count: int = Field(default=2_000, ge=1, description="Most `ids`, and `collections`.")
    sortby_max_keys: int = Field(default=8, ge=1, description="Most `sortby` fields.")
    fields_max_count: int = Field(default=100, ge=1, description="Most `fields` paths.")


class AccountSettings(BaseSettings):
    """Accounts, tokens, rights and quotas (environment prefix ``TERRACAT_AUTH_``)."""

    model_config = SettingsConfigDict(
        env_prefix="TERRACAT_AUTH_", extra="ignore", env_ignore_empty=True
    )

    default_visibility: Literal["public", "accounts", "private"] = Field(
        default="public",
        description="Visibility of a new collection: `public` (anyone reads it), `accounts` "
        "(any signed-in account) or `private` (its owner, admins and grantees).",
    )
    rights_cache_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How long a process reuses a caller's token check and readable "
        "collections: a revoked token or a changed right takes effect within this time.",
    )
    default_quota_bytes: int = Field(
        default=50 * 1024**3,
        ge=0,
        description="Storage quota of an account without one of its own (bytes).",
    )
    unclaimed_token_ttl_s: int = Field(
        default=600,
        ge=30,
        description="How long a token made by the unauthenticated `generate` call may be claimed.",
    )
    failure_limit: int = Field(
        default=20,
        ge=1,
        description="Failed token checks or sign-ins from one client address (or against one "
        "account) within `failure_window_s` before further attempts get 429.",
    )
    failure_window_s: int = Field(default=300, ge=1)
    oidc_issuer: str | None = Field(
        default=None,
        description="Issuer URL of an OpenID Connect provider whose bearer JWTs are accepted.",
    )
    oidc_audience: str | None = Field(
        default=None, description="Audience (`aud`) the JWTs must carry."
    )
    oidc_jwks_url: str | None = Field(
        default=None,
        description="JWKS URL; default: `jwks_uri` of the issuer's discovery document.",
    )
    oidc_account_claim: str = Field(
        default="preferred_username",
        description="Claim naming the account a JWT maps to (created on first use).",
    )
    oidc_groups_claim: str = Field(
        default="groups", description="Claim listing the caller's groups (for group grants)."
    )
    oidc_admin_group: str | None = Field(
        default=None, description="Members of this group get the admin role."
    )
    signing_secret: SecretStr | None = Field(
        default=None,
        description="Secret (at least 16 characters) signing asset links of collections that "
        "need rights, the same in every API process; unset: a random one made once and kept "
        "in the database.",
    )
    signed_link_ttl_s: int = Field(
        default=3600,
        ge=60,
        le=7 * 24 * 3600,
        description="How long a signed asset link works (rounded up to a tenth of it, at most "
        "10 minutes, so links stay the same, and cacheable, that long).",
    )

    @field_validator("signing_secret")
    @classmethod
    def _secret_strength(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("TERRACAT_AUTH_SIGNING_SECRET must be at least 16 characters")
        return value


# Endpoint hosts of public clouds: a presigned URL there reaches the client from anywhere, and
# the provider serves the bytes (``download=auto`` redirects). Any other endpoint (MinIO, Ceph,
# moto) may sit on a private network the client cannot reach: the API streams its bytes.
PUBLIC_CLOUD_HOSTS = (
    ".amazonaws.com",
    ".amazonaws.com.cn",
    ".r2.cloudflarestorage.com",
    ".digitaloceanspaces.com",
    ".backblazeb2.com",
    ".wasabisys.com",
    "storage.googleapis.com",
)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_PREFIX_PART = re.compile(r"^[^/\\\x00-\x1f\x7f]{1,255}$")


class StorageSettings(BaseSettings):
    """Where assets and export archives are stored (environment prefix ``TERRACAT_STORAGE_``).

    ``local`` keeps them under ``TERRACAT_INGEST_DATA_DIR``; ``s3`` in a bucket of any
    S3-compatible object store (AWS S3, MinIO, Ceph...), under ``s3_prefix``. Either way the
    data folder stays the local staging area of conversions.
    """

    model_config = SettingsConfigDict(
        env_prefix="TERRACAT_STORAGE_", extra="ignore", env_ignore_empty=True
    )

    kind: Literal["local", "s3"] = Field(default="local", description="`local` or `s3`.")
    s3_endpoint_url: str | None = Field(
        default=None,
        description="http(s)://host[:port] of the object store; unset: AWS S3 of `s3_region`.",
    )
    s3_region: str = Field(default="us-east-1", min_length=1, max_length=64)
    s3_bucket: str | None = Field(default=None, description="Bucket name (required for s3).")
    s3_prefix: str = Field(
        default="",
        description="Key prefix of everything Terracat stores in the bucket (`terracat/`, say).",
    )
    s3_path_style: bool = Field(
        default=False,
        description="Path-style addressing (`endpoint/bucket/key`) instead of virtual hosts "
        "(`bucket.endpoint/key`): MinIO and most self-hosted stores need it.",
    )
    s3_access_key_id: SecretStr | None = Field(
        default=None,
        description="Unset: boto3's and GDAL's usual chain (AWS_ACCESS_KEY_ID, "
        "AWS_PROFILE, instance or container roles).",
    )
    s3_secret_access_key: SecretStr | None = None
    s3_max_connections: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="HTTP connections the process keeps to the object store (boto3's pool; "
        "one per API thread that streams at once).",
    )
    download: Literal["auto", "redirect", "stream"] = Field(
        default="auto",
        description="How the asset download route serves a stored file: `redirect` to a "
        "presigned URL of the store, `stream` its bytes through the API, or `auto`: redirect "
        "for public-cloud endpoints (AWS and the like), stream for any other (a private "
        "MinIO is often unreachable by clients). A local folder always streams.",
    )
    presign_expires_s: int = Field(
        default=300,
        ge=1,
        le=7 * 24 * 3600,  # SigV4's longest
        description="Lifetime of a presigned URL the download route redirects to.",
    )

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("TERRACAT_STORAGE_S3_ENDPOINT_URL must be http(s)://host[:port]")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError(
                "TERRACAT_STORAGE_S3_ENDPOINT_URL takes no path, query or user: the bucket "
                "goes in TERRACAT_STORAGE_S3_BUCKET, credentials in their own settings"
            )
        parts.port  # noqa: B018  # raises ValueError on a port out of range
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("s3_bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not _BUCKET.match(value) or ".." in value:
            raise ValueError(
                f"TERRACAT_STORAGE_S3_BUCKET {value!r} is not an S3 bucket name (3-63 "
                "lower-case letters, digits, '.' and '-')"
            )
        return value

    @field_validator("s3_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        parts = value.strip("/").split("/") if value.strip("/") else []
        for part in parts:
            if not _PREFIX_PART.match(part) or part in (".", ".."):
                raise ValueError(f"TERRACAT_STORAGE_S3_PREFIX {value!r} has an invalid part")
        return "".join(f"{p}/" for p in parts)

    @model_validator(mode="after")
    def _complete(self) -> "StorageSettings":
        if self.kind == "s3" and self.s3_bucket is None:
            raise ValueError("TERRACAT_STORAGE_KIND=s3 needs TERRACAT_STORAGE_S3_BUCKET")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError(
                "set both TERRACAT_STORAGE_S3_ACCESS_KEY_ID and "
                "TERRACAT_STORAGE_S3_SECRET_ACCESS_KEY, or neither"
            )
        if self.kind == "local" and self.download == "redirect":
            raise ValueError(
                "TERRACAT_STORAGE_DOWNLOAD=redirect needs object storage: a local folder has "
                "no URLs of its own (use stream or auto)"
            )
        return self

    def redirects(self) -> bool:
        """Whether the download route redirects to presigned URLs (``download``, resolved)."""
        if self.kind != "s3" or self.download == "stream":
            return False
        if self.download == "redirect":
            return True
        host = urlsplit(self.s3_endpoint_url).hostname if self.s3_endpoint_url else None
        if host is None:  # AWS itself
            return True
        return any(host == h.lstrip(".") or host.endswith(h) for h in PUBLIC_CLOUD_HOSTS)
