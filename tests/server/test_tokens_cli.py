"""``terracat accounts``, ``terracat tokens``, ``terracat ingest`` with an account's token, and
the first start of ``terracat serve``: against real servers, over HTTP."""

import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from catalog.db.cluster import LocalCluster, free_port
from server.cli import main
from tests import rasters
from tests.factories import collection

from .conftest import LIVE_TOKEN, LiveServer, _start, _stop

TOKEN = re.compile(r"tcat_[0-9a-f]{32}_[A-Za-z0-9_-]{43}")


@pytest.fixture(scope="module")
def server(databases: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server of this module's own, storing files in a folder of its own."""
    data_dir = tmp_path_factory.mktemp("accounts-cli-data")
    url = databases.create(f"terracat_accounts_cli_{databases.suffix}")
    proc, live = _start(url, TERRACAT_INGEST_DATA_DIR=str(data_dir))
    yield live
    _stop(proc, live)


@pytest.fixture(autouse=True)
def _no_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TERRACAT_TOKEN", raising=False)
    monkeypatch.delenv("TERRACAT_API_ADMIN_TOKEN", raising=False)


def terracat(
    server: LiveServer, capsys: pytest.CaptureFixture[str], *args: str, token: str | None = None
) -> tuple[int, str, str]:
    """``terracat ARGS --server URL [--token T]`` in-process: exit code, stdout, stderr."""
    auth = ["--token", token] if token else []
    code = main([*args, "--server", server.url, *auth])
    out, err = capsys.readouterr()
    return code, out, err


def fields(out: str) -> dict[str, str]:
    """The ``key  value`` lines ``terracat accounts add`` prints."""
    return dict(line.split(None, 1) for line in out.splitlines())  # type: ignore[misc]


def me(server: LiveServer, token: str) -> httpx.Response:
    """``GET /users/me`` with ``token``."""
    return httpx.get(f"{server.url}/users/me", headers={"Authorization": f"Bearer {token}"})


def refused_within(server: LiveServer, token: str, seconds: float) -> float:
    """Seconds until the server refuses ``token``; fails after ``seconds``."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if me(server, token).status_code == 401:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"token still accepted after {seconds} s")


def test_accounts_add_list_disable(server: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = terracat(server, capsys, "accounts", "add", "alice", "--email",
                              "alice@example.org", "--quota", "5000", token=LIVE_TOKEN)  # fmt: skip
    assert code == 0, err
    alice = fields(out)
    assert (alice["account"], alice["role"], alice["email"], alice["quota"], alice["scopes"]) == (
        "alice", "user", "alice@example.org", "5000 bytes", "read,write")  # fmt: skip
    assert TOKEN.fullmatch(alice["token"]) and "only this once" in err
    doc = me(server, alice["token"]).json()
    assert (doc["id"], doc["name"], doc["quota"]["limit_bytes"]) == (alice["id"], "alice", 5000)

    code, out, err = terracat(server, capsys, "accounts", "add", "alice", token=LIVE_TOKEN)
    assert code == 2 and out == "" and "HTTP 409 account.Exists: " in err, err
    code, out, _ = terracat(server, capsys, "accounts", "add", "root", "--role", "admin",
                            token=LIVE_TOKEN)  # fmt: skip
    root = fields(out)
    assert code == 0 and (root["role"], root["scopes"]) == ("admin", "read,write,admin")
    assert root["quota"] == "server default" and root["email"] == "-"

    # an admin account's token does what the bootstrap token does
    code, out, _ = terracat(server, capsys, "accounts", "list", token=root["token"])
    assert code == 0
    lines = {line.split()[0]: line.split() for line in out.splitlines()}
    assert lines["alice"] == ["alice", "user", "enabled", alice["id"], "alice@example.org"]
    assert lines["root"] == ["root", "admin", "enabled", root["id"]]
    code, out, err = terracat(server, capsys, "accounts", "list", token=alice["token"])
    assert code == 2 and "HTTP 403 auth.Forbidden: " in err, err
    code, out, err = terracat(server, capsys, "accounts", "list")
    assert code == 2 and "HTTP 401 auth.Unauthorized: " in err, err

    code, out, err = terracat(server, capsys, "accounts", "disable", "alice", token=root["token"])
    assert (code, out) == (0, f"disabled account alice ({alice['id']})\n"), err
    assert refused_within(server, alice["token"], 1.5) <= 1.2
    code, out, _ = terracat(server, capsys, "accounts", "disable", root["id"], token=LIVE_TOKEN)
    assert (code, out) == (0, f"disabled account root ({root['id']})\n")
    assert refused_within(server, root["token"], 1.5) <= 1.2
    code, out, err = terracat(server, capsys, "accounts", "disable", "nobody", token=LIVE_TOKEN)
    assert code == 2 and "account.NotFound" in err and "'nobody'" in err
    code, out, _ = terracat(server, capsys, "accounts", "list", token=LIVE_TOKEN)
    assert "disabled" in next(line for line in out.splitlines() if line.startswith("alice "))


def test_tokens_create_list_revoke(
    server: LiveServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = terracat(server, capsys, "accounts", "add", "bob", token=LIVE_TOKEN)
    bob = fields(out)["token"]
    code, out, err = terracat(server, capsys, "tokens", "create", "--description", "laptop",
                              "--scopes", "read", token=bob)  # fmt: skip
    assert code == 0, err
    reader = out.strip()
    assert TOKEN.fullmatch(reader) and "(scopes read): shown only this once" in err
    assert me(server, reader).json()["scopes"] == ["read"]
    r = httpx.post(f"{server.url}/collections", json=collection("by-reader"),
                   headers={"Authorization": f"Bearer {reader}"})  # fmt: skip
    assert r.status_code == 403 and r.json()["code"] == "auth.InsufficientScope"
    code, _, err = terracat(server, capsys, "tokens", "create", "--scopes", "read,write",
                            token=reader)  # fmt: skip
    assert code == 2 and "HTTP 403 auth.InsufficientScope: " in err, err
    code, _, err = terracat(server, capsys, "tokens", "create", "--scopes", "rw", token=bob)
    assert code == 2 and "HTTP 400 rights.Invalid: " in err, err

    monkeypatch.setenv("TERRACAT_TOKEN", bob)  # as the CLI's users keep it
    code, out, _ = terracat(server, capsys, "tokens", "list")
    assert code == 0 and len(out.splitlines()) == 2
    laptop = next(line for line in out.splitlines() if line.endswith("laptop")).split()
    assert laptop[1:2] == ["read"] and laptop[3] == "active"
    assert not TOKEN.search(out) and bob.rsplit("_", 1)[1] not in out

    code, out, err = terracat(server, capsys, "tokens", "revoke", laptop[0])
    assert (code, out) == (0, f"revoked token {laptop[0]}\n"), err
    assert refused_within(server, reader, 1.5) <= 1.2
    code, out, _ = terracat(server, capsys, "tokens", "list")
    assert next(line for line in out.splitlines() if line.startswith(laptop[0])).split()[3] == (
        "revoked"
    )
    code, _, err = terracat(server, capsys, "tokens", "revoke", laptop[0])
    assert code == 2 and "HTTP 404 token.NotFound: " in err, err
    code, _, err = terracat(server, capsys, "tokens", "create", token=LIVE_TOKEN)
    assert code == 2 and "HTTP 403 auth.Forbidden: the bootstrap token belongs to no account" in err


def test_ingest_with_an_account_token(
    server: LiveServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    code, out, _ = terracat(server, capsys, "accounts", "add", "carol", token=LIVE_TOKEN)
    carol = fields(out)["token"]
    tif = rasters.utm_rgb_tif(tmp_path, size=64, border=4)
    monkeypatch.setenv("TERRACAT_TOKEN", carol)
    code, out, err = terracat(server, capsys, "ingest", str(tif), "--collection", "carols",
                              "--create", "--no-wait", "--quiet")  # fmt: skip
    assert code == 0, err
    set_url = re.search(r"upload set (\S+)", out)
    assert set_url is not None, out
    upload_set = httpx.get(set_url[1], headers={"Authorization": f"Bearer {carol}"}).json()
    assert upload_set["collection"] == "carols" and len(upload_set["files"]) == 1

    code, out, _ = terracat(server, capsys, "tokens", "create", "--scopes", "read")
    monkeypatch.setenv("TERRACAT_TOKEN", out.strip())
    code, _, err = terracat(server, capsys, "ingest", str(tif), "--collection", "carols",
                            "--no-wait", "--quiet")  # fmt: skip
    assert code == 2 and "HTTP 403 auth.InsufficientScope" in err, err


def _token_in(log: str) -> str | None:
    found = TOKEN.findall(log)
    assert len(found) <= 1, log
    return found[0] if found else None


def test_first_start_prints_an_admin_token_once(database_url: str, sync_engine: Engine) -> None:
    proc, live = _start(database_url, serve=True)
    try:
        log = live.log()
        token = _token_in(log)
        assert token is not None, log
        # shown before the server starts, not lost among its lines
        assert log.index("First start") < log.index("Terracat STAC API:")
        doc = me(live, token).json()
        assert (doc["name"], doc["role"]) == ("admin", "admin")
        assert doc["scopes"] == ["read", "write", "admin"]
        listed = httpx.get(f"{live.url}/accounts", headers={"Authorization": f"Bearer {token}"})
        assert [a["name"] for a in listed.json()["accounts"]] == ["admin"]
        # the bootstrap token still works next to it
        assert httpx.get(f"{live.url}/accounts", headers=live.auth).status_code == 200
    finally:
        _stop(proc, live)

    proc, live = _start(database_url, serve=True)
    try:
        log = live.log()
        assert _token_in(log) is None and "First start" not in log, log
        assert me(live, token).json()["name"] == "admin"
    finally:
        _stop(proc, live)

    with sync_engine.begin() as conn:  # no enabled admin any more: the next start makes one
        conn.execute(text("UPDATE accounts SET disabled = true WHERE name = 'admin'"))
    proc, live = _start(database_url, serve=True)
    try:
        second = _token_in(live.log())
        assert second is not None and me(live, second).json()["name"] == "admin-2"
    finally:
        _stop(proc, live)


def test_serve_on_an_empty_data_folder_prints_a_working_admin_token(tmp_path: Path) -> None:
    """What `make run` does on a fresh machine: no DATABASE_URL, an empty folder for the
    embedded PostGIS; the token it prints lets the newcomer write at once."""
    # a folder of its own under /tmp: the cluster runs as postgres, which cannot enter tmp_path
    data = Path(tempfile.mkdtemp(prefix="terracat-serve-"))
    port = free_port()
    env = {"TERRACAT_DB_DATA_DIR": str(data), "TERRACAT_DB_EMBEDDED_PORT": str(port),
           "TERRACAT_INGEST_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    try:
        proc, live = _start("", serve=True, **env)
        try:
            log = live.log()
            assert "embedded PostGIS" in log, log
            assert f"Viewer:          {live.url}/viewer/" in log, log
            token = _token_in(log)
            assert token is not None, log
            headers = {"Authorization": f"Bearer {token}"}
            r = httpx.post(f"{live.url}/collections", json=collection("first"), headers=headers)
            assert r.status_code == 201, r.text
            assert me(live, token).json()["collections"]["owned"] == ["first"]
        finally:
            _stop(proc, live)
    finally:
        LocalCluster(data, port).stop()
        shutil.rmtree(data, ignore_errors=True)
