"""The app's middleware: ours for the proxy path prefix, and the stack create_app installs."""

from stac_fastapi.api.middleware import ProxyHeaderMiddleware
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from .proxies import TrustedProxyMiddleware
from .settings import ApiSettings


class PrefixMiddleware:
    """Set root_path from the configured sub-path and from ``X-Forwarded-Prefix``.

    Links are built from root_path. The configured path applies when the ASGI server did not
    set one; a proxy's ``X-Forwarded-Prefix`` (not covered by stac-fastapi's
    ProxyHeaderMiddleware) goes in front of it. Only a trusted proxy's header is still there
    (``TrustedProxyMiddleware`` runs first).
    """

    def __init__(self, app: ASGIApp, root_path: str = "") -> None:
        self.app = app
        self.root_path = root_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Adjust root_path, then call the app."""
        if scope["type"] == "http":
            root = scope.get("root_path") or self.root_path
            for name, value in scope["headers"]:
                if name == b"x-forwarded-prefix":
                    prefix = "/" + value.decode("latin-1").strip().strip("/")
                    if prefix != "/" and "//" not in prefix and ".." not in prefix:
                        root = prefix + root
                    break
            if root != scope.get("root_path", ""):
                scope = dict(scope)
                scope["root_path"] = root
        await self.app(scope, receive, send)


# Archives and images are compressed already: gzip would only add time and lose Content-Length
# on downloads. Vector tiles are gzipped by their route (ogc/vector_tiles.py: a cheap level,
# an ETag per encoding).
GZIP_EXCLUDED = (
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
)
# Response headers browsers may read: tus clients need these (tus 1.0.0 "Browser clients").
EXPOSED_HEADERS = [
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
]


def middlewares(api: ApiSettings) -> list[Middleware]:
    """gzip, CORS, path prefix, proxy headers, the trusted-proxy gate: StacApi installs them in
    reverse, so the gate runs first (an untrusted peer's forwarding headers are gone before
    anything reads them), then the proxy headers and path prefix, then everything else."""
    stack = [
        Middleware(
            GZipMiddleware,
            minimum_size=api.gzip_minimum_size,
            exclude_content_types=GZIP_EXCLUDED,
        ),
        Middleware(
            CORSMiddleware,
            allow_origins=api.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        ),
    ]
    stack.append(Middleware(PrefixMiddleware, root_path=api.root_path))
    stack.append(Middleware(ProxyHeaderMiddleware))
    stack.append(Middleware(TrustedProxyMiddleware, trusted=api.forwarded_allow_ips))
    return stack
