"""Bearer JWTs of an OpenID Connect provider: a local provider (keys made here, its discovery
document and JWKS served on loopback), tokens signed with PyJWT, checked through the API."""

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from catalog.accounts.oidc import KeySet, OidcVerifier, fetch_json, signing_keys
from catalog.db.cluster import free_port
from catalog.errors import Unavailable
from catalog.settings import AccountSettings
from server.settings import Settings
from tests.factories import collection

AUDIENCE = "terracat-api"


@dataclass
class Provider:
    """A local OpenID Connect provider: its keys, the JWKS it publishes, the requests it got."""

    issuer: str = ""
    rsa: Any = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    ec: Any = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    published: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def jwk(self, key: Any, kid: str) -> dict[str, Any]:
        """The public JWK of ``key`` under ``kid``."""
        if isinstance(key, rsa.RSAPrivateKey):
            entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            entry["alg"] = "RS256"
        else:
            entry = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
            entry["alg"] = "ES256"
        return {**entry, "kid": kid, "use": "sig"}

    def publish(self, *entries: dict[str, Any]) -> None:
        """Replace the JWKS."""
        self.published[:] = entries

    def token(self, key: Any = None, kid: str = "rsa-1", **claims: Any) -> str:
        """A JWT signed with ``key`` (the RSA key by default): a valid one unless told."""
        key = key if key is not None else self.rsa
        now = int(time.time())
        body = {"iss": self.issuer, "aud": AUDIENCE, "sub": "user-1", "iat": now,
                "exp": now + 300, "preferred_username": "alice", "jti": uuid.uuid4().hex,
                **claims}  # fmt: skip
        body = {k: v for k, v in body.items() if v is not None}
        algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid})

    def fetches(self, path: str = "/jwks") -> int:
        """How many times ``path`` was asked for."""
        return self.requests.count(path)


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    """The provider, serving on a free loopback port for the module."""
    found = Provider()
    found.publish(found.jwk(found.rsa, "rsa-1"), found.jwk(found.ec, "ec-1"))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            found.requests.append(self.path)
            if self.path == "/.well-known/openid-configuration":
                body = {"issuer": found.issuer, "jwks_uri": f"{found.issuer}/jwks"}
            elif self.path == "/jwks":
                body = {"keys": list(found.published)}
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


@pytest.fixture
def idp(provider: Provider) -> Iterator[Provider]:
    """The provider with its first keys published again and its request log emptied."""
    provider.publish(provider.jwk(provider.rsa, "rsa-1"), provider.jwk(provider.ec, "ec-1"))
    provider.requests.clear()
    yield provider


@pytest.fixture
def oidc(settings: Settings, idp: Provider, apps: Any) -> Iterator[TestClient]:
    """A client on an app that accepts the provider's JWTs (members of "admins" are admins)."""
    settings.auth.oidc_issuer = idp.issuer
    settings.auth.oidc_audience = AUDIENCE
    settings.auth.oidc_admin_group = "admins"
    with apps.client(settings) as client:
        yield client


def call(client: TestClient, method: str, *args: Any, **kwargs: Any) -> Any:
    """Run an ``AccountRepository`` method of the client's app on the app's event loop."""
    assert client.portal is not None
    return client.portal.call(partial(getattr(client.app.state.accounts, method), *args, **kwargs))


def bearer(token: str) -> dict[str, str]:
    """Headers sending ``token``."""
    return {"Authorization": f"Bearer {token}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(idp: Provider, algorithm: str, secret: bytes = b"") -> str:
    """A token with ``alg`` none (no signature) or HS256 keyed with ``secret``."""
    header = _b64(json.dumps({"alg": algorithm, "typ": "JWT", "kid": "rsa-1"}).encode())
    now = int(time.time())
    claims = {"iss": idp.issuer, "aud": AUDIENCE, "sub": "user-1", "exp": now + 300,
              "preferred_username": "alice"}  # fmt: skip
    signing_input = f"{header}.{_b64(json.dumps(claims).encode())}"
    if algorithm == "none":
        return f"{signing_input}."
    digest = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(digest)}"


def test_valid_tokens_make_and_reuse_one_account(oidc: TestClient, idp: Provider) -> None:
    r = oidc.post("/collections", json=collection("mine"), headers=bearer(idp.token()))
    assert r.status_code == 201, r.text
    account = call(oidc, "account_by_subject", f"{idp.issuer}|user-1")
    assert account is not None and account["name"] == "alice" and account["role"] == "user"
    es256 = idp.token(idp.ec, kid="ec-1", email="alice@example.org")
    r = oidc.post("/collections", json=collection("mine-too"), headers=bearer(es256))
    assert r.status_code == 201, r.text
    listed = call(oidc, "list_accounts")
    assert [a["name"] for a in listed] == ["alice"]  # the same identity, the same account
    assert idp.fetches("/.well-known/openid-configuration") == 1 and idp.fetches() == 1


