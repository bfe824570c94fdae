"""Vector collections: a table of features per collection, described in ``vector_layers``.

- Schema ``features`` holds one table per vector collection (``features.l{n}``): ``fid`` (the
  OGC feature id, an identity), ``geom`` (any geometry type and dimension, EPSG:4326, checked)
  and one typed column per property of the source schema. A table per collection, not one
  table with JSONB properties, because properties are typed by the source file: filters, sorts,
  facets and aggregations read real columns (and btree indexes), and tipg or GDAL can serve the
  very same table.
- ``vector_layers`` describes each: the table, geometry type, source CRS, the ordered property
  list (``[{"name", "type", "column"}]``), the datetime property, the raster collection it
  annotates (if any), the feature count and the extent. Deleting the collection deletes the
  row (cascade), and a trigger drops its table.

Revision ID: 0010_vector_layers
Revises: 0009_uploads_in_storage
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0010_vector_layers"
down_revision: str | None = "0009_uploads_in_storage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOW = sa.text("now()")

_DROP_TABLE = """
CREATE FUNCTION terracat_vector_layer_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS features.%I', OLD.table_name);
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    """The features schema, the layer table and its drop trigger."""
    op.execute("CREATE SCHEMA IF NOT EXISTS features")
    op.execute("CREATE SEQUENCE vector_layer_seq")
    op.create_table(
        "vector_layers",
        sa.Column(
            "collection_id",
            sa.Text,
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("table_name", sa.Text, nullable=False, unique=True),
        sa.Column("geometry_type", sa.Text, nullable=False),
        sa.Column("source_crs", sa.Text),
        sa.Column("properties", pg.JSONB, nullable=False, server_default="[]"),
        sa.Column("datetime_property", sa.Text),
        # The raster collection whose imagery these features describe (a hybrid, docs/api.md).
        sa.Column("annotates", sa.Text, sa.ForeignKey("collections.id", ondelete="SET NULL")),
        sa.Column("feature_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("west", sa.Double),
        sa.Column("south", sa.Double),
        sa.Column("east", sa.Double),
        sa.Column("north", sa.Double),
        sa.Column("start_datetime", sa.DateTime(timezone=True)),
        sa.Column("end_datetime", sa.DateTime(timezone=True)),
        sa.Column("created", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), server_default=_NOW, nullable=False),
    )
    op.execute(_DROP_TABLE)
    op.execute(
        "CREATE TRIGGER vector_layer_gone AFTER DELETE ON vector_layers "
        "FOR EACH ROW EXECUTE FUNCTION terracat_vector_layer_gone()"
    )


def downgrade() -> None:
    """Drop every feature table with the schema."""
    op.execute("DROP TRIGGER vector_layer_gone ON vector_layers")
    op.execute("DROP FUNCTION terracat_vector_layer_gone()")
    op.drop_table("vector_layers")
    op.execute("DROP SEQUENCE vector_layer_seq")
    op.execute("DROP SCHEMA features CASCADE")
