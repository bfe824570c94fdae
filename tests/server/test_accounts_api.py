"""The account and token API over HTTP: /users/me, tokens, generate/claim, admins' /accounts."""

import datetime as dt
import time
import uuid
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from catalog.accounts.repository import AccountRepository
from tests.factories import collection

JSON = "application/json"


def bearer(token: str) -> dict[str, str]:
    """Headers sending ``token``."""
    return {"Authorization": f"Bearer {token}"}


def make_account(
    client: TestClient, admin: dict[str, str], name: str, role: str = "user", **token: Any
) -> tuple[dict[str, Any], str]:
    """An account made by an admin over HTTP, and the text of a first token."""
    r = client.post("/accounts", json={"name": name, "role": role}, headers=admin)
    assert r.status_code == 201, r.text
    account = r.json()
    r = client.post(f"/accounts/{account['id']}/tokens", json=token, headers=admin)
    assert r.status_code == 201, r.text
    return account, r.json()["token"]


def accounts_repo(client: TestClient) -> AccountRepository:
    """The app's repository, called as another process of the server would."""
    repo: AccountRepository = client.app.state.accounts  # type: ignore[attr-defined]
    return repo


def refused_within(client: TestClient, token: str, seconds: float) -> float:
    """Seconds until ``token`` is refused (401); fails after ``seconds``."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        r = client.get("/users/me", headers=bearer(token))
        if r.status_code == 401:
            assert r.json()["code"] == "auth.InvalidToken"
            return time.monotonic() - start
        assert r.status_code == 200
        time.sleep(0.05)
    raise AssertionError(f"token still accepted after {seconds} s")


def test_token_lifecycle(client: TestClient, admin: dict[str, str]) -> None:
    alice, first = make_account(client, admin, "alice")
    me = client.get("/users/me", headers=bearer(first))
    assert me.status_code == 200, me.text
    doc = me.json()
    assert (doc["id"], doc["name"], doc["role"], doc["via"]) == (alice["id"], "alice", "user",
                                                                 "token")  # fmt: skip
    assert doc["scopes"] == ["read", "write"]
    assert doc["collections"] == {"owned": [], "grants": []}
    assert doc["quota"] == {"used_bytes": 0, "limit_bytes": 50 * 1024**3, "usage_percent": 0.0}

    r = client.post("/users/me/tokens", json={"description": "laptop", "scopes": ["read"]},
                    headers=bearer(first))  # fmt: skip
    assert r.status_code == 201, r.text
    made = r.json()
    second = made["token"]
    assert second.startswith("tcat_") and made["scopes"] == ["read"]
    assert made["description"] == "laptop" and made["account_id"] == alice["id"]
    assert client.get("/users/me", headers=bearer(second)).json()["scopes"] == ["read"]

    listed = client.get("/users/me/tokens", headers=bearer(second))
    assert listed.status_code == 200
    tokens = listed.json()["tokens"]
    assert [t["id"] for t in tokens] == [made["id"], str(uuid.UUID(first.split("_")[1]))]
    assert len(tokens) == 2 and all("token" not in t for t in tokens)
    assert first not in listed.text and second not in listed.text
    assert second.rsplit("_", 1)[1] not in listed.text  # nor the secret part alone

    r = client.delete(f"/users/me/tokens/{made['id']}", headers=bearer(first))
    assert r.status_code == 204 and r.content == b""
    r = client.get("/users/me", headers=bearer(second))  # this process forgets it at once
    assert r.status_code == 401 and r.json()["code"] == "auth.InvalidToken"
    assert "invalid_token" in r.headers["www-authenticate"]
    revoked = client.get("/users/me/tokens", headers=bearer(first)).json()["tokens"]
    assert next(t for t in revoked if t["id"] == made["id"])["revoked"] is not None
    again = client.delete(f"/users/me/tokens/{made['id']}", headers=bearer(first))
    assert again.status_code == 404 and again.json()["code"] == "token.NotFound"
    for bad in ("not-a-uuid", str(uuid.uuid4())):
        r = client.delete(f"/users/me/tokens/{bad}", headers=bearer(first))
        assert r.status_code == 404 and r.json()["code"] == "token.NotFound"


def test_revocation_elsewhere_takes_effect_within_the_cache_time(
    client: TestClient, admin: dict[str, str]
) -> None:
    """Another process revokes (or disables): this one's cached check lasts rights_cache_s."""
    alice, token = make_account(client, admin, "alice")
    bob, other = make_account(client, admin, "bob")
    assert client.get("/users/me", headers=bearer(token)).status_code == 200  # cached now
    assert client.get("/users/me", headers=bearer(other)).status_code == 200
    repo = accounts_repo(client)
    token_id = uuid.UUID(token.split("_")[1])
    client.portal.call(repo.revoke_token, token_id, uuid.UUID(alice["id"]))  # type: ignore[union-attr]
    assert refused_within(client, token, 1.5) <= 1.2
    client.portal.call(lambda: repo.update_account(uuid.UUID(bob["id"]), disabled=True))  # type: ignore[union-attr]
    assert refused_within(client, other, 1.5) <= 1.2


