"""All of Terracat's settings, one small class per package, nested here."""

import os

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from catalog.settings import (
    AccountSettings,
    CatalogSettings,
    DatabaseSettings,
    IngestSettings,
    JobSettings,
    LimitSettings,
    StorageSettings,
)
from ogc.settings import CubeSeriesSettings, TileSettings, VectorStatsSettings
from tiler.settings import ExportSettings, MosaicSettings, TilerSettings

from .logs import AccessLogMode
from .proxies import TrustedProxies
from .viewer.settings import ViewerSettings


class ApiSettings(BaseSettings):
    """HTTP surface (environment prefix ``TERRACAT_API_``)."""

    model_config = SettingsConfigDict(
        env_prefix="TERRACAT_API_", extra="ignore", env_ignore_empty=True
    )

    title: str = "Terracat"
    description: str = "Imagery catalogue: STAC API on PostGIS"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    root_path: str = Field(default="", description="Path prefix when mounted below a sub-path.")
    cors_origins: list[str] = Field(default=["*"])
    gzip_minimum_size: int = Field(default=1024, ge=0)
    gzip_level: int = Field(
        default=5,
        ge=1,
        le=9,
        description="zlib level of gzipped answers. Starlette's 9 took 4.9 ms for a page of 100 "
        "features (71 kB of JSON), 5 took 1.7 ms for 1.8% more bytes, 1 took 0.55 ms for 10% "
        "more; vector tiles compress at 1 on their own route.",
    )
    threads: int = Field(
        default_factory=lambda: min(32, 4 * (os.cpu_count() or 2)),
        ge=1,
        le=256,
        description="Threads of each server process for blocking work (tile rendering, SQL "
        "compilation); default 4 per core, at most 32. Rendering is CPU-bound: anyio's 40 "
        "served 27% fewer item tiles than 8 on 2 cores (bench.soak).",
    )
    malloc_mmap_threshold: int = Field(
        default=128 * 1024,
        ge=0,
        le=32 * 1024**2,
        description="Blocks from this size up are mapped apart and returned to the system when "
        "freed (glibc M_MMAP_THRESHOLD, fixed instead of rising); 0 leaves glibc's default. "
        "Without it, a tile server's freed tile buffers stay in its RSS.",
    )
    malloc_trim_interval_s: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="Every this many seconds, the tiler's spare file handles past their idle "
        "time are closed (TERRACAT_TILER_SPARE_HANDLE_IDLE_S) and freed memory the C allocator "
        "keeps is returned to the system (glibc malloc_trim, in a thread); 0 never.",
    )
    gc_threshold: int = Field(
        default=20_000,
        ge=0,
        le=10_000_000,
        description="Container objects allocated (net of frees) between two young-generation "
        "passes of Python's cycle collector (the first value of gc.set_threshold); 0 leaves "
        "Python's 700. A bulk load of 1,000 items makes ~60,000 such objects; at 700 the "
        "collector walked them again and again, a fifth of the server's Python time.",
    )
    access_log: AccessLogMode = Field(
        default="all",
        description="Access log lines of `terracat serve`: every request (`all`), one of "
        "`access_log_sample` successful requests and every 4xx/5xx (`sampled`), or none "
        "(`off`; errors still reach the error log).",
    )
    access_log_sample: int = Field(default=100, ge=1)
    forwarded_allow_ips: str = Field(
        default="127.0.0.1,::1",
        description="Proxies whose Forwarded / X-Forwarded-* headers are honoured (links, "
        "client address): comma-separated addresses and networks (CIDR), `*` for any peer, "
        "empty for none. From any other peer these headers are dropped.",
    )
    health_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="How long /_mgmt/health waits for each dependency before calling it DOWN.",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="A bootstrap admin token: every right, without an account (deployments "
        "from before accounts; `terracat serve` makes an admin account on first start).",
    )
    allow_anonymous_writes: bool = Field(
        default=False,
        description="Development only: accept writes without a token when none is configured.",
    )

    @field_validator("admin_token")
    @classmethod
    def _token_strength(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("TERRACAT_API_ADMIN_TOKEN must be at least 16 characters")
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _forwarded_allow_ips(cls, value: str) -> str:
        TrustedProxies(value)  # raises ValueError on an entry that is no address or network
        return ",".join(entry.strip() for entry in value.split(",") if entry.strip())

    @field_validator("root_path")
    @classmethod
    def _root_path(cls, value: str) -> str:
        value = value.strip()
        return "" if value in ("", "/") else "/" + value.strip("/")


class Settings(BaseModel):
    """Everything Terracat is configured with."""

    api: ApiSettings = Field(default_factory=ApiSettings)
    auth: AccountSettings = Field(default_factory=AccountSettings)
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    tiles: TileSettings = Field(default_factory=TileSettings)
    tiler: TilerSettings = Field(default_factory=TilerSettings)
    mosaic: MosaicSettings = Field(default_factory=MosaicSettings)
    viewer: ViewerSettings = Field(default_factory=ViewerSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    vector_stats: VectorStatsSettings = Field(default_factory=VectorStatsSettings)
    cube_series: CubeSeriesSettings = Field(default_factory=CubeSeriesSettings)

    @model_validator(mode="after")
    def _map_tiles_rendered(self) -> "Settings":
        """Every tile matrix set OGC API Tiles lists must be one the tile routes render: each
        gets a map tileset whose tiles are the raster routes' (404 in a set they lack)."""
        missing = [n for n in self.tiles.tile_matrix_sets if n not in self.tiler.tile_matrix_sets]
        if missing:
            raise ValueError(
                f"TERRACAT_TILES_TILE_MATRIX_SETS lists {missing}, which "
                "TERRACAT_TILER_TILE_MATRIX_SETS does not render: add them there or drop them"
            )
        return self
