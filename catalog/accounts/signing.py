"""Signed asset links: read one stored asset without a token, until an expiry.

An asset of a collection that anonymous callers may not read is handed to callers who may read
it with ``?tc_exp=<unix time>&tc_sig=<signature>``: HMAC-SHA256, with a server secret, of the
asset's route path (``collections/{c}/items/{i}/assets/{name}``, each part percent-encoded as in
the link) and the expiry. An ``<img>`` tag, GDAL or QGIS then fetch it without a header. The
signature names exactly one asset: it does not open another asset, item or collection.

Expiries are rounded up to a boundary (``window_s``): every link to an asset made within one
window is the same URL, so caches keep one copy; a link is valid between ``expiry_s`` and
``expiry_s + window_s`` after it was made.

The secret must be the same in every API process: ``TERRACAT_AUTH_SIGNING_SECRET``, or, when
unset, a random secret made once and kept in the database (``server_secrets``), read once per
process at start (``signing_secret``).
"""

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.db.models import ServerSecret
from catalog.errors import CatalogError

EXPIRY_PARAM = "tc_exp"
SIGNATURE_PARAM = "tc_sig"
SECRET_NAME = "asset-signing"


class InvalidSignature(CatalogError):
    """A signed asset link whose signature does not match it (tampered, or of another asset)."""

    code = "asset.InvalidSignature"
    status = 403


class SignatureExpired(CatalogError):
    """A signed asset link past its expiry."""

    code = "asset.SignatureExpired"
    status = 403


def asset_path(collection_id: str, item_id: str, asset_name: str) -> str:
    """The download route's path below the API root, as links spell it."""
    return (
        f"collections/{quote(collection_id, safe='')}/items/{quote(item_id, safe='')}"
        f"/assets/{quote(asset_name, safe='')}"
    )


class LinkSigner:
    """Signs and checks asset paths with one secret."""

    def __init__(
        self,
        secret: bytes,
        expiry_s: int = 3600,
        window_s: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the signing secret must have at least 16 bytes")
        self._secret = secret
        self.expiry_s = expiry_s
        # a tenth of the expiry, at most 10 minutes: links stay stable that long
        self.window_s = window_s or max(1, min(600, expiry_s // 10))
        self.clock = clock

    def expiry(self) -> int:
        """The expiry of a link made now: at least ``expiry_s`` ahead, on a window boundary."""
        least = int(self.clock()) + self.expiry_s
        return -(-least // self.window_s) * self.window_s

    def signature(self, path: str, expires: int) -> str:
        """The signature of ``path`` until ``expires`` (URL-safe base64, no padding)."""
        digest = hmac.new(self._secret, f"{path}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def query(self, path: str, expires: int | None = None) -> str:
        """``tc_exp=...&tc_sig=...`` for ``path``."""
        expires = self.expiry() if expires is None else expires
        return f"{EXPIRY_PARAM}={expires}&{SIGNATURE_PARAM}={self.signature(path, expires)}"

    def verify(self, path: str, expires: str | None, signature: str | None) -> None:
        """Raise unless ``signature`` signs ``path`` until ``expires``, and that is to come.

        The signature is checked first: a forged link learns nothing from the expiry.
        """
        if not expires or not signature or not expires.isdecimal() or len(expires) > 12:
            raise InvalidSignature("the asset link's signature is missing or malformed")
        if not hmac.compare_digest(signature.encode(), self.signature(path, int(expires)).encode()):
            raise InvalidSignature("the asset link's signature does not match this asset")
        if int(expires) < self.clock():
            raise SignatureExpired("the asset link has expired: get the item again for a new one")


async def signing_secret(engine: AsyncEngine, configured: bytes | None = None) -> bytes:
    """The secret that signs asset links: ``configured``, else the database's (made once by
    the first process that asks; every other process reads the same)."""
    if configured:
        return configured
    async with engine.begin() as conn:
        await conn.execute(
            insert(ServerSecret)
            .values(name=SECRET_NAME, value=secrets.token_bytes(32))
            .on_conflict_do_nothing(index_elements=[ServerSecret.name])
        )
        value = await conn.scalar(
            select(ServerSecret.value).where(ServerSecret.name == SECRET_NAME)
        )
    if value is None:  # pragma: no cover - the insert above makes it
        raise RuntimeError("the asset signing secret could not be made")
    return bytes(value)
