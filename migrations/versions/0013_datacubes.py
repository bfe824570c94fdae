"""Datacube collections: the Zarr or NetCDF store behind a collection and what was read of it.

One row per datacube collection: where the store is (``storage:{key}`` of a store Terracat
holds, or the URL of one registered in place), its grid (CRS, affine transform, size and the
names of its x, y, time and band dimensions), its layers (``variables``: one per variable, or
per band along the band dimension, with dtype, nodata and common name), the time coordinate,
and the overview levels built at ingest (``overviews``: a reduced copy of the store per
factor, used by the tile reader at low zooms). Deleting the collection deletes the row; the
store itself is removed by the collection's deletion of its stored objects.

Revision ID: 0013_datacubes
Revises: 0012_styles
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0013_datacubes"
down_revision: str | None = "0012_styles"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The datacubes table."""
    op.create_table(
        "datacubes",
        sa.Column(
            "collection_id",
            sa.Text,
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("href", sa.Text, nullable=False),
        sa.Column("format", sa.Text, nullable=False),
        sa.Column("crs", sa.Text, nullable=False),
        sa.Column("transform", pg.ARRAY(sa.Float), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("x_dim", sa.Text, nullable=False),
        sa.Column("y_dim", sa.Text, nullable=False),
        sa.Column("time_dim", sa.Text),
        sa.Column("band_dim", sa.Text),
        sa.Column("variables", pg.JSONB, nullable=False),
        sa.Column("times", pg.ARRAY(sa.DateTime(timezone=True)), nullable=False),
        sa.Column("overviews", pg.JSONB, nullable=False, server_default=sa.text("'[]'")),
        sa.Column(
            "updated", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
        ),
        sa.CheckConstraint("format IN ('zarr', 'netcdf')", name="datacubes_format"),
        sa.CheckConstraint("array_length(transform, 1) = 6", name="datacubes_transform"),
    )


def downgrade() -> None:
    """Drop the datacubes table."""
    op.drop_table("datacubes")
