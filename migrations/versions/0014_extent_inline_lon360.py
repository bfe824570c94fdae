"""Collection extents: the insert trigger reads one-part footprints' [0, 360) longitudes
inline instead of calling ``terracat_lon360`` for each row.

``terracat_lon360`` is a SQL function returning a record, which PostgreSQL cannot inline: each
call went through the SQL function executor, ~7.6 us a row against ~1 us for the same CASE
written in the statement (5,000 footprints: 38 ms against 5 ms, EXPLAIN ANALYZE on
PostgreSQL 15). Bulk loads pay it on every inserted row. Footprints of one part (a Polygon, a
one-part MultiPolygon, a Point...) now take the inline CASE; several parts, and a
GeometryCollection (whose one member may itself have parts), still go through the function,
which dumps them. Same numbers, same trigger otherwise (0005).

Revision ID: 0014_extent_inline_lon360
Revises: 0013_datacubes
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014_extent_inline_lon360"
down_revision: str | None = "0013_datacubes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _lon360(alias: str) -> str:
    """The x0/x1 of ``terracat_lon360`` for ``alias``.geometry, inline for one part."""
    g = f"{alias}.geometry"
    one = f"ST_NumGeometries({g}) = 1 AND ST_GeometryType({g}) <> 'ST_GeometryCollection'"
    x0 = (f"CASE WHEN ST_XMax({g}) <= 0 THEN ST_XMin({g}) + 360 "
          f"WHEN ST_XMin({g}) >= 0 THEN ST_XMin({g}) ELSE 0 END")  # fmt: skip
    x1 = (f"CASE WHEN ST_XMax({g}) <= 0 THEN ST_XMax({g}) + 360 "
          f"WHEN ST_XMin({g}) >= 0 THEN ST_XMax({g}) ELSE 360 END")  # fmt: skip
    return (f"(SELECT CASE WHEN {one} THEN {x0} ELSE (terracat_lon360({g})).x0 END AS x0, "
            f"CASE WHEN {one} THEN {x1} ELSE (terracat_lon360({g})).x1 END AS x1)")  # fmt: skip


_TRIGGER = """
CREATE OR REPLACE FUNCTION terracat_items_extent() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cid text;
    r record;
    shrunk text[] := '{}';
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM 1 FROM collections WHERE id IN (SELECT collection_id FROM new_rows)
            ORDER BY id FOR NO KEY UPDATE;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM 1 FROM collections WHERE id IN (SELECT collection_id FROM old_rows)
            ORDER BY id FOR NO KEY UPDATE;
    ELSE
        PERFORM 1 FROM collections
            WHERE id IN (SELECT collection_id FROM old_rows
                         UNION SELECT collection_id FROM new_rows)
            ORDER BY id FOR NO KEY UPDATE;
    END IF;

    -- A deleted row, or an updated one whose footprint or time changed, that touched an edge
    -- of its collection's extent: the extent may shrink, so read it again from the items.
    IF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT o.collection_id ORDER BY o.collection_id) INTO shrunk
        FROM old_rows o JOIN collections c ON c.id = o.collection_id
        LEFT JOIN LATERAL {lon360_o} s ON true
        WHERE c.item_start IS NULL OR o.datetime <= c.item_start OR o.end_datetime >= c.item_end
           OR ST_XMin(o.geometry) <= c.item_xmin OR ST_YMin(o.geometry) <= c.item_ymin
           OR ST_XMax(o.geometry) >= c.item_xmax OR ST_YMax(o.geometry) >= c.item_ymax
           OR s.x0 <= c.item_xmin360 OR s.x1 >= c.item_xmax360;
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT array_agg(DISTINCT o.collection_id ORDER BY o.collection_id) INTO shrunk
        FROM old_rows o JOIN collections c ON c.id = o.collection_id
        LEFT JOIN LATERAL {lon360_o} s ON true
        WHERE (c.item_start IS NULL OR o.datetime <= c.item_start
               OR o.end_datetime >= c.item_end
               OR ST_XMin(o.geometry) <= c.item_xmin OR ST_YMin(o.geometry) <= c.item_ymin
               OR ST_XMax(o.geometry) >= c.item_xmax OR ST_YMax(o.geometry) >= c.item_ymax
               OR s.x0 <= c.item_xmin360 OR s.x1 >= c.item_xmax360)
          AND NOT EXISTS (
              SELECT 1 FROM new_rows n
              WHERE n.collection_id = o.collection_id AND n.id = o.id
                AND n.datetime = o.datetime AND n.end_datetime = o.end_datetime
                AND n.geometry IS NOT DISTINCT FROM o.geometry);
    END IF;
    FOREACH cid IN ARRAY coalesce(shrunk, '{}') LOOP
        PERFORM terracat_recompute_extent(cid);
    END LOOP;

    -- New rows widen the extent of their collection (already exact where it was recomputed).
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        FOR r IN
            SELECT c.id,
                   ARRAY[least(c.item_xmin, a.xmin), least(c.item_ymin, a.ymin),
                         greatest(c.item_xmax, a.xmax), greatest(c.item_ymax, a.ymax),
                         least(c.item_xmin360, a.x0), greatest(c.item_xmax360, a.x1)] AS b,
                   least(c.item_start, a.t0) AS t0, greatest(c.item_end, a.t1) AS t1,
                   ARRAY[c.item_xmin, c.item_ymin, c.item_xmax, c.item_ymax, c.item_xmin360,
                         c.item_xmax360] AS was_b, c.item_start AS was_t0, c.item_end AS was_t1
            FROM collections c JOIN (
                SELECT n.collection_id, min(ST_XMin(n.geometry)) AS xmin,
                       min(ST_YMin(n.geometry)) AS ymin, max(ST_XMax(n.geometry)) AS xmax,
                       max(ST_YMax(n.geometry)) AS ymax, min(s.x0) AS x0, max(s.x1) AS x1,
                       min(n.datetime) AS t0, max(n.end_datetime) AS t1
                FROM new_rows n LEFT JOIN LATERAL {lon360_n} s ON true
                GROUP BY n.collection_id) a ON a.collection_id = c.id
            WHERE c.id <> ALL (coalesce(shrunk, '{}'))
            ORDER BY c.id
        LOOP
            -- Rows inside the extent leave the collection row as it is (no new version).
            IF ROW(r.b, r.t0, r.t1) IS DISTINCT FROM ROW(r.was_b, r.was_t0, r.was_t1) THEN
                PERFORM terracat_store_extent(r.id, r.b, r.t0, r.t1);
            END IF;
        END LOOP;
    END IF;
    RETURN NULL;