def test_another_accounts_token_is_not_found(client: TestClient, admin: dict[str, str]) -> None:
    _, alice = make_account(client, admin, "alice")
    _, bob = make_account(client, admin, "bob")
    bobs = client.get("/users/me/tokens", headers=bearer(bob)).json()["tokens"][0]["id"]
    r = client.delete(f"/users/me/tokens/{bobs}", headers=bearer(alice))
    assert r.status_code == 404 and r.json()["code"] == "token.NotFound"
    assert client.get("/users/me", headers=bearer(bob)).status_code == 200


def test_scopes(client: TestClient, admin: dict[str, str]) -> None:
    _, reader = make_account(client, admin, "reader", scopes=["read"])
    r = client.post("/collections", json=collection("c1"), headers=bearer(reader))
    assert r.status_code == 403 and r.json()["code"] == "auth.InsufficientScope"
    r = client.post("/users/me/tokens", json={"scopes": ["read", "write"]},
                    headers=bearer(reader))  # fmt: skip
    assert r.status_code == 403 and r.json()["code"] == "auth.InsufficientScope"
    default = client.post("/users/me/tokens", json={}, headers=bearer(reader)).json()
    assert default["scopes"] == ["read"]  # the maker's own, no more
    r = client.post("/users/me/tokens", json={"scopes": ["delete"]}, headers=bearer(reader))
    assert r.status_code == 400 and r.json()["code"] == "rights.Invalid"
    r = client.post("/users/me/tokens", json={"scopes": "read"}, headers=bearer(reader))
    assert r.status_code == 400 and r.json()["code"] == "request.InvalidParameter"
    r = client.post("/users/me/tokens", json={"description": "a\x00b"}, headers=bearer(reader))
    assert r.status_code == 400 and r.json()["code"] == "request.InvalidValue"

    user = client.get("/accounts", headers=admin).json()["accounts"][0]["id"]
    r = client.post(f"/accounts/{user}/tokens", json={"scopes": ["admin"]}, headers=admin)
    assert r.status_code == 400 and r.json()["code"] == "rights.Invalid"
    _, writer = make_account(client, admin, "writer")
    assert client.post("/collections", json=collection("c1"),
                       headers=bearer(writer)).status_code == 201  # fmt: skip

    # An admin account acting with a read-only token is a reader.
    _, admin_reader = make_account(client, admin, "boss", role="admin", scopes=["read"])
    r = client.get("/accounts", headers=bearer(admin_reader))
    assert r.status_code == 403 and r.json()["code"] == "auth.Forbidden"


def test_expiry(client: TestClient, admin: dict[str, str]) -> None:
    alice, token = make_account(client, admin, "alice")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    repo = accounts_repo(client)
    issued = client.portal.call(  # type: ignore[union-attr]
        lambda: repo.create_token(uuid.UUID(alice["id"]), "old", ["read"], past)
    )
    r = client.get("/users/me", headers=bearer(issued.token))
    assert r.status_code == 401 and r.json()["code"] == "auth.InvalidToken"

    for expires in (past.isoformat(), "2030-01-01T00:00:00", "tomorrow"):
        r = client.post("/users/me/tokens", json={"expires": expires}, headers=bearer(token))
        assert r.status_code == 400 and r.json()["code"] == "request.InvalidParameter", expires
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
    r = client.post("/users/me/tokens", json={"expires": soon.isoformat()}, headers=bearer(token))
    assert r.status_code == 201
    short = r.json()
    assert dt.datetime.fromisoformat(short["expires"]) == soon
    assert client.get("/users/me", headers=bearer(short["token"])).status_code == 200
    time.sleep(max(0.0, (soon - dt.datetime.now(dt.UTC)).total_seconds()))
    # the check cached before the expiry lasts rights_cache_s at most
    assert refused_within(client, short["token"], 1.5) <= 1.2