def _bad_tokens(idp: Provider) -> dict[str, tuple[str, str]]:
    """Refused tokens by kind, each with words of the check that must refuse it."""
    now = int(time.time())
    other = rsa.generate_private_key(65537, 2048)
    public_pem = idp.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "expired": (idp.token(exp=now - 120, iat=now - 600), "expired"),
        "not yet valid": (idp.token(nbf=now + 600), "not yet valid"),
        "wrong issuer": (idp.token(iss="https://elsewhere.example"), "issuer"),
        "wrong audience": (idp.token(aud="another-client"), "Audience"),
        "no audience": (idp.token(aud=None), '"aud"'),
        "no expiry": (idp.token(exp=None), '"exp"'),
        "alg none": (unsigned(idp, "none"), "RS256"),
        "HS256 with the public key": (unsigned(idp, "HS256", public_pem), "RS256"),
        "wrong signature": (idp.token(other), "Signature verification failed"),
        "unknown kid": (idp.token(other, kid="made-up"), "does not list"),
        "EC key named for RSA": (idp.token(idp.ec, kid="rsa-1"), "not a key for ES256"),
        "no account claim": (idp.token(preferred_username=None), "preferred_username"),
        "not a JWT": ("abc.def.ghi", "not a readable JWT"),
    }


def test_bad_tokens_are_refused_with_401(oidc: TestClient, idp: Provider) -> None:
    for kind, (token, words) in _bad_tokens(idp).items():
        r = oidc.post("/collections", json=collection("x"), headers=bearer(token))
        assert r.status_code == 401, (kind, r.text)
        assert r.json()["code"] == "auth.InvalidToken", kind
        assert words in r.json()["description"], (kind, r.text)
        assert 'error="invalid_token"' in r.headers["www-authenticate"], kind
    assert call(oidc, "list_accounts") == []


def test_group_grants_reach_the_groups_members(oidc: TestClient, idp: Provider, admin: Any) -> None:
    assert oidc.post("/collections", json=collection("team-only"), headers=admin).status_code == 201
    call(oidc, "set_visibility", "team-only", "private")
    outsider = bearer(idp.token(groups=["others"]))
    assert oidc.get("/collections/team-only", headers=outsider).status_code == 404
    call(oidc, "grant", "team-only", "group", "team", "read")
    member = bearer(idp.token(sub="user-2", preferred_username="bob", groups=["team", "x"]))
    r = oidc.get("/collections/team-only", headers=member)
    assert r.status_code == 200, r.text
    ids = [c["id"] for c in oidc.get("/collections", headers=member).json()["collections"]]
    assert ids == ["team-only"]
    r = oidc.put("/collections/team-only", json=collection("team-only"), headers=member)
    assert r.status_code == 403 and r.json()["code"] == "auth.Forbidden"


def test_admin_group_gives_the_admin_role_and_leaving_it_takes_it(
    oidc: TestClient, idp: Provider, admin: Any
) -> None:
    assert oidc.post("/collections", json=collection("secret"), headers=admin).status_code == 201
    call(oidc, "set_visibility", "secret", "private")
    r = oidc.get("/collections/secret", headers=bearer(idp.token(groups=["admins"])))
    assert r.status_code == 200, r.text
    account = call(oidc, "account_by_subject", f"{idp.issuer}|user-1")
    assert account["role"] == "admin"
    r = oidc.get("/collections/secret", headers=bearer(idp.token(groups=[])))
    assert r.status_code == 404
    account = call(oidc, "account_by_subject", f"{idp.issuer}|user-1")
    assert account["role"] == "user"


def test_disabled_accounts_are_refused(oidc: TestClient, idp: Provider) -> None:
    assert oidc.post("/collections", json=collection("a"), headers=bearer(idp.token())).is_success
    account = call(oidc, "account_by_subject", f"{idp.issuer}|user-1")
    call(oidc, "update_account", account["id"], disabled=True)
    r = oidc.post("/collections", json=collection("b"), headers=bearer(idp.token()))
    assert r.status_code == 401 and r.json()["code"] == "auth.InvalidToken"
    assert "disabled" in r.json()["description"]


