"""Migrations are the only way the schema is made: they upgrade, downgrade and upgrade again."""

import argparse
import math
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from alembic import command
from psycopg import sql

from catalog.db.engine import alembic_config, downgrade, migrate


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


def test_collection_extents_are_filled_on_upgrade_and_restored_on_downgrade(
    scratch_url: str,
) -> None:
    world = {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}}
    migrate(scratch_url, "0004_searches")
    with psycopg.connect(scratch_url) as conn:
        conn.execute(
            "INSERT INTO collections (id, content) VALUES ('c', %s)",
            [psycopg.types.json.Jsonb({"extent": world})],
        )
        conn.execute(
            "INSERT INTO items (collection_id, id, geometry, datetime, end_datetime, properties,"
            " content) VALUES ('c', 'a', ST_MakeEnvelope(1, 2, 3, 4, 4326), '2020-01-01Z',"
            " '2020-02-01Z', '{}', '{}')"
        )
    migrate(scratch_url)

    def extent() -> object:
        with psycopg.connect(scratch_url) as conn:
            row = conn.execute("SELECT content -> 'extent' FROM collections").fetchone()
        return row[0] if row else None

    assert extent() == {
        "spatial": {"bbox": [[1, 2, 3, 4]]},
        "temporal": {"interval": [["2020-01-01T00:00:00Z", "2020-02-01T00:00:00Z"]]},
    }
    downgrade(scratch_url, "0004_searches")
    assert extent() == world


def test_longest_item_span_is_filled_on_upgrade(scratch_url: str) -> None:
    migrate(scratch_url, "0005_collection_extents")
    with psycopg.connect(scratch_url) as conn:
        conn.execute("INSERT INTO collections (id, content) VALUES ('c', '{}'), ('e', '{}')")
        conn.execute(
            "INSERT INTO items (collection_id, id, datetime, end_datetime, properties, content)"
            " VALUES ('c', 'a', '2020-01-01Z', '2020-03-01Z', '{}', '{}'),"
            " ('c', 'b', '2020-01-01Z', '2020-01-01Z', '{}', '{}')"
        )
    migrate(scratch_url)
    with psycopg.connect(scratch_url) as conn:
        spans = dict(conn.execute("SELECT id, item_max_span FROM collections").fetchall())
    assert spans == {"c": timedelta(days=60), "e": None}


def test_file_hrefs_of_item_folders_become_storage_keys(scratch_url: str) -> None:
    migrate(scratch_url, "0007_accounts_rights")
    assets = {
        "data": {"href": "file:///srv/data/assets/c/a%20b/a%20b.tif", "file:size": 3},
        "thumbnail": {"href": "file:///srv/data/assets/c/a%20b/thumbnail.png"},
        "elsewhere": {"href": "file:///srv/data/assets/other/a%20b/x.tif"},  # not its folder
        "secret": {"href": "file:///etc/passwd"},
        "remote": {"href": "https://example.com/x.tif"},
    }
    with psycopg.connect(scratch_url) as conn:
        conn.execute("INSERT INTO collections (id, content) VALUES ('c', '{}')")
        conn.execute(
            "INSERT INTO items (collection_id, id, datetime, end_datetime, properties, content)"
            " VALUES ('c', 'a b', '2020-01-01Z', '2020-01-01Z', '{}', %s),"
            " ('c', 'plain', '2020-01-01Z', '2020-01-01Z', '{}', '{\"assets\": []}')",
            [psycopg.types.json.Jsonb({"assets": assets})],
        )
    migrate(scratch_url)

    def stored() -> dict[str, str]:
        with psycopg.connect(scratch_url) as conn:
            row = conn.execute("SELECT content -> 'assets' FROM items WHERE id = 'a b'").fetchone()
        assert row is not None
        return {name: asset["href"] for name, asset in row[0].items()}

    assert stored() == {
        "data": "storage:assets/c/a b/a b.tif",
        "thumbnail": "storage:assets/c/a b/thumbnail.png",
        "elsewhere": "file:///srv/data/assets/other/a%20b/x.tif",
        "secret": "file:///etc/passwd",
        "remote": "https://example.com/x.tif",
    }
    assert "server_secrets" in _tables(scratch_url)
    downgrade(scratch_url, "0007_accounts_rights")  # no data folder given: keys stay
    assert "server_secrets" not in _tables(scratch_url)
    assert stored()["data"] == "storage:assets/c/a b/a b.tif"
    migrate(scratch_url)
    config = alembic_config(scratch_url)  # alembic -x data_dir=/srv/new downgrade ...
    config.cmd_opts = argparse.Namespace(x=["data_dir=/srv/new"])
    command.downgrade(config, "0007_accounts_rights")
    assert stored()["data"] == "file:///srv/new/assets/c/a%20b/a%20b.tif"
    assert stored()["remote"] == "https://example.com/x.tif"


