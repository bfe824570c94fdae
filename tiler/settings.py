"""Settings of the raster tiler (environment prefix ``TERRACAT_TILER_``)."""

import morecantile
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TilerSettings(BaseSettings):
    """Raster tiles, previews and crops of the catalogue's items."""

    model_config = SettingsConfigDict(env_prefix="TERRACAT_TILER_", extra="ignore")

    item_cache_ttl_s: float = Field(
        default=5.0,
        ge=0,
        description="How long an item read for rendering is reused (a map view asks for many "
        "tiles of one item at once). 0 reads it from the database for every request.",
    )
    item_cache_size: int = Field(default=1024, ge=1, description="Most items kept in that cache.")
    tile_cache_control: str = Field(
        default="public, max-age=3600",
        description="Cache-Control header of successful tile responses ('' for none).",
    )
    tile_matrix_sets: list[str] = Field(
        default=["WebMercatorQuad", "WorldCRS84Quad"],
        description="morecantile tile matrix sets the item endpoints offer.",
    )
    max_tile_scale: int = Field(default=4, ge=1, le=8, description="Largest @{scale}x suffix.")
    max_image_size: int = Field(
        default=4096,
        ge=256,
        description="Longest side in pixels of any image the tiler makes (tile, preview, crop); "
        "a crop without a size is made at most this large.",
    )
    max_histogram_bins: int = Field(default=1024, ge=1)
    gdal_cache_mb: int = Field(
        default=256,
        ge=16,
        description="GDAL's block cache of each server process (GDAL_CACHEMAX, which wins when "
        "set). Files stay open between tiles (tiler.readers.DatasetPool), so their decoded blocks "
        "stay cached up to this size; GDAL's own default is 5% of RAM per process.",
    )

    @field_validator("tile_matrix_sets")
    @classmethod
    def _known_tms(cls, value: list[str]) -> list[str]:
        known = set(morecantile.tms.list())
        unknown = [name for name in value if name not in known]
        if unknown or not value:
            raise ValueError(f"unknown tile matrix sets {unknown}; known: {sorted(known)}")
        return value
