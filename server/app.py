"""The app factory: ``uvicorn --factory server.app:create_app``. Nothing is built at import."""

import hmac
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import attr
from fastapi import APIRouter, Depends, FastAPI, Header
from stac_fastapi.api.app import StacApi
from stac_fastapi.api.middleware import ProxyHeaderMiddleware
from stac_fastapi.api.models import (
    JSONResponse,
    create_get_request_model,
    create_post_request_model,
    create_request_model,
)
from stac_fastapi.extensions import (
    BulkTransactionExtension,
    CollectionSearchExtension,
    CollectionSearchFilterExtension,
    FieldsExtension,
    ItemCollectionFilterExtension,
    OffsetPaginationExtension,
    SearchFilterExtension,
    TokenPaginationExtension,
)
from stac_fastapi.extensions.collection_search.collection_search import (
    CollectionSearchConformanceClasses,
)
from stac_fastapi.extensions.fields import FieldsConformanceClasses
from stac_fastapi.extensions.filter.filter import FilterConformanceClasses
from stac_fastapi.extensions.free_text import FreeTextConformanceClasses, FreeTextExtension
from stac_fastapi.extensions.query import QueryConformanceClasses, QueryExtension
from stac_fastapi.extensions.sort import (
    CollectionSearchSortExtension,
    ItemCollectionSortExtension,
    SearchSortExtension,
)
from stac_fastapi.extensions.sort.sort import SortConformanceClasses
from stac_fastapi.types.config import ApiSettings as StacApiSettings
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware

from catalog.db.engine import create_engine
from catalog.ingest.process import IngestProcess
from catalog.jobs.queue import JobRepository, Process
from catalog.stac.client import (
    BulkTransactionsClient,
    CoreClient,
    FiltersClient,
    SortablesClient,
    TransactionsClient,
)
from catalog.stac.repository import CatalogRepository
from catalog.stac.requests import (
    CollectionsGetRequest,
    FilterPostRequest,
    ItemsGetRequest,
    SearchGetRequest,
    SearchPostRequest,
)
from catalog.uploads.repository import UploadRepository
from catalog.uploads.routes import UploadsFactory
from catalog.uploads.tus import TusFactory
from ogc.exports import ExportsExtension
from ogc.processes import ProcessesExtension
from ogc.tiles import TilesExtension
from ogc.vector_tiles import VectorTilesExtension
from tiler.errors import add_error_handlers as add_tiler_error_handlers
from tiler.export import export_processes
from tiler.factory import item_tiler_factory
from tiler.mosaic import mosaic_router
from tiler.readers.shared import ReaderResources

from .database import resolve_url
from .errors import AuthError, WritesDisabled, add_error_handlers
from .middleware import PrefixMiddleware
from .settings import ApiSettings, Settings
from .transactions import RawBodyTransactionExtension

# Every CQL2 class our compiler implements (catalog/stac/cql2.py), advertised and tested.
FILTER_CLASSES = [
    FilterConformanceClasses.FILTER,
    FilterConformanceClasses.SEARCH,
    FilterConformanceClasses.ITEMS,
    FilterConformanceClasses.CQL2_TEXT,
    FilterConformanceClasses.CQL2_JSON,
    FilterConformanceClasses.BASIC_CQL2,
    FilterConformanceClasses.ADVANCED_COMPARISON_OPERATORS,
    FilterConformanceClasses.BASIC_SPATIAL_FUNCTIONS,
    FilterConformanceClasses.BASIC_SPATIAL_FUNCTIONS_PLUS,
    FilterConformanceClasses.SPATIAL_FUNCTIONS,
    FilterConformanceClasses.TEMPORAL_FUNCTIONS,
    FilterConformanceClasses.ARRAY_FUNCTIONS,
    FilterConformanceClasses.PROPERTY_PROPERTY,
    FilterConformanceClasses.CASE_INSENSITIVE_COMPARISON,
    FilterConformanceClasses.ACCENT_INSENSITIVE_COMPARISON,
]

