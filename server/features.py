"""The parts served next to the STAC API: OGC API parts, raster maps and uploads.

Each function turns our settings into one ``ApiPart`` (server/parts.py); create_app lists them.
"""

from collections.abc import Callable

from fastapi import APIRouter, FastAPI
from stac_fastapi.api.models import ItemUri, create_request_model
from stac_fastapi.types.search import APIRequest
from starlette.datastructures import State

from catalog.stac.client import NEEDS_TOKEN
from catalog.stac.counts import CountPolicy
from catalog.storage.base import Storage
from catalog.uploads.multipart import BODY_OVERHEAD
from catalog.uploads.routes import UploadsFactory, tus_may_use, tus_owner
from catalog.uploads.tus import TusFactory
from catalog.uploads.tus_store import TusRepository
from catalog.vector.features import FeatureReader
from ogc.cube_edr import EDR_CLASSES, add_edr_queries, cube_edr_router
from ogc.cube_series import cube_series_router
from ogc.exports import ExportsExtension
from ogc.feature_collections import add_vector_documents
from ogc.feature_pages import FeaturePages
from ogc.feature_route import LeanFeaturesExtension
from ogc.features import FeatureParams, VectorItems
from ogc.maps import MapsExtension
from ogc.pictures import pictures_router
from ogc.processes import ProcessesExtension
from ogc.styles import StylesExtension
from ogc.tiles import TilesExtension
from ogc.vector_stats import vector_stats_router
from ogc.vector_tiles import VectorTilesExtension
from tiler.errors import error_handlers as tiler_error_handlers
from tiler.factory import item_maps_router
from tiler.links import add_collection_map_links, add_item_map_links
from tiler.mosaic import mosaic_router
from tiler.readers.shared import ReaderResources
from tiler.wmts import collection_wmts_router

from .auth import authorize_operation
from .parts import ApiPart, RoutersExtension, routers_part
from .processes import build_processes
from .settings import Settings
from .viewer.routes import page_map_files
from .worker import TEMP_MAX_AGE_S, sweep_temp

OGC_REL = "http://www.opengis.net/def/rel/ogc/1.0/"
JSON = "application/json"


def processes_part(settings: Settings, storage: Storage) -> ApiPart:
    """OGC API - Processes over the job table; jobs are their owners' (server/policy.py)."""

    def start(state: State) -> None:
        state.processes = build_processes(settings, state.repository, state.uploads, storage)

    return ApiPart(
        name="processes",
        extensions=[ProcessesExtension(settings=settings.jobs)],
        landing_links=[
            {"rel": OGC_REL + "processes", "type": JSON, "title": "Processes", "path": "processes"},
            {
                "rel": OGC_REL + "job-list",
                "type": JSON,
                "title": "Jobs",
                "path": "jobs",
                **NEEDS_TOKEN,
            },
        ],  # fmt: skip
        start=start,
    )


def features_part(settings: Settings) -> ApiPart:
    """OGC API - Features of vector collections, on the STAC items routes (ogc/features.py);
    their parameters and conformance are declared with the items part (server/stac.py)."""
    counting = settings.catalog

    def start(state: State) -> None:
        policy = CountPolicy(
            counting.count_limit, counting.count_max_cost, counting.count_stale_limit,
            counting.count_stale_timeout_ms,
        )  # fmt: skip
        state.features = FeatureReader(state.vectors.engine, policy, state.reads)

    mixins: list[type[APIRequest]] = [FeatureParams]
    item_model = create_request_model("FeatureUri", base_model=ItemUri, mixins=mixins)
    # f=html: pygeoapi's templates, configured here from our settings (ogc/feature_pages.py)
    pages = FeaturePages(
        settings.api.title, settings.api.description, counting.default_limit, counting.max_limit,
        map_files=page_map_files(settings.viewer),  # its map: a script of the viewer's build
    )  # fmt: skip
    items = VectorItems(settings.catalog, settings.limits, pages, settings.vector_stats)
    return ApiPart(
        name="features",
        # plain pages of vector collections skip FastAPI (ogc/feature_route.py)
        extensions=[LeanFeaturesExtension(items=items, guard=authorize_operation)],
        request_models={"item_get_request_model": item_model},
        collection_items=[items],
        collection_hooks=[add_vector_documents],
        start=start,
    )


