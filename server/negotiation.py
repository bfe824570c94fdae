"""Content negotiation at the API root: people's browsers go to the viewer, clients get JSON.

A browser asks for ``text/html`` first (Chromium and Firefox both send
``text/html,application/xhtml+xml,...,*/*;q=0.8``); STAC and OGC clients send nothing,
``*/*``, or ``application/json`` (stac-browser's axios: ``application/json, text/plain,
*/*``). Only a request whose ``Accept`` gives ``text/html`` a higher quality than
``application/json`` is redirected; a tie (``*/*``) keeps the landing page, so no client that
worked before changes.
"""

from urllib.parse import parse_qs

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalog.web import base_url

VIEWER = "viewer/"


def _quality(ranges: list[tuple[str, str, float]], media_type: str) -> float:
    """The quality ``Accept`` gives ``media_type``: that of its most specific matching range."""
    kind, sub = media_type.split("/")
    best, quality = -1, 0.0
    for range_kind, range_sub, q in ranges:
        if range_kind == kind and range_sub == sub:
            specificity = 2
        elif range_kind == kind and range_sub == "*":
            specificity = 1
        elif range_kind == "*" and range_sub == "*":
            specificity = 0
        else:
            continue
        if specificity > best:
            best, quality = specificity, q
    return quality


def _ranges(accept: str) -> list[tuple[str, str, float]]:
    """The media ranges of an ``Accept`` header with their q-values (RFC 9110, 12.5.1);
    malformed parts are skipped."""
    ranges = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        kind, slash, sub = media.lower().partition("/")
        if not slash or not kind or not sub:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        ranges.append((kind, sub, q))
    return ranges


def prefers_html(accept: str | None) -> bool:
    """Whether ``Accept`` prefers HTML to JSON (strictly: ``*/*`` alone is no browser)."""
    if not accept:
        return False
    ranges = _ranges(accept)
    html = _quality(ranges, "text/html")
    return html > 0 and html > _quality(ranges, "application/json")


class ViewerRedirect:
    """``GET /`` (or HEAD) from a browser: ``303 See Other`` to the viewer; every answer of the
    root says ``Vary: Accept``, so a cache never hands a browser's redirect to a JSON client.

    303 rather than 302 or 307: the viewer is another resource that answers the request (a
    page showing this catalogue), not the landing page moved; 303 says exactly that, and it is
    not cached without explicit freshness, like 302. ``?f=json`` keeps the JSON page in a
    browser. The viewer's URL is built as the API's links are (root path, trusted proxy
    headers), so it must run after those middlewares.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Redirect a browser at the root; add ``Vary: Accept`` to the root's responses."""
        if scope["type"] != "http" or not _is_root(scope):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["method"] in ("GET", "HEAD") and prefers_html(headers.get("accept")):
            if "f" not in parse_qs(scope.get("query_string", b"").decode("latin-1")):
                location = base_url(Request(scope)) + VIEWER
                response = Response(status_code=303, headers={"Location": location,
                                                              "Vary": "Accept"})  # fmt: skip
                await response(scope, receive, send)
                return

        async def vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).add_vary_header("Accept")
            await send(message)

        await self.app(scope, receive, vary)


def _is_root(scope: Scope) -> bool:
    """Whether the request is for the API root (below the root path, with or without its
    trailing slash)."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return path in ("", "/")
