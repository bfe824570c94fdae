"""The ``mbtiles`` and ``pmtiles`` processes: an item, collection or saved search as a tile archive.

``prepare`` (worker, database) resolves the source to items, the export's region (their
footprints within ``bbox``) and zooms, and refuses more than ``ExportSettings.max_tiles``.
``execute`` (child process) walks the region's WebMercatorQuad tiles in PMTiles order
(tiler/tiling.py), renders them in ``renderers`` forked processes (threads would share the
GIL with PNG encoding and rio-tiler's Python: two threads gave 1.2x one) and writes them from
one thread, in order, through a bounded window of pending results: memory stays flat whatever
the extent. Tiles are rendered by the functions the tile endpoints run
(``render.py``), so an archive tile is byte for byte the endpoint's; tiles whose pixels are
all masked are left out. The archive is built in the storage's tmp folder and renamed to
``<data_dir>/exports/<job id>.<ext>`` only once complete: a cancel (SIGTERM) deletes it, a
kill leaves it to the tmp sweep, and nothing partial is ever published.
"""

import asyncio
import itertools
import multiprocessing
import multiprocessing.pool
import os
import signal
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import orjson
import shapely
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from rio_tiler.errors import RioTilerError
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.errors import CatalogError, InvalidParameter
from catalog.jobs.lifetime import die_with_parent
from catalog.jobs.queue import (
    InputDescription,
    JobContext,
    JobRecord,
    JobRepository,
    JobStatus,
    OutputDescription,
    Process,
    ProcessDescription,
)
from catalog.maps.mosaic import MosaicRepository, collection_params
from catalog.stac.repository import CatalogRepository
from catalog.stac.search import SearchParams, encode_token
from catalog.stac.serializers import item_document
from catalog.storage.local import LocalStorage

from .archives import (
    WRITERS,
    ArchiveMetadata,
    ArchiveWriter,
    MBTilesWriter,
    PMTilesWriter,
    TileFormat,
)
from .dependencies import ReaderOptions
from .errors import TilerError
from .mosaic import MosaicSettings
from .readers.shared import ReaderResources
from .render import (
    RenderOptions,
    TileRenderer,
    item_plan,
    item_zooms,
    mosaic_plan,
    renderer_from_plan,
)
from .settings import TilerSettings
from .tiling import clamp_bounds, count_tiles, iter_tiles

MAX_ZOOM = 24
SOURCES = ("item", "collection", "search")
SEARCH_PAGE = 1000
PixelSelection = Literal["first", "highest", "lowest", "mean", "median", "stdev",
                         "lastbandlow", "lastbandhigh", "count"]  # fmt: skip


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
    pixel_selection: PixelSelection | None = None

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
    }  # fmt: skip


def _description(archive: type[ArchiveWriter], title: str) -> ProcessDescription:
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
    try:
        return ExportRequest.model_validate(dict(inputs))
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


def exports_dir(data_dir: Path) -> Path:
    """Where finished archives live."""
    return Path(data_dir).absolute() / "exports"


def archive_path(data_dir: Path, job_id: str, extension: str) -> Path:
    """The published archive of a job."""
    return exports_dir(data_dir) / f"{job_id}.{extension}"


async def sweep_exports(jobs: JobRepository, data_dir: Path, min_age_s: float = 60.0) -> int:
    """Delete the archives no job serves any more; how many.

    The download route serves an archive only while its job is successful. A failed job's
    archive is deleted when it fails (``ExportProcess.failed``), but dismissing a successful
    job (``DELETE /jobs/{id}``) or deleting its row leaves the file: this removes it. Archives
    of queued or running jobs stay (a job publishes before it commits, and a dismissed job
    may be restarted), as does anything younger than ``min_age_s``.
    """
    folder = exports_dir(data_dir)
    if not folder.is_dir():
        return 0
    found: dict[Path, uuid.UUID] = {}
    for path in folder.iterdir():
        if path.suffix.removeprefix(".") not in WRITERS:
            continue
        try:
            found[path] = uuid.UUID(path.stem)
        except ValueError:
            continue
    statuses = await jobs.statuses(sorted(set(found.values())))
    live = {JobStatus.accepted, JobStatus.running, JobStatus.successful}
    cutoff = time.time() - min_age_s
    removed = 0
    for path, job_id in found.items():
        if statuses.get(job_id) in live:
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


