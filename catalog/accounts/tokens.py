"""API tokens: ``tcat_<id>_<secret>``, of which only a SHA-256 of the secret is stored.

The ``tcat_`` prefix lets secret scanners find leaked tokens. The id part finds the row by
its primary key; the secret is then compared in constant time. The secret has 256 random
bits, so a plain SHA-256 is as strong as a slow hash here and costs microseconds per request.
"""

import hashlib
import hmac
import re
import secrets
from uuid import UUID, uuid4

PREFIX = "tcat_"
_TOKEN = re.compile(r"^tcat_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$")


def hash_secret(secret: str) -> bytes:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode()).digest()


def new_token() -> tuple[UUID, str, bytes]:
    """A new token: its id, the text shown once to its owner, and the hash to store."""
    token_id = uuid4()
    secret = secrets.token_urlsafe(32)
    return token_id, f"{PREFIX}{token_id.hex}_{secret}", hash_secret(secret)


def parse_token(text: str) -> tuple[UUID, str] | None:
    """The id and secret of a token's text, or None when it is not shaped like one."""
    match = _TOKEN.match(text)
    if match is None:
        return None
    return UUID(match[1]), match[2]


def secret_matches(secret: str, stored: bytes) -> bool:
    """Constant-time comparison of a given secret with a stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored)


def looks_like_token(text: str) -> bool:
    """Whether ``text`` claims to be one of our tokens (rather than, say, a JWT)."""
    return text.startswith(PREFIX)
