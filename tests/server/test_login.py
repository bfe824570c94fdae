"""``POST /auth/login``: a name and password for a 12-hour token; failures limited."""

import datetime as dt
import time
from collections.abc import Iterator
from functools import partial
from typing import Any
from uuid import UUID

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from catalog.accounts.passwords import Passwords
from server.settings import Settings
from tests.factories import collection

LIMIT = 3
PASSWORD = "correct horse battery staple"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def limited(settings: Settings, apps: Any) -> Iterator[TestClient]:
    """A client on an app allowing 3 failures per 60 s (as test_auth_limits.py's), whose
    password hashes are cheap (argon2's defaults cost ~1 s of CPU on a busy test machine)."""
    settings.auth.failure_limit = LIMIT
    settings.auth.failure_window_s = 60
    with apps.client(settings) as client:
        client.app.state.accounts.passwords = Passwords(CHEAP)
        yield client


def call(client: TestClient, method: str, *args: Any, **kwargs: Any) -> Any:
    """Run an ``AccountRepository`` method of the client's app on the app's event loop."""
    assert client.portal is not None
    return client.portal.call(partial(getattr(client.app.state.accounts, method), *args, **kwargs))


def account(client: TestClient, name: str, password: str | None = PASSWORD) -> dict[str, Any]:
    """A new account that signs in with ``password``."""
    made = call(client, "create_account", name)
    return call(client, "set_password", made["id"], password) if password else made


def peer(client: TestClient, host: str) -> TestClient:
    """The app of ``client`` reached from another address."""
    return TestClient(client.app, client=(host, 4000))


def login(client: TestClient, name: str, password: str) -> Any:
    """POST the sign-in as JSON."""
    return client.post("/auth/login", json={"name": name, "password": password})


def test_a_password_gives_a_session_token_that_writes(limited: TestClient) -> None:
    made = account(limited, "grace")
    r = login(limited, "grace", PASSWORD)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"].startswith("tcat_") and body["token_type"] == "Bearer"
    assert body["account"] == {"id": str(made["id"]), "name": "grace", "role": "user"}
    assert body["scopes"] == ["read", "write"] and body["expires_in"] == 12 * 3600
    row = call(limited, "get_token", UUID(body["token_id"]))
    assert row["description"] == "browser session" and row["account_id"] == made["id"]
    left = row["expires"] - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=11, minutes=59) < left <= dt.timedelta(hours=12)
    headers = {"Authorization": f"Bearer {body['token']}"}
    assert limited.post("/collections", json=collection("g"), headers=headers).status_code == 201


def test_a_form_signs_in_too(limited: TestClient) -> None:
    account(limited, "heidi")
    r = limited.post("/auth/login", data={"name": "heidi", "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert r.json()["account"]["name"] == "heidi"


def test_unknown_names_and_wrong_passwords_answer_alike(limited: TestClient) -> None:
    limited.app.state.accounts.passwords = Passwords()  # argon2's defaults, as deployed
    account(limited, "ivan")
    account(limited, "judy", password=None)  # tokens only: no password sign-in
    disabled = account(limited, "mallory")
    call(limited, "update_account", disabled["id"], disabled=True)
    answers, times = [], []
    attempts = [("ivan", "wrong password"), ("nobody", PASSWORD), ("judy", PASSWORD),
                ("mallory", PASSWORD)]  # fmt: skip
    for n, (name, password) in enumerate(attempts):
        started = time.perf_counter()
        r = login(peer(limited, f"10.0.1.{n}"), name, password)
        times.append(time.perf_counter() - started)
        answers.append((r.status_code, r.json()["code"], r.json()["description"]))
    assert set(answers) == {(401, "auth.Unauthorized", "wrong account name or password")}
    # Each refusal checked a password hash, an unknown name's included: whether a name
    # exists does not show in the time the answer takes (without the check: ~1/50th).
    assert min(times[1:]) > times[0] / 4, times


def test_bad_bodies_are_400(limited: TestClient) -> None:
    for body in ({"name": "x"}, {"password": "y"}, {"name": "", "password": "y"}, [1]):
        r = limited.post("/auth/login", json=body)
        assert r.status_code == 400 and r.json()["code"] == "request.InvalidParameter", body
    r = limited.post("/auth/login", content=b"{not json", headers={"Content-Type": "text/plain"})
    assert r.status_code == 400 and r.json()["code"] == "request.InvalidParameter"
    r = limited.post("/auth/login", json={"name": "x", "password": "y" * 5000})
    assert r.status_code == 400


def test_failed_sign_ins_per_account_get_429_even_with_the_right_password(
    limited: TestClient,
) -> None:
    account(limited, "karl")
    for n in range(LIMIT):
        assert login(peer(limited, f"10.0.2.{n}"), "karl", "guess").status_code == 401
    r = login(peer(limited, "10.0.2.99"), "karl", PASSWORD)
    assert r.status_code == 429 and r.json()["code"] == "auth.TooManyAttempts"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    account(limited, "laura")  # another account from those addresses still signs in
    assert login(peer(limited, "10.0.2.0"), "laura", PASSWORD).status_code == 200


def test_failed_sign_ins_per_address_get_429(limited: TestClient) -> None:
    account(limited, "mike")
    for name in ("a", "b", "c"):
        assert login(limited, name, "guess").status_code == 401
    assert login(limited, "mike", PASSWORD).status_code == 429
    assert login(peer(limited, "10.0.3.1"), "mike", PASSWORD).status_code == 200


def test_successful_sign_ins_are_not_counted(limited: TestClient) -> None:
    account(limited, "nina")
    for _ in range(LIMIT - 1):
        assert login(limited, "nina", "guess").status_code == 401
    for _ in range(2):
        assert login(limited, "nina", PASSWORD).status_code == 200
    assert login(limited, "nina", "guess").status_code == 401  # the third failure
    assert login(limited, "nina", PASSWORD).status_code == 429


def test_login_is_public_and_documented(limited: TestClient) -> None:
    operation = limited.get("/api").json()["paths"]["/auth/login"]["post"]
    assert operation["operationId"] == "login"
    content = operation["requestBody"]["content"]
    assert {"application/json", "application/x-www-form-urlencoded"} <= set(content)
    assert {"401", "429"} <= set(operation["responses"])