def tiles_part(settings: Settings) -> ApiPart:
    """OGC API - Tiles metadata: tile matrix sets and each collection's tilesets."""
    return ApiPart(
        name="tiles",
        extensions=[TilesExtension(settings=settings.tiles, limits=settings.limits)],
        landing_links=[
            {
                "rel": OGC_REL + "tiling-schemes",
                "type": JSON,
                "title": "Tile matrix sets",
                "path": "tileMatrixSets",
            },
        ],  # fmt: skip
        collection_links=[
            # Untyped (the type is optional): GDAL 3.6's OGCAPI driver follows a typed
            # tilesets-vector link even when opening a raster, fails, and drops the map it read.
            {
                "rel": OGC_REL + "tilesets-vector",
                "title": "Vector tilesets (item footprints)",
                "path": "tiles",
            },
            {
                "rel": OGC_REL + "tilesets-map",
                "type": JSON,
                "title": "Map tilesets (mosaic of the items)",
                "path": "tiles",
            },
        ],  # fmt: skip
    )


def vector_tiles_part(settings: Settings) -> ApiPart:
    """Vector tiles of each collection's features (vector) or item footprints (raster)."""
    extension = VectorTilesExtension(
        settings=settings.tiles, limits=settings.limits, guard=authorize_operation
    )
    return ApiPart(name="vector-tiles", extensions=[extension])


def styles_part(settings: Settings) -> ApiPart:
    """MapLibre styles of collections: generated, or stored by the collection's admin."""
    return ApiPart(
        name="styles",
        extensions=[StylesExtension(settings=settings.tiles)],
        collection_links=[
            {"rel": OGC_REL + "styles", "type": JSON, "title": "Map styles", "path": "styles"},
        ],
    )


def vector_stats_part(settings: Settings) -> ApiPart:
    """Facets and aggregations of vector collections' features (JSON and CSV)."""
    router = vector_stats_router(settings.vector_stats, settings.limits)
    return routers_part("vector-stats", lambda app: [router])


def cube_series_part(settings: Settings, storage: Storage) -> ApiPart:
    """Time series and statistics over an area of datacube and COG collections (ogc/
    cube_series.py), and EDR position and area queries of datacubes (ogc/cube_edr.py); the
    COG readers' errors answer as the tiler's."""
    series = cube_series_router(settings.cube_series, settings.limits, storage)
    edr = cube_edr_router(settings.cube_series, settings.limits, storage)
    # EDR's conformance is declared by the part that serves it (GET /conformance lists it)
    extension = RoutersExtension(routers=lambda app: [series, edr],
                                 conformance_classes=list(EDR_CLASSES))  # fmt: skip
    return ApiPart(
        name="cube-series",
        extensions=[extension],
        error_handlers=tiler_error_handlers(),
        collection_hooks=[add_edr_queries],
    )


def pictures_part(settings: Settings) -> ApiPart:
    """Geotagged pictures: sequence lines (GeoJSON, vector tiles) and the nearest pictures."""
    router = pictures_router(settings.tiles)
    return routers_part("pictures", lambda app: [router])


def exports_part() -> ApiPart:
    """Downloads of the archives the export processes make (their jobs' owners', as /jobs)."""
    exports = ExportsExtension()  # archives of the app storage (app.state.storage)
    return ApiPart(name="exports", extensions=[exports])


