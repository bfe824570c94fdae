"""Failed token checks from one client address are limited: beyond the limit, 429."""

import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.auth import FailureLimiter
from server.settings import Settings

LIMIT = 3
BOGUS = {"Authorization": "Bearer tcat_00000000000000000000000000000000_" + "x" * 43}


@pytest.fixture
def limited(settings: Settings, apps: Any) -> Iterator[TestClient]:
    """A client on an app allowing 3 failures per 60 s."""
    settings.auth.failure_limit = LIMIT
    settings.auth.failure_window_s = 60
    with apps.client(settings) as client:
        yield client


def token_of(client: TestClient, name: str) -> dict[str, str]:
    """Headers with a new read+write token of a new account ``name``."""
    assert client.portal is not None
    accounts = client.app.state.accounts
    account = client.portal.call(accounts.create_account, name)
    issued = client.portal.call(partial(accounts.create_token, account["id"]))
    return {"Authorization": f"Bearer {issued.token}"}


def peer(client: TestClient, host: str) -> TestClient:
    """The app of ``client`` reached from another address."""
    return TestClient(client.app, client=(host, 4000))


def test_failed_tokens_from_one_address_get_429(limited: TestClient) -> None:
    valid = token_of(limited, "erin")
    for _ in range(LIMIT):
        r = limited.get("/collections", headers=BOGUS)
        assert r.status_code == 401 and r.json()["code"] == "auth.InvalidToken"
    r = limited.get("/collections", headers=BOGUS)
    assert r.status_code == 429 and r.json()["code"] == "auth.TooManyAttempts", r.text
    assert 1 <= int(r.headers["retry-after"]) <= 60
    # Its next tokens are not checked, valid or not; requests without a token still pass.
    assert limited.get("/collections", headers=valid).status_code == 429
    assert limited.get("/collections").status_code == 200
    # Other addresses are not affected.
    other = peer(limited, "10.20.30.40")
    assert other.get("/collections", headers=valid).status_code == 200
    assert other.get("/collections", headers=BOGUS).status_code == 401


def test_jwt_shaped_and_malformed_tokens_count_too(limited: TestClient) -> None:
    for token in ("not-a-token", "a.b.c", "tcat_short"):
        r = limited.get("/collections", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
    assert limited.get("/collections", headers=BOGUS).status_code == 429


def test_successes_are_never_counted_or_slowed(limited: TestClient) -> None:
    valid = token_of(limited, "frank")
    for _ in range(LIMIT * 3):
        assert limited.get("/collections", headers=valid).status_code == 200
    for _ in range(LIMIT - 1):
        assert limited.get("/collections", headers=BOGUS).status_code == 401
    for _ in range(LIMIT * 3):
        assert limited.get("/collections", headers=valid).status_code == 200
    assert limited.get("/collections", headers=BOGUS).status_code == 401


def test_failures_age_out_of_the_window(limited: TestClient) -> None:
    for _ in range(LIMIT):
        limited.get("/collections", headers=BOGUS)
    assert limited.get("/collections", headers=BOGUS).status_code == 429
    limiter: FailureLimiter = limited.app.state.authenticator.limiter
    limiter.clock = lambda: time.monotonic() + 61
    assert limited.get("/collections", headers=BOGUS).status_code == 401


def test_limiter_counts_per_key_in_a_sliding_window() -> None:
    now = [100.0]
    limiter = FailureLimiter(2, 10, clock=lambda: now[0])
    limiter.fail("a")
    now[0] = 105
    limiter.fail("a")
    limiter.check("b")
    with pytest.raises(Exception, match="try again in 5 s") as caught:
        limiter.check("a")
    assert getattr(caught.value, "headers", None) == {"Retry-After": "5"}
    now[0] = 110.5  # the first failure is out of the window
    limiter.check("a")
    stamp = limiter.charge("a")
    with pytest.raises(Exception, match="too many"):
        limiter.check("a")
    limiter.refund(stamp, "a")
    limiter.check("a")


def test_limiter_memory_is_bounded() -> None:
    now = [0.0]
    limiter = FailureLimiter(5, 10, size=100, clock=lambda: now[0])
    for n in range(100):
        limiter.fail(f"old-{n}")
    now[0] = 20
    limiter.fail("new")  # the old keys have aged out: dropped to make room
    assert len(limiter._failures) == 1
    for n in range(200):
        limiter.fail(f"flood-{n}")
    assert len(limiter._failures) <= 100