# -- the processes ------------------------------------------------------------------------------
class ExportProcess(Process):
    """Shared by the ``mbtiles`` and ``pmtiles`` processes; ``archive`` is the writer."""

    archive: ClassVar[type[ArchiveWriter]]

    def __init__(
        self,
        catalog: CatalogRepository,
        data_dir: Path,
        tiler: TilerSettings,
        settings: ExportSettings,
        mosaic_settings: MosaicSettings,
    ) -> None:
        self.catalog = catalog
        self.data_dir = Path(data_dir)
        self.tiler = tiler
        self.settings = settings
        # made once: LocalStorage creates its folders
        self.reader = ReaderOptions(
            storage=LocalStorage(self.data_dir), max_image_size=tiler.max_image_size
        )
        # a big export outlasts the jobs' default timeout: this one is the export's own
        self.description = self.description.model_copy(  # type: ignore[misc]
            update={"timeout_s": settings.timeout_s}
        )
        self.mosaics = MosaicRepository(
            catalog, mosaic_settings.max_items_per_tile, mosaic_settings.search_cache_ttl_s
        )

    def check_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Types, exactly one source, zooms; the tile limit when bbox and zooms are given."""
        checked = super().check_inputs(inputs)
        request = parse_request(checked)
        request.check_layer()
        zooms = request.zooms(None, self.settings.zoom_levels)
        if request.bbox is not None and zooms is not None:
            count = count_tiles(clamp_bounds(request.bbox), *zooms)
            check_tile_count(count, self.settings.max_tiles, *zooms)
        return checked

    async def prepare(self, job: JobRecord, cancelled: Callable[[], bool]) -> dict[str, Any]:
        """Items, region, zooms and the tile count; the plan of the child."""
        request = parse_request(job.inputs)
        if request.item is not None:
            source = await self._item_source(request)
        else:
            source = await self._mosaic_source(request)
        region = source.footprint
        if request.bbox is not None:
            region = shapely.intersection(region, shapely.box(*request.bbox))
        region = shapely.intersection(region, shapely.box(*clamp_bounds((-180, -90, 180, 90))))
        if region.is_empty or region.area == 0:
            raise NoData("the bbox does not meet the data")
        zooms = request.zooms(source.maxzoom, self.settings.zoom_levels)
        assert zooms is not None
        count = count_tiles(region.bounds, *zooms)
        check_tile_count(count, self.settings.max_tiles, *zooms)
        west, south, east, north = region.bounds
        metadata = ArchiveMetadata(
            name=source.name,
            format=request.format,
            bounds=(round(west, 8), round(south, 8), round(east, 8), round(north, 8)),
            minzoom=zooms[0],
            maxzoom=zooms[1],
            description=source.description + request.summary(),
            attribution=source.attribution,
            type="baselayer" if request.format == "jpeg" else "overlay",
        )
        return {
            "job_id": str(job.id),
            "extension": self.archive.extension,
            "data_dir": str(self.data_dir),
            "source": source.plan,
            "region": shapely.to_geojson(region),
            "minzoom": zooms[0],
            "maxzoom": zooms[1],
            "metadata": metadata.__dict__,
            "renderers": self.settings.renderers or os.cpu_count() or 1,
            "gdal_cache_mb": self.settings.gdal_cache_mb,
        }

    async def _item_source(self, request: ExportRequest) -> "_Source":
        ref = request.item
        assert ref is not None
        row = await self.catalog.get_item(ref.collection, ref.id)
        item = item_document(row, "/")
        collection = (await self.catalog.get_collection(ref.collection))["content"]
        plan = item_plan(item, request, self.data_dir, self.reader)
        return _Source(
            plan=plan,
            footprint=_footprint(item),
            maxzoom=_native_maxzoom([item], self.reader.storage, request.tile_size),
            name=f"{ref.collection}/{ref.id}",
            description=f"Item {ref.id} of collection {ref.collection}",
            attribution=attribution(collection),
        )

    async def _mosaic_source(self, request: ExportRequest) -> "_Source":
        mosaics = self.mosaics
        if request.collection is not None:
            collection = (await self.catalog.get_collection(request.collection))["content"]
            params = collection_params(request.collection)
            name = str(collection.get("title") or request.collection)
            description = f"Mosaic of collection {request.collection}"
        else:
            assert request.search is not None
            params = (await mosaics.use(request.search)).params
            name = f"search {request.search}"
            description = f"Mosaic of saved search {request.search}"
        if request.bbox is not None and params.bbox is None and params.intersects is None:
            params = replace(params, bbox=list(request.bbox))
        rows = await self._search_all(params)
        if not rows:
            raise NoData("the mosaic has no item in the bbox")
        items = [_mosaic_item(row) for row in rows]
        footprints = [shapely.to_geojson(_footprint(row["content"])) for row in rows]
        credits = [
            attribution((await self.catalog.get_collection(c))["content"])
            for c in sorted({item["collection"] for item in items})
        ]
        plan = mosaic_plan(items, footprints, mosaics.max_items, request, self.data_dir,
                           self.reader)  # fmt: skip
        return _Source(
            plan=plan,
            footprint=shapely.union_all(shapely.from_geojson(footprints)),
            maxzoom=await asyncio.to_thread(
                _native_maxzoom, items, self.reader.storage, request.tile_size
            ),
            name=name,
            description=description,
            attribution="; ".join(dict.fromkeys(c for c in credits if c)) or None,
        )

    async def _search_all(self, params: SearchParams) -> list[dict[str, Any]]:
        """Every item of a search, in its order (the mosaic's), up to ``max_items``."""
        rows: list[dict[str, Any]] = []
        token = None
        while True:
            page = await self.catalog.search(replace(params, limit=SEARCH_PAGE, token=token))
            rows += page.rows
            if len(rows) > self.settings.max_items:
                raise TooManyItems(
                    f"the mosaic has more than {self.settings.max_items} items in the bbox: "
                    "give a smaller bbox"
                )
            if page.next_values is None:
                return rows
            token = encode_token(page.keys, page.next_values, False)

    @staticmethod
    def execute(plan: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        """Child process: render every tile of the region into the archive, then publish it."""
        # Read by GDAL when its block cache is first used, in this spawned process; the render
        # processes forked from it inherit the size.
        os.environ.setdefault("GDAL_CACHEMAX", str(plan["gdal_cache_mb"]))
        region = shapely.from_geojson(plan["region"])
        resources = ReaderResources.at(Path(plan["data_dir"]))
        try:
            return _write_archive(plan, ctx, region, resources)
        finally:
            resources.close()

    async def commit(
        self, conn: AsyncConnection, job: JobRecord, result: dict[str, Any]
    ) -> dict[str, Any]:
        """The outputs: the archive's download path (relative to the API root) and size."""
        return {
            "archive": {
                "href": f"exports/{result['name']}",
                "type": self.archive.media_type,
                "tiles": result["tiles"],
                "bytes": result["bytes"],
            }
        }

    async def failed(self, job: JobRecord, code: str, message: str, final: bool) -> None:
        """A job that ends without success has no archive (a re-run makes a new one)."""
        archive_path(self.data_dir, str(job.id), self.archive.extension).unlink(missing_ok=True)


def _write_archive(
    plan: dict[str, Any], ctx: JobContext, region: shapely.Geometry, resources: ReaderResources
) -> dict[str, Any]:
    """Render the region's tiles into a temporary archive, then publish it (``execute``)."""
    writer_class = WRITERS[plan["extension"]]
    renderer = renderer_from_plan(plan["source"], resources)
    metadata = ArchiveMetadata(**{**plan["metadata"],
                                  "bounds": tuple(plan["metadata"]["bounds"])})  # fmt: skip
    zooms: tuple[int, int] = (plan["minzoom"], plan["maxzoom"])
    total = sum(1 for _ in iter_tiles(region, *zooms))
    ctx.log(
        f"rendering {total} tiles at zooms {plan['minzoom']}-{plan['maxzoom']} on "
        f"{plan['renderers']} processes, GDAL_CACHEMAX={os.environ['GDAL_CACHEMAX']} "
        f"(pid {os.getpid()})"
    )
    started = time.monotonic()
    temp = resources.storage.temp_path(f".{writer_class.extension}")
    with writer_class(temp) as writer:
        tiles = iter_tiles(region, *zooms)
        stats = write_tiles(tiles, renderer, writer, total, plan["renderers"], ctx.progress,
                            processes=plan["renderers"] > 1)  # fmt: skip
        if writer.tiles == 0:
            raise NoData("every tile of the export is empty")
        writer.finish(metadata)
    seconds = time.monotonic() - started
    target = archive_path(Path(plan["data_dir"]), plan["job_id"], writer_class.extension)
    size = publish(temp, target)
    ctx.log(
        f"{stats['written']} tiles written, {stats['empty']} empty left out, "
        f"{size} bytes in {seconds:.1f} s ({stats['written'] / max(seconds, 1e-6):.1f} "
        "tiles/s)"
    )
    return {"name": target.name, "tiles": stats["written"], "bytes": size,
            "empty": stats["empty"], "seconds": round(seconds, 3)}  # fmt: skip


class MBTilesProcess(ExportProcess):
    """Export to MBTiles 1.3."""

    archive = MBTilesWriter
    description = _description(MBTilesWriter, "MBTiles")


class PMTilesProcess(ExportProcess):
    """Export to PMTiles v3."""

    archive = PMTilesWriter
    description = _description(PMTilesWriter, "PMTiles")


def export_processes(
    catalog: CatalogRepository,
    data_dir: Path,
    tiler: TilerSettings,
    settings: ExportSettings | None = None,
    mosaic_settings: MosaicSettings | None = None,
) -> list[Process]:
    """Both export processes (settings from the environment when not given)."""
    settings = settings or ExportSettings()
    mosaic_settings = mosaic_settings or MosaicSettings()
    return [
        cls(catalog, data_dir, tiler, settings, mosaic_settings)
        for cls in (MBTilesProcess, PMTilesProcess)
    ]


# -- the render loop ----------------------------------------------------------------------------
PROCESS_BATCH = 8  # tiles per task sent to a render process: one pickle round trip for 8 tiles
_RENDER: TileRenderer | None = None  # a render process's renderer (set by _start_renderer)


def _start_renderer(render: TileRenderer, parent: int) -> None:
    """Render process set-up: die with the export's process, keep its renderer."""
    global _RENDER
    die_with_parent(parent)
    # The job child's SIGTERM handler unwinds to remove its temp files; a render process has
    # none and must end at once when the pool is terminated.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _RENDER = render


def _render_batch(tiles: list[tuple[int, int, int]]) -> list[bytes | None]:
    """In a render process: the tiles of one task."""
    assert _RENDER is not None
    return [_RENDER(*tile) for tile in tiles]


def _render_pool(render: TileRenderer, processes: int) -> multiprocessing.pool.Pool:
    """``processes`` forked render processes holding ``render``.

    Forked, not spawned: they start in milliseconds and inherit the renderer (a closure, not
    picklable) without pickling it. The caller forks before reading any tile, so nothing GDAL
    holds (block cache, PROJ's database) is shared with them. The jobs' child process is
    daemonic, and multiprocessing refuses children to daemonic processes: it is let have them
    because they die with it (PR_SET_PDEATHSIG) and it terminates them on every exit path.
    """
    me = multiprocessing.current_process()
    if me.daemon:
        me.daemon = False
    context = multiprocessing.get_context("fork")
    return context.Pool(processes, initializer=_start_renderer, initargs=(render, os.getpid()))


def write_tiles(
    tiles: Iterator[tuple[int, int, int]],
    render: TileRenderer,
    writer: ArchiveWriter,
    total: int,
    workers: int,
    progress: Callable[[int, str], None],
    progress_every_s: float = 0.5,
    processes: bool = False,
) -> dict[str, int]:
    """Render ``tiles`` on ``workers`` threads, or processes, and write them here, in order.

    Threads share the GIL with PNG encoding and rio-tiler's Python, so an export uses
    processes (``processes=True``: tasks of ``PROCESS_BATCH`` tiles); threads remain for one
    renderer and for callers that cannot fork. At most ``4 * workers`` tasks are in flight: the
    window of pending results is the bounded queue between the renderers and this (the only)
    writing thread, so memory stays flat whatever the extent.
    """
    window: deque[tuple[tuple[tuple[int, int, int], ...], Callable[[], list[bytes | None]]]]
    window = deque()
    done = empty = 0
    last = time.monotonic()
    size = PROCESS_BATCH if processes else 1
    if processes:
        pool = _render_pool(render, workers)

        def submit(batch: tuple[tuple[int, int, int], ...]) -> Callable[[], list[bytes | None]]:
            return pool.apply_async(_render_batch, (list(batch),)).get

        close = pool.terminate
    else:
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="render")

        def submit(batch: tuple[tuple[int, int, int], ...]) -> Callable[[], list[bytes | None]]:
            return executor.submit(lambda: [render(*tile) for tile in batch]).result

        # On an error or a SIGTERM, queued renders are dropped; running ones end by themselves.
        def close() -> None:
            executor.shutdown(wait=False, cancel_futures=True)

    def drain_one() -> None:
        nonlocal done, empty, last
        batch, result = window.popleft()
        for (z, x, y), content in zip(batch, result(), strict=True):
            if content is None:
                empty += 1
            else:
                writer.add(z, x, y, content)
            done += 1
            if time.monotonic() - last >= progress_every_s:
                last = time.monotonic()
                progress(min(99, 100 * done // max(total, 1)), f"{done}/{total} tiles")

    try:
        for batch in itertools.batched(tiles, size):
            window.append((batch, submit(batch)))
            if len(window) >= 4 * workers:
                drain_one()
        while window:
            drain_one()
    finally:
        close()  # processes: terminated at once, on success (idle) as on a cancel
    progress(99, f"{done}/{total} tiles")
    return {"written": done - empty, "empty": empty}


def publish(temp: Path, target: Path) -> int:
    """fsync ``temp``, rename it to ``target`` and fsync the folder; its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(temp, "rb") as file:
        os.fsync(file.fileno())
        size = os.fstat(file.fileno()).st_size
    os.replace(temp, target)
    fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return size


def attribution(collection: Mapping[str, Any]) -> str | None:
    """The licensors and producers among a collection's providers, if it names any."""
    names = [
        str(p["name"])
        for p in collection.get("providers") or []
        if isinstance(p, dict)
        and p.get("name")
        and {"licensor", "producer"} & set(p.get("roles") or [])
    ]
    return "© " + ", ".join(dict.fromkeys(names)) if names else None


@dataclass(frozen=True)
class _Source:
    """What ``prepare`` found for the item, collection or search of an export."""

    plan: dict[str, Any]
    footprint: shapely.Geometry
    maxzoom: int
    name: str
    description: str
    attribution: str | None


def _footprint(item: Mapping[str, Any]) -> shapely.Geometry:
    """An item's footprint (its geometry, else its bbox) in lon/lat."""
    geometry = item.get("geometry")
    if geometry:
        return shapely.from_geojson(orjson.dumps(geometry).decode())
    bbox = item["bbox"]
    return shapely.box(
        bbox[0], bbox[1], bbox[-3 if len(bbox) == 6 else 2], bbox[-2 if len(bbox) == 6 else 3]
    )


def _mosaic_item(row: Mapping[str, Any]) -> dict[str, Any]:
    """An item as the mosaic's tile lookup gives it (catalog/maps/mosaic.py): the reader's needs."""
    content = row["content"]
    item: dict[str, Any] = {
        "type": "Feature",
        "id": row["id"],
        "collection": row["collection_id"],
        "properties": row["properties"],
        "assets": content.get("assets") or {},
    }
    if content.get("bbox") is not None:
        item["bbox"] = content["bbox"]
    return item


def _native_maxzoom(
    items: Sequence[Mapping[str, Any]], storage: LocalStorage, tile_size: int
) -> int:
    """The finest native zoom among the items (one less for 512 px tiles)."""
    zooms = []
    for item in items:
        try:
            zooms.append(item_zooms(item, storage)[1])
        except (RioTilerError, TilerError):  # no GeoTIFF asset: the mosaic skips it too
            continue
    if not zooms:
        raise NoData("no item of the export has a GeoTIFF asset to render")
    native = max(zooms)
    return max(0, native - 1) if tile_size == 512 else native
