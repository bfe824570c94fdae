"""The app factory: ``uvicorn --factory server.app:create_app``. Nothing is built at import.

The app is a list of parts (server/parts.py): create_app names them, StacApi registers their
routes in that order, and their links, request models, error handlers and lifespan needs are
merged here.
"""

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse
from stac_fastapi.api.app import StacApi
from stac_fastapi.types.config import ApiSettings as StacApiSettings

from catalog.accounts.repository import AccountRepository
from catalog.accounts.signing import LinkSigner, signing_secret
from catalog.db.engine import create_engine
from catalog.db.reads import ReadPool
from catalog.jobs.queue import JobRepository
from catalog.stac.client import CoreClient
from catalog.stac.repository import CatalogRepository
from catalog.storage import build_storage
from catalog.storage.base import Storage
from catalog.uploads.repository import UploadRepository
from catalog.vector.repository import VectorRepository
from ogc.features import describe_feature_answers
from tiler.readers.pool import DatasetPool
from tiler.readers.shared import ReaderResources

from . import parts as api_parts
from .accounts import accounts_part
from .auth import Authenticator, FailureLimiter, authorize
from .cubes import cubes_part
from .database import resolve_url
from .docs import add_docs
from .errors import add_error_handlers
from .features import (
    cube_series_part,
    exports_part,
    features_part,
    item_maps_part,
    mosaics_part,
    pictures_part,
    processes_part,
    styles_part,
    tiles_part,
    uploads_part,
    vector_stats_part,
    vector_tiles_part,
)
from .health import health
from .login import login_part
from .memory import trim_allocator, tune_allocator, tune_collector
from .middleware import BodyLimits, OrjsonRoute, middlewares
from .openapi import amend_openapi, describe_fields
from .openapi_errors import describe_errors
from .parts import ApiPart
from .rights_routes import rights_part
from .settings import Settings
from .stac import (
    assets_part,
    collections_part,
    core_part,
    items_part,
    search_part,
    stac_api_settings,
    writes_part,
)
from .viewer.routes import viewer_part

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the Terracat ASGI app. The database is connected in the lifespan, not here."""
    settings = settings or Settings()
    # Read by GDAL when its block cache is first used: before this process renders any tile.
    os.environ.setdefault("GDAL_CACHEMAX", str(settings.tiler.gdal_cache_mb))
    stac_settings = stac_api_settings(settings.api)
    # Where assets and archives are stored: built once, passed to every part that reads or
    # writes them (and carried to the jobs' children in their plans).
    storage = build_storage(settings.storage, settings.ingest.data_dir)
    # The tiler's open files and grid cache: one set per app, closed with it.
    tiler = settings.tiler
    readers = ReaderResources(
        storage,
        datasets=DatasetPool(tiler.open_files, tiler.open_file_idle_s, tiler.spare_handle_idle_s),
    )
    bodies = BodyLimits(settings.limits.max_body_bytes)  # routes' own limits: limit_bodies
    parts = _parts(settings, stac_settings, readers, storage)
    app = FastAPI(
        title=settings.api.title,
        description=settings.api.description,
        version="0.1.0",
        openapi_url="/api",
        docs_url=None,  # add_docs: FastAPI's page would load Swagger UI from a CDN
        redoc_url=None,
        lifespan=_lifespan(settings, parts, readers),
        # Every route, of every part and of routers added later, runs the rights check.
        dependencies=[Depends(authorize)],
    )
    api = StacApi(
        app=app,
        router=APIRouter(route_class=OrjsonRoute),  # the STAC core routes: /search...
        settings=stac_settings,
        title=settings.api.title,
        description=settings.api.description,
        extensions=api_parts.extensions(parts),
        client=_client(settings, parts),
        response_class=JSONResponse,
        middlewares=middlewares(settings.api, bodies),
        exceptions={},
        # StacApi makes it the route's endpoint, so FastAPI hands it the Request its type omits.
        health_check=cast(Callable[[], Awaitable[dict[str, Any]]], health),
        **api_parts.request_models(parts),
    )
    add_docs(api.app, "/api.html")
    api_parts.name_operations(api.app, parts)
    api_parts.limit_bodies(api.app, parts, bodies)
    describe_fields(api.app)
    amend_openapi(api.app, describe_feature_answers)  # vector collections' features
    describe_errors(api.app)
    add_error_handlers(api.app, api_parts.error_handlers(parts))
    api.app.state.settings = settings
    api.app.state.readers = readers
    api.app.state.storage = storage
    return api.app


def _parts(
    settings: Settings, stac_settings: StacApiSettings, readers: ReaderResources, storage: Storage
) -> list[ApiPart]:
    """Every API part, in the order their routes are registered."""
    return [
        core_part(),
        search_part(),
        items_part(),
        assets_part(),
        collections_part(),
        writes_part(settings.catalog, stac_settings, settings.limits, settings.auth),
        rights_part(),
        processes_part(settings, storage),
        features_part(settings),
        tiles_part(settings),
        vector_tiles_part(settings),
        vector_stats_part(settings),
        cube_series_part(settings, storage),
        styles_part(settings),
        pictures_part(settings),
        exports_part(),
        uploads_part(settings, storage),
        item_maps_part(settings, readers),
        mosaics_part(settings, readers),
        cubes_part(),
        accounts_part(settings),
        login_part(),
        viewer_part(settings.viewer),
    ]


def _client(settings: Settings, parts: Sequence[ApiPart]) -> CoreClient:
    """The STAC client, with the links and link hooks the parts declare."""
    return CoreClient(
        settings=settings.catalog,
        limits=settings.limits,
        title=settings.api.title,
        description=settings.api.description,
        landing_page_id="terracat",
        landing_links=api_parts.landing_links(parts),
        collection_links=api_parts.collection_links(parts),
        item_hooks=api_parts.item_hooks(parts),
        collection_hooks=api_parts.collection_hooks(parts),
        collection_items=api_parts.collection_items(parts),
    )


def _lifespan(
    settings: Settings, parts: Sequence[ApiPart], readers: ReaderResources
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Connect the catalogue's repositories, then let every part put what it needs on state."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(resolve_url(settings.db), settings.db)
        state = app.state
        counting = settings.catalog
        state.repository = CatalogRepository(
            engine, counting.count_limit, counting.count_max_cost, counting.count_stale_limit,
            counting.count_stale_timeout_ms,
        )  # fmt: skip
        # Tiles' single reads, straight through psycopg (catalog/db/reads.py).
        state.reads = ReadPool(engine, settings.db, settings.db.read_pool_size)
        state.jobs = JobRepository(engine)
        state.vectors = VectorRepository(engine)
        state.uploads = UploadRepository(engine, state.jobs)
        state.accounts = AccountRepository(engine, settings.auth.rights_cache_s)
        auth = settings.auth
        state.authenticator = Authenticator(
            settings.api, state.accounts, auth.rights_cache_s,
            FailureLimiter(auth.failure_limit, auth.failure_window_s),
        )  # fmt: skip
        if auth.oidc_issuer:
            # imported only here: PyJWT and cryptography add ~18 MB to a worker that has no use
            from catalog.accounts.oidc import OidcVerifier

            state.authenticator.oidc = OidcVerifier(auth)
        configured = (
            auth.signing_secret.get_secret_value().encode() if auth.signing_secret else None
        )
        state.signer = LinkSigner(await signing_secret(engine, configured), auth.signed_link_ttl_s)
        # anyio's default is 40 threads; rendering is CPU-bound, and each thread that renders
        # holds GDAL and PROJ state of its own (memory that more threads only multiply).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api.threads
        tune_allocator(settings.api.malloc_mmap_threshold)
        # each tick first closes the files left open by a burst of tiles, then trims
        trimming = asyncio.create_task(
            trim_allocator(settings.api.malloc_trim_interval_s, readers.datasets.reap)
        )
        api_parts.start(parts, state)
        # The ~280,000 objects of the app (routes, models, settings, libraries) live as long as
        # the worker: out of the collector's generations, a full collection no longer walks
        # them (50-65 ms each, a stall of every request in flight; tiles at c=8 had a p95 of
        # 125 ms against a p50 of 16 ms).
        gc.freeze()
        tune_collector(settings.api.gc_threshold)
        try:
            yield
        finally:
            trimming.cancel()
            await state.reads.close()
            await engine.dispose()
            readers.close()

    return lifespan