def test_generate_and_claim(client: TestClient, admin: dict[str, str]) -> None:
    r = client.post("/auth/tokens/generate")
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["claim"] == f"http://testserver/auth/tokens/{made['id']}/claim"
    assert made["links"] == [{"rel": "claim", "href": made["claim"], "method": "POST"}]
    expires = dt.datetime.fromisoformat(made["expires"])
    left = (expires - dt.datetime.now(dt.UTC)).total_seconds()
    assert 590 < left <= 600  # TERRACAT_AUTH_UNCLAIMED_TOKEN_TTL_S
    r = client.get("/users/me", headers=bearer(made["token"]))
    assert r.status_code == 401 and r.json()["code"] == "auth.InvalidToken"

    r = client.post(f"/auth/tokens/{made['id']}/claim")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    _, reader = make_account(client, admin, "reader", scopes=["read"])
    r = client.post(f"/auth/tokens/{made['id']}/claim", headers=bearer(reader))
    assert r.status_code == 403 and r.json()["code"] == "auth.InsufficientScope"
    r = client.post(f"/auth/tokens/{made['id']}/claim", headers=admin)  # bootstrap: no account
    assert r.status_code == 403 and r.json()["code"] == "auth.Forbidden"

    alice, token = make_account(client, admin, "alice")
    r = client.post(f"/auth/tokens/{made['id']}/claim", headers=bearer(token))
    assert r.status_code == 200, r.text
    claimed = r.json()
    assert claimed["account_id"] == alice["id"] and claimed["expires"] is None
    assert claimed["claimed"] is not None and "token" not in claimed
    me = client.get("/users/me", headers=bearer(made["token"]))
    assert me.status_code == 200 and me.json()["name"] == "alice"
    r = client.post(f"/auth/tokens/{made['id']}/claim", headers=bearer(token))
    assert r.status_code == 404 and r.json()["code"] == "token.NotFound"
    r = client.post("/auth/tokens/generate", json={"description": 3})
    assert r.status_code == 400 and r.json()["code"] == "request.InvalidParameter"


def test_expired_unclaimed_tokens_are_refused_and_cleaned(
    client: TestClient, admin: dict[str, str]
) -> None:
    repo = accounts_repo(client)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    stale = client.portal.call(lambda: repo.create_token(None, "cli", ["read"], past))  # type: ignore[union-attr]
    assert client.get("/users/me", headers=bearer(stale.token)).status_code == 401
    _, token = make_account(client, admin, "alice")
    r = client.post(f"/auth/tokens/{stale.id}/claim", headers=bearer(token))
    assert r.status_code == 404 and r.json()["code"] == "token.NotFound"
    assert client.post("/auth/tokens/generate").status_code == 201  # cleans on the way
    with pytest.raises(Exception, match="no token"):
        client.portal.call(repo.get_token, stale.id)  # type: ignore[union-attr]


def test_generate_is_rate_limited_per_address(client: TestClient) -> None:
    answers = [client.post("/auth/tokens/generate").status_code for _ in range(21)]
    assert answers == [201] * 20 + [429]
    r = client.post("/auth/tokens/generate")
    assert r.json()["code"] == "auth.TooManyAttempts" and int(r.headers["retry-after"]) >= 1
    other = TestClient(client.app, client=("192.0.2.7", 4000))
    assert other.post("/auth/tokens/generate").status_code == 201


def test_my_collections_grants_and_quota(
    client: TestClient, admin: dict[str, str], sync_engine: Engine
) -> None:
    alice, token = make_account(client, admin, "alice")
    assert client.patch(f"/accounts/{alice['id']}", json={"quota_bytes": 4000},
                        headers=admin).status_code == 200  # fmt: skip
    for cid in ("mine", "shared", "other"):
        assert client.post("/collections", json=collection(cid), headers=admin).status_code == 201
    repo, alice_id = accounts_repo(client), uuid.UUID(alice["id"])
    client.portal.call(repo.set_owner, "mine", alice_id)  # type: ignore[union-attr]
    client.portal.call(repo.grant, "shared", "account", alice["id"], "write")  # type: ignore[union-attr]
    client.portal.call(repo.grant, "other", "group", "editors", "read")  # type: ignore[union-attr]
    with sync_engine.begin() as conn:
        set_id = uuid.uuid4()
        conn.execute(
            text(
                "INSERT INTO upload_sets (id, collection_id, owner_id) VALUES (:id, 'mine', :owner)"
            ),
            {"id": set_id, "owner": alice_id},
        )
        # staged files count (catalog/accounts/quotas.py); a rejected one's bytes are gone
        for size, status, staged in ((1000, "ready", "/s/a"), (400, "processing", "/s/b"),
                                     (9000, "rejected", None)):  # fmt: skip
            conn.execute(
                text(
                    "INSERT INTO upload_files (id, upload_set_id, collection_id, "
                    "filename, source, size, status, staged_key) VALUES (:id, :set, 'mine', "
                    "'f.tif', 'tus', :size, :status, :staged)"
                ),
                {
                    "id": uuid.uuid4(),
                    "set": set_id,
                    "size": size,
                    "status": status,
                    "staged": staged,
                },  # fmt: skip
            )
    doc = client.get("/users/me", headers=bearer(token)).json()
    assert doc["collections"] == {
        "owned": ["mine"],
        "grants": [{"collection": "shared", "right": "write"}],
    }
    assert doc["quota"] == {"used_bytes": 1400, "limit_bytes": 4000, "usage_percent": 35.0}
    account = client.get(f"/accounts/{alice['id']}", headers=admin).json()
    assert account["quota"] == doc["quota"]  # fmt: skip


