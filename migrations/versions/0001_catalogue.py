"""Catalogue schema: collections, items, queryables registry, search indexes.

Revision ID: 0001_catalogue
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001_catalogue"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Typed views of well-known STAC properties. The search code builds exactly these expressions
# (catalog.stac.queryables.typed_property), so the planner matches them to the indexes below.
_NUMBER = (
    "(CASE WHEN jsonb_typeof(properties -> '{p}') = 'number'"
    " THEN (properties -> '{p}')::float8 END)"
)
_STRING = "(CASE WHEN jsonb_typeof(properties -> '{p}') = 'string' THEN properties ->> '{p}' END)"
_INDEXED = {
    "eo:cloud_cover": _NUMBER,
    "gsd": _NUMBER,
    "proj:epsg": _NUMBER,
    "view:off_nadir": _NUMBER,
    "platform": _STRING,
    "constellation": _STRING,
    "proj:code": _STRING,
}


def _index_name(prop: str) -> str:
    return "items_prop_" + prop.replace(":", "_") + "_idx"


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
    # Timestamps kept inside JSON are compared as timestamps; a value that is not one is NULL
    # rather than an error, so no filter can fail on another item's bad data.
    op.execute(
        """
        CREATE FUNCTION terracat_to_tstz(value text) RETURNS timestamptz
        LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE STRICT SET timezone = 'UTC' AS $$
        BEGIN
            RETURN value::timestamptz;
        EXCEPTION WHEN others THEN
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TABLE collections (
            id text PRIMARY KEY,
            content jsonb NOT NULL,
            search_text text NOT NULL DEFAULT '',
            search_vector tsvector
                GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, search_text)) STORED,
            spatial geometry(Geometry, 4326),
            start_datetime timestamptz,
            end_datetime timestamptz,
            created timestamptz NOT NULL DEFAULT now(),
            updated timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE INDEX collections_search_vector_idx ON collections USING gin (search_vector)"
    )
    op.execute("CREATE INDEX collections_spatial_idx ON collections USING gist (spatial)")
    op.execute(
        """
        CREATE TABLE items (
            collection_id text NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
            id text NOT NULL,
            geometry geometry(Geometry, 4326),
            datetime timestamptz NOT NULL,
            end_datetime timestamptz NOT NULL,
            properties jsonb NOT NULL,
            content jsonb NOT NULL,
            created timestamptz NOT NULL DEFAULT now(),
            updated timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (collection_id, id),
            CONSTRAINT items_time_order CHECK (datetime <= end_datetime)
        )
        """
    )
    op.execute("CREATE INDEX items_geometry_idx ON items USING gist (geometry)")
    # Keyset paging in the default order (datetime, id, collection), across and within collections.
    op.execute("CREATE INDEX items_datetime_idx ON items (datetime, id, collection_id)")
    op.execute("CREATE INDEX items_collection_datetime_idx ON items (collection_id, datetime, id)")
    op.execute("CREATE INDEX items_end_datetime_idx ON items (end_datetime)")
    op.execute("CREATE INDEX items_id_idx ON items (id)")
    for prop, template in _INDEXED.items():
        op.execute(
            f"CREATE INDEX {_index_name(prop)} ON items ({template.format(p=prop)}, datetime)"
        )
    op.execute(
        """
        CREATE TABLE queryables (
            collection_id text NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
            name text NOT NULL,
            kind text NOT NULL,
            PRIMARY KEY (collection_id, name, kind)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE queryables")
    op.execute("DROP TABLE items")
    op.execute("DROP TABLE collections")
    op.execute("DROP FUNCTION terracat_to_tstz(text)")
