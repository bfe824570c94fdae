"""Upload sets say how vector files load: which layer, which datetime property, what they annotate.

- ``upload_sets.layer``: the one layer of a multi-layer file to load (else every layer becomes
  a collection, docs/ingest.md).
- ``upload_sets.datetime_property``: the property temporal queries use (else the first date or
  datetime property of the file).
- ``upload_sets.annotates``: the raster collection the features describe (vector_layers).

Revision ID: 0011_upload_vector_options
Revises: 0010_vector_layers
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_upload_vector_options"
down_revision: str | None = "0010_vector_layers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Three nullable columns."""
    op.add_column("upload_sets", sa.Column("layer", sa.Text))
    op.add_column("upload_sets", sa.Column("datetime_property", sa.Text))
    op.add_column(
        "upload_sets",
        sa.Column("annotates", sa.Text, sa.ForeignKey("collections.id", ondelete="SET NULL")),
    )


def downgrade() -> None:
    """Drop them."""
    for column in ("annotates", "datetime_property", "layer"):
        op.drop_column("upload_sets", column)
