"""Settings of the OGC API parts (environment prefix ``TERRACAT_TILES_``)."""

import re

import morecantile
from morecantile import TileMatrixSet
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
_EPSG_URI = re.compile(
    r"^(?:https?://www\.opengis\.net/def/crs/EPSG/[^/]+/|urn:ogc:def:crs:EPSG:[^:]*:)(\d+)$"
)
WEB_MERCATOR = "WebMercatorQuad"


class TileSettings(BaseSettings):
    """Vector tiles and tilesets (environment prefix ``TERRACAT_TILES_``)."""

    model_config = SettingsConfigDict(env_prefix="TERRACAT_TILES_", extra="ignore")

    tile_matrix_sets: list[str] = Field(
        default=[WEB_MERCATOR, "WorldCRS84Quad"],
        description="morecantile tile matrix sets offered (fixed-width matrices only).",
    )
    max_features: int = Field(
        default=10_000,
        ge=1,
        description="Most features in one vector tile (the newest); the response says "
        "X-Terracat-Features-Capped when more items touch the tile.",
    )
    simplify: float = Field(
        default=8.0,
        ge=0,
        description="Footprint simplification tolerance in tile units (4096 per tile side); "
        "8 is one pixel of a tile drawn 512 pixels wide. 0 turns it off.",
    )
    cache_control: str = Field(
        default="public, max-age=60",
        description="Cache-Control of vector tiles (items come and go: keep it short).",
    )
    gzip_level: int = Field(
        default=1,
        ge=1,
        le=9,
        description="Compression level of vector tiles sent gzipped (to clients that accept "
        "gzip; libdeflate): 1 is the cheapest, 6 saves ~8 % of the bytes for three times the CPU.",
    )

    vector_max_features: int = Field(
        default=8_000,
        ge=1,
        description="Most features of a vector collection in one vector tile; the response says "
        "X-Terracat-Features-Capped when more meet the tile. A few-pixel polygon with one "
        "attribute is ~30 bytes of MVT: 8000 keeps a dense low-zoom tile under 250 kB.",
    )
    vector_properties_minzoom: int = Field(
        default=6,
        ge=0,
        description="Below this zoom, vector tiles of features carry no attributes unless "
        "`properties=` names some (keeps low-zoom tiles small).",
    )
    vector_min_size: float = Field(
        default=4.0,
        ge=0,
        description="Lines and polygons whose bbox is smaller than this many tile units (of "
        "4096) on both sides are left out of a tile (under a pixel); 0 keeps them.",
    )
    layer_cache_s: float = Field(
        default=5.0,
        ge=0,
        description="Seconds a vector collection's layer description is cached by the tile, "
        "style and map routes (a schema change shows in tiles after at most this).",
    )
    map_max_features: int = Field(
        default=100_000,
        ge=1,
        description="Most features drawn into one map image of a vector collection.",
    )

    @field_validator("tile_matrix_sets")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in morecantile.tms.list():
                raise ValueError(f"unknown tile matrix set {name!r}")
            tms = morecantile.tms.get(name)
            if tms.is_variable:
                raise ValueError(f"{name}: variable-width tile matrix sets are not supported")
            srid_of(tms)
        return value


# Here rather than in tiles.py: the settings refuse a set whose CRS has no SRID.
def srid_of(tms: TileMatrixSet) -> int:
    """The PostGIS SRID of a tile matrix set's CRS (CRS84 is EPSG:4326 in PostGIS's x/y order)."""
    uri = str(tms.crs.root)
    if uri == CRS84:
        return 4326
    found = _EPSG_URI.match(uri)
    if found is None:
        raise ValueError(f"{tms.id}: its CRS {uri} is not an EPSG CRS")
    return int(found.group(1))


class VectorStatsSettings(BaseSettings):
    """Facets and aggregations of vector collections (environment prefix ``TERRACAT_VECTOR_``)."""

    model_config = SettingsConfigDict(env_prefix="TERRACAT_VECTOR_", extra="ignore")

    facet_limit: int = Field(
        default=10, ge=1, description="Values listed per string or boolean facet (the top ones)."
    )
    facet_max_limit: int = Field(default=1_000, ge=1, description="Largest `facet_limit`.")
    facet_buckets: int = Field(
        default=10, ge=1, description="Buckets of a number, integer, date or date-time facet."
    )
    facet_max_buckets: int = Field(
        default=200, ge=1, description="Largest `facet_buckets`, and most edges per property."
    )
    facet_max_properties: int = Field(
        default=16, ge=1, description="Most properties in one `facetby`."
    )
    facet_cache_size: int = Field(
        default=256,
        ge=0,
        description="Facet answers each server process keeps, per collection version (every "
        "write makes a new one), query and facet parameters: paging through items with the "
        "same facetby counts once. 0 keeps none.",
    )
    facet_statements: int = Field(
        default=2,
        ge=1,
        description="Statements the facets of every feature of a collection of at least "
        "`facet_split_features` features are dealt out to, run side by side on as many "
        "connections that see one snapshot, while no other statement of the server process "
        "runs: GROUPING SETS never use parallel workers, so one statement counts every facet "
        "on one core. 1 keeps one statement.",
    )
    facet_split_features: int = Field(
        default=20_000,
        ge=0,
        description="Features a collection holds from which its facets are split "
        "(`facet_statements`); below, one statement takes a few milliseconds.",
    )
    aggregate_max_groups: int = Field(
        default=10_000,
        ge=1,
        description="Most groups an aggregation may return; more is a 400 "
        "(features.TooManyGroups) rather than a cut answer.",
    )
    aggregate_max_keys: int = Field(default=8, ge=1, description="Most `group_by` keys.")
    aggregate_max_metrics: int = Field(default=32, ge=1, description="Most `metrics`.")


class CubeSeriesSettings(BaseSettings):
    """Time series, area statistics and EDR queries of raster and datacube collections
    (environment prefix ``TERRACAT_CUBE_SERIES_``)."""

    model_config = SettingsConfigDict(env_prefix="TERRACAT_CUBE_SERIES_", extra="ignore")

    max_values: int = Field(
        default=50_000_000,
        ge=1,
        description="Most values one request reads: pixels of the area's window x time steps "
        "x bands (a datacube), or pixels x items (a COG collection). More is "
        "`cube.AreaTooLarge` (413).",
    )
    max_items: int = Field(
        default=1_000, ge=1, description="Most items a COG collection's time series reads."
    )
    max_bins: int = Field(default=1_000, ge=1, description="Most histogram bins of statistics.")
    edr_max_values: int = Field(
        default=2_000_000,
        ge=1,
        description="Most values (time steps x pixels of the area's window x bands read) one "
        "EDR `area` query reads: its CoverageJSON answer is text.",
    )