END $$
"""

_TRIGGER_0005 = """
CREATE OR REPLACE FUNCTION terracat_items_extent() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cid text;
    r record;
    shrunk text[] := '{}';
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM 1 FROM collections WHERE id IN (SELECT collection_id FROM new_rows)
            ORDER BY id FOR NO KEY UPDATE;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM 1 FROM collections WHERE id IN (SELECT collection_id FROM old_rows)
            ORDER BY id FOR NO KEY UPDATE;
    ELSE
        PERFORM 1 FROM collections
            WHERE id IN (SELECT collection_id FROM old_rows
                         UNION SELECT collection_id FROM new_rows)
            ORDER BY id FOR NO KEY UPDATE;
    END IF;

    -- A deleted row, or an updated one whose footprint or time changed, that touched an edge
    -- of its collection's extent: the extent may shrink, so read it again from the items.
    IF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT o.collection_id ORDER BY o.collection_id) INTO shrunk
        FROM old_rows o JOIN collections c ON c.id = o.collection_id
        LEFT JOIN LATERAL terracat_lon360(o.geometry) s ON true
        WHERE c.item_start IS NULL OR o.datetime <= c.item_start OR o.end_datetime >= c.item_end
           OR ST_XMin(o.geometry) <= c.item_xmin OR ST_YMin(o.geometry) <= c.item_ymin
           OR ST_XMax(o.geometry) >= c.item_xmax OR ST_YMax(o.geometry) >= c.item_ymax
           OR s.x0 <= c.item_xmin360 OR s.x1 >= c.item_xmax360;
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT array_agg(DISTINCT o.collection_id ORDER BY o.collection_id) INTO shrunk
        FROM old_rows o JOIN collections c ON c.id = o.collection_id
        LEFT JOIN LATERAL terracat_lon360(o.geometry) s ON true
        WHERE (c.item_start IS NULL OR o.datetime <= c.item_start
               OR o.end_datetime >= c.item_end
               OR ST_XMin(o.geometry) <= c.item_xmin OR ST_YMin(o.geometry) <= c.item_ymin
               OR ST_XMax(o.geometry) >= c.item_xmax OR ST_YMax(o.geometry) >= c.item_ymax
               OR s.x0 <= c.item_xmin360 OR s.x1 >= c.item_xmax360)
          AND NOT EXISTS (
              SELECT 1 FROM new_rows n
              WHERE n.collection_id = o.collection_id AND n.id = o.id
                AND n.datetime = o.datetime AND n.end_datetime = o.end_datetime
                AND n.geometry IS NOT DISTINCT FROM o.geometry);
    END IF;
    FOREACH cid IN ARRAY coalesce(shrunk, '{}') LOOP
        PERFORM terracat_recompute_extent(cid);
    END LOOP;

    -- New rows widen the extent of their collection (already exact where it was recomputed).
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        FOR r IN
            SELECT c.id,
                   ARRAY[least(c.item_xmin, a.xmin), least(c.item_ymin, a.ymin),
                         greatest(c.item_xmax, a.xmax), greatest(c.item_ymax, a.ymax),
                         least(c.item_xmin360, a.x0), greatest(c.item_xmax360, a.x1)] AS b,
                   least(c.item_start, a.t0) AS t0, greatest(c.item_end, a.t1) AS t1,
                   ARRAY[c.item_xmin, c.item_ymin, c.item_xmax, c.item_ymax, c.item_xmin360,
                         c.item_xmax360] AS was_b, c.item_start AS was_t0, c.item_end AS was_t1
            FROM collections c JOIN (
                SELECT n.collection_id, min(ST_XMin(n.geometry)) AS xmin,
                       min(ST_YMin(n.geometry)) AS ymin, max(ST_XMax(n.geometry)) AS xmax,
                       max(ST_YMax(n.geometry)) AS ymax, min(s.x0) AS x0, max(s.x1) AS x1,
                       min(n.datetime) AS t0, max(n.end_datetime) AS t1
                FROM new_rows n LEFT JOIN LATERAL terracat_lon360(n.geometry) s ON true
                GROUP BY n.collection_id) a ON a.collection_id = c.id
            WHERE c.id <> ALL (coalesce(shrunk, '{}'))
            ORDER BY c.id
        LOOP
            -- Rows inside the extent leave the collection row as it is (no new version).
            IF ROW(r.b, r.t0, r.t1) IS DISTINCT FROM ROW(r.was_b, r.was_t0, r.was_t1) THEN
                PERFORM terracat_store_extent(r.id, r.b, r.t0, r.t1);
            END IF;
        END LOOP;
    END IF;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    """The trigger function with the inline longitudes."""
    op.execute(_TRIGGER.replace("{lon360_o}", _lon360("o")).replace("{lon360_n}", _lon360("n")))


def downgrade() -> None:
    """The trigger function of 0005."""
    op.execute(_TRIGGER_0005)