# Sort v1.1.0 (what stac-fastapi advertises) keeps v1.0.0's sortby and adds sortables; clients
# that only know v1.0.0 (pystac-client 0.9 matches "v1.0.*") look for the v1.0.0 URIs.
SEARCH_SORT_CLASSES = [
    SortConformanceClasses.ITEM_SEARCH_SORT,
    SortConformanceClasses.ITEM_SEARCH_SORTABLES,
    "https://api.stacspec.org/v1.0.0/item-search#sort",
]
ITEMS_SORT_CLASSES = [
    SortConformanceClasses.FEATURES_SORT,
    "https://api.stacspec.org/v1.0.0/ogcapi-features#sort",
]


@attr.s
class _SearchFilterExtension(SearchFilterExtension):
    """Search filter whose POST body also takes CQL2-text."""

    POST = FilterPostRequest


def admin_dependency(api: ApiSettings) -> Any:
    """A dependency that lets a write through only with the configured Bearer token."""
    token = api.admin_token.get_secret_value().encode() if api.admin_token else None

    async def require_admin(
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> None:
        if token is None:
            if api.allow_anonymous_writes:
                return
            raise WritesDisabled(
                "writes are disabled: set TERRACAT_API_ADMIN_TOKEN (or, for development only, "
                "TERRACAT_API_ALLOW_ANONYMOUS_WRITES=true)"
            )
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
            raise AuthError("a valid 'Authorization: Bearer <token>' header is required")

    return Depends(require_admin)


def _extensions(settings: Settings) -> dict[str, Any]:
    filters = FiltersClient()
    sortables = SortablesClient()
    search = [
        QueryExtension(),
        SearchSortExtension(client=sortables, conformance_classes=SEARCH_SORT_CLASSES),
        FieldsExtension(),
        _SearchFilterExtension(client=filters, conformance_classes=FILTER_CLASSES),
        TokenPaginationExtension(),
    ]
    item_collection = [
        QueryExtension(conformance_classes=[QueryConformanceClasses.ITEMS]),
        ItemCollectionSortExtension(conformance_classes=ITEMS_SORT_CLASSES),
        FieldsExtension(conformance_classes=[FieldsConformanceClasses.ITEMS]),
        ItemCollectionFilterExtension(
            client=filters,
            conformance_classes=[FilterConformanceClasses.ITEMS, FilterConformanceClasses.FILTER],
        ),
        TokenPaginationExtension(),
    ]
    collection_search_parts = [
        FreeTextExtension(conformance_classes=[FreeTextConformanceClasses.COLLECTIONS]),
        CollectionSearchSortExtension(),
        FieldsExtension(conformance_classes=[FieldsConformanceClasses.COLLECTIONS]),
        CollectionSearchFilterExtension(client=filters),
        OffsetPaginationExtension(),
    ]
    collection_search = CollectionSearchExtension(
        GET=create_request_model(
            "CollectionsGetRequest",
            base_model=CollectionsGetRequest,
            extensions=collection_search_parts,
            request_type="GET",
        ),
        conformance_classes=[
            CollectionSearchConformanceClasses.COLLECTIONSEARCH.value,
            CollectionSearchConformanceClasses.BASIS.value,
            *(c for ext in collection_search_parts for c in ext.conformance_classes),
        ],
    )
    admin = admin_dependency(settings.api)
    stac_settings = StacApiSettings(
        stac_fastapi_title=settings.api.title,
        stac_fastapi_description=settings.api.description,
        stac_fastapi_landing_id="terracat",
        stac_fastapi_version="0.1.0",
        enable_response_models=False,
    )
    writes = [
        RawBodyTransactionExtension(
            client=TransactionsClient(settings=settings.catalog),
            settings=stac_settings,
            route_dependencies=[admin],
        ),
        BulkTransactionExtension(
            client=BulkTransactionsClient(settings=settings.catalog), route_dependencies=[admin]
        ),
    ]
    return {
        "search": search,
        "item_collection": item_collection,
        "collection_search": collection_search,
        "writes": writes,
        "stac_settings": stac_settings,
    }


def build_processes(
    settings: Settings, catalog: CatalogRepository, uploads: UploadRepository
) -> dict[str, Process]:
    """Every process this server offers, by id (the API and the workers share this list)."""
    processes: list[Process] = [
        IngestProcess(uploads, catalog, settings.ingest, settings.catalog.validate_extensions),
        *export_processes(
            catalog, settings.ingest.data_dir, settings.tiler, settings.export, settings.mosaic
        ),
    ]
    return {p.description.id: p for p in processes}


def _ogc_extensions(settings: Settings) -> list[Any]:
    """OGC API parts served next to the STAC API (each declares its conformance classes)."""
    admin = admin_dependency(settings.api)
    tiles = settings.tiles
    return [
        ProcessesExtension(
            settings=settings.jobs, read_dependencies=[admin], write_dependencies=[admin]
        ),
        TilesExtension(settings=tiles),
        VectorTilesExtension(settings=tiles),
        ExportsExtension(data_dir=settings.ingest.data_dir, read_dependencies=[admin]),
    ]


def _landing_links(settings: Settings) -> list[dict[str, str]]:
    return [
        {"rel": "http://www.opengis.net/def/rel/ogc/1.0/processes", "type": "application/json",
         "title": "Processes", "path": "processes"},
        {"rel": "http://www.opengis.net/def/rel/ogc/1.0/job-list", "type": "application/json",
         "title": "Jobs", "path": "jobs"},
        {"rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes", "type": "application/json",
         "title": "Tile matrix sets", "path": "tileMatrixSets"},
        {"rel": "upload-sets", "type": "application/json",
         "title": "Upload sets (POST to start an upload)", "path": "upload_sets"},
        {"rel": "tus", "type": "application/offset+octet-stream",
         "title": "Resumable uploads (tus 1.0.0)", "path": "uploads/"},
    ]  # fmt: skip


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the Terracat ASGI app. The database is connected in the lifespan, not here."""
    settings = settings or Settings()
    # Read by GDAL when its block cache is first used: before this process renders any tile.
    os.environ.setdefault("GDAL_CACHEMAX", str(settings.tiler.gdal_cache_mb))
    ext = _extensions(settings)
    # The tiler's storage, open files and grid cache: one set per app, closed with it.
    readers = ReaderResources.at(settings.ingest.data_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = resolve_url(settings.db)
        engine = create_engine(url, settings.db)
        app.state.repository = CatalogRepository(
            engine, settings.catalog.count_limit, settings.catalog.count_max_cost
        )
        app.state.jobs = JobRepository(engine)
        app.state.uploads = UploadRepository(engine, app.state.jobs)
        app.state.processes = build_processes(settings, app.state.repository, app.state.uploads)
        try:
            yield
        finally:
            await engine.dispose()
            readers.close()

    middlewares = [
        Middleware(
            GZipMiddleware,
            minimum_size=settings.api.gzip_minimum_size,
            # Archives (and tiles) are compressed already: gzip would only add time and lose
            # Content-Length on downloads.
            exclude_content_types=(
                "application/gzip",
                "application/zip",
                "application/vnd.sqlite3",
                "application/vnd.pmtiles",
                "application/vnd.mapbox-vector-tile",
                "image/jpeg",
                "image/png",
                "image/webp",
                "image/tiff",
                "application/octet-stream",
            ),
        ),  # fmt: skip
        Middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            # tus clients in browsers read these (tus 1.0.0 "Browser clients")
            expose_headers=[
                "Location",
                "ETag",
                "Link",
                "Upload-Offset",
                "Upload-Length",
                "Upload-Expires",
                "Upload-Metadata",
                "Upload-File-Id",
                "X-Terracat-Features-Capped",
                "Tus-Resumable",
                "Tus-Version",
                "Tus-Extension",
                "Tus-Max-Size",
                "Tus-Checksum-Algorithm",
            ],
            max_age=600,
        ),
    ]
    if settings.api.trust_proxy_headers:
        middlewares.append(Middleware(ProxyHeaderMiddleware))
    middlewares.append(
        Middleware(
            PrefixMiddleware,
            root_path=settings.api.root_path,
            trust_forwarded=settings.api.trust_proxy_headers,
        )
    )

    app = FastAPI(
        title=settings.api.title,
        description=settings.api.description,
        version="0.1.0",
        openapi_url="/api",
        docs_url="/api.html",
        redoc_url=None,
        lifespan=lifespan,
    )
    items_get_model = create_request_model(
        "ItemCollectionUri",
        base_model=ItemsGetRequest,
        extensions=ext["item_collection"],
        request_type="GET",
    )
    api = StacApi(
        app=app,
        router=APIRouter(),
        settings=ext["stac_settings"],
        title=settings.api.title,
        description=settings.api.description,
        extensions=[
            *ext["search"],
            *ext["item_collection"],
            ext["collection_search"],
            *ext["writes"],
            *_ogc_extensions(settings),
        ],
        client=CoreClient(
            settings=settings.catalog,
            title=settings.api.title,
            description=settings.api.description,
            landing_page_id="terracat",
            landing_links=_landing_links(settings),
            collection_links=[
                {
                    "rel": "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector",
                    "type": "application/json",
                    "title": "Vector tilesets (item footprints)",
                    "path": "tiles",
                },
                {
                    "rel": "http://www.opengis.net/def/rel/ogc/1.0/tilesets-map",
                    "type": "application/json",
                    "title": "Map tilesets (mosaic of the items)",
                    "path": "tiles",
                },
            ],
        ),
        response_class=JSONResponse,
        search_get_request_model=create_get_request_model(
            ext["search"], base_model=SearchGetRequest
        ),
        search_post_request_model=create_post_request_model(
            ext["search"], base_model=SearchPostRequest
        ),
        items_get_request_model=items_get_model,
        collections_get_request_model=ext["collection_search"].GET,
        middlewares=middlewares,
        exceptions={},
    )
    _add_upload_routes(api.app, settings)
    _add_map_routes(api.app, settings, readers)
    add_error_handlers(api.app)
    api.app.state.settings = settings
    api.app.state.readers = readers
    return api.app


def _add_upload_routes(app: FastAPI, settings: Settings) -> None:
    """``/upload_sets`` and the tus server at ``/uploads/``, both behind the admin token."""
    admin = admin_dependency(settings.api)
    uploads = UploadsFactory(settings.ingest, settings.jobs, [admin])
    app.include_router(uploads.router)
    on_create, on_complete = uploads.tus_hooks(app.state)
    tus = TusFactory(
        store_dir=settings.ingest.data_dir / "tus",
        max_size=settings.ingest.max_file_bytes,
        expiration_s=settings.ingest.tus_expiration_s,
        on_create=on_create,
        on_complete=on_complete,
        dependencies=[admin],
    )
    app.include_router(tus.router, tags=["Uploads"])


def _add_map_routes(app: FastAPI, settings: Settings, readers: ReaderResources) -> None:
    """Raster maps of the catalogue's items (titiler factories on our reader); public reads."""
    add_tiler_error_handlers(app)
    items = item_tiler_factory(settings.tiler, readers)
    app.include_router(items.router, prefix=items.router_prefix, tags=["Item maps"])
    app.include_router(
        mosaic_router(
            settings.tiler,
            readers,
            [admin_dependency(settings.api)],
            settings.mosaic,
        )
    )
