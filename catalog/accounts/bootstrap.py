"""The first start: a server without an enabled admin account makes one, with a token."""

from typing import Any

from .errors import AccountExists
from .principal import SCOPES
from .repository import AccountRepository, IssuedToken


async def first_admin(accounts: AccountRepository) -> tuple[dict[str, Any], IssuedToken] | None:
    """A new ``admin`` account and its first token, or None when an enabled admin exists.

    A disabled or demoted account may hold the name ``admin``: then ``admin-2``, ``admin-3``...
    """
    if await accounts.admin_exists():
        return None
    for name in ("admin", *(f"admin-{n}" for n in range(2, 100))):
        try:
            account = await accounts.create_account(name, "admin")
        except AccountExists:
            continue
        issued = await accounts.create_token(account["id"], "made at the first start", SCOPES)
        return account, issued
    raise RuntimeError("no free name for the first admin account (admin ... admin-99)")
