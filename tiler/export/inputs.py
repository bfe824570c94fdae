"""What an export takes: its settings, its inputs (checked), its errors and its description."""

from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from catalog.errors import CatalogError, InvalidParameter
from catalog.jobs.queue import InputDescription, OutputDescription, ProcessDescription

from ..archives import ArchiveWriter, TileFormat
from ..render import RenderOptions
from ..settings import MAX_ZOOM

SOURCES = ("item", "collection", "search")
# The job input ``admit`` adds to a search export: the collections its submitter reads (absent:
# every one). Not an input of the description, so no client can send it.
READABLE_INPUT = "readable_collections"
TilesetType = Literal["overlay", "baselayer"]  # MBTiles 1.3 ``type``
DEFAULT_QUALITY = 75  # GDAL's JPEG and WEBP default, titiler's WEBP one
PixelSelection = Literal["first", "highest", "lowest", "mean", "median", "stdev",
                         "lastbandlow", "lastbandhigh", "count"]  # fmt: skip


# -- errors -------------------------------------------------------------------------------------
class TooManyTiles(InvalidParameter):
    """An export covering more tiles than ``ExportSettings.max_tiles``."""

    code = "export.TooManyTiles"


class TooManyItems(InvalidParameter):
    """A mosaic export over more items than ``ExportSettings.max_items``."""

    code = "export.TooManyItems"


class NoData(CatalogError):
    """An export whose bbox and zooms meet no data: the archive would be empty."""

    code = "export.NoData"
    status = 422


# -- inputs -------------------------------------------------------------------------------------
class ItemRef(BaseModel):
    """The item input: a collection id and an item id."""

    model_config = ConfigDict(extra="forbid")
    collection: str = Field(min_length=1)
    id: str = Field(min_length=1)


