"""Drop the index on items.end_datetime: it made interval searches slower, never faster.

A datetime interval ``S/E`` filters on ``datetime <= E AND end_datetime >= S``. With this index
the planner ANDed a bitmap of every item ending after ``S`` (a quarter of a 1M catalogue for a
recent interval, 32 ms to build) with the spatial bitmap, where walking the datetime index
backwards from ``E`` finds the first page in a few milliseconds (bench/, bbox+datetime at 1M:
45 ms -> 7 ms). Items whose end_datetime matters (long spans) are rare enough that no query
measured needs it.

Revision ID: 0002_drop_end_datetime_index
Revises: 0001_catalogue
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_drop_end_datetime_index"
down_revision: str | None = "0001_catalogue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS items_end_datetime_idx")


def downgrade() -> None:
    op.execute("CREATE INDEX items_end_datetime_idx ON items (end_datetime)")
