"""ASGI middleware of our own: the proxy path prefix."""

from starlette.types import ASGIApp, Receive, Scope, Send


class ForwardedPrefixMiddleware:
    """Honour ``X-Forwarded-Prefix`` (a proxy serving us below a sub-path) by extending root_path.

    stac-fastapi's ProxyHeaderMiddleware covers Forwarded and X-Forwarded-Proto/Host/Port but
    not the prefix; links are built from root_path, so this is all the prefix needs.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-forwarded-prefix":
                    prefix = "/" + value.decode("latin-1").strip().strip("/")
                    if prefix != "/" and "//" not in prefix and ".." not in prefix:
                        scope = dict(scope)
                        scope["root_path"] = prefix + scope.get("root_path", "")
                    break
        await self.app(scope, receive, send)
