"""``POST /auth/login``: a name and password for a short-lived token (the browser's session).

The answer to an unknown name and to a wrong password is the same 401, after the same
password check. Failed sign-ins are limited per client address and per account name
(catalog/accounts/limits.py, ``FailureLimiter``): beyond ``TERRACAT_AUTH_FAILURE_LIMIT`` within
``TERRACAT_AUTH_FAILURE_WINDOW_S`` the next ones get 429 without being checked, right
password or not (else guessing would go on), until the failures age out.
"""

import datetime as dt
from typing import Any
from uuid import UUID

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field, ValidationError

from catalog.accounts.errors import Unauthorized
from catalog.accounts.passwords import MAX_PASSWORD
from catalog.accounts.repository import AccountRepository
from catalog.errors import InvalidParameter

from .auth import Authenticator, client_address
from .parts import ApiPart, routers_part

SESSION = dt.timedelta(hours=12)
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


class LoginRequest(BaseModel):
    """An account's name and password."""

    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class SessionAccount(BaseModel):
    """The account signed in."""

    id: UUID
    name: str
    role: str


class LoginResponse(BaseModel):
    """A token to send as ``Authorization: Bearer <token>`` until it expires."""

    token: str
    token_type: str = "Bearer"
    token_id: UUID
    expires: dt.datetime
    expires_in: int = Field(description="Seconds until the token expires.")
    scopes: list[str]
    account: SessionAccount


async def _credentials(request: Request) -> LoginRequest:
    """The body as JSON or as a form; ``request.InvalidParameter`` when it is neither."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type in _FORMS:
            form = await request.form()
            body: Any = {k: v for k, v in form.items() if isinstance(v, str)}
        else:
            body = await request.json()
        return LoginRequest.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidParameter(f"a sign-in needs a name and a password: {problems}") from exc
    except ValueError as exc:  # not JSON (json and orjson errors are ValueErrors)
        raise InvalidParameter("send a JSON object or a form with 'name' and 'password'") from exc


def _body_schema() -> dict[str, Any]:
    schema = LoginRequest.model_json_schema()
    return {
        "required": True,
        "content": {kind: {"schema": schema} for kind in ("application/json", _FORMS[0])},
    }


async def login(request: Request) -> LoginResponse:
    """Sign in with a name and password; the answer's token serves 12 hours."""
    given = await _credentials(request)
    authenticator: Authenticator = request.app.state.authenticator
    accounts: AccountRepository = request.app.state.accounts
    keys = (f"login@{client_address(request)}", f"login:{given.name}")
    attempt = authenticator.limiter.charge(*keys)
    try:
        account = await accounts.sign_in(given.name, given.password)
    except BaseException:  # the database was away, say: no guess was checked
        authenticator.limiter.refund(attempt, *keys)
        raise
    if account is None:
        raise Unauthorized("wrong account name or password")
    authenticator.limiter.refund(attempt, *keys)
    expires = dt.datetime.now(dt.UTC) + SESSION
    issued = await accounts.create_token(
        account["id"], "browser session", ("read", "write"), expires=expires
    )
    return LoginResponse(
        token=issued.token, token_id=issued.id, expires=expires,
        expires_in=int(SESSION.total_seconds()), scopes=issued.row["scopes"],
        account=SessionAccount.model_validate(account),
    )  # fmt: skip


def login_part() -> ApiPart:
    """The password sign-in of the browser pages."""

    def routers(app: FastAPI) -> list[APIRouter]:
        router = APIRouter(tags=["Accounts"])
        router.add_api_route(
            "/auth/login", login, methods=["POST"], operation_id="login",
            response_model=LoginResponse, summary="Sign in with a name and password",
            openapi_extra={"requestBody": _body_schema()},
        )  # fmt: skip
        return [router]

    return routers_part("login", routers)
