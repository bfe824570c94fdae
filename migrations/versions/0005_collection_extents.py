"""Collection extents follow their items, kept by statement-level triggers on ``items``.

A collection's served extent (``content.extent`` and the searchable ``spatial``,
``start_datetime``, ``end_datetime``) is the extent of its items once it has any; the extent
the client gave is kept in ``declared_*`` and served while there are none (pgstac does the same
when ``update_collection_extent`` is on: the items' extent replaces the given one). STAC says
the extent describes the collection's data, and GDAL, QGIS and map clients fit their view to it.

Cheap on every write: the items' extent is kept as numbers (``item_*``). An insert widens them
with the new rows only. A delete, or an update that moves a row in space or time, does nothing
more unless the old row touched an edge of the extent; then time is read from indexes, and
space is read from the collection's items only if no remaining item reaches every edge (found
through the GiST index), i.e. when the extent really shrinks. Each trigger first locks the
collection rows (``FOR NO KEY UPDATE``, which does not wait for the ``KEY SHARE`` locks that
item inserts take through the foreign key) in id order; the next statement then sees what a
concurrent writer committed before the lock was granted, so two writers into one collection
cannot lose each other's widening.

Antimeridian: longitudes are also kept shifted to [0, 360) per polygon part (a part straddling
0 counts as the whole circle there). When that span is narrower, the bbox crosses the
antimeridian (west > east, valid STAC) and ``spatial`` is split in two at 180.

Revision ID: 0005_collection_extents
Revises: 0004_searches
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_collection_extents"
down_revision: str | None = "0004_searches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    "declared_extent jsonb",
    "declared_spatial geometry(Geometry, 4326)",
    "declared_start timestamptz",
    "declared_end timestamptz",
    "item_xmin float8",
    "item_ymin float8",
    "item_xmax float8",
    "item_ymax float8",
    "item_xmin360 float8",
    "item_xmax360 float8",
    "item_start timestamptz",
    "item_end timestamptz",
)

# Per polygon part: its longitudes shifted to [0, 360), or the whole circle if it straddles 0.
_LON360 = """
CREATE FUNCTION terracat_lon360(g geometry, OUT x0 float8, OUT x1 float8)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT min(CASE WHEN ST_XMax(p) <= 0 THEN ST_XMin(p) + 360
                    WHEN ST_XMin(p) >= 0 THEN ST_XMin(p) ELSE 0 END),
           max(CASE WHEN ST_XMax(p) <= 0 THEN ST_XMax(p) + 360
                    WHEN ST_XMin(p) >= 0 THEN ST_XMax(p) ELSE 360 END)
    FROM ST_Dump(g) AS d(path, p)
