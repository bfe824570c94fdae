"""Settings of the catalogue package (env prefixes ``TERRACAT_DB_``, ``TERRACAT_CATALOG_``)."""

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
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
    statement_timeout_ms: int = Field(default=30_000, ge=0)
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
