"""The export Process plugins: ``mbtiles`` and ``pmtiles`` (the package docstring says how)."""

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import shapely
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.accounts.errors import Forbidden
from catalog.accounts.principal import Principal
from catalog.accounts.repository import AccountRepository
from catalog.errors import InvalidParameter
from catalog.jobs.queue import JobContext, JobRecord, Process
from catalog.maps.mosaic import MosaicRepository
from catalog.stac.repository import CatalogRepository
from catalog.storage import storage_from_plan, storage_plan
from catalog.storage.base import Storage

from ..archives import ArchiveWriter, MBTilesWriter, PMTilesWriter
from ..dependencies import ReaderOptions
from ..readers.shared import ReaderResources
from ..settings import ExportSettings, MosaicSettings, TilerSettings
from ..tiling import clamp_bounds, count_tiles
from .files import archive_key
from .inputs import READABLE_INPUT, check_tile_count, parse_request, process_description
from .planning import ExportPlanner
from .rendering import write_archive


class ExportProcess(Process):
    """Shared by the ``mbtiles`` and ``pmtiles`` processes; ``archive`` is the writer."""

    archive: ClassVar[type[ArchiveWriter]]
    child_modules = ("tiler.render", "catalog.storage.s3")

    def __init__(
        self,
        catalog: CatalogRepository,
        storage: Storage,
        tiler: TilerSettings,
        settings: ExportSettings,
        mosaic_settings: MosaicSettings,
    ) -> None:
        self.catalog = catalog
        self.storage = storage
        self.tiler = tiler
        self.settings = settings
        self.reader = ReaderOptions(storage=storage, max_image_size=tiler.max_image_size)
        # a big export outlasts the jobs' default timeout: this one is the export's own
        self.description = self.description.model_copy(  # type: ignore[misc]
            update={"timeout_s": settings.timeout_s}
        )
        self.mosaics = MosaicRepository(
            catalog, mosaic_settings.max_items_per_tile, mosaic_settings.search_cache_ttl_s
        )
        self.planner = ExportPlanner(
            catalog, storage_plan(storage), self.reader, self.mosaics, settings, tiler.png_level
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

    async def admit(
        self, inputs: dict[str, Any], caller: Principal, accounts: AccountRepository
    ) -> dict[str, Any]:
        """Exporting a collection or an item needs ``write`` on the collection; a saved
        search's mosaic is rendered with the caller's rights, kept in the job's inputs.

        A collection the caller may not read is refused like a missing one (an input that
        names nothing: 400), one it only reads with ``auth.Forbidden`` (403).
        """
        request = parse_request(inputs)
        if request.search is not None:
            if caller.is_admin:
                return inputs
            return {**inputs, READABLE_INPUT: await self.mosaics.readable_ids(caller)}
        collection_id = request.item.collection if request.item else request.collection
        if collection_id is None or caller.is_admin:  # admins: the worker finds what is missing
            return inputs
        right = await accounts.right_on(caller, collection_id)
        if right is None:
            name = "item" if request.item else "collection"
            raise InvalidParameter(  # the OGC exception type check_execution gives bad inputs
                f"input {name!r}: collection {collection_id!r} does not exist",
                type="InvalidParameterValue",
            )
        if right == "read":
            raise Forbidden(f"exporting needs the 'write' right on collection {collection_id!r}")
        return inputs

    async def prepare(self, job: JobRecord, cancelled: Callable[[], bool]) -> dict[str, Any]:
        """Items, region, zooms and the tile count; the plan of the child (``ExportPlanner``)."""
        return await self.planner.plan(job, self.archive.extension)

    @staticmethod
    def execute(plan: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        """Child process: render every tile of the region into the archive, then publish it."""
        # Read by GDAL when its block cache is first used, in this spawned process; the render
        # processes forked from it inherit the size.
        os.environ.setdefault("GDAL_CACHEMAX", str(plan["gdal_cache_mb"]))
        region = shapely.from_geojson(plan["region"])
        resources = ReaderResources(storage_from_plan(plan["storage"]))
        try:
            return write_archive(plan, ctx, region, resources)
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
        key = archive_key(str(job.id), self.archive.extension)
        await asyncio.to_thread(self.storage.delete, key)


class MBTilesProcess(ExportProcess):
    """Export to MBTiles 1.3."""

    archive = MBTilesWriter
    description = process_description(MBTilesWriter, "MBTiles")


class PMTilesProcess(ExportProcess):
    """Export to PMTiles v3."""

    archive = PMTilesWriter
    description = process_description(PMTilesWriter, "PMTiles")


def export_processes(
    catalog: CatalogRepository,
    storage: Storage,
    tiler: TilerSettings,
    settings: ExportSettings | None = None,
    mosaic_settings: MosaicSettings | None = None,
) -> list[Process]:
    """Both export processes (settings from the environment when not given)."""
    settings = settings or ExportSettings()
    mosaic_settings = mosaic_settings or MosaicSettings()
    return [
        cls(catalog, storage, tiler, settings, mosaic_settings)
        for cls in (MBTilesProcess, PMTilesProcess)
    ]