$$
"""

# [west, south, east, north] of the items' extent; west > east when it crosses the antimeridian.
_BBOX = """
CREATE FUNCTION terracat_extent_bbox(b float8[]) RETURNS float8[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN b[1] IS NULL THEN NULL
        WHEN b[6] - b[5] < b[3] - b[1] THEN ARRAY[
            CASE WHEN b[5] > 180 THEN b[5] - 360 ELSE b[5] END, b[2],
            CASE WHEN b[6] > 180 THEN b[6] - 360 ELSE b[6] END, b[4]]
        ELSE ARRAY[b[1], b[2], b[3], b[4]]
    END
$$
"""

# Writes a collection's items' extent (b: xmin, ymin, xmax, ymax, xmin360, xmax360) and the
# served extent made of it and of the declared one.
_STORE = """
CREATE FUNCTION terracat_store_extent(cid text, b float8[], t0 timestamptz, t1 timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    box float8[] := terracat_extent_bbox(b);
BEGIN
    UPDATE collections SET
        item_xmin = b[1], item_ymin = b[2], item_xmax = b[3], item_ymax = b[4],
        item_xmin360 = b[5], item_xmax360 = b[6], item_start = t0, item_end = t1,
        content = jsonb_set(content, '{extent}', jsonb_build_object(
            'spatial', CASE WHEN box IS NULL THEN declared_extent -> 'spatial'
                            ELSE jsonb_build_object('bbox', jsonb_build_array(to_jsonb(box))) END,
            'temporal', CASE WHEN t0 IS NULL THEN declared_extent -> 'temporal'
                             ELSE jsonb_build_object('interval', jsonb_build_array(
                                 jsonb_build_array(
                                     (to_jsonb(t0 AT TIME ZONE 'UTC') #>> '{}') || 'Z',
                                     (to_jsonb(t1 AT TIME ZONE 'UTC') #>> '{}') || 'Z'))) END)),
        spatial = CASE
            WHEN box IS NULL THEN declared_spatial
            WHEN box[1] <= box[3] THEN ST_MakeEnvelope(box[1], box[2], box[3], box[4], 4326)
            ELSE ST_Collect(ST_MakeEnvelope(box[1], box[2], 180, box[4], 4326),
                            ST_MakeEnvelope(-180, box[2], box[3], box[4], 4326)) END,
        start_datetime = CASE WHEN t0 IS NULL THEN declared_start ELSE t0 END,
        end_datetime = CASE WHEN t0 IS NULL THEN declared_end ELSE t1 END
    WHERE id = cid;
END $$
"""

# Whether items of the collection still reach every edge of its stored spatial extent (b as in
# terracat_store_extent): each edge is found through the GiST index (items crossing that
# meridian or parallel), then compared exactly.
_REACHED = """
CREATE FUNCTION terracat_edges_reached(cid text, b float8[]) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT b[1] IS NOT NULL
    AND EXISTS (SELECT 1 FROM items WHERE collection_id = cid
                AND geometry && ST_MakeEnvelope(b[1], -90, b[1], 90, 4326)
                AND ST_XMin(geometry) = b[1])
    AND EXISTS (SELECT 1 FROM items WHERE collection_id = cid
                AND geometry && ST_MakeEnvelope(-180, b[2], 180, b[2], 4326)
                AND ST_YMin(geometry) = b[2])
    AND EXISTS (SELECT 1 FROM items WHERE collection_id = cid
                AND geometry && ST_MakeEnvelope(b[3], -90, b[3], 90, 4326)
                AND ST_XMax(geometry) = b[3])
    AND EXISTS (SELECT 1 FROM items WHERE collection_id = cid
                AND geometry && ST_MakeEnvelope(-180, b[4], 180, b[4], 4326)
                AND ST_YMax(geometry) = b[4])
    AND EXISTS (SELECT 1 FROM items i, terracat_lon360(i.geometry) s WHERE i.collection_id = cid
                AND (i.geometry && ST_MakeEnvelope(b[5], -90, b[5], 90, 4326)
                     OR i.geometry && ST_MakeEnvelope(b[5] - 360, -90, b[5] - 360, 90, 4326))
                AND s.x0 = b[5])
    AND EXISTS (SELECT 1 FROM items i, terracat_lon360(i.geometry) s WHERE i.collection_id = cid
                AND (i.geometry && ST_MakeEnvelope(b[6], -90, b[6], 90, 4326)
                     OR i.geometry && ST_MakeEnvelope(b[6] - 360, -90, b[6] - 360, 90, 4326))
                AND s.x1 = b[6])
$$
"""

# The items' extent of one collection after rows left it. Time comes from indexes: the first
# and last datetime from (collection_id, datetime), the latest end of a time span from a
# partial index of the span items only. Space keeps its edges while some item still reaches
# each of them (a deleted tile on the grid's edge next to others); otherwise, the extent
# shrinks and is read from the collection's items.
_RECOMPUTE = """
CREATE FUNCTION terracat_recompute_extent(cid text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    b float8[];
    was record;
    t0 timestamptz;
    t1 timestamptz;
BEGIN
    SELECT ARRAY[item_xmin, item_ymin, item_xmax, item_ymax, item_xmin360, item_xmax360] AS b,
           item_start AS t0, item_end AS t1
    INTO was FROM collections WHERE id = cid;
    b := was.b;
    SELECT i.datetime INTO t0 FROM items i WHERE i.collection_id = cid
        ORDER BY i.datetime LIMIT 1;
    SELECT greatest(
        (SELECT i.datetime FROM items i WHERE i.collection_id = cid
            ORDER BY i.datetime DESC LIMIT 1),
        (SELECT i.end_datetime FROM items i
            WHERE i.collection_id = cid AND i.end_datetime > i.datetime
            ORDER BY i.end_datetime DESC LIMIT 1)) INTO t1;
    IF t0 IS NULL OR NOT terracat_edges_reached(cid, b) THEN
        SELECT ARRAY[min(ST_XMin(i.geometry)), min(ST_YMin(i.geometry)),
                     max(ST_XMax(i.geometry)), max(ST_YMax(i.geometry)), min(s.x0), max(s.x1)]
        INTO b
        FROM items i LEFT JOIN LATERAL terracat_lon360(i.geometry) s ON true
        WHERE i.collection_id = cid;
    END IF;
    IF ROW(b, t0, t1) IS DISTINCT FROM ROW(was.b, was.t0, was.t1) THEN
        PERFORM terracat_store_extent(cid, b, t0, t1);
    END IF;
END $$
"""

# The served extent again from the stored numbers (after the declared extent changed).
_APPLY = """
CREATE FUNCTION terracat_apply_extent(cid text) RETURNS void LANGUAGE sql AS $$
    SELECT terracat_store_extent(id, ARRAY[item_xmin, item_ymin, item_xmax, item_ymax,
                                           item_xmin360, item_xmax360], item_start, item_end)
    FROM collections WHERE id = cid
$$
"""

# One function for the three statement triggers; each branch names only the transition
# tables its event has (PL/pgSQL plans a statement when it first runs it).
_TRIGGER = """
CREATE FUNCTION terracat_items_extent() RETURNS trigger LANGUAGE plpgsql AS $$
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

_TRUNCATE = """
CREATE FUNCTION terracat_items_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM terracat_store_extent(id, ARRAY[NULL, NULL, NULL, NULL, NULL, NULL]::float8[],
                                  NULL, NULL) FROM collections;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.execute(
        "ALTER TABLE collections " + ", ".join(f"ADD COLUMN {column}" for column in _COLUMNS)
    )
    # The latest end of a collection's time spans, found without reading its items. Partial:
    # only span items are in it, and no search implies its predicate, so the planner never
    # weighs it for searches (0002 dropped a full end_datetime index for that reason).
    op.execute(
        "CREATE INDEX items_collection_span_end_idx ON items (collection_id, end_datetime) "
        "WHERE end_datetime > datetime"
    )
    op.execute(
        "UPDATE collections SET declared_extent = content -> 'extent', declared_spatial = spatial,"
        " declared_start = start_datetime, declared_end = end_datetime"
    )
    for function in (_LON360, _BBOX, _STORE, _REACHED, _RECOMPUTE, _APPLY, _TRIGGER, _TRUNCATE):
        op.execute(function)
    for event, table in (("INSERT", "NEW TABLE AS new_rows"),
                         ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
                         ("DELETE", "OLD TABLE AS old_rows")):  # fmt: skip
        op.execute(
            f"CREATE TRIGGER items_extent_{event.lower()} AFTER {event} ON items "
            f"REFERENCING {table} FOR EACH STATEMENT EXECUTE FUNCTION terracat_items_extent()"
        )
    op.execute(
        "CREATE TRIGGER items_extent_truncate AFTER TRUNCATE ON items "
        "FOR EACH STATEMENT EXECUTE FUNCTION terracat_items_truncated()"
    )
    op.execute("SELECT terracat_recompute_extent(id) FROM collections")


def downgrade() -> None:
    for event in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER items_extent_{event} ON items")
    op.execute(
        "UPDATE collections SET content = jsonb_set(content, '{extent}', declared_extent), "
        "spatial = declared_spatial, start_datetime = declared_start, "
        "end_datetime = declared_end WHERE declared_extent IS NOT NULL"
    )
    for function in (
        "terracat_items_truncated()", "terracat_items_extent()", "terracat_apply_extent(text)",
        "terracat_recompute_extent(text)", "terracat_edges_reached(text, float8[])",
        "terracat_store_extent(text, float8[], timestamptz, timestamptz)",
        "terracat_extent_bbox(float8[])", "terracat_lon360(geometry)",
    ):  # fmt: skip
        op.execute(f"DROP FUNCTION {function}")
    op.execute("DROP INDEX items_collection_span_end_idx")
    op.execute(
        "ALTER TABLE collections "
        + ", ".join(f"DROP COLUMN {column.split()[0]}" for column in _COLUMNS)
    )
