"""Upload sets say how datacube URLs are taken: copied into the storage, or registered in place.

- ``upload_sets.cube_url``: ``copy`` (the job reads the Zarr store or NetCDF file at the URL
  and stores a copy, rechunked when needed, with overviews) or ``register`` (the cube is
  served from the URL; only its overviews are stored). NULL: URL files are downloaded as
  files, as before (a downloaded NetCDF or zipped Zarr store still becomes a cube).

Revision ID: 0014_upload_cube_url
Revises: 0013_datacubes
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_upload_cube_url"
down_revision: str | None = "0013_datacubes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """One nullable column, ``copy`` or ``register``."""
    op.add_column("upload_sets", sa.Column("cube_url", sa.Text))
    op.create_check_constraint(
        "upload_sets_cube_url", "upload_sets", "cube_url IN ('copy', 'register')"
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_constraint("upload_sets_cube_url", "upload_sets")
    op.drop_column("upload_sets", "cube_url")