class ExportRequest(RenderOptions):
    """The inputs of an export, checked (render options: ``RenderOptions``)."""

    item: ItemRef | None = None
    collection: str | None = Field(default=None, min_length=1)
    search: str | None = Field(default=None, min_length=1)
    bbox: tuple[float, float, float, float] | None = None
    minzoom: int | None = Field(default=None, ge=0, le=MAX_ZOOM)
    maxzoom: int | None = Field(default=None, ge=0, le=MAX_ZOOM)
    format: TileFormat = "png"
    tile_size: int = 256
    quality: int = Field(default=DEFAULT_QUALITY, ge=1, le=100)
    type: TilesetType = "overlay"
    pixel_selection: PixelSelection | None = None
    # datacube collections (tiler/cubes/): as the collection tile endpoint's parameters
    layers: str | None = Field(default=None, min_length=1)
    datetime: str | None = Field(default=None, min_length=1)
    datetime_match: str | None = None
    temporal_aggregation: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "ExportRequest":
        given = [name for name in SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of item, collection and search (got {given})")
        if self.item is not None and self.pixel_selection is not None:
            raise ValueError("pixel_selection is for collection and search mosaics")
        if self.tile_size not in (256, 512):
            raise ValueError("tile_size is 256 or 512")
        if self.bbox is not None:
            west, south, east, north = self.bbox
            if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
                raise ValueError(
                    "bbox is west, south, east, north in degrees with west < east and "
                    "south < north (an export cannot cross the antimeridian)"
                )
        if self.minzoom is not None and self.maxzoom is not None and self.minzoom > self.maxzoom:
            raise ValueError("minzoom is above maxzoom")
        return self

    def zooms(self, native_maxzoom: int | None, levels: int) -> tuple[int, int] | None:
        """(minzoom, maxzoom): given ones, else maxzoom from the data, minzoom ``levels`` up."""
        maxzoom = self.maxzoom if self.maxzoom is not None else native_maxzoom
        if maxzoom is None:
            return None
        if self.maxzoom is None and self.minzoom is not None:
            maxzoom = max(maxzoom, self.minzoom)
        minzoom = self.minzoom if self.minzoom is not None else max(0, maxzoom - levels + 1)
        return minzoom, maxzoom


def _schemas() -> dict[str, InputDescription]:
    def one(title: str, description: str, schema: dict[str, Any]) -> InputDescription:
        return InputDescription(title=title, description=description, schema=schema, minOccurs=0)

    text = {"type": "string", "minLength": 1}
    strings = {"type": "array", "items": text, "minItems": 1}
    return {
        "item": one("Item", "The item to export (exactly one of item, collection, search).",
                    {"type": "object", "required": ["collection", "id"],
                     "additionalProperties": False,
                     "properties": {"collection": text, "id": text}}),
        "collection": one("Collection", "A collection id: its mosaic is exported.", text),
        "search": one("Saved search", "A saved search id (POST /searches): its mosaic.", text),
        "bbox": one("Bounding box", "West, south, east, north in EPSG:4326 (default: the "
                    "data's extent).", {"type": "array", "items": {"type": "number"},
                                        "minItems": 4, "maxItems": 4}),
        "minzoom": one("Minimum zoom", "Default: maxzoom - 6.",
                       {"type": "integer", "minimum": 0, "maximum": MAX_ZOOM}),
        "maxzoom": one("Maximum zoom", "Default: the zoom of the data's native resolution "
                       "(one less for 512 px tiles).",
                       {"type": "integer", "minimum": 0, "maximum": MAX_ZOOM}),
        "format": one("Tile format", "png (default), jpeg (no alpha: pixels without data are "
                      "black, as the tile endpoint serves them) or webp.",
                      {"type": "string", "enum": ["png", "jpeg", "webp"], "default": "png"}),
        "tile_size": one("Tile size", "256 (default) or 512 px tiles of the same grid "
                         "(the endpoint's @2x tiles).",
                         {"type": "integer", "enum": [256, 512], "default": 256}),
        "quality": one("Quality", "JPEG and WEBP quality, 1-100 (default 75, as GDAL's "
                       "exports; the tile endpoints' JPEGs are 85: give 85 for their bytes). "
                       "PNG is lossless and ignores it.",
                       {"type": "integer", "minimum": 1, "maximum": 100,
                        "default": DEFAULT_QUALITY}),
        "type": one("Layer type", "The archive's metadata type (MBTiles 1.3): overlay "
                    "(default: an export covers its data's footprint, not the world) or "
                    "baselayer.",
                    {"type": "string", "enum": list(get_args(TilesetType)),
                     "default": "overlay"}),
        "assets": one("Assets", "As the tile endpoint's assets.", strings),
        "expression": one("Expression", "As the tile endpoint's expression.", text),
        "bidx": one("Band indexes", "As the tile endpoint's bidx.",
                    {"type": "array", "items": {"type": "integer", "minimum": 1},
                     "minItems": 1}),
        "bands": one("Band names", "As the tile endpoint's bands.", strings),
        "rescale": one("Rescale", "As the tile endpoint's rescale: 'min,max' per band.",
                       {"type": "array", "minItems": 1, "items": {"type": "string"}}),
        "colormap_name": one("Colormap", "As the tile endpoint's colormap_name.", text),
        "color_formula": one("Color formula", "As the tile endpoint's color_formula.", text),
        "resampling": one("Resampling", "As the tile endpoint's resampling.", text),
        "reproject": one("Reprojection resampling", "As the tile endpoint's reproject.", text),
        "preset": one("Preset", "As the tile endpoint's preset.", text),
        "pixel_selection": one("Pixel selection", "Collection and search mosaics: as the "
                               "mosaic tile endpoint's pixel_selection (default first).",
                               {"type": "string", "enum": list(get_args(PixelSelection))}),
        **_cube_schemas(one, text),
    }  # fmt: skip


def _cube_schemas(
    one: Callable[[str, str, dict[str, Any]], InputDescription], text: dict[str, Any]
) -> dict[str, InputDescription]:
    """The inputs of datacube collections (the collection tile endpoint's parameters)."""
    return {
        "layers": one("Datacube layer", "Datacube collections: as the collection tile "
                      "endpoint's layers (a band, bands comma-separated, or NDVI, RGB...).",
                      text),
        "datetime": one("Datacube date", "Datacube collections: as the collection tile "
                        "endpoint's datetime (an instant, or an interval to reduce).", text),
        "datetime_match": one("Datacube date match", "Datacube collections: nearest "
                              "(default) or exact.", {"type": "string",
                                                     "enum": ["nearest", "exact"]}),
        "temporal_aggregation": one("Datacube reduction", "Datacube collections: the "
                                    "reduction of an interval's time slices.",
                                    {"type": "string",
                                     "enum": ["mean", "max", "min", "median", "last"]}),
    }  # fmt: skip


def process_description(archive: type[ArchiveWriter], title: str) -> ProcessDescription:
    """The OGC process description of an export to ``archive`` files."""
    return ProcessDescription(
        id=archive.extension,
        title=title,
        description=f"Renders the tiles of an item, a collection mosaic or a saved-search "
        f"mosaic (WebMercatorQuad, XYZ) into one {title} file, tile for tile what the tile "
        "endpoints serve with the same options. Tiles without data are left out. The result "
        f"links to the file ({archive.media_type}), downloadable with HTTP ranges.",
        keywords=["export", "tiles", archive.extension],
        inputs=_schemas(),
        outputs={
            "archive": OutputDescription(
                title="Archive",
                description="Where to download the archive, its media type, tile count and size.",
                schema={
                    "type": "object",
                    "required": ["href", "type", "tiles", "bytes"],
                    "properties": {
                        "href": {"type": "string", "format": "uri-reference"},
                        "type": {"type": "string", "const": archive.media_type},
                        "tiles": {"type": "integer"},
                        "bytes": {"type": "integer"},
                    },
                },
            )
        },
    )


def parse_request(inputs: Mapping[str, Any]) -> ExportRequest:
    """The inputs as an ExportRequest; InvalidParameter naming the first problem."""
    given = {k: v for k, v in inputs.items() if k != READABLE_INPUT}
    try:
        return ExportRequest.model_validate(given)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        raise InvalidParameter(f"input {where!r}: {message}" if where else message) from None


def check_tile_count(count: int, limit: int, minzoom: int, maxzoom: int) -> None:
    """TooManyTiles when ``count`` is above ``limit``."""
    if count > limit:
        raise TooManyTiles(
            f"the export covers {count} tiles at zooms {minzoom}-{maxzoom}, more than the "
            f"limit of {limit}: give a smaller bbox or fewer zooms"
        )
