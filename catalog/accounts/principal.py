"""Who is calling: an account (through a token or an external identity), or nobody."""

from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

Role = Literal["admin", "user", "anonymous"]
Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
# Rights on a collection, weakest first; a token's scopes cap them (``Principal.cap``).
RIGHTS: tuple[str, ...] = ("read", "write", "admin")


@dataclass(frozen=True)
class Principal:
    """The caller of one request.

    ``scopes`` are the token's: an admin account's token with only ``read`` reads like any
    reader. ``groups`` come from an external identity's claims and match group grants.
    ``via`` says how the caller was recognised (``anonymous``, ``token``, ``bootstrap``,
    ``oidc``, ``system`` for the worker and the CLI).
    """

    account_id: UUID | None
    name: str
    role: Role
    scopes: frozenset[str]
    groups: tuple[str, ...] = ()
    token_id: UUID | None = None
    via: str = "anonymous"
    key: str = field(default="", compare=False)  # cache key of its rights

    @property
    def signed_in(self) -> bool:
        """Recognised by a token or an identity (the ``accounts`` visibility reads)."""
        return self.role != "anonymous"

    @property
    def is_admin(self) -> bool:
        """An admin account acting with the ``admin`` scope: every right on everything."""
        return self.role == "admin" and "admin" in self.scopes

    def has_scope(self, scope: str) -> bool:
        """Whether the token allows ``scope`` (``admin`` implies ``write`` implies ``read``)."""
        return any(SCOPES.index(s) >= SCOPES.index(scope) for s in self.scopes if s in SCOPES)

    @property
    def cap(self) -> int:
        """Index in RIGHTS of the strongest collection right the token lets its account use
        (-1: none). ``write`` tokens use every right the account holds, ``admin`` on its own
        collections included; ``read`` tokens only read. The ``admin`` scope is about the
        admin role (every collection), not needed to manage one's own collections."""
        if self.has_scope("write"):
            return RIGHTS.index("admin")
        return RIGHTS.index("read") if self.has_scope("read") else -1

    def owns(self, owner_id: UUID | None) -> bool:
        """Whether a row owned by ``owner_id`` is this caller's (admins own everything)."""
        return self.is_admin or (self.account_id is not None and owner_id == self.account_id)


ANONYMOUS = Principal(None, "anonymous", "anonymous", frozenset({"read"}), key="anonymous")
# The worker, the CLI and the bootstrap admin token (TERRACAT_API_ADMIN_TOKEN).
SYSTEM = Principal(None, "system", "admin", frozenset(SCOPES), via="system", key="system")