def _upload_routers(settings: Settings, storage: Storage) -> Callable[[FastAPI], list[APIRouter]]:
    """The upload-set routes and the tus server, bound to the app's state."""

    def routers(app: FastAPI) -> list[APIRouter]:
        uploads = UploadsFactory(
            settings.ingest, settings.jobs, [], storage, settings.auth.default_quota_bytes
        )
        on_create, on_complete = uploads.tus_hooks(app.state)

        def store() -> TusRepository:
            found: TusRepository = app.state.tus
            return found

        tus = TusFactory(
            store=store,
            max_size=settings.ingest.max_file_bytes,
            expiration_s=settings.ingest.tus_expiration_s,
            on_create=on_create,
            on_complete=on_complete,
            owner_of=tus_owner,
            may_use=tus_may_use,
        )
        tagged = APIRouter(tags=["Uploads"])
        tagged.include_router(tus.router)
        return [uploads.router, tagged]

    return routers


def uploads_part(settings: Settings, storage: Storage) -> ApiPart:
    """``/upload_sets`` and the tus server at ``/uploads/``; uploads are their owners'.

    Received files and tus uploads live in ``storage`` and the database only: any API process
    serves any request of an upload, and any worker ingests it."""
    routers = _upload_routers(settings, storage)

    # Files stream to disk under their own checks (TERRACAT_INGEST_MAX_FILE_BYTES): the app's
    # JSON body limit would cut them off.
    file_bytes = settings.ingest.max_file_bytes + BODY_OVERHEAD
    streamed = ["POST /uploads/", "POST /uploads", "PATCH /uploads/{upload_id}",
                "POST /upload_sets/{upload_set_id}/files"]  # fmt: skip

    def start(state: State) -> None:
        state.tus = TusRepository(state.uploads.engine, storage)
        # Bodies of requests this process was killed in the middle of: nobody else sees them.
        sweep_temp(storage.temp_path("").parent, TEMP_MAX_AGE_S)

    return routers_part(
        "uploads",
        routers,
        start=start,
        body_limits=dict.fromkeys(streamed, file_bytes),
        landing_links=[
            {
                "rel": "upload-sets",
                "type": JSON,
                "title": "Upload sets (POST to start an upload)",
                "path": "upload_sets",
                **NEEDS_TOKEN,
            },
            {
                "rel": "tus",
                "type": "application/offset+octet-stream",
                "title": "Resumable uploads (tus 1.0.0)",
                "path": "uploads/",
                **NEEDS_TOKEN,
            },
        ],  # fmt: skip
    )


def item_maps_part(settings: Settings, readers: ReaderResources) -> ApiPart:
    """Raster maps of each item (titiler's factory on our reader); public reads."""
    router = item_maps_router(settings.tiler, readers)
    return routers_part(
        "item-maps",
        lambda app: [router],
        error_handlers=tiler_error_handlers(),
        item_hooks=[add_item_map_links],
    )


def mosaics_part(settings: Settings, readers: ReaderResources) -> ApiPart:
    """Mosaic maps of collections and saved searches (tiles, and an OGC API - Maps ``map``,
    which draws vector collections and a raster collection's annotations too)."""
    router = mosaic_router(settings.tiler, readers, [], settings.mosaic)
    # the map route declares the OGC API - Maps classes it meets (ogc/maps.py)
    maps = MapsExtension(tiler=settings.tiler, tiles=settings.tiles, resources=readers,
                         settings=settings.mosaic)  # fmt: skip
    wmts = collection_wmts_router(settings.tiler, readers, settings.mosaic)
    return ApiPart(
        name="mosaics",
        extensions=[
            RoutersExtension(routers=lambda app: [router]),
            maps,
            RoutersExtension(routers=lambda app: [wmts]),
        ],  # fmt: skip
        collection_hooks=[add_collection_map_links],
        error_handlers=tiler_error_handlers(),
        collection_links=[
            {"rel": OGC_REL + "map", "type": "image/png", "title": "Map (PNG)", "path": "map"},
            {
                "rel": OGC_REL + "map",
                "type": "image/jpeg",
                "title": "Map (JPEG)",
                "path": "map?f=jpeg",
            },
        ],  # fmt: skip
    )
