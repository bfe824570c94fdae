"""The one rights dependency: who is calling, and whether the route's rule lets them in.

``authorize`` runs before every route of the app (create_app passes it as the app's
dependency, so routers added later get it too). It recognises the caller from
``Authorization: Bearer ...``:

- the bootstrap token ``TERRACAT_API_ADMIN_TOKEN`` (deployments from before accounts): admin;
- one of our tokens (``tcat_...``, catalog/accounts/tokens.py);
- a JWT of the configured OpenID Connect issuer (``request.app.state.oidc``);
- nobody, without the header.

Then it applies the rule that server/policy.py gives the route's operation, and leaves the
caller on ``request.state.principal`` for routes that filter by it (``readable_of``). On the
stored asset downloads (rule ``ASSET``) a signed link (catalog/accounts/signing.py) stands for
the right to read that one asset.

Failed attempts are limited (``FailureLimiter``): more than ``TERRACAT_AUTH_FAILURE_LIMIT``
refused bearer tokens from one client address within ``TERRACAT_AUTH_FAILURE_WINDOW_S``, and
the address's further tokens get 429 ``auth.TooManyAttempts`` (with ``Retry-After``) without
being checked, until its failures age out of the window. Tokens verified within the last
``TERRACAT_AUTH_RIGHTS_CACHE_S`` still pass, and requests without a token are never limited;
a valid token is never slowed or counted. Password sign-ins (server/login.py) are limited
alike, per address and per account name. The counts are kept per process: with N processes
behind a balancer, an address gets up to N times the limit.
"""

import hmac
import time
from typing import Annotated, Protocol
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from catalog.accounts.errors import (
    Forbidden,
    InsufficientScope,
    InvalidToken,
    Unauthorized,
)
from catalog.accounts.limits import FailureLimiter
from catalog.accounts.principal import ANONYMOUS, SYSTEM, Principal
from catalog.accounts.repository import AccountRepository
from catalog.accounts.signing import EXPIRY_PARAM, SIGNATURE_PARAM, LinkSigner, asset_path
from catalog.accounts.tokens import looks_like_token
from catalog.accounts.web import readable_of
from catalog.errors import NotFound

from .policy import Rule, rule_of
from .settings import ApiSettings

# auto_error=False: a missing header is the anonymous caller, not an error. Declared on every
# operation of the OpenAPI document as the "bearer" security scheme.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API token (`tcat_...`, see /users/me/tokens) or a JWT of the configured "
    "OpenID Connect issuer. Without it, only public collections are readable.",
)


class JwtVerifier(Protocol):
    """Checks a JWT of an external identity provider (catalog/accounts/oidc.py)."""

    async def principal(self, token: str, accounts: AccountRepository) -> Principal:
        """The principal of a valid JWT; ``auth.InvalidToken`` otherwise."""
        ...


class TokenCache:
    """Principals of verified tokens, kept ``ttl_s`` seconds (revocation's delay)."""

    def __init__(self, ttl_s: float, size: int = 8192) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, token: str) -> Principal | None:
        """A principal verified less than ``ttl_s`` ago."""
        entry = self._entries.get(token)
        if entry is None or time.monotonic() - entry[0] > self.ttl_s:
            return None
        return entry[1]

    def put(self, token: str, principal: Principal) -> None:
        """Remember a verified token."""
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[token] = (time.monotonic(), principal)

    def forget(self, token_id: UUID | None = None, account_id: UUID | None = None) -> None:
        """Drop the cached checks of one token, or of every token of one account."""
        stale = [
            token
            for token, (_, principal) in self._entries.items()
            if (token_id is not None and principal.token_id == token_id)
            or (account_id is not None and principal.account_id == account_id)
        ]
        for token in stale:
            self._entries.pop(token, None)


class Authenticator:
    """Turns a request's credentials into a ``Principal``."""

    def __init__(
        self,
        api: ApiSettings,
        accounts: AccountRepository,
        ttl_s: float = 1.0,
        limiter: FailureLimiter | None = None,
    ) -> None:
        secret = api.admin_token.get_secret_value() if api.admin_token else None
        self._bootstrap = secret.encode() if secret else None
        self._anonymous_writes = api.allow_anonymous_writes and secret is None
        self.accounts = accounts
        self.tokens = TokenCache(ttl_s)
        self.limiter = limiter or FailureLimiter(20, 300)
        self.oidc: JwtVerifier | None = None

    async def principal(
        self, credentials: HTTPAuthorizationCredentials | None, address: str = "unknown"
    ) -> Principal:
        """The caller; ``auth.InvalidToken`` for a token that is given but not valid,
        ``auth.TooManyAttempts`` when ``address`` sent too many of those lately."""
        if credentials is None:
            return SYSTEM if self._anonymous_writes else ANONYMOUS
        token = credentials.credentials.strip()
        if self._bootstrap is not None and hmac.compare_digest(token.encode(), self._bootstrap):
            return SYSTEM
        cached = self.tokens.get(token)
        if cached is not None:
            return cached
        key = f"token@{address}"
        self.limiter.check(key)
        try:
            found = await self._verify(token)
        except InvalidToken:
            self.limiter.fail(key)
            raise
        if found is None:
            self.limiter.fail(key)
            raise InvalidToken("the bearer token is not valid (unknown, revoked or expired)")
        self.tokens.put(token, found)
        return found

    async def _verify(self, token: str) -> Principal | None:
        if looks_like_token(token):
            return await self.accounts.verify_token(token)
        if self.oidc is not None and token.count(".") == 2:
            return await self.oidc.principal(token, self.accounts)
        return None


