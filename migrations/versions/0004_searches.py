"""Saved searches: item searches registered once and rendered as mosaics by id.

``id`` is a hash of the canonical search body (catalog/maps/mosaic.py), so registering the same
search twice finds the same row. ``last_used`` is moved forward when tiles use the search
(at most once per cache period), so unused searches can be found and pruned later.

Revision ID: 0004_searches
Revises: 0003_jobs_uploads
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_searches"
down_revision: str | None = "0003_jobs_uploads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE searches (
            id text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{32}$'),
            body jsonb NOT NULL CHECK (jsonb_typeof(body) = 'object'),
            created timestamptz NOT NULL DEFAULT now(),
            last_used timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX searches_last_used_idx ON searches (last_used)")


def downgrade() -> None:
    op.execute("DROP TABLE searches")
