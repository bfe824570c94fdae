"""Errors of accounts, tokens, rights and quotas (codes in docs/errors.md)."""

from typing import Any

from catalog.errors import CatalogError, Conflict, InvalidParameter, NotFound


class Unauthorized(CatalogError):
    """No credentials where they are needed, or credentials that are not valid (any reason:
    unknown, revoked, expired, unclaimed, a disabled account, a JWT that fails a check)."""

    code = "auth.Unauthorized"
    status = 401

    def __init__(self, description: str, **detail: Any) -> None:
        super().__init__(description, **detail)
        self.headers = {"WWW-Authenticate": 'Bearer realm="terracat"'}


class InvalidToken(Unauthorized):
    """A bearer token was given and refused."""

    code = "auth.InvalidToken"

    def __init__(self, description: str, **detail: Any) -> None:
        super().__init__(description, **detail)
        self.headers = {"WWW-Authenticate": 'Bearer realm="terracat", error="invalid_token"'}


class Forbidden(CatalogError):
    """A caller who may see the resource but not do this to it (a write without the right)."""

    code = "auth.Forbidden"
    status = 403


class InsufficientScope(Forbidden):
    """The token lacks the scope (``write``, ``admin``) the operation needs."""

    code = "auth.InsufficientScope"


class TooManyAttempts(CatalogError):
    """Repeated failed sign-ins or token checks from one account or address."""

    code = "auth.TooManyAttempts"
    status = 429

    def __init__(self, description: str, retry_after_s: int, **detail: Any) -> None:
        super().__init__(description, **detail)
        self.headers = {"Retry-After": str(retry_after_s)}


class AccountNotFound(NotFound):
    """No account with that id or name."""

    code = "account.NotFound"


class AccountExists(Conflict):
    """An account with that name (or external subject) exists already."""

    code = "account.Exists"


class TokenNotFound(NotFound):
    """No token with that id among the caller's."""

    code = "token.NotFound"


class InvalidRight(InvalidParameter):
    """A visibility, right, role or scope that is not one of the known names."""

    code = "rights.Invalid"


class QuotaExceeded(CatalogError):
    """Storing this would take the account over its storage quota; nothing was stored."""

    code = "quota.Exceeded"
    status = 413
