"""``/viewer/``: the map viewer's page, its built files and its configuration.

The page and its scripts are built at set-up time (scripts/bootstrap.sh runs ``npm ci`` and
``node build.mjs`` here) into ``TERRACAT_VIEWER_BUNDLE_DIR``; nothing is loaded from outside
this server. Built files carry a digest in their names, so browsers keep them for a year; the
page itself and its configuration are revalidated on every load.
"""

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from catalog.errors import CatalogError, NotFound
from tiler.presets import ALIASES, PRESETS, SENTINEL2_BANDS

from ..parts import ApiPart, routers_part
from .settings import ViewerSettings

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
          ".png": "image/png", ".svg": "image/svg+xml", ".txt": "text/plain"}  # fmt: skip


class ViewerNotBuilt(CatalogError):
    """The viewer's page was not built on this machine (``make bootstrap`` builds it)."""

    code = "viewer.NotBuilt"
    status = 503


class ViewerBaseMap(BaseModel):
    """The base map under the data: none, an XYZ template or a TileJSON URL."""

    kind: str
    url: str
    attribution: str


class ViewerPreset(BaseModel):
    """A rendering preset of the raster tiles and the band common names it needs."""

    name: str
    title: str
    bands: list[list[str]]  # per needed band, the common names that match it


class ViewerConfig(BaseModel):
    """What the page needs to know before it calls the API."""

    title: str
    logo_url: str
    base_map: ViewerBaseMap
    presets: list[ViewerPreset]
    sentinel2_bands: dict[str, str]  # band id -> common name (datacube layers named B04...)


def viewer_config(settings: ViewerSettings) -> ViewerConfig:
    """The page's configuration from the settings and the tiler's presets."""
    presets = [
        ViewerPreset(
            name=p.name, title=p.title, bands=[list(ALIASES.get(b, (b,))) for b in p.bands]
        )
        for p in PRESETS.values()
    ]
    base_map = ViewerBaseMap(
        kind=settings.base_map_kind(), url=settings.base_map,
        attribution=settings.base_map_attribution,
    )  # fmt: skip
    return ViewerConfig(
        title=settings.title, logo_url=settings.logo_url, base_map=base_map, presets=presets,
        sentinel2_bands=SENTINEL2_BANDS,
    )  # fmt: skip


def _built(settings: ViewerSettings, *parts: str) -> Path:
    folder = settings.bundle_dir
    if not (folder / "index.html").is_file():
        raise ViewerNotBuilt(
            f"the viewer is not built in {folder}: run `make bootstrap` (npm ci and "
            "node build.mjs in server/viewer)"
        )
    return folder.joinpath(*parts)


def _built_name(path: Any) -> bool:
    return (
        isinstance(path, str)
        and path.startswith("assets/")
        and bool(_FILE_NAME.match(path.removeprefix("assets/")))
    )


def page_map_files(settings: ViewerSettings) -> Callable[[], dict[str, str] | None]:
    """Where the feature pages' map script and style sheet are, below the API root (the build
    names them in ``features-page.json``, read at each page: a rebuild renames them); None
    while the viewer is not built."""

    def files() -> dict[str, str] | None:
        try:
            names = json.loads((settings.bundle_dir / "features-page.json").read_text())
        except (OSError, ValueError):
            return None
        paths = {key: names.get(key) if isinstance(names, dict) else None
                 for key in ("script", "style")}  # fmt: skip
        if not all(_built_name(path) for path in paths.values()):
            return None
        return {key: f"viewer/{path}" for key, path in paths.items()}

    return files


def viewer_part(settings: ViewerSettings) -> ApiPart:
    """The viewer's page, files and configuration (public: they hold no data)."""
    config = viewer_config(settings)

    async def page() -> FileResponse:
        """The viewer's page."""
        path = _built(settings, "index.html")
        return FileResponse(path, media_type="text/html", headers={"Cache-Control": REVALIDATE})

    async def configuration() -> JSONResponse:
        """The viewer's settings: title, logo, base map and the tiler's presets."""
        return JSONResponse(config.model_dump(), headers={"Cache-Control": REVALIDATE})

    async def asset(name: str) -> FileResponse:
        """A built script or style sheet; its name changes with its content."""
        path = _built(settings, "assets", name)
        if not _FILE_NAME.match(name) or not path.is_file():
            raise NotFound(f"no viewer file {name[:80]!r}")
        media_type = _TYPES.get(path.suffix, "application/octet-stream")
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": IMMUTABLE})

    def routers(app: FastAPI) -> list[APIRouter]:
        router = APIRouter(tags=["Viewer"], include_in_schema=False)
        common: dict[str, Any] = {"methods": ["GET"]}
        router.add_api_route("/viewer/", page, operation_id="getViewer", **common)
        router.add_api_route(
            "/viewer/config.json", configuration, operation_id="getViewerConfig",
            response_model=ViewerConfig, **common,
        )  # fmt: skip
        router.add_api_route(
            "/viewer/assets/{name}", asset, operation_id="getViewerAsset", **common
        )
        return [router]

    return routers_part(
        "viewer", routers,
        landing_links=[{"rel": "alternate", "type": "text/html", "title": "Map viewer",
                        "path": "viewer/"}],
    )  # fmt: skip
