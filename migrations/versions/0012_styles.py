"""Map styles of collections: the MapLibre style a collection admin stored in place of the
generated one.

One row per collection and style id (``default`` is the one ``/collections/{id}/styles/default``
serves); the body is the validated style JSON. No row: the style is generated from the
collection (ogc/styles.py). Deleting the collection deletes its styles.

Revision ID: 0012_styles
Revises: 0011_upload_vector_options
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0012_styles"
down_revision: str | None = "0011_upload_vector_options"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The styles table."""
    op.create_table(
        "styles",
        sa.Column(
            "collection_id",
            sa.Text,
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("style_id", sa.Text, primary_key=True),
        sa.Column("body", pg.JSONB, nullable=False),
        sa.Column(
            "updated", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
        ),
    )


def downgrade() -> None:
    """Drop the styles table."""
    op.drop_table("styles")
