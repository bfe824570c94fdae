"""Accounts in the app (the ``/users/me``, ``/auth/tokens`` and ``/accounts`` routes) and the
first start's admin account."""

import asyncio
from uuid import UUID

from fastapi import APIRouter, FastAPI, Request

from catalog.accounts.bootstrap import first_admin
from catalog.accounts.repository import AccountRepository
from catalog.accounts.routes import AccountsFactory
from catalog.db.engine import create_engine

from .auth import Authenticator
from .parts import ApiPart, routers_part
from .settings import Settings


def _forget(request: Request, token_id: UUID | None, account_id: UUID | None) -> None:
    """A revoked token or a changed account fails on this process's next request."""
    authenticator: Authenticator = request.app.state.authenticator
    authenticator.tokens.forget(token_id, account_id)


def accounts_part(settings: Settings) -> ApiPart:
    """The caller's account and tokens, the CLI's token flow, and the admins' accounts."""
    factory = AccountsFactory(settings.auth, _forget)

    def routers(app: FastAPI) -> list[APIRouter]:
        return [factory.router]

    return routers_part(
        "accounts",
        routers,
        landing_links=[
            {
                "rel": "account",
                "type": "application/json",
                "title": "Your account, rights and quota (signed in)",
                "path": "users/me",
            },
            {
                "rel": "tokens",
                "type": "application/json",
                "title": "Your API tokens (signed in)",
                "path": "users/me/tokens",
            },
        ],  # fmt: skip
        start=lambda state: factory.limiter.clear(),
    )


def first_start(url: str, settings: Settings) -> str | None:
    """Make the first admin account when there is no enabled one; its token's text, once."""

    async def run() -> str | None:
        engine = create_engine(url, settings.db)
        try:
            made = await first_admin(AccountRepository(engine))
        finally:
            await engine.dispose()
        return made[1].token if made is not None else None

    return asyncio.run(run())
