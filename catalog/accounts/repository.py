"""Accounts, tokens, grants and collection visibility in PostgreSQL."""

import datetime as dt
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.db.engine import connect
from catalog.db.models import Account, ApiToken, Collection, CollectionGrant
from catalog.errors import NotFound

from .errors import AccountExists, AccountNotFound, Forbidden, InvalidRight, TokenNotFound
from .passwords import Passwords
from .principal import RIGHTS, SCOPES, Principal
from .rights import Readable, RightsCache, collection_right, readable
from .tokens import new_token, parse_token, secret_matches

VISIBILITIES = ("public", "accounts", "private")
ROLES = ("admin", "user")
_ACCOUNT_COLUMNS = (
    Account.id, Account.name, Account.email, Account.role, Account.disabled,
    Account.quota_bytes, Account.subject, Account.created,
)  # fmt: skip
_TOKEN_COLUMNS = (
    ApiToken.id, ApiToken.account_id, ApiToken.description, ApiToken.scopes, ApiToken.created,
    ApiToken.last_used, ApiToken.expires, ApiToken.revoked, ApiToken.claimed,
)  # fmt: skip
# last_used is written at most this often per token: a token check must not write every time.
_TOUCH_EVERY_S = 60.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def check_scopes(scopes: Sequence[str]) -> list[str]:
    """Known scopes, deduplicated in their order (``rights.Invalid`` otherwise)."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise InvalidRight(f"scopes must be some of {list(SCOPES)}, got {list(scopes)}")
    return [s for s in SCOPES if s in scopes]


@dataclass(frozen=True)
class IssuedToken:
    """A token as made: ``token`` is the only time its text is known."""

    id: UUID
    token: str
    row: dict[str, Any]


class AccountRepository:
    """Accounts and their tokens; grants and visibility of collections; rights lookups."""

    def __init__(self, engine: AsyncEngine, rights_ttl_s: float = 1.0) -> None:
        self.engine = engine
        self.rights = RightsCache(rights_ttl_s)
        self.passwords = Passwords()
        self._touched: dict[UUID, float] = {}

    def _connect(self, write: bool = False) -> AbstractAsyncContextManager[AsyncConnection]:
        return connect(self.engine, write)

    # -- accounts ------------------------------------------------------------------------
    async def create_account(
        self,
        name: str,
        role: str = "user",
        email: str | None = None,
        quota_bytes: int | None = None,
        subject: str | None = None,
        password_hash: str | None = None,
    ) -> dict[str, Any]:
        """A new account (``account.Exists`` when the name or subject is taken)."""
        if role not in ROLES:
            raise InvalidRight(f"role must be one of {list(ROLES)}, got {role!r}")
        values = {"id": uuid4(), "name": name, "role": role, "email": email,
                  "quota_bytes": quota_bytes, "subject": subject,
                  "password_hash": password_hash}  # fmt: skip
        try:
            async with self.engine.begin() as conn:
                row = (
                    await conn.execute(insert(Account).values(values).returning(*_ACCOUNT_COLUMNS))
                ).one()
        except IntegrityError as exc:
            raise AccountExists(f"an account named {name!r} exists already") from exc
        return dict(row._mapping)

    async def get_account(self, account_id: UUID) -> dict[str, Any]:
        """One account, or ``account.NotFound``."""
        async with self._connect() as conn:
            row = (
                await conn.execute(select(*_ACCOUNT_COLUMNS).where(Account.id == account_id))
            ).first()
        if row is None:
            raise AccountNotFound(f"no account {account_id}")
        return dict(row._mapping)

    async def account_by_name(self, name: str) -> dict[str, Any]:
        """One account by its name, or ``account.NotFound``."""
        async with self._connect() as conn:
            row = (
                await conn.execute(select(*_ACCOUNT_COLUMNS).where(Account.name == name))
            ).first()
        if row is None:
            raise AccountNotFound(f"no account named {name!r}")
        return dict(row._mapping)

    async def account_by_subject(self, subject: str) -> dict[str, Any] | None:
        """The account of an external identity (``issuer|sub``), or None."""
        async with self._connect() as conn:
            row = (
                await conn.execute(select(*_ACCOUNT_COLUMNS).where(Account.subject == subject))
            ).first()
        return dict(row._mapping) if row is not None else None

    async def set_password(self, account_id: UUID, password: str | None) -> dict[str, Any]:
        """Let the account sign in with ``password`` (None: no password sign-in)."""
        hashed = await self.passwords.hash(password) if password is not None else None
        return await self.update_account(account_id, password_hash=hashed)

    async def sign_in(self, name: str, password: str) -> dict[str, Any] | None:
        """The enabled account of this name and password; None for any failure (unknown name,
        no password, wrong password, disabled), each after the same password check."""
        async with self._connect() as conn:
            row = (
                await conn.execute(
                    select(*_ACCOUNT_COLUMNS, Account.password_hash).where(Account.name == name)
                )
            ).first()
        stored = row.password_hash if row is not None else None
        if not await self.passwords.check(stored, password) or row is None or row.disabled:
            return None
        account = dict(row._mapping)
        del account["password_hash"]
        if stored is not None and self.passwords.needs_rehash(stored):
            await self.set_password(row.id, password)  # made with older, weaker parameters
        return account

    async def list_accounts(self) -> list[dict[str, Any]]:
        """Every account, oldest first."""
        async with self._connect() as conn:
            rows = await conn.execute(select(*_ACCOUNT_COLUMNS).order_by(Account.created))
        return [dict(r._mapping) for r in rows]

    async def update_account(self, account_id: UUID, **values: Any) -> dict[str, Any]:
        """Change ``disabled``, ``role``, ``email``, ``quota_bytes`` or ``password_hash``."""
        allowed = {"disabled", "role", "email", "quota_bytes", "password_hash"}
        if set(values) - allowed:
            raise ValueError(f"cannot change {sorted(set(values) - allowed)}")
        if "role" in values and values["role"] not in ROLES:
            raise InvalidRight(f"role must be one of {list(ROLES)}, got {values['role']!r}")
        async with self._connect(write=True) as conn:
            row = (
                await conn.execute(
                    update(Account)
                    .where(Account.id == account_id)
                    .values(**values, updated=func.now())
                    .returning(*_ACCOUNT_COLUMNS)
                )
            ).first()
        if row is None:
            raise AccountNotFound(f"no account {account_id}")
        self.rights.clear()
        return dict(row._mapping)

    async def admin_exists(self) -> bool:
        """Whether any enabled admin account exists (first start makes one when not)."""
        async with self._connect() as conn:
            found = await conn.scalar(
                select(Account.id).where(Account.role == "admin", ~Account.disabled).limit(1)
            )
        return found is not None

    # -- tokens --------------------------------------------------------------------------
    async def create_token(
        self,
        account_id: UUID | None,
        description: str = "",
        scopes: Sequence[str] = ("read", "write"),
        expires: dt.datetime | None = None,
    ) -> IssuedToken:
        """A new token of ``account_id`` (None: unclaimed, unusable until claimed)."""
        token_id, text, secret_hash = new_token()
        values = {"id": token_id, "account_id": account_id, "secret_hash": secret_hash,
                  "description": description, "scopes": check_scopes(scopes),
                  "expires": expires,
                  "claimed": func.now() if account_id is not None else None}  # fmt: skip
        async with self._connect(write=True) as conn:
            row = (
                await conn.execute(insert(ApiToken).values(values).returning(*_TOKEN_COLUMNS))
            ).one()
        return IssuedToken(token_id, text, dict(row._mapping))

    async def list_tokens(self, account_id: UUID) -> list[dict[str, Any]]:
        """The account's tokens (never their secrets), newest first."""
        async with self._connect() as conn:
            rows = await conn.execute(
                select(*_TOKEN_COLUMNS)
                .where(ApiToken.account_id == account_id)
                .order_by(ApiToken.created.desc())
            )
        return [dict(r._mapping) for r in rows]

    async def get_token(self, token_id: UUID) -> dict[str, Any]:
        """One token's row (``token.NotFound`` when there is none)."""
        async with self._connect() as conn:
            row = (
                await conn.execute(select(*_TOKEN_COLUMNS).where(ApiToken.id == token_id))
            ).first()
        if row is None:
            raise TokenNotFound(f"no token {token_id}")
        return dict(row._mapping)

    async def revoke_token(self, token_id: UUID, account_id: UUID | None) -> dict[str, Any]:
        """Revoke one token of ``account_id`` (any account's when None: admins)."""
        query = update(ApiToken).where(ApiToken.id == token_id, ApiToken.revoked.is_(None))
        if account_id is not None:
            query = query.where(ApiToken.account_id == account_id)
        async with self._connect(write=True) as conn:
            row = (
                await conn.execute(query.values(revoked=func.now()).returning(*_TOKEN_COLUMNS))
            ).first()
        if row is None:
            raise TokenNotFound(f"no token {token_id} to revoke")
        return dict(row._mapping)

    async def claim_token(self, token_id: UUID, account_id: UUID) -> dict[str, Any]:
        """Give an unclaimed, unexpired token to ``account_id``; then it works."""
        async with self._connect(write=True) as conn:
            row = (
                await conn.execute(
                    update(ApiToken)
                    .where(
                        ApiToken.id == token_id,
                        ApiToken.account_id.is_(None),
                        ApiToken.revoked.is_(None),
                        (ApiToken.expires.is_(None)) | (ApiToken.expires > func.now()),
                    )
                    .values(account_id=account_id, claimed=func.now(), expires=None)
                    .returning(*_TOKEN_COLUMNS)
                )
            ).first()
        if row is None:
            raise TokenNotFound(f"no unclaimed token {token_id} (claimed, revoked or expired)")
        return dict(row._mapping)

    async def verify_token(self, text: str) -> Principal | None:
        """The principal a token's text stands for, or None when it is not valid for any
        reason (unknown, wrong secret, revoked, expired, unclaimed, account disabled)."""
        parsed = parse_token(text)
        if parsed is None:
            return None
        token_id, secret = parsed
        async with self._connect() as conn:
            row = (
                await conn.execute(
                    select(
                        ApiToken.secret_hash,
                        ApiToken.scopes,
                        ApiToken.expires,
                        ApiToken.revoked,
                        Account.id,
                        Account.name,
                        Account.role,
                        Account.disabled,
                    )  # fmt: skip
                    .join(Account, Account.id == ApiToken.account_id)
                    .where(ApiToken.id == token_id)
                )
            ).first()
        if row is None or not secret_matches(secret, row.secret_hash):
            return None
        if row.revoked is not None or row.disabled:
            return None
        if row.expires is not None and row.expires <= _now():
            return None
        await self._touch(token_id)
        return Principal(
            account_id=row.id, name=row.name, role=row.role, scopes=frozenset(row.scopes),
            token_id=token_id, via="token", key=f"token:{token_id}",
        )  # fmt: skip

    async def _touch(self, token_id: UUID) -> None:
        """Record the token's use, at most once a minute per token and process."""
        now = time.monotonic()
        if now - self._touched.get(token_id, -_TOUCH_EVERY_S) < _TOUCH_EVERY_S:
            return
        if len(self._touched) > 65536:
            self._touched.clear()
        self._touched[token_id] = now
        async with self._connect(write=True) as conn:
            await conn.execute(
                update(ApiToken).where(ApiToken.id == token_id).values(last_used=func.now())
            )

    async def expire_unclaimed(self) -> int:
        """Delete unclaimed tokens whose time to be claimed is over; how many."""
        async with self._connect(write=True) as conn:
            result = await conn.execute(
                delete(ApiToken).where(
                    ApiToken.account_id.is_(None), ApiToken.expires <= func.now()
                )
            )
        return int(result.rowcount or 0)

    # -- rights --------------------------------------------------------------------------
    async def readable(self, principal: Principal) -> Readable:
        """The collections ``principal`` reads (cached for ``rights_ttl_s``)."""
        cached = self.rights.get(principal)
        if cached is not None:
            return cached
        async with self._connect() as conn:
            found = await readable(conn, principal)
        self.rights.put(principal, found)
        return found

    async def right_on(self, principal: Principal, collection_id: str) -> str | None:
        """The strongest right of ``principal`` on one collection (None: may not read it)."""
        async with self._connect() as conn:
            return await collection_right(conn, principal, collection_id)

    async def require(self, principal: Principal, collection_id: str, right: str = "write") -> None:
        """Refuse unless ``principal`` has ``right`` on the collection: 404 ``catalog.NotFound``
        when it may not even read it (as for a missing one), 403 ``auth.Forbidden`` else."""
        found = await self.right_on(principal, collection_id)
        if found is None:
            raise NotFound(f"collection {collection_id!r} does not exist")
        if RIGHTS.index(found) < RIGHTS.index(right):
            raise Forbidden(f"this needs the {right!r} right on collection {collection_id!r}")

    async def set_visibility(self, collection_id: str, visibility: str) -> None:
        """Make a collection ``public``, ``accounts`` or ``private``."""
        if visibility not in VISIBILITIES:
            raise InvalidRight(
                f"visibility must be one of {list(VISIBILITIES)}, got {visibility!r}"
            )
        async with self._connect(write=True) as conn:
            await conn.execute(
                update(Collection)
                .where(Collection.id == collection_id)
                .values(visibility=visibility)
            )
        self.rights.clear()

    async def set_owner(self, collection_id: str, owner_id: UUID | None) -> None:
        """Give a collection to an account (its creator, at creation)."""
        async with self._connect(write=True) as conn:
            await conn.execute(
                update(Collection).where(Collection.id == collection_id).values(owner_id=owner_id)
            )
        self.rights.clear()

    async def collection_access(self, collection_id: str) -> dict[str, Any] | None:
        """Owner, visibility and grants of a collection (None when it does not exist)."""
        async with self._connect() as conn:
            row = (
                await conn.execute(
                    select(Collection.owner_id, Collection.visibility).where(
                        Collection.id == collection_id
                    )
                )
            ).first()
            if row is None:
                return None
            grants = await conn.execute(
                select(CollectionGrant.grantee_kind, CollectionGrant.grantee, CollectionGrant.right)
                .where(CollectionGrant.collection_id == collection_id)
                .order_by(CollectionGrant.grantee_kind, CollectionGrant.grantee)
            )
            return {
                "owner_id": row.owner_id,
                "visibility": row.visibility,
                "grants": [dict(g._mapping) for g in grants],
            }

    async def grant(self, collection_id: str, kind: str, grantee: str, right: str) -> None:
        """Give (or change) ``right`` on a collection to an account or a group."""
        if right not in RIGHTS:
            raise InvalidRight(f"right must be one of {list(RIGHTS)}, got {right!r}")
        if kind not in ("account", "group"):
            raise InvalidRight(f"grantee kind must be 'account' or 'group', got {kind!r}")
        statement = pg_insert(CollectionGrant).values(
            collection_id=collection_id, grantee_kind=kind, grantee=grantee, right=right
        )
        async with self._connect(write=True) as conn:
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["collection_id", "grantee_kind", "grantee"],
                    set_={"right": right},
                )
            )
        self.rights.clear()

    async def revoke_grant(self, collection_id: str, kind: str, grantee: str) -> bool:
        """Take a grant back; whether there was one."""
        async with self._connect(write=True) as conn:
            result = await conn.execute(
                delete(CollectionGrant).where(
                    CollectionGrant.collection_id == collection_id,
                    CollectionGrant.grantee_kind == kind,
                    CollectionGrant.grantee == grantee,
                )
            )
        self.rights.clear()
        return bool(result.rowcount)
