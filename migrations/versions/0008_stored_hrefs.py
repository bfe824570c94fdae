"""Stored assets keep storage keys, not paths; a secret for signed asset links.

- Every asset href ``file:///<data folder>/assets/{collection}/{item}/{name}`` whose last three
  path segments are the item's collection id, the item's id and a file name becomes
  ``storage:assets/{collection}/{item}/{name}``: the key of the same file in the storage
  (catalog/storage/base.py). Other hrefs (``file://`` paths that do not name the item's own
  folder, http(s), s3...) are left as they are; the API never serves them as stored files.
- ``server_secrets``: secrets every API process must share, made once (the key that signs
  asset links when ``TERRACAT_AUTH_SIGNING_SECRET`` is unset).

Downgrade drops ``server_secrets``. Turning keys back into ``file://`` paths needs the data
folder, which the database does not know: give it as ``alembic -x data_dir=/srv/terracat/data
downgrade ...`` and every ``storage:assets/...`` href becomes ``file://<data_dir>/assets/...``.
Without it the hrefs stay ``storage:`` ones, which the previous version does not read (its
tiles of those items answer "not a file of this catalogue's storage").

Revision ID: 0008_stored_hrefs
Revises: 0007_accounts_rights
Create Date: 2026-12-05
"""

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from alembic import context, op

revision: str = "0008_stored_hrefs"
down_revision: str | None = "0007_accounts_rights"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000
# One key segment, as catalog/storage/base.py checked it when this revision was written.
_PART = re.compile(r"^[^/\\\x00-\x1f\x7f]{1,255}$")


def _part(value: str) -> bool:
    return bool(_PART.match(value)) and value not in (".", "..") and len(value.encode()) <= 255


def _stored(href: Any, collection_id: str, item_id: str) -> str | None:
    """The ``storage:`` href of a ``file://`` href naming this item's own folder, or None."""
    if not isinstance(href, str) or not href.startswith("file:"):
        return None
    parts = urlsplit(href)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        return None
    segments = unquote(parts.path).split("/")
    if len(segments) < 5 or segments[-4:-1] != ["assets", collection_id, item_id]:
        return None
    name = segments[-1]
    if not (_part(collection_id) and _part(item_id) and _part(name)):
        return None
    return f"storage:assets/{collection_id}/{item_id}/{name}"


def _file_href(data_dir: Path) -> Callable[[Any, str, str], str | None]:
    def rewrite(href: Any, collection_id: str, item_id: str) -> str | None:
        if not isinstance(href, str) or not href.startswith("storage:assets/"):
            return None
        return (data_dir / href.removeprefix("storage:")).as_uri()

    return rewrite


def _rewrite_items(pattern: str, rewrite: Callable[[Any, str, str], str | None]) -> None:
    """Rewrite the asset hrefs of every item with an href starting with ``pattern``, by
    batches in key order (never every row in memory)."""
    conn = op.get_bind()
    select = sa.text(
        "SELECT collection_id, id, content -> 'assets' AS assets FROM items "
        "WHERE jsonb_typeof(content -> 'assets') = 'object' "
        "AND jsonb_path_exists(content -> 'assets', '$.*.href ? (@ starts with $p)', "
        "jsonb_build_object('p', CAST(:pattern AS text))) "
        "AND (collection_id, id) > (:after_c, :after_i) ORDER BY collection_id, id LIMIT :n"
    )
    update = sa.text(
        "UPDATE items SET content = jsonb_set(content, '{assets}', CAST(:assets AS jsonb)) "
        "WHERE collection_id = :c AND id = :i"
    )
    after = ("", "")
    while True:
        rows = conn.execute(
            select, {"pattern": pattern, "after_c": after[0], "after_i": after[1], "n": _BATCH}
        ).all()
        if not rows:
            return
        changes = []
        for row in rows:
            assets = dict(row.assets)
            changed = False
            for name, asset in assets.items():
                if not isinstance(asset, dict):
                    continue
                new = rewrite(asset.get("href"), row.collection_id, row.id)
                if new is not None:
                    assets[name] = {**asset, "href": new}
                    changed = True
            if changed:
                changes.append({"c": row.collection_id, "i": row.id, "assets": json.dumps(assets)})
        if changes:
            conn.execute(update, changes)
        after = (rows[-1].collection_id, rows[-1].id)


def upgrade() -> None:
    """Keys in place of the item folders' file paths; the shared secrets table."""
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column(
            "created", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
        ),
    )
    _rewrite_items("file:", _stored)


def downgrade() -> None:
    """Drop the secrets; file paths again only when ``-x data_dir=...`` is given."""
    op.drop_table("server_secrets")
    data_dir = context.get_x_argument(as_dictionary=True).get("data_dir")
    if data_dir:
        _rewrite_items("storage:assets/", _file_href(Path(data_dir).absolute()))