def test_a_name_taken_by_a_local_account_is_refused_clearly(
    oidc: TestClient, idp: Provider
) -> None:
    call(oidc, "create_account", "carol")
    token = idp.token(sub="user-3", preferred_username="carol")
    r = oidc.post("/collections", json=collection("x"), headers=bearer(token))
    assert r.status_code == 409 and r.json()["code"] == "account.Exists"
    assert "'carol'" in r.json()["description"] and "preferred_username" in r.json()["description"]
    assert call(oidc, "account_by_subject", f"{idp.issuer}|user-3") is None


def test_rotated_keys_are_fetched_for_a_new_kid(oidc: TestClient, idp: Provider) -> None:
    assert oidc.get("/collections", headers=bearer(idp.token())).status_code == 200
    assert idp.fetches() == 1
    new_key = rsa.generate_private_key(65537, 2048)
    idp.publish(idp.jwk(new_key, "rsa-2"))  # the provider rotates: rsa-1 is gone
    keys = oidc.app.state.authenticator.oidc.keys
    keys.clock = lambda: time.monotonic() + keys.min_refetch_s  # a while later
    r = oidc.get("/collections", headers=bearer(idp.token(new_key, kid="rsa-2")))
    assert r.status_code == 200, r.text
    assert idp.fetches() == 2
    r = oidc.get("/collections", headers=bearer(idp.token()))  # signed with the retired key
    assert r.status_code == 401 and r.json()["code"] == "auth.InvalidToken"


def test_a_flood_of_unknown_kids_fetches_the_keys_at_most_once(
    oidc: TestClient, idp: Provider
) -> None:
    assert oidc.get("/collections", headers=bearer(idp.token())).status_code == 200
    for n in range(15):
        r = oidc.get("/collections", headers=bearer(idp.token(kid=f"random-{n}")))
        assert r.status_code in (401, 429), r.text
    assert idp.fetches() <= 2


def test_an_unreachable_provider_answers_503(oidc: TestClient, idp: Provider) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    settings = AccountSettings(oidc_issuer=gone, oidc_audience=AUDIENCE)
    oidc.app.state.authenticator.oidc = OidcVerifier(settings)
    for _ in range(2):  # the second within the time to retry: not fetched, still 503
        r = oidc.get("/collections", headers=bearer(idp.token(iss=gone)))
        assert r.status_code == 503 and r.json()["code"] == "catalog.Unavailable", r.text
        assert int(r.headers["retry-after"]) > 0


def test_an_issuer_needs_an_audience() -> None:
    with pytest.raises(ValueError, match="AUDIENCE"):
        OidcVerifier(AccountSettings(oidc_issuer="https://id.example"))


async def test_keys_are_kept_and_refetched_when_old(idp: Provider) -> None:
    now = [0.0]
    keys = KeySet(idp.issuer, f"{idp.issuer}/jwks", clock=lambda: now[0])
    assert (await keys.key("rsa-1")).key_id == "rsa-1"
    assert (await keys.key("ec-1")).algorithm_name == "ES256"
    assert keys.fetches == 1
    now[0] = keys.max_age_s + 1
    await keys.key("rsa-1")
    assert keys.fetches == 2 and idp.fetches() == 2
    assert idp.fetches("/.well-known/openid-configuration") == 0  # the JWKS URL was given


async def test_a_provider_away_at_the_first_fetch_is_tried_again_soon(idp: Provider) -> None:
    now, away = [0.0], [True]

    async def fetch(url: str) -> Any:
        if away[0]:
            raise Unavailable("down")
        return await fetch_json(url)

    keys = KeySet(idp.issuer, None, fetch=fetch, clock=lambda: now[0])
    for _ in range(2):
        with pytest.raises(Unavailable):
            await keys.key("rsa-1")
    assert keys.fetches == 1  # the second did not try again at once
    away[0] = False
    now[0] = Unavailable.retry_after_s
    assert (await keys.key("rsa-1")).key_id == "rsa-1"
    assert keys.fetches == 2 and idp.fetches("/.well-known/openid-configuration") == 1


def test_only_usable_signing_keys_are_kept(idp: Provider) -> None:
    good = idp.jwk(idp.ec, "ec-1")
    document = {"keys": [
        {"kty": "RSA", "n": "!!", "e": "AQAB", "kid": "malformed"},
        {"kty": "oct", "k": "c2VjcmV0", "kid": "shared-secret"},
        {**idp.jwk(idp.rsa, "for-encryption"), "use": "enc"},
        {**idp.jwk(idp.rsa, "rs512"), "alg": "RS512"},
        "junk",
        good,
    ]}  # fmt: skip
    keys = signing_keys(document)
    assert set(keys) == {"ec-1", None}  # a lone key also serves tokens without a kid
    assert keys[None].algorithm_name == "ES256"
