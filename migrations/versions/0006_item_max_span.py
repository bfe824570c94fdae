"""Collections keep the longest time span of their items: an index bound for interval searches.

A datetime interval ``a/b`` matches items with ``datetime <= b AND end_datetime >= a``. Only
``datetime`` is indexed, so ``end_datetime >= a`` bounded nothing: sorted ascending, a search
walked the datetime index from the first item ever and threw away every item that ended before
``a`` (1.1 s for a one-year interval over 1M items, against 5 ms sorted descending). An item
that ends at or after ``a`` starts at or after ``a - span``; with ``item_max_span`` (the longest
``end_datetime - datetime`` of the collection's items) searches add ``datetime >= a - max span``,
which the datetime indexes serve in both directions.

The span may only be too long, never too short: statement triggers on insert and update widen
it with the new rows, and deletes leave it as it is. The triggers are named to fire after
0005's extent triggers, which have already locked the collection rows in id order; the update
re-checks the stored span against the newest row version (READ COMMITTED), so concurrent
writers cannot lower it.

Revision ID: 0006_item_max_span
Revises: 0005_collection_extents
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_item_max_span"
down_revision: str | None = "0005_collection_extents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WIDEN = """
CREATE FUNCTION terracat_items_max_span() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE collections c SET item_max_span = n.span
    FROM (SELECT collection_id, max(end_datetime - datetime) AS span
          FROM new_rows GROUP BY collection_id) n
    WHERE c.id = n.collection_id AND (c.item_max_span IS NULL OR n.span > c.item_max_span);
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.execute("ALTER TABLE collections ADD COLUMN item_max_span interval")
    op.execute(_WIDEN)
    for event, table in (("INSERT", "NEW TABLE AS new_rows"),
                         ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows")):  # fmt: skip
        op.execute(
            f"CREATE TRIGGER items_span_{event.lower()} AFTER {event} ON items "
            f"REFERENCING {table} FOR EACH STATEMENT EXECUTE FUNCTION terracat_items_max_span()"
        )
    op.execute(
        "UPDATE collections c SET item_max_span = greatest(c.item_max_span, s.span) "
        "FROM (SELECT collection_id, max(end_datetime - datetime) AS span FROM items "
        "GROUP BY collection_id) s WHERE c.id = s.collection_id"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER items_span_insert ON items")
    op.execute("DROP TRIGGER items_span_update ON items")
    op.execute("DROP FUNCTION terracat_items_max_span()")
    op.execute("ALTER TABLE collections DROP COLUMN item_max_span")
