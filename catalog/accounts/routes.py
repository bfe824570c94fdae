"""The account and token API: ``/users/me``, ``/users/me/tokens``, the CLI's token flow at
``/auth/tokens`` and the admins' ``/accounts``.

Who may call each route is server/policy.py's business (``SIGNED_IN``, ``PUBLIC``, ``ADMIN``);
the routes here check what the rule cannot: a token never gets more scopes than its maker's,
and a user account's tokens never get ``admin``. Revoking a token or disabling an account
drops what this process cached of it (the ``forget`` slot); other processes' caches expire
within ``rights_cache_s``.
"""

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any
from uuid import UUID

from argon2 import PasswordHasher
from fastapi import APIRouter, Body, Depends, Request, Response

from catalog.errors import InvalidParameter
from catalog.settings import AccountSettings
from catalog.web import base_url, json_response

from .documents import (
    AccountCreate,
    AccountPatch,
    TokenCreate,
    TokenGenerate,
    account_document,
    token_document,
)
from .errors import (
    AccountNotFound,
    Forbidden,
    InsufficientScope,
    InvalidRight,
    TokenNotFound,
)
from .holdings import holdings
from .limits import FailureLimiter
from .principal import SCOPES, Principal
from .quotas import usage
from .repository import AccountRepository, check_scopes
from .web import principal_of

# (request, token id, account id): drop cached checks of that token, or of all the account's.
Forget = Callable[[Request, UUID | None, UUID | None], None]
ROLE_SCOPES: dict[str, tuple[str, ...]] = {"admin": SCOPES, "user": ("read", "write")}
# Bytes an account holds that no table records (its unfinished tus uploads): the server
# passes the uploads package's count in, as accounts come before uploads in catalog/.
HeldOutside = Callable[[UUID], Awaitable[int]]


def _accounts(request: Request) -> AccountRepository:
    repo: AccountRepository = request.app.state.accounts
    return repo


_Repo = Annotated[AccountRepository, Depends(_accounts)]


def _account_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise AccountNotFound(f"no account {value!r}") from None


def _token_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise TokenNotFound(f"no token {value!r}") from None


def _own_account(principal: Principal) -> UUID:
    if principal.account_id is None:
        raise Forbidden("the bootstrap token belongs to no account: create one with "
                        "POST /accounts and give it tokens")  # fmt: skip
    return principal.account_id


def _scopes(requested: Sequence[str] | None, allowed: Sequence[str], role: str) -> list[str]:
    """The scopes of a new token: known, within the role's and within ``allowed``."""
    if requested is None:
        return [s for s in ROLE_SCOPES[role] if s in allowed]
    scopes = check_scopes(requested)
    if any(s not in ROLE_SCOPES[role] for s in scopes):
        raise InvalidRight(f"a token of a {role!r} account may have {list(ROLE_SCOPES[role])}")
    if any(s not in allowed for s in scopes):
        raise InsufficientScope("a token cannot give scopes its maker's token lacks")
    return scopes


