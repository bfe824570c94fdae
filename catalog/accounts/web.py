"""The caller of a request, for routes of every package (server/auth.py recognises it).

Routes that list data (searches, collection lists, queryables, mosaics) filter by
``await readable_of(request)`` in their SQL; routes that make rows own them with
``owner_id_of(request)`` and show them only where ``principal_of(request).owns(row_owner)``.
"""

from uuid import UUID

from starlette.requests import Request

from .principal import ANONYMOUS, Principal
from .repository import AccountRepository
from .rights import Readable


def principal_of(request: Request) -> Principal:
    """The caller the rights dependency recognised (anonymous where it did not run)."""
    return getattr(request.state, "principal", ANONYMOUS)


async def readable_of(request: Request) -> Readable:
    """The collections the caller reads, looked up once per request."""
    cached: Readable | None = getattr(request.state, "readable", None)
    if cached is None:
        accounts: AccountRepository = request.app.state.accounts
        cached = await accounts.readable(principal_of(request))
        request.state.readable = cached
    return cached


def owner_id_of(request: Request) -> UUID | None:
    """The account that owns what this request makes (None for the bootstrap admin)."""
    return principal_of(request).account_id
