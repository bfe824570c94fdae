"""Accounts, API tokens, per-collection visibility and grants, and owners of what accounts make.

- ``accounts``: who uses the API. ``role`` is ``admin`` or ``user``; ``quota_bytes`` NULL takes
  the default quota from settings; ``subject`` maps an external (OIDC) identity to the account.
- ``api_tokens``: only a SHA-256 of each token's secret is kept. A token made by the
  unauthenticated ``generate`` call has no account until an account claims it.
- ``collections.owner_id`` and ``visibility`` (``public``, ``accounts``, ``private``);
  collections that exist already stay public, as they were.
- ``collection_grants``: ``read``, ``write`` or ``admin`` on one collection, to an account
  (``grantee_kind`` ``account``, ``grantee`` its id) or to an OIDC group (``group``, its name).
- ``owner_id`` on upload sets, jobs and saved searches: what an account made is its own.

Revision ID: 0007_accounts_rights
Revises: 0006_item_max_span
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0007_accounts_rights"
down_revision: str | None = "0006_item_max_span"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOW = sa.text("now()")


def upgrade() -> None:
    """Create the account tables and the owner and visibility columns."""
    op.create_table(
        "accounts",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("email", sa.Text),
        sa.Column("role", sa.Text, nullable=False, server_default="user"),
        sa.Column("password_hash", sa.Text),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("quota_bytes", sa.BigInteger),
        sa.Column("subject", sa.Text, unique=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.CheckConstraint("role IN ('admin', 'user')", name="accounts_role"),
        sa.CheckConstraint("quota_bytes IS NULL OR quota_bytes >= 0", name="accounts_quota"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "account_id", pg.UUID(as_uuid=True), sa.ForeignKey("accounts.id", ondelete="CASCADE")
        ),
        sa.Column("secret_hash", sa.LargeBinary, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("scopes", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("last_used", sa.DateTime(timezone=True)),
        sa.Column("expires", sa.DateTime(timezone=True)),
        sa.Column("revoked", sa.DateTime(timezone=True)),
        sa.Column("claimed", sa.DateTime(timezone=True)),
        sa.CheckConstraint(
            "scopes <@ ARRAY['read', 'write', 'admin']::text[]", name="api_tokens_scopes"
        ),
    )
    op.create_index("api_tokens_account", "api_tokens", ["account_id"])
    op.add_column(
        "collections",
        sa.Column(
            "owner_id", pg.UUID(as_uuid=True), sa.ForeignKey("accounts.id", ondelete="SET NULL")
        ),
    )
    op.add_column(
        "collections",
        sa.Column("visibility", sa.Text, nullable=False, server_default="public"),
    )
    op.create_check_constraint(
        "collections_visibility", "collections", "visibility IN ('public', 'accounts', 'private')"
    )
    op.create_index("collections_owner", "collections", ["owner_id"])
    op.create_table(
        "collection_grants",
        sa.Column(
            "collection_id",
            sa.Text,
            sa.ForeignKey("collections.id", ondelete="CASCADE", onupdate="CASCADE"),
            primary_key=True,
        ),
        sa.Column("grantee_kind", sa.Text, primary_key=True),
        sa.Column("grantee", sa.Text, primary_key=True),
        sa.Column("right", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.CheckConstraint("grantee_kind IN ('account', 'group')", name="grants_kind"),
        sa.CheckConstraint("\"right\" IN ('read', 'write', 'admin')", name="grants_right"),
    )
    op.create_index("collection_grants_grantee", "collection_grants", ["grantee_kind", "grantee"])
    for table in ("upload_sets", "jobs", "searches"):
        op.add_column(
            table,
            sa.Column(
                "owner_id",
                pg.UUID(as_uuid=True),
                sa.ForeignKey("accounts.id", ondelete="SET NULL"),
            ),
        )
        op.create_index(f"{table}_owner", table, ["owner_id"])


def downgrade() -> None:
    """Drop them again."""
    for table in ("searches", "jobs", "upload_sets"):
        op.drop_index(f"{table}_owner", table)
        op.drop_column(table, "owner_id")
    op.drop_table("collection_grants")
    op.drop_index("collections_owner", "collections")
    op.drop_constraint("collections_visibility", "collections")
    op.drop_column("collections", "visibility")
    op.drop_column("collections", "owner_id")
    op.drop_index("api_tokens_account", "api_tokens")
    op.drop_table("api_tokens")
    op.drop_table("accounts")
