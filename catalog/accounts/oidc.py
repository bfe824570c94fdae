"""Bearer JWTs of an OpenID Connect provider: checked against its published keys, mapped to
an account of ours (made on first use).

Keys come from ``TERRACAT_AUTH_OIDC_JWKS_URL`` or the ``jwks_uri`` of the issuer's discovery
document. They are kept for an hour; a token naming a key id we do not hold makes us fetch
them again, but at most once per ``min_refetch_s`` (a flood of made-up key ids cannot make us
hammer the provider). Only RS256 and ES256 are accepted: never ``none``, never a shared-secret
HS* (whose "secret" would be our public key). The account is found by the identity's
``iss|sub``; its name comes from ``TERRACAT_AUTH_OIDC_ACCOUNT_CLAIM``.
"""

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import httpx
import jwt

from catalog.errors import Unavailable
from catalog.settings import AccountSettings

from .errors import AccountExists, InvalidToken
from .principal import Principal
from .repository import AccountRepository

ALGORITHMS = ("RS256", "ES256")
_KEY_TYPES = {"RS256": "RSA", "ES256": "EC"}
LEEWAY_S = 30  # clocks of the provider and of this host may differ a little
MAX_NAME = 200
Fetch = Callable[[str], Awaitable[Mapping[str, Any]]]


async def fetch_json(url: str) -> Mapping[str, Any]:
    """GET a JSON document of the provider (``catalog.Unavailable`` when that fails)."""
    try:
        async with httpx.AsyncClient(timeout=5.0, follow_redirects=True) as http:
            response = await http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise Unavailable(f"the OpenID Connect provider did not answer for {url}: {exc}") from exc
    if not isinstance(document, Mapping):
        raise Unavailable(f"the OpenID Connect provider sent no JSON object from {url}")
    return document


class KeySet:
    """The provider's signing keys by key id, fetched on demand and refreshed sparingly."""

    def __init__(
        self,
        issuer: str,
        jwks_url: str | None,
        fetch: Fetch = fetch_json,
        min_refetch_s: float = 30.0,
        max_age_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url
        self.fetch = fetch
        self.min_refetch_s = min_refetch_s
        self.max_age_s = max_age_s
        self.clock = clock
        self.fetches = 0  # how many times the key set was fetched (for operators and tests)
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched: float | None = None  # when the keys were last fetched (or tried)
        self._lock = anyio.Lock()

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The key of ``kid``; ``auth.InvalidToken`` when the provider has none such."""
        found = self._keys.get(kid)
        if found is not None and not self._stale(self.max_age_s):
            return found
        async with self._lock:  # one fetch at a time; the others then find its keys
            found = self._keys.get(kid)
            # Keys we hold serve until they are old; an unknown id refetches once in a while,
            # and while we hold none (the provider was away) every few seconds.
            wait = self.max_age_s if found is not None else self.min_refetch_s
            if self._stale(wait if self._keys else min(wait, Unavailable.retry_after_s)):
                await self._refresh(keep_on_error=bool(self._keys))
                found = self._keys.get(kid)
            elif not self._keys:
                raise Unavailable("the OpenID Connect provider's keys could not be fetched")
        if found is None:
            raise InvalidToken("the token is signed with a key the identity provider does not list")
        return found

    def _stale(self, age_s: float) -> bool:
        return self._fetched is None or self.clock() - self._fetched >= age_s

    async def _refresh(self, keep_on_error: bool) -> None:
        self._fetched = self.clock()
        self.fetches += 1
        try:
            url = self.jwks_url or await self._discover()
            document = await self.fetch(url)
            keys = signing_keys(document)
        except Unavailable:
            if keep_on_error:  # the provider is away: the keys we hold still serve
                return
            raise
        self._keys = keys

    async def _discover(self) -> str:
        """The ``jwks_uri`` of the issuer's discovery document."""
        url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        document = await self.fetch(url)
        if document.get("issuer") != self.issuer:
            raise Unavailable(f"the discovery document at {url} names another issuer")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise Unavailable(f"the discovery document at {url} has no jwks_uri")
        return jwks_uri


def signing_keys(document: Mapping[str, Any]) -> dict[str | None, jwt.PyJWK]:
    """Signing keys of RS256 and ES256 in a JWKS document, by key id."""
    keys: dict[str | None, jwt.PyJWK] = {}
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise Unavailable("the identity provider's JWKS document has no 'keys' list")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry)
        except (jwt.PyJWTError, ValueError, KeyError, TypeError):
            continue  # a kind of key we do not use (Ed25519, HS...), or a malformed one
        if key.algorithm_name in ALGORITHMS:
            keys[entry.get("kid")] = key
    if len(keys) == 1 and None not in keys:  # a lone key also serves tokens naming no key id
        keys[None] = next(iter(keys.values()))
    return keys


