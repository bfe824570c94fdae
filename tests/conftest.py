"""Session fixtures: a real PostGIS migrated by Alembic, isolated per test by truncation.

The database is a throwaway private cluster started for the session. With ``DATABASE_URL`` set,
a fresh database is created on that server instead (and dropped afterwards): never the
database in the URL itself, so a developer's data is never touched.
"""

import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, create_engine, make_url, text

from catalog.cluster import LocalCluster, free_port
from catalog.db import migrate, sync_url

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from server.settings import Settings

TABLES = ("queryables", "items", "collections")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """URL of an empty, migrated database for this test session."""
    server_url = os.environ.get("DATABASE_URL")
    if server_url:
        name = f"terracat_test_{secrets.token_hex(4)}"
        admin = make_url(sync_url(server_url)).set(drivername="postgresql")
        admin_dsn = admin.render_as_string(hide_password=False)
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = admin.set(database=name).render_as_string(hide_password=False)
        try:
            migrate(url)
            yield url
        finally:
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        return
    folder = Path(tempfile.mkdtemp(prefix="terracat-test-"))
    folder.chmod(0o755)  # the postgres user must reach the data folder inside
    cluster = LocalCluster(folder / "db", free_port())
    try:
        cluster.start()
        url = cluster.ensure_database("terracat_test")
        migrate(url)
        yield url
    finally:
        cluster.destroy()
        folder.rmdir()


@pytest.fixture(scope="session")
def sync_engine(database_url: str) -> Iterator[Engine]:
    """A synchronous SQLAlchemy engine on the test database."""
    engine = create_engine(sync_url(database_url))
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _clean_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """Empty the catalogue tables after every test that touched the database."""
    if "database_url" not in request.fixturenames:
        yield
        return
    engine: Engine = request.getfixturevalue("sync_engine")
    yield
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))


ADMIN_TOKEN = "test-admin-token-0123456789"


@pytest.fixture
def settings(database_url: str) -> "Settings":
    """App settings on the test database with an admin token."""
    from pydantic import SecretStr

    from server.settings import ApiSettings, Settings

    settings = Settings()
    settings.db.url = database_url
    settings.api = ApiSettings(admin_token=SecretStr(ADMIN_TOKEN))
    return settings


@pytest.fixture
def client(settings: "Settings") -> Iterator["TestClient"]:
    """HTTP client on the ASGI app (lifespan run, real database)."""
    from fastapi.testclient import TestClient

    from server.app import create_app

    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def admin() -> dict[str, str]:
    """Headers that authorize a write."""
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
