"""The app's middleware: ours for the proxy path prefix and body limits, and the stack
create_app installs."""

import functools
import inspect
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import attr
import orjson
from fastapi import Depends, params
from fastapi.routing import APIRoute
from stac_fastapi.api.middleware import ProxyHeaderMiddleware
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalog.errors import error_body

from .negotiation import ViewerRedirect
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


class BodyTooLarge(HTTPException):
    """A request body over its route's limit (an HTTPException, so that FastAPI passes it on
    from its body parsing instead of turning it into a 400)."""

    code = "request.BodyTooLarge"

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than this route accepts ({limit} "
                         "bytes; see TERRACAT_LIMITS_MAX_BODY_BYTES in docs/api.md)")  # fmt: skip


@dataclass
class BodyLimits:
    """The largest body of every route: ``default``, or the limit of a route named in
    ``routes`` (filled by create_app once the routes exist)."""

    default: int
    routes: list[tuple[str, re.Pattern[str], int]] = field(default_factory=list)

    def add(self, method: str, path: str, size: int) -> None:
        """Give the route ``METHOD path`` (a route path template) its own limit."""
        self.routes.append((method, compile_path(path)[0], size))

    def of(self, method: str, path: str) -> int:
        """The limit of a request."""
        for route_method, regex, size in self.routes:
            if route_method == method and regex.match(path):
                return size
        return self.default


class BodyLimitMiddleware:
    """Refuse a request body over its route's limit with ``413 request.BodyTooLarge``.

    A declared Content-Length over the limit is refused before anything is read; otherwise
    the bytes are counted as they arrive. FastAPI's own ``max_body_size`` answers the first
    case with a plain-text 413 in place of any response, so no error code would reach clients.
    """

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count the body as the app reads it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root + "/"):
            path = path[len(root) :]
        limit = self.limits.of(scope["method"], path)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdecimal() and int(declared) > limit:
            error = BodyTooLarge(limit)
            await JSONResponse(error_body(error.code, error.detail), 413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


# Downloads of stored files: asset downloads and export archives.
_DOWNLOADS = re.compile(r"/(collections/[^/]+/items/[^/]+/assets/[^/]+|exports/[^/]+)$")


class DownloadsAsStored:
    """Downloads go out as stored: never gzipped (byte ranges and Content-Length are of the
    stored bytes, and HEAD must give the length GET sends). Drops ``gzip`` from their
    ``Accept-Encoding`` before GZipMiddleware reads it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hide the client's encodings from GZipMiddleware on download routes."""
        if scope["type"] == "http" and _DOWNLOADS.search(scope["path"]):
            scope = dict(scope)
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"accept-encoding"]
        await self.app(scope, receive, send)


class OrjsonRequest(Request):
    """A request whose JSON body is read by orjson (its errors are json.JSONDecodeErrors)."""

    async def json(self) -> Any:
        """The body as JSON, parsed once."""
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class OrjsonRoute(APIRoute):
    """A route that parses JSON bodies with orjson: FastAPI parses a body on the event loop
    before the endpoint runs, and the stdlib took ~4x longer (20-40 ms for 0.7 MB).

    Its request models (stac-fastapi's attrs classes, as ``Depends(model)``) are built on the
    event loop too: FastAPI runs a class dependency in a worker thread, a hop that cost more
    than building the model (a fifth of a vector feature page's Python time under load).
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, _models_built_inline(endpoint), **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, given an OrjsonRequest."""
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(OrjsonRequest(request.scope, request.receive))

        return handle


def _models_built_inline(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` with its ``Depends(<attrs class>)`` parameters built by a coroutine (the
    same parameters, so the same OpenAPI); a sync endpoint, or one without them, as it is."""
    if not inspect.iscoroutinefunction(endpoint):
        return endpoint
    signature = inspect.signature(endpoint)
    parameters = []
    for parameter in signature.parameters.values():
        default = parameter.default
        if (
            isinstance(default, params.Depends)
            and inspect.isclass(default.dependency)
            and attr.has(default.dependency)
        ):
            built = Depends(_built(default.dependency), use_cache=default.use_cache)
            parameter = parameter.replace(default=built)
        parameters.append(parameter)
    if all(p is q for p, q in zip(parameters, signature.parameters.values(), strict=True)):
        return endpoint

    async def inline(*args: Any, **kwargs: Any) -> Any:
        return await endpoint(*args, **kwargs)

    inline.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    inline.__name__, inline.__qualname__ = endpoint.__name__, endpoint.__qualname__
    inline.__doc__ = endpoint.__doc__
    return inline


@functools.cache
def _built(model: type[Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """A coroutine building ``model`` from the parameters of its ``__init__``."""

    async def build(**kwargs: Any) -> Any:
        return model(**kwargs)

    build.__signature__ = inspect.signature(model)  # type: ignore[attr-defined]
    build.__name__ = build.__qualname__ = model.__name__
    return build


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
    "Content-Range",
    "Content-Length",
    "Content-Disposition",
    "Accept-Ranges",
    "Last-Modified",
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


def middlewares(api: ApiSettings, bodies: BodyLimits) -> list[Middleware]:
    """Browsers at the root sent to the viewer, body limits, gzip, CORS, path prefix, proxy
    headers, the trusted-proxy gate: StacApi installs them in reverse, so the gate runs first (an
    untrusted peer's forwarding headers are gone before anything reads them), then the proxy
    headers and path prefix, then the rest."""
    stack = [
        Middleware(ViewerRedirect),  # after the prefix and proxy headers: its Location is a link
        Middleware(BodyLimitMiddleware, limits=bodies),
        Middleware(
            GZipMiddleware,
            minimum_size=api.gzip_minimum_size,
            compresslevel=api.gzip_level,
            exclude_content_types=GZIP_EXCLUDED,
        ),
        Middleware(DownloadsAsStored),
        Middleware(
            CORSMiddleware,
            allow_origins=api.cors_origins,
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        ),
    ]
    stack.append(Middleware(PrefixMiddleware, root_path=api.root_path))
    stack.append(Middleware(ProxyHeaderMiddleware))
    stack.append(Middleware(TrustedProxyMiddleware, trusted=api.forwarded_allow_ips))
    return stack
