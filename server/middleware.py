"""ASGI middleware of our own: the proxy path prefix."""

from starlette.types import ASGIApp, Receive, Scope, Send


class PrefixMiddleware:
    """Set root_path from the configured sub-path and from ``X-Forwarded-Prefix``.

    Links are built from root_path. The configured path applies when the ASGI server did not
    set one; a proxy's ``X-Forwarded-Prefix`` (not covered by stac-fastapi's
    ProxyHeaderMiddleware) goes in front of it when ``trust_forwarded`` is on.
    """

    def __init__(self, app: ASGIApp, root_path: str = "", trust_forwarded: bool = False) -> None:
        self.app = app
        self.root_path = root_path
        self.trust_forwarded = trust_forwarded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Adjust root_path, then call the app."""
        if scope["type"] == "http":
            root = scope.get("root_path") or self.root_path
            if self.trust_forwarded:
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
