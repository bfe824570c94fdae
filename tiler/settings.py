"""Settings of the raster side: tiler (``TERRACAT_TILER_``), mosaics (``TERRACAT_MOSAIC_``) and
exports (``TERRACAT_EXPORT_``)."""

import morecantile
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MAX_ZOOM = 24


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
    cube_max_read_mb: int = Field(
        default=256,
        ge=1,
        description="Most memory one datacube tile may read (its window of every time slice "
        "and band, as float32): a longer interval is refused (cube.TooManySlices).",
    )
    cube_chunk_cache_mb: int = Field(
        default=128,
        ge=1,
        description="Decoded datacube chunks kept per server process (as float32), shared "
        "by neighbouring tiles as COG tiles share GDAL's block cache.",
    )
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
    png_level: int = Field(
        default=6,
        ge=0,
        le=9,
        description="zlib level of PNG tiles, previews and exports (lossless: the same pixels "
        "at every level). 6 costs a third of GDAL's PNG time; 7-8 take 1.5-2.5x the CPU of 6 "
        "for 2% fewer bytes, 3-5 save 20-35% of it for 0.3-1.2% more, 1 is 50% larger "
        "(docs/benchmarks.md, 'PNG encoder').",
    )
    gdal_cache_mb: int = Field(
        default=64,
        ge=16,
        description="GDAL's block cache of each server process (GDAL_CACHEMAX, which wins when "
        "set). Files stay open between tiles (tiler.readers.DatasetPool), so their decoded blocks "
        "stay cached up to this size; GDAL's own default is 5% of RAM per process. 64 MB: a "
        "worker held 355 MB after bench.tiles against 550 MB at 256, for 6-12% fewer tiles/s "
        "(docs/benchmarks.md, 'Memory of an API worker').",
    )

    open_files: int = Field(
        default=64,
        ge=1,
        description="Most open files (handles, with their overviews and warped VRTs) each "
        "server process keeps between tiles; each holds ~1.6 MB of buffers per dataset read "
        "and its own decoded blocks in GDAL's cache.",
    )
    open_file_idle_s: float = Field(
        default=60.0,
        ge=0,
        description="How long a file's most recently used handle stays open unused.",
    )
    spare_handle_idle_s: float = Field(
        default=20.0,
        ge=0,
        description="How long a file's other handles (opened for concurrent tiles of it) stay "
        "open unused: a burst of 8 tiles leaves 8 handles, ~6 MB each and their blocks in "
        "GDAL's cache. Closed by the next read or the process's periodic trim "
        "(TERRACAT_API_MALLOC_TRIM_INTERVAL_S).",
    )

    @field_validator("tile_matrix_sets")
    @classmethod
    def _known_tms(cls, value: list[str]) -> list[str]:
        known = set(morecantile.tms.list())
        unknown = [name for name in value if name not in known]
        if unknown or not value:
            raise ValueError(f"unknown tile matrix sets {unknown}; known: {sorted(known)}")
        return value


class MosaicSettings(BaseSettings):
    """Mosaics of collections and saved searches (environment prefix ``TERRACAT_MOSAIC_``)."""

    model_config = SettingsConfigDict(env_prefix="TERRACAT_MOSAIC_", extra="ignore")

    max_items_per_tile: int = Field(
        default=50, ge=1, le=1000, description="Most items read for one tile (the first ones)."
    )
    search_cache_ttl_s: float = Field(
        default=10.0, ge=0, description="How long a saved search read for tiles is reused."
    )
    tile_cache_control: str = Field(
        default="public, max-age=60",
        description="Cache-Control of mosaic tiles (items come and go: keep it short).",
    )


class ExportSettings(BaseSettings):
    """Tile archive exports (environment prefix ``TERRACAT_EXPORT_``)."""

    model_config = SettingsConfigDict(env_prefix="TERRACAT_EXPORT_", extra="ignore")

    max_tiles: int = Field(
        default=500_000,
        ge=1,
        description="Most tiles one export may cover: the tiles of its bbox (clipped to the "
        "data) at its zooms. A PMTiles export holds about 250 bytes of directory per tile.",
    )
    max_items: int = Field(
        default=10_000, ge=1, description="Most items of a collection or search mosaic export."
    )
    renderers: int = Field(
        default=0, ge=0, description="Render processes of one export; 0: one per CPU."
    )
    zoom_levels: int = Field(
        default=7, ge=1, le=MAX_ZOOM + 1, description="Zooms exported when minzoom is not given."
    )
    timeout_s: int = Field(default=6 * 3600, ge=60, description="Longest run of one export.")
    gdal_cache_mb: int = Field(
        default=256,
        ge=16,
        description="GDAL's block cache of each render process (GDAL_CACHEMAX, which wins when "
        "set): a render process keeps its files open, so neighbouring tiles reuse blocks.",
    )