class OidcVerifier:
    """Checks bearer JWTs of one OpenID Connect issuer, and finds or makes their account."""

    def __init__(self, settings: AccountSettings, keys: KeySet | None = None) -> None:
        if not settings.oidc_issuer or not settings.oidc_audience:
            # Without an audience, a token the provider issued to any other client would do.
            raise ValueError(
                "TERRACAT_AUTH_OIDC_ISSUER needs TERRACAT_AUTH_OIDC_AUDIENCE (this API's "
                "client id at the provider)"
            )
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience
        self.account_claim = settings.oidc_account_claim
        self.groups_claim = settings.oidc_groups_claim
        self.admin_group = settings.oidc_admin_group
        self.keys = keys or KeySet(self.issuer, settings.oidc_jwks_url)

    async def claims(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; ``auth.InvalidToken`` for any failed check."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the bearer token is not a readable JWT: {exc}") from exc
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise InvalidToken(f"JWTs must be signed with one of {list(ALGORITHMS)}")
        kid = header.get("kid")
        key = await self.keys.key(kid if isinstance(kid, str) else None)
        if key.algorithm_name != algorithm or key.key_type != _KEY_TYPES[algorithm]:
            raise InvalidToken(f"the token's key {kid!r} is not a key for {algorithm}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            # PyJWT's words say which check failed: expired, not yet valid, audience, issuer...
            raise InvalidToken(f"the JWT is not valid: {exc}") from exc
        return claims

    async def principal(self, token: str, accounts: AccountRepository) -> Principal:
        """The principal of a valid JWT; ``auth.InvalidToken`` otherwise."""
        claims = await self.claims(token)
        groups = _groups(claims.get(self.groups_claim))
        is_admin = self.admin_group is not None and self.admin_group in groups
        account = await self._account(accounts, claims, is_admin)
        if account["disabled"]:
            raise InvalidToken("the account of this identity is disabled")
        scopes = {"read", "write", "admin"} if account["role"] == "admin" else {"read", "write"}
        return Principal(
            account_id=account["id"], name=account["name"], role=account["role"],
            scopes=frozenset(scopes), groups=groups, via="oidc",
            key=f"oidc:{account['id']}:{account['role']}:{','.join(groups)}",
        )  # fmt: skip

    async def _account(
        self, accounts: AccountRepository, claims: Mapping[str, Any], is_admin: bool
    ) -> dict[str, Any]:
        """The identity's account, made on first use; its role follows the admin group."""
        subject = f"{claims['iss']}|{claims['sub']}"
        role = "admin" if is_admin else "user"
        account = await accounts.account_by_subject(subject)
        if account is None:
            name = self._name(claims)
            email = claims.get("email") if isinstance(claims.get("email"), str) else None
            try:
                return await accounts.create_account(name, role=role, email=email, subject=subject)
            except AccountExists as exc:
                account = await accounts.account_by_subject(subject)
                if account is None:  # not a concurrent first use: the name is someone else's
                    raise AccountExists(
                        f"this identity's account name {name!r} (claim "
                        f"{self.account_claim!r}) is another account's already; an admin "
                        "must rename that account before this identity can sign in",
                        name=name,
                    ) from exc
        if self.admin_group is not None and account["role"] != role:
            account = await accounts.update_account(account["id"], role=role)
        return account

    def _name(self, claims: Mapping[str, Any]) -> str:
        value = claims.get(self.account_claim)
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
            raise InvalidToken(
                f"the JWT has no usable {self.account_claim!r} claim to name its account"
            )
        if not value.isprintable():
            raise InvalidToken(f"the JWT's {self.account_claim!r} claim has control characters")
        return value.strip()


def _groups(value: Any) -> tuple[str, ...]:
    """The group names of the groups claim (a list of strings; anything else: none)."""
    if not isinstance(value, list):
        return ()
    return tuple(sorted({g for g in value if isinstance(g, str) and g}))
