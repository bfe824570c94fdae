"""The worker's side of an export (``prepare``): the source's items, region, zooms and plan.

The item, collection or saved search is resolved to items (a mosaic's in its order, at most
``ExportSettings.max_items``), the region is their footprints within ``bbox``, the zooms
default to the data's native ones, and more than ``ExportSettings.max_tiles`` tiles are
refused. The plan is JSON: the job's child process rebuilds its renderer from it.
"""

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
import shapely
from rio_tiler.errors import RioTilerError

from catalog.accounts.rights import EVERYTHING, Readable
from catalog.cubes.model import Cube, CubeRepository
from catalog.jobs.queue import JobRecord
from catalog.maps.mosaic import MosaicRepository, collection_params
from catalog.stac.repository import CatalogRepository
from catalog.stac.search import SearchParams, encode_token
from catalog.stac.serializers import item_document
from catalog.storage.base import Storage

from ..archives import ArchiveMetadata
from ..cubes.export import cube_extent, cube_plan
from ..dependencies import ReaderOptions
from ..encoders import PNG_LEVEL
from ..errors import AssetNotReadable, TilerError
from ..readers.shared import ReaderResources
from ..render import item_plan, item_zooms, mosaic_plan
from ..settings import ExportSettings
from ..tiling import clamp_bounds, count_tiles
from .inputs import (
    READABLE_INPUT,
    ExportRequest,
    NoData,
    TooManyItems,
    check_tile_count,
    parse_request,
)

SEARCH_PAGE = 1000


class ExportPlanner:
    """Resolves an export's inputs to the plan of its child process (database reads only)."""

    def __init__(
        self,
        catalog: CatalogRepository,
        storage_plan: dict[str, Any],
        reader: ReaderOptions,
        mosaics: MosaicRepository,
        settings: ExportSettings,
        png_level: int = PNG_LEVEL,
    ) -> None:
        self.catalog = catalog
        self.storage_plan = storage_plan  # what the child rebuilds the storage from
        self.reader = reader
        self.mosaics = mosaics
        self.settings = settings
        self.png_level = png_level  # the tile endpoints' (TilerSettings.png_level)

    async def plan(self, job: JobRecord, extension: str) -> dict[str, Any]:
        """Items, region, zooms and the tile count; the plan of the child."""
        request = parse_request(job.inputs)
        cube = None
        if request.collection is not None:
            cube = await CubeRepository(self.catalog.engine).get(request.collection)
        if request.item is not None:
            source = await self._item_source(request)
        elif cube is not None:
            source = await self._cube_source(request, cube)
        else:
            readable = job.inputs.get(READABLE_INPUT)
            only = Readable(tuple(readable)) if readable is not None else EVERYTHING
            source = await self._mosaic_source(request, only)
        region = source.footprint
        if request.bbox is not None:
            region = shapely.intersection(region, shapely.box(*request.bbox))
        region = shapely.intersection(region, shapely.box(*clamp_bounds((-180, -90, 180, 90))))
        if region.is_empty or region.area == 0:
            raise NoData("the bbox does not meet the data")
        zooms = request.zooms(source.maxzoom, self.settings.zoom_levels)
        if zooms is None:  # a source always has a maxzoom, so zooms are always found
            raise RuntimeError("no zooms for an export whose source has a maxzoom")
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
            type=request.type,
        )
        return {
            "job_id": str(job.id),
            "extension": extension,
            "storage": self.storage_plan,
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
        if ref is None:
            raise RuntimeError("an item export without an item")  # parse_request forbids it
        row = await self.catalog.get_item(ref.collection, ref.id)
        item = item_document(row, "/", assets=None)  # renders: the stored hrefs
        collection = (await self.catalog.get_collection(ref.collection))["content"]
        plan = item_plan(item, request, self.reader, self.png_level)
        # Every asset the export renders is opened now: an unreadable one fails the job here,
        # naming itself, before a child starts (and an item without a grid gets the files').
        zooms = await asyncio.to_thread(
            item_zooms, item, self.reader.storage, request.assets, open_assets=True
        )
        return _Source(
            plan=plan,
            footprint=_footprint(item),
            maxzoom=_for_tile_size(zooms[1], request.tile_size),
            name=f"{ref.collection}/{ref.id}",
            description=f"Item {ref.id} of collection {ref.collection}",
            attribution=attribution(collection),
        )

    async def _cube_source(self, request: ExportRequest, cube: Cube) -> "_Source":
        """A datacube collection's layer at a date (the collection tile endpoint's tiles)."""
        collection = (await self.catalog.get_collection(request.collection or ""))["content"]
        resources = ReaderResources(self.reader.storage)
        plan = cube_plan(cube, request, self.png_level, resources)
        footprint, maxzoom = cube_extent(cube, request.tile_size)
        what = ", ".join(f"{k}={v}" for k in ("layers", "datetime", "temporal_aggregation")
                         if (v := getattr(request, k)))  # fmt: skip
        return _Source(
            plan=plan, footprint=footprint, maxzoom=maxzoom,
            name=str(collection.get("title") or cube.collection_id),
            description=f"Datacube {cube.collection_id}" + (f" ({what})" if what else ""),
            attribution=attribution(collection),
        )  # fmt: skip

    async def _mosaic_source(self, request: ExportRequest, readable: Readable) -> "_Source":
        mosaics = self.mosaics
        if request.collection is not None:
            collection = (await self.catalog.get_collection(request.collection))["content"]
            params = collection_params(request.collection)
            name = str(collection.get("title") or request.collection)
            description = f"Mosaic of collection {request.collection}"
        else:
            if request.search is None:  # parse_request requires one source
                raise RuntimeError("a mosaic export without a collection or a search")
            params = (await mosaics.use(request.search)).params
            name = f"search {request.search}"
            description = f"Mosaic of saved search {request.search}"
            # Only what the job's submitter reads (READABLE_INPUT), as the search's tiles.
            collections = readable.narrow(params.collections)
            if collections == []:
                raise NoData("the mosaic has no item in the bbox")
            params = replace(params, collections=collections)
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
        plan = mosaic_plan(items, footprints, mosaics.max_items, request, self.reader,
                           self.png_level)  # fmt: skip
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


def _native_maxzoom(items: Sequence[Mapping[str, Any]], storage: Storage, tile_size: int) -> int:
    """The finest native zoom among the items (one less for 512 px tiles).

    Items that cannot be rendered are skipped, as the mosaic skips them; if none can be, the
    first reasons are the error.
    """
    zooms, reasons = [], []
    for item in items:
        try:
            zooms.append(item_zooms(item, storage)[1])
        except (TilerError, RioTilerError) as exc:
            reasons.append(str(exc))
    if not zooms:
        more = f" (and {len(reasons) - 3} more items)" if len(reasons) > 3 else ""
        raise AssetNotReadable(
            "no item of the export can be rendered: " + "; ".join(reasons[:3]) + more
        )
    return _for_tile_size(max(zooms), tile_size)


def _for_tile_size(native: int, tile_size: int) -> int:
    """A native zoom for 256 px tiles as the zoom of ``tile_size`` px tiles."""
    return max(0, native - 1) if tile_size == 512 else native