class AccountsFactory:
    """The account and token routes (see the module docstring)."""

    def __init__(
        self,
        settings: AccountSettings,
        forget: Forget | None = None,
        generate_limit: int = 20,
        generate_window_s: float = 60.0,
        held_outside: HeldOutside | None = None,
    ) -> None:
        self.settings = settings
        self.held_outside = held_outside
        self.forget = forget or (lambda request, token_id, account_id: None)
        self.limiter = FailureLimiter(
            generate_limit, generate_window_s, refusal="too many tokens generated from this address"
        )
        self.hasher = PasswordHasher()

    @property
    def router(self) -> APIRouter:
        """Every route of the factory."""
        router = APIRouter(tags=["Accounts"])
        self._me_routes(router)
        self._generate_routes(router)
        self._admin_routes(router)
        self._admin_token_routes(router)
        return router

    async def _quota(self, repo: AccountRepository, account: dict[str, Any]) -> dict[str, Any]:
        """``used_bytes``, ``limit_bytes`` and ``usage_percent`` (catalog/accounts/quotas.py)."""
        outside = await self.held_outside(account["id"]) if self.held_outside else 0
        found = await usage(repo.engine, account["id"],
                            default_quota_bytes=self.settings.default_quota_bytes,
                            held_outside=outside)  # fmt: skip
        return dataclasses.asdict(found)

    async def _issue(
        self, request: Request, repo: AccountRepository, account: dict[str, Any],
        body: TokenCreate, allowed: Sequence[str],
    ) -> Response:  # fmt: skip
        """A new token of ``account``: its text, shown this once (201)."""
        if account["disabled"]:
            raise InvalidParameter(f"account {account['name']!r} is disabled: enable it first")
        scopes = _scopes(body.scopes, allowed, account["role"])
        issued = await repo.create_token(account["id"], body.description, scopes, body.expiry())
        doc = {**token_document(issued.row), "token": issued.token}
        return json_response(doc, 201)

    async def _me(self, request: Request, repo: AccountRepository) -> dict[str, Any]:
        principal = principal_of(request)
        doc: dict[str, Any] = {
            "id": None, "name": principal.name, "email": None, "role": principal.role,
            "created": None, "via": principal.via,
            "scopes": [s for s in SCOPES if s in principal.scopes],
            "groups": list(principal.groups),
            "collections": await holdings(repo.engine, principal), "quota": None,
        }  # fmt: skip
        if principal.account_id is not None:
            row = await repo.get_account(principal.account_id)
            doc |= {"id": str(row["id"]), "name": row["name"], "email": row["email"],
                    "created": row["created"].isoformat(),
                    "quota": await self._quota(repo, row)}  # fmt: skip
        base = base_url(request)
        doc["links"] = [
            {"rel": "self", "href": f"{base}users/me", "type": "application/json"},
            {"rel": "tokens", "href": f"{base}users/me/tokens", "type": "application/json"},
        ]
        return doc

    def _me_routes(self, router: APIRouter) -> None:
        """The caller's own account and tokens."""

        @router.get("/users/me", operation_id="getMyAccount")
        async def get_my_account(request: Request, repo: _Repo) -> Any:
            return json_response(await self._me(request, repo))

        @router.get("/users/me/tokens", operation_id="getMyTokens")
        async def get_my_tokens(request: Request, repo: _Repo) -> Any:
            account_id = principal_of(request).account_id
            rows = await repo.list_tokens(account_id) if account_id is not None else []
            return json_response({"tokens": [token_document(row) for row in rows]})

        @router.post("/users/me/tokens", status_code=201, operation_id="createMyToken")
        async def create_my_token(request: Request, body: TokenCreate, repo: _Repo) -> Any:
            principal = principal_of(request)
            account = await repo.get_account(_own_account(principal))
            return await self._issue(request, repo, account, body, sorted(principal.scopes))

        @router.delete(
            "/users/me/tokens/{token_id}",
            status_code=204,
            response_class=Response,
            operation_id="revokeMyToken",
        )
        async def revoke_my_token(token_id: str, request: Request, repo: _Repo) -> Response:
            account_id = principal_of(request).account_id
            if account_id is None:
                raise TokenNotFound(f"no token {token_id} among the caller's")
            revoked = await repo.revoke_token(_token_id(token_id), account_id)
            self.forget(request, revoked["id"], None)
            return Response(status_code=204)

    def _generate_routes(self, router: APIRouter) -> None:
        """Tokens a program asks for without credentials, usable once an account claims them."""

        @router.post("/auth/tokens/generate", status_code=201, operation_id="generateToken")
        async def generate_token(
            request: Request, repo: _Repo, body: Annotated[TokenGenerate | None, Body()] = None
        ) -> Any:
            self.limiter.charge(request.client.host if request.client else "unknown")
            await repo.expire_unclaimed()
            ttl = dt.timedelta(seconds=self.settings.unclaimed_token_ttl_s)
            expires = dt.datetime.now(dt.UTC) + ttl
            description = body.description if body is not None else ""
            issued = await repo.create_token(None, description, ("read", "write"), expires)
            claim = f"{base_url(request)}auth/tokens/{issued.id}/claim"
            doc = {"id": str(issued.id), "token": issued.token, "expires": expires.isoformat(),
                   "claim": claim,
                   "links": [{"rel": "claim", "href": claim, "method": "POST"}]}  # fmt: skip
            return json_response(doc, 201)

        @router.post("/auth/tokens/{token_id}/claim", operation_id="claimToken")
        async def claim_token(token_id: str, request: Request, repo: _Repo) -> Any:
            principal = principal_of(request)
            account_id = _own_account(principal)
            row = await repo.get_token(_token_id(token_id))
            if row["account_id"] is not None:
                raise TokenNotFound(f"no unclaimed token {token_id}")
            if any(s not in principal.scopes for s in row["scopes"]):
                raise InsufficientScope("claiming this token needs a token with its scopes "
                                        f"{list(row['scopes'])}")  # fmt: skip
            claimed = await repo.claim_token(row["id"], account_id)
            return json_response(token_document(claimed))

    def _admin_routes(self, router: APIRouter) -> None:
        """Admins list, create, read and change accounts."""

        @router.get("/accounts", operation_id="getAccounts")
        async def get_accounts(request: Request, repo: _Repo) -> Any:
            base = base_url(request)
            rows = await repo.list_accounts()
            return json_response({"accounts": [account_document(base, row) for row in rows]})

        @router.post("/accounts", status_code=201, operation_id="createAccount")
        async def create_account(request: Request, body: AccountCreate, repo: _Repo) -> Any:
            hashed = await self._hash(body.password)
            row = await repo.create_account(body.name, body.role, body.email, body.quota_bytes,
                                            password_hash=hashed)  # fmt: skip
            doc = account_document(base_url(request), row)
            return json_response(doc, 201, {"Location": doc["links"][0]["href"]})

        @router.get("/accounts/{account_id}", operation_id="getAccount")
        async def get_account(account_id: str, request: Request, repo: _Repo) -> Any:
            row = await repo.get_account(_account_id(account_id))
            doc = account_document(base_url(request), row)
            return json_response({**doc, "quota": await self._quota(repo, row)})

        @router.patch("/accounts/{account_id}", operation_id="patchAccount")
        async def patch_account(
            account_id: str, request: Request, body: AccountPatch, repo: _Repo
        ) -> Any:
            values = body.changes()
            if "password" in values:
                values["password_hash"] = await self._hash(values.pop("password"))
            row = await repo.update_account(_account_id(account_id), **values)
            self.forget(request, None, row["id"])
            return json_response(account_document(base_url(request), row))

    async def _hash(self, password: str | None) -> str | None:
        # argon2 takes tens of milliseconds of CPU on purpose: off the event loop.
        return None if password is None else await asyncio.to_thread(self.hasher.hash, password)

    def _admin_token_routes(self, router: APIRouter) -> None:
        """Admins list, make and revoke any account's tokens."""

        @router.get("/accounts/{account_id}/tokens", operation_id="getAccountTokens")
        async def get_account_tokens(account_id: str, repo: _Repo) -> Any:
            row = await repo.get_account(_account_id(account_id))
            rows = await repo.list_tokens(row["id"])
            return json_response({"tokens": [token_document(token) for token in rows]})

        @router.post(
            "/accounts/{account_id}/tokens", status_code=201, operation_id="createAccountToken"
        )
        async def create_account_token(
            account_id: str, request: Request, body: TokenCreate, repo: _Repo
        ) -> Any:
            account = await repo.get_account(_account_id(account_id))
            return await self._issue(request, repo, account, body, SCOPES)

        @router.delete(
            "/accounts/{account_id}/tokens/{token_id}",
            status_code=204,
            response_class=Response,
            operation_id="revokeAccountToken",
        )
        async def revoke_account_token(
            account_id: str, token_id: str, request: Request, repo: _Repo
        ) -> Response:
            account = await repo.get_account(_account_id(account_id))
            revoked = await repo.revoke_token(_token_id(token_id), account["id"])
            self.forget(request, revoked["id"], None)
            return Response(status_code=204)
