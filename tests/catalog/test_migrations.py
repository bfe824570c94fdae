"""Migrations are the only way the schema is made: they upgrade, downgrade and upgrade again."""

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from catalog.db.engine import downgrade, migrate


@pytest.fixture
def scratch_url(database_url: str) -> Iterator[str]:
    name = "terracat_migration_check"
    base = database_url.rsplit("/", 1)[0]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield f"{base}/{name}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def test_upgrade_downgrade_upgrade(scratch_url: str) -> None:
    migrate(scratch_url)
    assert {"collections", "items", "queryables", "alembic_version"} <= _tables(scratch_url)
    migrate(scratch_url)  # idempotent
    downgrade(scratch_url, "base")
    assert not {"collections", "items", "queryables"} & _tables(scratch_url)
    migrate(scratch_url)
    assert {"collections", "items", "queryables"} <= _tables(scratch_url)