def test_staged_paths_become_storage_keys(scratch_url: str) -> None:
    migrate(scratch_url, "0007_accounts_rights")
    with psycopg.connect(scratch_url) as conn:
        conn.execute("INSERT INTO collections (id, content) VALUES ('c', '{}')")
        conn.execute(
            "INSERT INTO upload_sets (id, collection_id) "
            "VALUES ('00000000-0000-0000-0000-000000000001', 'c')"
        )
        for number, staged in enumerate(("/srv/data/staging/upload-1ab2", None)):
            conn.execute(
                "INSERT INTO upload_files (id, upload_set_id, collection_id, filename, source,"
                " staged_path) VALUES (%s, '00000000-0000-0000-0000-000000000001', 'c', 'f.tif',"
                " 'multipart', %s)",
                [f"00000000-0000-0000-0000-00000000001{number}", staged],
            )
    migrate(scratch_url)
    with psycopg.connect(scratch_url) as conn:
        keys = conn.execute("SELECT staged_key FROM upload_files ORDER BY id").fetchall()
    assert keys == [("staging/upload-1ab2",), (None,)]
    assert "tus_uploads" in _tables(scratch_url)


def test_items_get_their_tile_columns_on_upgrade(scratch_url: str) -> None:
    """0019: items already stored get the footprint in Web Mercator and the tile properties,
    and later writes keep both in step (they are generated columns)."""
    migrate(scratch_url, "0018_vector_size_index")
    properties = '{"gsd": 10, "platform": 7, "title": "A", "eo:cloud_cover": "low"}'
    with psycopg.connect(scratch_url) as conn:
        conn.execute("INSERT INTO collections (id, content) VALUES ('c', '{}')")
        conn.execute(
            "INSERT INTO items (collection_id, id, geometry, datetime, end_datetime, properties,"
            " content) VALUES ('c', 'a', ST_MakeEnvelope(10, 80, 20, 90, 4326),"
            " '2020-01-01T10:00:00.5Z', '2020-01-01T10:00:00.5Z', %s, '{}')",
            [properties],
        )
    migrate(scratch_url)

    def tile_columns() -> tuple[object, ...]:
        with psycopg.connect(scratch_url) as conn:
            row = conn.execute(
                "SELECT tile_properties, ST_SRID(tile_geometry), "
                "round(ST_YMax(tile_geometry)::numeric), round(ST_XMin(tile_geometry)::numeric) "
                "FROM items"
            ).fetchone()
        assert row is not None
        return tuple(row)

    # Only values of the tile's JSON types; cut north of 89 degrees.
    y89 = round(6378137 * math.log(math.tan(math.radians(45 + 89 / 2))))
    assert tile_columns() == (
        {"datetime": "2020-01-01T10:00:00.500000Z", "gsd": 10, "title": "A"},
        3857, y89, round(6378137 * math.radians(10)),
    )  # fmt: skip
    with psycopg.connect(scratch_url) as conn:
        conn.execute(
            "UPDATE items SET properties = '{\"platform\": \"s2\"}', datetime = '2019-05-06Z',"
            " geometry = ST_MakeEnvelope(-20, -10, -10, 0, 4326)"
        )
    assert tile_columns() == (
        {"datetime": "2019-05-06T00:00:00Z", "platform": "s2"}, 3857, 0,
        round(6378137 * math.radians(-20)),
    )  # fmt: skip
    downgrade(scratch_url, "0018_vector_size_index")
    with psycopg.connect(scratch_url) as conn:
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'items'"
        ).fetchall()
    assert not {("tile_geometry",), ("tile_properties",)} & set(columns)