def client_address(request: Request) -> str:
    """The client's address (the proxy middleware put a trusted proxy's client there)."""
    return request.client.host if request.client is not None else "unknown"


def _collection_id(request: Request) -> str | None:
    params = request.path_params
    value = params.get("collection_id", params.get("collectionId"))
    return str(value) if value is not None else None


def _not_found(collection_id: str) -> NotFound:
    # The words of the repository's own 404: a collection the caller may not read and one
    # that does not exist answer alike.
    return NotFound(f"collection {collection_id!r} does not exist")


async def _enforce(rule: Rule, principal: Principal, request: Request) -> None:
    """Raise unless ``rule`` lets ``principal`` through to this request's route."""
    if rule in (Rule.PUBLIC, Rule.LISTED):
        return
    accounts: AccountRepository = request.app.state.accounts
    if rule in (Rule.READ, Rule.ASSET, Rule.WRITE, Rule.MANAGE):
        collection_id = _collection_id(request)
        if collection_id is None:
            raise RuntimeError(f"rule {rule} on a route without a collection in its path")
        if rule in (Rule.READ, Rule.ASSET):
            readable = await readable_of(request)
            if readable.allows(collection_id):
                return
            if rule is Rule.ASSET and _signed(request, collection_id):
                return
            # The cached list may predate the collection: ask once more before the 404.
            if await accounts.right_on(principal, collection_id) is None:
                raise _not_found(collection_id)
            return
        _need_signed_in(principal)
        if principal.is_admin:  # every right; the route answers for a missing collection
            return
        await accounts.require(principal, collection_id, "write" if rule is Rule.WRITE else "admin")
        return
    _need_signed_in(principal)
    if rule is Rule.SIGNED_IN:
        return
    if rule in (Rule.CREATE, Rule.OWNED):
        if not principal.has_scope("write" if rule is Rule.CREATE else "read"):
            raise InsufficientScope("this token lacks the scope this operation needs")
        return
    if not principal.is_admin:  # Rule.ADMIN, and any rule added without a case here
        raise Forbidden("only an admin (with a token of the 'admin' scope) may do this")


def _signed(request: Request, collection_id: str) -> bool:
    """Whether the request carries a valid signature for exactly this asset; False without
    one, ``asset.InvalidSignature`` or ``asset.SignatureExpired`` for a bad one. Checked from
    the path alone: a refused link learns nothing of what exists."""
    query = request.query_params
    signature, expires = query.get(SIGNATURE_PARAM), query.get(EXPIRY_PARAM)
    if signature is None and expires is None:
        return False
    signer: LinkSigner = request.app.state.signer
    params = request.path_params
    path = asset_path(collection_id, str(params["itemId"]), str(params["assetKey"]))
    signer.verify(path, expires, signature)
    return True


def _need_signed_in(principal: Principal) -> None:
    if not principal.signed_in:
        raise Unauthorized("sign in: send 'Authorization: Bearer <token>'")


async def authorize(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The app's dependency: resolve the caller, apply the route's rule, keep the caller."""
    route = request.scope.get("route")
    return await _authorize(request, credentials, getattr(route, "operation_id", None))


async def authorize_operation(request: Request, operation_id: str) -> Principal:
    """``authorize`` for a lean route, one FastAPI does not run (ogc/vector_tiles.py): the same
    caller from the same header, the rule of ``operation_id``, the same errors."""
    return await _authorize(request, await bearer(request), operation_id)


async def _authorize(
    request: Request, credentials: HTTPAuthorizationCredentials | None, operation_id: str | None
) -> Principal:
    authenticator: Authenticator = request.app.state.authenticator
    principal = await authenticator.principal(credentials, client_address(request))
    request.state.principal = principal
    await _enforce(rule_of(operation_id), principal, request)
    return principal


__all__ = [
    "Authenticator",
    "FailureLimiter",
    "authorize",
    "authorize_operation",
    "bearer",
    "client_address",
]