def test_the_bootstrap_token_has_no_account(client: TestClient, admin: dict[str, str]) -> None:
    doc = client.get("/users/me", headers=admin).json()
    assert (doc["id"], doc["name"], doc["role"], doc["quota"]) == (None, "system", "admin", None)
    assert doc["scopes"] == ["read", "write", "admin"]
    assert client.get("/users/me/tokens", headers=admin).json() == {"tokens": []}
    r = client.post("/users/me/tokens", json={}, headers=admin)
    assert r.status_code == 403 and r.json()["code"] == "auth.Forbidden"
    links = {link["rel"]: link for link in client.get("/").json()["links"]}
    assert links["account"]["href"] == "http://testserver/users/me"
    assert links["tokens"]["href"] == "http://testserver/users/me/tokens"


def test_admin_routes(client: TestClient, admin: dict[str, str], sync_engine: Engine) -> None:
    body = {"name": "carol", "email": "carol@example.org", "quota_bytes": 10**9,
            "password": "correct horse battery"}  # fmt: skip
    r = client.post("/accounts", json=body, headers=admin)
    assert r.status_code == 201, r.text
    carol = r.json()
    assert r.headers["location"] == f"http://testserver/accounts/{carol['id']}"
    assert (carol["name"], carol["role"], carol["email"], carol["quota_bytes"], carol["disabled"]
            ) == ("carol", "user", "carol@example.org", 10**9, False)  # fmt: skip
    assert "password" not in r.text and "password_hash" not in carol
    with sync_engine.connect() as conn:
        stored = conn.scalar(text("SELECT password_hash FROM accounts WHERE name = 'carol'"))
    assert stored.startswith("$argon2id$")
    assert PasswordHasher().verify(stored, "correct horse battery")

    r = client.post("/accounts", json={"name": "carol"}, headers=admin)
    assert r.status_code == 409 and r.json()["code"] == "account.Exists"
    for bad, code in (({"name": "dave", "role": "root"}, "rights.Invalid"),
                      ({"name": "no spaces"}, "request.InvalidParameter"),
                      ({"name": "dave", "quota_bytes": -1}, "request.InvalidParameter"),
                      ({"name": "dave", "password": "short"}, "request.InvalidParameter"),
                      ({"name": "dave", "email": "not-an-email"}, "request.InvalidParameter"),
                      ({"name": "dave", "email": "d\x00@x.org"}, "request.InvalidParameter"),
                      ({"name": "dave", "quota_bytes": 2**63}, "request.InvalidParameter"),
                      ({"name": "dave", "owner": True}, "request.InvalidParameter")):  # fmt: skip
        r = client.post("/accounts", json=bad, headers=admin)
        assert r.status_code == 400 and r.json()["code"] == code, (bad, r.text)

    listed = client.get("/accounts", headers=admin).json()["accounts"]
    assert [a["name"] for a in listed] == ["carol"]
    url = f"/accounts/{carol['id']}"
    one = client.get(url, headers=admin).json()
    assert one["quota"] == {"used_bytes": 0, "limit_bytes": 10**9, "usage_percent": 0.0}
    for missing in (str(uuid.uuid4()), "carol"):
        r = client.get(f"/accounts/{missing}", headers=admin)
        assert r.status_code == 404 and r.json()["code"] == "account.NotFound"

    r = client.patch(url, json={"role": "admin", "email": None, "quota_bytes": None},
                     headers=admin)  # fmt: skip
    assert r.status_code == 200, r.text
    assert (r.json()["role"], r.json()["email"], r.json()["quota_bytes"]) == ("admin", None, None)
    assert client.get(url, headers=admin).json()["quota"]["limit_bytes"] == 50 * 1024**3
    invalid = "request.InvalidParameter"
    for bad, code in (({}, invalid), ({"role": None}, invalid), ({"name": "x"}, invalid),
                      ({"role": "root"}, "rights.Invalid")):  # fmt: skip
        r = client.patch(url, json=bad, headers=admin)
        assert r.status_code == 400 and r.json()["code"] == code, (bad, r.text)
    r = client.patch(f"/accounts/{uuid.uuid4()}", json={"disabled": True}, headers=admin)
    assert r.status_code == 404 and r.json()["code"] == "account.NotFound"
    r = client.patch(url, json={"password": "another long one"}, headers=admin)
    with sync_engine.connect() as conn:
        stored = conn.scalar(text("SELECT password_hash FROM accounts WHERE name = 'carol'"))
    assert PasswordHasher().verify(stored, "another long one")


