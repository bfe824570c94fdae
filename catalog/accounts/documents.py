"""Accounts and tokens as JSON, and the request bodies of their routes."""

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from catalog.errors import InvalidParameter

from .principal import SCOPES

JSON = "application/json"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+$"
MAX_BYTES = 2**63 - 1  # a PostgreSQL bigint


class TokenCreate(BaseModel):
    """Body of ``POST /users/me/tokens`` and ``POST /accounts/{id}/tokens``."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(default="", max_length=1000)
    scopes: list[str] | None = Field(
        default=None,
        max_length=len(SCOPES),
        description="Some of `read`, `write`, `admin`; at most the caller's own "
        "(default: the caller's, or the account's role's).",
    )
    expires: dt.datetime | None = Field(
        default=None, description="When the token stops working (RFC 3339; default: never)."
    )

    def expiry(self) -> dt.datetime | None:
        """``expires``, checked: with a time zone and in the future."""
        if self.expires is None:
            return None
        if self.expires.tzinfo is None:
            raise InvalidParameter("expires needs a time zone (e.g. 2030-01-01T00:00:00Z)")
        if self.expires <= dt.datetime.now(dt.UTC):
            raise InvalidParameter("expires must be in the future")
        return self.expires


class TokenGenerate(BaseModel):
    """Body (optional) of ``POST /auth/tokens/generate``."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(default="", max_length=1000)


class AccountCreate(BaseModel):
    """Body of ``POST /accounts``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="Unique; letters, digits, `_.@-`.")
    role: str = Field(default="user", description="`admin` or `user`.")
    email: str | None = Field(default=None, max_length=320, pattern=EMAIL_PATTERN)
    quota_bytes: int | None = Field(
        default=None, ge=0, le=MAX_BYTES, description="Storage quota (default: the server's)."
    )
    password: str | None = Field(default=None, min_length=8, max_length=1024)


class AccountPatch(BaseModel):
    """Body of ``PATCH /accounts/{id}``: the fields to change (null quota: the default)."""

    model_config = ConfigDict(extra="forbid")

    disabled: bool | None = None
    role: str | None = None
    email: str | None = Field(default=None, max_length=320, pattern=EMAIL_PATTERN)
    quota_bytes: int | None = Field(default=None, ge=0, le=MAX_BYTES)
    password: str | None = Field(default=None, min_length=8, max_length=1024)

    def changes(self) -> dict[str, Any]:
        """The columns to set (``password`` still in clear); ``request.InvalidParameter``
        when there are none or a field that cannot be null is."""
        values = {name: getattr(self, name) for name in self.model_fields_set}
        if not values:
            raise InvalidParameter("the body changes nothing: give disabled, role, email, "
                                   "quota_bytes or password")  # fmt: skip
        for name in ("disabled", "role", "password"):
            if name in values and values[name] is None:
                raise InvalidParameter(f"{name} cannot be null")
        return values


def _when(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def account_document(base: str, row: dict[str, Any]) -> dict[str, Any]:
    """An account as JSON (never its password hash)."""
    url = f"{base}accounts/{row['id']}"
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "email": row["email"],
        "role": row["role"],
        "disabled": row["disabled"],
        "quota_bytes": row["quota_bytes"],
        "created": _when(row["created"]),
        "links": [
            {"rel": "self", "href": url, "type": JSON},
            {"rel": "tokens", "href": f"{url}/tokens", "type": JSON},
        ],
    }


def token_document(row: dict[str, Any]) -> dict[str, Any]:
    """A token as JSON, without its secret (which is never stored)."""
    return {
        "id": str(row["id"]),
        "account_id": str(row["account_id"]) if row["account_id"] else None,
        "description": row["description"],
        "scopes": list(row["scopes"]),
        "created": _when(row["created"]),
        "last_used": _when(row["last_used"]),
        "expires": _when(row["expires"]),
        "revoked": _when(row["revoked"]),
        "claimed": _when(row["claimed"]),
    }
