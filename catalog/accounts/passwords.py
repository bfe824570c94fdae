"""Password hashes of accounts that sign in with a browser: argon2id (argon2-cffi's defaults).

A hash or a check costs ~50 ms of CPU and 64 MiB, so both run in a worker thread, never on
the event loop. A sign-in with a name that has no password (unknown, or an account of tokens
or of an external identity only) checks a dummy hash all the same: the answer takes as long
as a wrong password's and says nothing about which names exist.
"""

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MAX_PASSWORD = 1024  # characters: argon2 takes any length, the request body should not
MIN_PASSWORD = 8


class Passwords:
    """Hashes and checks passwords off the event loop."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        """The stored form of a new password (``ValueError`` when it is too short or long)."""
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise ValueError(
                f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters, got {len(password)}"
            )
        return await anyio.to_thread.run_sync(self.hasher.hash, password)

    async def check(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored`` (None: no password; still takes the time)."""
        if stored is None:
            if self._dummy is None:
                self._dummy = await anyio.to_thread.run_sync(self.hasher.hash, "no password")
            await anyio.to_thread.run_sync(self._verify, self._dummy, password)
            return False
        return await anyio.to_thread.run_sync(self._verify, stored, password)

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made with weaker parameters than the hasher's."""
        return self.hasher.check_needs_rehash(stored)

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password[:MAX_PASSWORD])
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
