"""Geotagged pictures: upload-set options, pictures waiting for their sequence, sequences.

- ``upload_sets``: how pictures are sorted, cut into sequences and de-duplicated
  (``split_distance`` m, ``split_time`` s, ``duplicate_distance`` m, ``duplicate_rotation``
  degrees, ``sort_method``), their ``visibility``, and the dispatch job (``dispatch_job_id``,
  ``dispatched_at``) that publishes them once the set is complete.
- ``pictures``: a picture whose ingest job read it and published its derivatives, waiting
  (its STAC item ready in ``item``) for the dispatch of its set; the row goes when the item
  is published or the picture is dropped as a capture duplicate.
- ``picture_sequences``: one row per sequence cut by a dispatch: its line, time span and
  number of pictures, in the collection its items went into.

Revision ID: 0016_pictures
Revises: 0015_upload_cube_url
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql as pg

revision: str = "0016_pictures"
down_revision: str | None = "0015_upload_cube_url"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SORTS = "'time-asc', 'time-desc', 'filename-asc', 'filename-desc'"


def upgrade() -> None:
    """Options on upload sets; the pictures and picture_sequences tables."""
    for name in ("split_distance", "split_time", "duplicate_distance", "duplicate_rotation"):
        op.add_column("upload_sets", sa.Column(name, sa.Float))
        op.create_check_constraint(f"upload_sets_{name}", "upload_sets", f"{name} >= 0")
    op.add_column("upload_sets", sa.Column("sort_method", sa.Text))
    op.create_check_constraint(
        "upload_sets_sort_method", "upload_sets", f"sort_method IN ({_SORTS})"
    )
    op.add_column("upload_sets", sa.Column("visibility", sa.Text))
    op.create_check_constraint(
        "upload_sets_visibility", "upload_sets", "visibility IN ('public', 'accounts', 'private')"
    )
    op.add_column(
        "upload_sets",
        sa.Column(
            "dispatch_job_id", pg.UUID(as_uuid=True), sa.ForeignKey("jobs.id", ondelete="SET NULL")
        ),  # fmt: skip
    )
    op.add_column("upload_sets", sa.Column("dispatched_at", sa.DateTime(timezone=True)))
    op.create_table(
        "pictures",
        sa.Column(
            "upload_file_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("upload_files.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "upload_set_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("upload_sets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("collection_id", sa.Text, nullable=False),
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("meta", pg.JSONB, nullable=False),
        sa.Column("item", pg.JSONB, nullable=False),
    )
    op.create_index("pictures_set_idx", "pictures", ["upload_set_id"])
    op.create_table(
        "picture_sequences",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "collection_id",
            sa.Text,
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "upload_set_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("upload_sets.id", ondelete="SET NULL"),
        ),
        sa.Column("geom", Geometry("GEOMETRY", srid=4326, spatial_index=False), nullable=False),
        sa.Column("start_datetime", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_datetime", sa.DateTime(timezone=True), nullable=False),
        sa.Column("picture_count", sa.Integer, nullable=False),
        sa.Column("item_ids", pg.ARRAY(sa.Text), nullable=False),
        sa.Column(
            "created", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
        ),
    )
    op.create_index("picture_sequences_collection_idx", "picture_sequences", ["collection_id"])
    op.execute("CREATE INDEX picture_sequences_geom_idx ON picture_sequences USING gist (geom)")


def downgrade() -> None:
    """Drop the tables and the columns."""
    op.drop_table("picture_sequences")
    op.drop_table("pictures")
    for name in (
        "dispatched_at",
        "dispatch_job_id",
        "visibility",
        "sort_method",
        "duplicate_rotation",
        "duplicate_distance",
        "split_time",
        "split_distance",
    ):
        op.drop_column("upload_sets", name)  # fmt: skip
