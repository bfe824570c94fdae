"""Datacube collections over HTTP: their capabilities document, and the files of their stores.

- ``GET /collections/{collectionId}/capabilities``: what a client needs to ask for tiles and
  time series of a datacube collection (its layers with common names, dtype, nodata and unit,
  the time coordinate, the bounding box in lon/lat and in the cube's CRS, the overview
  factors), read from the ``datacubes`` row (the store is never opened for it).
- ``GET|HEAD /collections/{collectionId}/items/{itemId}/assets/{assetKey}/{storeFile}``: a file
  inside a stored asset that is a folder (a Zarr store), so that the asset URL of a time
  slice item opens as a Zarr store from another machine (``xr.open_zarr(asset_href)``). The
  store is the key the item's row holds; ``path`` is checked segment by segment.

A collection the caller may not read is 404 before any of this runs (``server/policy.py``).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pyproj import CRS, Transformer
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from catalog.accounts.principal import ANONYMOUS
from catalog.cubes.errors import CubeFileNotFound, NotACube
from catalog.cubes.model import Cube, CubeRepository
from catalog.cubes.stac import iso
from catalog.stac.assets import DOWNLOAD_RESPONSES, app_storage, stored_asset
from catalog.stac.repository import CatalogRepository
from catalog.storage.base import Storage, check_key
from catalog.storage.responses import Download, stored_response
from catalog.web import base_url
from ogc.cube_edr import page_cubes

from .parts import ApiPart, routers_part

_JSON_FILES = (".zmetadata", ".zgroup", ".zarray", ".zattrs", "zarr.json")
CollectionId = Annotated[str, Path(alias="collectionId")]


def _lonlat_bbox(cube: Cube) -> list[float]:
    transformer = Transformer.from_crs(CRS.from_user_input(cube.crs), 4326, always_xy=True)
    west, south, east, north = transformer.transform_bounds(*cube.bounds, densify_pts=21)
    return [round(float(v), 7) for v in (west, south, east, north)]


def capabilities(cube: Cube, base: str) -> dict[str, Any]:
    """The capabilities document of ``cube`` (URLs under ``base``)."""
    url = f"{base}collections/{cube.collection_id}"
    return {
        "id": cube.collection_id,
        "type": "datacube",
        "format": cube.format,
        "crs": cube.crs,
        "bbox": _lonlat_bbox(cube),
        "native_bbox": list(cube.bounds),
        "resolution": [abs(cube.transform[1]), abs(cube.transform[5])],
        "width": cube.width,
        "height": cube.height,
        "dimensions": {
            "x": cube.x_dim,
            "y": cube.y_dim,
            "time": cube.time_dim,
            "band": cube.band_dim,
        },  # fmt: skip
        "layers": [
            {
                "name": layer.name,
                "variable": layer.variable,
                "band": layer.band,
                "common_name": layer.common_name,
                "dtype": layer.dtype,
                "nodata": layer.nodata,
                "unit": layer.unit,
                "description": layer.description,
            }
            for layer in cube.layers
        ],  # fmt: skip
        "time": {
            "extent": [iso(min(cube.times)), iso(max(cube.times))] if cube.times else None,
            "values": [iso(t) for t in cube.times],
        },
        "overviews": [o.factor for o in cube.overviews],
        "links": [
            {"rel": "self", "href": f"{url}/capabilities", "type": "application/json"},
            {"rel": "collection", "href": url, "type": "application/json"},
            {"rel": "items", "href": f"{url}/items", "type": "application/geo+json"},
        ],
    }


def cubes_router(storage: Any = app_storage) -> APIRouter:
    """The capabilities and store-file routes."""
    router = APIRouter(tags=["Datacubes"])

    @router.get(
        "/collections/{collectionId}/capabilities",
        operation_id="getCollectionCapabilities",
        summary="Layers, time coordinate and extent of a datacube collection",
        responses={404: {"description": "`catalog.NotFound`, `cube.NotACube`"}},
    )
    async def get_capabilities(request: Request, collection_id: CollectionId) -> Any:
        """The datacube's layers, times and bounding box (404 for other collections)."""
        cube = await CubeRepository(request.app.state.repository.engine).get(collection_id)
        if cube is None:
            await request.app.state.repository.get_collection(collection_id)  # 404 if none
            raise NotACube(f"collection {collection_id!r} is no datacube collection")
        return await run_in_threadpool(capabilities, cube, base_url(request))

    async def get_store_file(
        request: Request,
        collection_id: CollectionId,
        item_id: Annotated[str, Path(alias="itemId")],
        asset_key: Annotated[str, Path(alias="assetKey", description="The asset's name.")],
        store_file: Annotated[
            str, Path(alias="storeFile", description="A file of the store, e.g. `.zmetadata`.")
        ],
        source: Annotated[Storage, Depends(storage)],
    ) -> Response:
        """One file of a stored asset that is a folder (a Zarr store)."""
        repository: CatalogRepository = request.app.state.repository
        _, key = await stored_asset(repository, collection_id, item_id, asset_key)
        try:
            inside = check_key(store_file)
        except ValueError:
            raise CubeFileNotFound(f"no file {store_file!r} in asset {asset_key!r}") from None
        public = (await request.app.state.accounts.readable(ANONYMOUS)).allows(collection_id)
        name = inside.rsplit("/", 1)[-1]
        media_type = "application/json" if name in _JSON_FILES else "application/octet-stream"
        cache = "public, max-age=300" if public else "private, max-age=300"
        missing = CubeFileNotFound(f"no file {store_file!r} in asset {asset_key!r}")
        download = Download(source, f"{key}/{inside}", media_type, name, cache)
        return await stored_response(request, download, missing)

    # A key inside the asset's folder, checked as storage keys are: never a filesystem path
    # or a URL (tests/tiler/test_security.py refuses parameters named so).
    path = "/collections/{collectionId}/items/{itemId}/assets/{assetKey}/{storeFile:path}"
    for method, operation_id in (("GET", "getItemAssetFile"), ("HEAD", "headItemAssetFile")):
        router.add_api_route(
            path, get_store_file, methods=[method], operation_id=operation_id,
            summary="A file inside a stored asset that is a folder (a Zarr store)",
            response_class=Response, responses=DOWNLOAD_RESPONSES,
        )  # fmt: skip
    return router


CAPABILITIES_REL = "capabilities"


async def add_cube_links(request: Request, collections: list[dict[str, Any]]) -> None:
    """Hook: the capabilities link of each datacube collection, in place of its map links."""
    if not collections:
        return
    cubes = await page_cubes(request, collections)
    base = base_url(request)
    for doc in collections:
        if doc["id"] not in cubes:
            continue
        # No map link: the map route draws no datacube (404 maps.NoMap; its tiles draw it).
        dropped = (CAPABILITIES_REL, "http://www.opengis.net/def/rel/ogc/1.0/map")
        kept = [link for link in doc.get("links", []) if link.get("rel") not in dropped]
        doc["links"] = [*kept, {"rel": CAPABILITIES_REL, "type": "application/json",
                                "title": "Layers and time steps of the datacube",
                                "href": f"{base}collections/{doc['id']}/capabilities"}]  # fmt: skip


def cubes_part() -> ApiPart:
    """Datacube collections: capabilities, and their stores' files."""
    router = cubes_router()
    return routers_part("cubes", lambda app: [router], collection_hooks=[add_cube_links])
