"""Uploads live in the storage, not on an API's disk: staged keys and tus uploads in the database.

- ``upload_files.staged_path`` (a local path under the data folder) becomes ``staged_key``, a
  storage key: ``staging/{name}`` for a received file, ``tus/{upload id}`` for a finished tus
  upload whose parts wait under that prefix. Paths recorded before keep their file name: the
  local storage finds the same file under ``staging/`` of the same data folder.
- ``tus_uploads``: one row per tus upload (length, offset, metadata, owner, expiry, and the keys
  of its parts in order), so that every API process sees the same offset, and a PATCH commits
  its part by compare-and-set on the offset (two PATCHes at one offset: one wins). Uploads in
  flight in the tus folder at upgrade time are not carried over (clients start them again).

Revision ID: 0009_uploads_in_storage
Revises: 0008_stored_hrefs
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0009_uploads_in_storage"
down_revision: str | None = "0008_stored_hrefs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOW = sa.text("now()")


def upgrade() -> None:
    """Staged paths become keys; the tus uploads table."""
    op.alter_column("upload_files", "staged_path", new_column_name="staged_key")
    op.execute(
        "UPDATE upload_files SET staged_key = 'staging/' || regexp_replace(staged_key, '^.*/', '')"
        " WHERE staged_key IS NOT NULL"
    )
    op.create_table(
        "tus_uploads",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text),
        sa.Column("length", sa.BigInteger, nullable=False),
        sa.Column("upload_offset", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("metadata", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("parts", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("finished", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("headers", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("upload_offset >= 0 AND upload_offset <= length", name="tus_offset"),
    )
    op.create_index(
        "tus_uploads_pending", "tus_uploads", ["owner"], postgresql_where=sa.text("NOT finished")
    )
    op.create_index("tus_uploads_expires", "tus_uploads", ["expires"])


def downgrade() -> None:
    """Back to paths (under the default data folder's staging/) and the tus folder."""
    op.drop_table("tus_uploads")
    op.alter_column("upload_files", "staged_key", new_column_name="staged_path")
