"""docker/compose.yaml and docs/deploy.md name only settings that exist, and the compose file
wires a scalable deployment: no fixed host port on the replicas, every Terracat process on the
same database and bucket, one-shot bucket and migration services before them. No Docker engine
runs the file here: this is what a parser can check."""

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from server.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker" / "compose.yaml"
NAME = re.compile(r"\bTERRACAT_[A-Z0-9_]+[A-Z0-9]\b")
TERRACAT = ("migrate", "api", "worker")


def _known() -> set[str]:
    """Every environment variable the settings read."""
    names = {"DATABASE_URL"}
    for field in Settings.model_fields.values():
        group = field.annotation
        assert isinstance(group, type) and issubclass(group, BaseSettings)
        prefix = str(group.model_config.get("env_prefix", "")).upper()
        for name, inner in group.model_fields.items():
            names.add(prefix + name.upper())
            alias = inner.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(str(choice).upper() for choice in alias.choices)
    return names


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_every_setting_named_exists(compose: dict[str, Any]) -> None:
    named = set(NAME.findall(COMPOSE.read_text()))
    named |= set(NAME.findall((ROOT / "docs" / "deploy.md").read_text()))
    named = {n for n in named if not n.endswith("_")}  # prefixes (TERRACAT_AUTH_OIDC_*)
    unknown = named - _known()
    assert not unknown, f"settings that do not exist: {sorted(unknown)}"


def test_the_processes_share_the_database_and_the_bucket_only(compose: dict[str, Any]) -> None:
    services = compose["services"]
    envs = [services[name]["environment"] for name in TERRACAT]
    for key in ("DATABASE_URL", "TERRACAT_STORAGE_S3_BUCKET", "TERRACAT_STORAGE_S3_ENDPOINT_URL",
                "TERRACAT_STORAGE_KIND", "TERRACAT_INGEST_DATA_DIR"):  # fmt: skip
        assert len({env[key] for env in envs}) == 1, key
    assert envs[0]["TERRACAT_STORAGE_KIND"] == "s3"
    assert "@db:5432/" in envs[0]["DATABASE_URL"]
    for name in TERRACAT:
        assert not services[name].get("volumes"), f"{name} mounts a volume: a shared disk"


def test_replicas_scale_behind_the_proxy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("api", "worker"):
        assert "ports" not in services[name], f"{name}: a fixed host port clashes when scaled"
        assert "container_name" not in services[name]
        assert services[name]["healthcheck"]["test"]
        needs = services[name]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully"
        assert needs["createbucket"]["condition"] == "service_completed_successfully"
    assert services["worker"]["command"] == ["terracat", "worker"]
    proxy = services["proxy"]
    assert proxy["depends_on"]["api"]["condition"] == "service_healthy"
    (config,) = proxy["volumes"]
    conf = (COMPOSE.parent / config.split(":")[0]).read_text()
    assert "http://api:8000" in conf and "resolver 127.0.0.11" in conf
    assert "client_max_body_size 0" in conf and "proxy_request_buffering off" in conf
    bucket = services["createbucket"]
    assert bucket["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "mc mb --ignore-existing" in " ".join(bucket["entrypoint"])
    for name in ("db", "minio", "proxy"):
        assert services[name]["healthcheck"]["test"], name


def test_every_service_is_a_model_of_the_compose_spec(compose: dict[str, Any]) -> None:
    allowed = {"image", "build", "command", "entrypoint", "environment", "depends_on",
               "volumes", "ports", "expose", "healthcheck", "restart",
               "stop_grace_period"}  # fmt: skip
    for name, service in compose["services"].items():
        assert set(service) <= allowed, (name, set(service) - allowed)
        assert "image" in service, name
    assert set(compose) == {"services", "volumes", "x-terracat-env", "x-terracat-image"}


_DEFAULTED = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


def test_the_services_start_with_nothing_set(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no variable set on the host, every ``${X:-default}`` is its default (often empty):
    each Terracat service's environment must still be valid settings (an empty value is
    unset, not a too-short admin token or signing secret)."""
    for name in TERRACAT:
        environment = compose["services"][name]["environment"]
        with monkeypatch.context() as patch:
            for key in [k for k in os.environ if k.startswith("TERRACAT_")]:
                patch.delenv(key)
            for key, value in environment.items():
                patch.setenv(key, _DEFAULTED.sub(lambda m: m.group(2) or "", str(value)))
            settings = Settings()
        assert settings.storage.kind == "s3", name
        assert settings.api.admin_token is None and settings.auth.signing_secret is None, name
