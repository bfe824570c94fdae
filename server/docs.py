"""The API's HTML documentation, ``/api.html``: Swagger UI from files this server serves.

FastAPI's own page loads Swagger UI from a CDN, so it is blank without internet access. The
files come from the fastapi-offline package (its copy of swagger-ui-dist); their URLs hold the
package's version, so browsers may keep them for a year and a new copy gets new URLs.
"""

from importlib import metadata, resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Scope

ASSETS_PACKAGE = "fastapi-offline"
IMMUTABLE = "public, max-age=31536000, immutable"


class AssetFiles(StaticFiles):
    """Static files that never change under their URL: cacheable for a year."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The file (or 304), with a long ``Cache-Control``."""
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            response.headers["Cache-Control"] = IMMUTABLE
        return response


def add_docs(app: FastAPI, docs_url: str) -> None:
    """Serve Swagger UI at ``docs_url``, and its OAuth2 redirect page, from local files only.

    Every URL the page holds starts with the request's root path (a configured sub-path or a
    trusted proxy's ``X-Forwarded-Prefix``), as FastAPI's own page does.
    """
    assets = f"/api-assets/{metadata.version(ASSETS_PACKAGE)}"
    folder = resources.files("fastapi_offline").joinpath("static")
    app.mount(assets, AssetFiles(directory=str(folder)), name="apiAssets")
    openapi_url = app.openapi_url or "/api"
    redirect_url = app.swagger_ui_oauth2_redirect_url

    # Named as FastAPI names its page: stac-fastapi's landing page links it by that name.
    async def swagger_ui_html(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{assets}/swagger-ui.css",
            swagger_favicon_url=f"{root}{assets}/favicon.png",
            oauth2_redirect_url=root + redirect_url if redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def swagger_ui_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()  # inline script only

    app.add_route(docs_url, swagger_ui_html, include_in_schema=False)
    if redirect_url:
        app.add_route(redirect_url, swagger_ui_redirect, include_in_schema=False)
