"""Writes need a caller: without a token they are refused (401), unless the development flag is
set and no bootstrap token is configured."""

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from server.app import create_app
from server.settings import ApiSettings, Settings
from tests.factories import collection


def test_anonymous_writes_are_refused(settings: Settings) -> None:
    settings.api = ApiSettings()
    with TestClient(create_app(settings)) as client:
        r = client.post("/collections", json=collection("x"))
        assert r.status_code == 401 and r.json()["code"] == "auth.Unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/collections").status_code == 200


def test_development_flag_allows_anonymous_writes(settings: Settings) -> None:
    settings.api = ApiSettings(allow_anonymous_writes=True)
    with TestClient(create_app(settings)) as client:
        assert client.post("/collections", json=collection("x")).status_code == 201


def test_short_tokens_are_rejected() -> None:
    with pytest.raises(ValidationError, match="16 characters"):
        ApiSettings(admin_token=SecretStr("short"))
