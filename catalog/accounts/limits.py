"""Attempts counted per key (a client address, an account name) in a sliding window.

Failed token checks and sign-ins (server/auth.py, server/login.py) and unauthenticated token
generation (catalog/accounts/routes.py) are limited through it.
"""

import math
import time
from collections import deque
from collections.abc import Callable

from .errors import TooManyAttempts


class FailureLimiter:
    """Failed attempts per key (an address, an account name) in a sliding window of
    ``window_s``; a key with ``limit`` of them is refused until the oldest ages out.

    In-process memory: each process counts its own. At most ``size`` keys are kept; beyond
    that, keys whose failures have all aged out are dropped first.
    """

    def __init__(
        self,
        limit: int,
        window_s: float,
        size: int = 65536,
        clock: Callable[[], float] = time.monotonic,
        refusal: str = "too many failed attempts",
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.size = size
        self.clock = clock
        self.refusal = refusal
        self._failures: dict[str, deque[float]] = {}

    def check(self, *keys: str) -> None:
        """Raise ``auth.TooManyAttempts`` when any of ``keys`` is at its limit."""
        now = self.clock()
        for key in keys:
            recent = self._recent(key, now)
            if recent is not None and len(recent) >= self.limit:
                wait = math.ceil(recent[0] + self.window_s - now)
                raise TooManyAttempts(
                    f"{self.refusal}; try again in {max(wait, 1)} s",
                    retry_after_s=max(wait, 1),
                )

    def charge(self, *keys: str) -> float:
        """``check``, then count an attempt against each key now (before it is known to fail:
        concurrent attempts cannot all pass the check); ``refund`` it when it succeeds."""
        self.check(*keys)
        return self.fail(*keys)

    def fail(self, *keys: str) -> float:
        """Count a failure against each key; its time."""
        now = self.clock()
        if len(self._failures) >= self.size:
            self._prune(now)
        for key in keys:
            self._failures.setdefault(key, deque(maxlen=self.limit)).append(now)
        return now

    def refund(self, stamp: float, *keys: str) -> None:
        """Take back an attempt counted by ``charge`` at ``stamp``."""
        for key in keys:
            recent = self._failures.get(key)
            if recent is not None and stamp in recent:
                recent.remove(stamp)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        recent = self._failures.get(key)
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        if recent is not None and not recent:
            del self._failures[key]
            return None
        return recent

    def _prune(self, now: float) -> None:
        for key in list(self._failures):
            self._recent(key, now)
        if len(self._failures) >= self.size:  # a flood of distinct keys: start over
            self._failures.clear()

    def clear(self) -> None:
        """Forget every count (a new app lifespan)."""
        self._failures.clear()