def test_admin_token_routes(client: TestClient, admin: dict[str, str]) -> None:
    carol, _ = make_account(client, admin, "carol", role="admin")
    dave, _ = make_account(client, admin, "dave")
    r = client.post(f"/accounts/{carol['id']}/tokens", json={"description": "ci"}, headers=admin)
    assert r.status_code == 201 and r.json()["scopes"] == ["read", "write", "admin"]
    made = r.json()
    assert client.get("/accounts", headers=bearer(made["token"])).status_code == 200
    tokens = client.get(f"/accounts/{carol['id']}/tokens", headers=admin)
    assert [t["description"] for t in tokens.json()["tokens"]] == ["ci", ""]
    assert made["token"] not in tokens.text
    r = client.delete(f"/accounts/{dave['id']}/tokens/{made['id']}", headers=admin)
    assert r.status_code == 404 and r.json()["code"] == "token.NotFound"
    r = client.delete(f"/accounts/{carol['id']}/tokens/{made['id']}", headers=admin)
    assert r.status_code == 204
    assert client.get("/accounts", headers=bearer(made["token"])).status_code == 401
    for path in (f"/accounts/{uuid.uuid4()}/tokens", "/accounts/x/tokens"):
        r = client.get(path, headers=admin)
        assert r.status_code == 404 and r.json()["code"] == "account.NotFound"


ADMIN_CALLS = [
    ("GET", "/accounts", None), ("POST", "/accounts", {"name": "eve"}),
    ("GET", "/accounts/{id}", None), ("PATCH", "/accounts/{id}", {"disabled": True}),
    ("GET", "/accounts/{id}/tokens", None), ("POST", "/accounts/{id}/tokens", {}),
    ("DELETE", "/accounts/{id}/tokens/6f1c3a52-0b7e-4c1e-9d3a-2f4b5c6d7e8f", None),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_routes_refuse_others(
    client: TestClient, admin: dict[str, str], method: str, path: str, body: Any
) -> None:
    alice, token = make_account(client, admin, "alice")
    url = path.format(id=alice["id"])
    r = client.request(method, url, json=body, headers=bearer(token))
    assert r.status_code == 403 and r.json()["code"] == "auth.Forbidden"
    r = client.request(method, url, json=body)
    assert r.status_code == 401 and r.json()["code"] == "auth.Unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = client.request(method, url, json=body, headers=bearer("tcat_" + "0" * 32 + "_" + "x" * 43))
    assert r.status_code == 401 and r.json()["code"] == "auth.InvalidToken"


@pytest.mark.parametrize("path", ["/users/me", "/users/me/tokens"])
def test_my_routes_need_a_token(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


def test_disabled_account_is_refused(client: TestClient, admin: dict[str, str]) -> None:
    alice, token = make_account(client, admin, "alice")
    assert client.get("/users/me", headers=bearer(token)).status_code == 200  # cached
    r = client.patch(f"/accounts/{alice['id']}", json={"disabled": True}, headers=admin)
    assert r.status_code == 200 and r.json()["disabled"] is True
    r = client.get("/users/me", headers=bearer(token))
    assert r.status_code == 401 and r.json()["code"] == "auth.InvalidToken"
    r = client.post(f"/accounts/{alice['id']}/tokens", json={}, headers=admin)
    assert r.status_code == 400 and r.json()["code"] == "request.InvalidParameter"
    client.patch(f"/accounts/{alice['id']}", json={"disabled": False}, headers=admin)
    assert client.get("/users/me", headers=bearer(token)).status_code == 200
