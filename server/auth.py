"""The rights dependency: writes (and the routes that expose uploads and jobs) need the token."""

import hmac
from typing import Annotated, Any

from fastapi import Depends, Header

from .errors import AuthError, WritesDisabled
from .settings import ApiSettings


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
