"""Vector layers: the smallest and largest value of each number and date property.

``vector_layers.bounds`` (column name -> [min, max], numbers over finite values only) is kept
by every write with the feature count and extent (``refresh_extent``), so facets over every
feature bucket numbers and dates without a scan for their range. NULL until the layer's next
write: facets then scan as before.

Revision ID: 0017_vector_bounds
Revises: 0016_pictures
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0017_vector_bounds"
down_revision: str | None = "0016_pictures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The bounds column."""
    op.add_column("vector_layers", sa.Column("bounds", pg.JSONB))


def downgrade() -> None:
    """Without it."""
    op.drop_column("vector_layers", "bounds")
