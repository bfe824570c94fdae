"""Items: the footprint in Web Mercator and the feature properties of a footprint tile, kept.

A WebMercatorQuad footprint tile (catalog/maps/tiles.py) projected every footprint to Web
Mercator and read six typed properties and an RFC 3339 time out of each item's JSONB: at z2,
1,200 footprints a tile, ~2.5 ms of its ~9.5 ms of PostGIS time, on every request for the same
rows. Both are now stored generated columns, computed once per write (~5 us an item) and read
as they are by the tile:

- ``tile_geometry``: the footprint cut to latitudes within +-89 degrees (a pole has no Web
  Mercator y) and projected to EPSG:3857. No tile reaches past the map's edge at 85.05 degrees
  by more than its buffer (85.3 degrees at z0), so nothing a tile can show is cut.
- ``tile_properties``: the feature properties of the tile as one JSONB object, which ST_AsMVT
  encodes key by key: ``datetime`` as RFC 3339 in UTC (fractional seconds only when there are
  any), and each of title, platform, gsd, eo:cloud_cover, view:azimuth and terracat:sequence
  when the item has it with its JSON type (string or number), the JSON value as it is.

``terracat_tile_properties`` is declared IMMUTABLE though it calls ``to_char`` and
``jsonb_build_object``, which PostgreSQL marks STABLE: with a fixed format on a timestamp
without time zone, and JSONB and text arguments only, neither depends on any setting (no
DateStyle, locale, time zone or float output), so the value depends on the row alone, as a
generated column needs. PL/pgSQL, not SQL: a SQL function calling STABLE functions is not
inlined, and its executor cost 4.0 us a row against 2.3.

Adding the columns rewrites ``items`` and rebuilds its indexes, holding its lock meanwhile:
7.0 s for 200,000 items on a 2-core machine, so about 35 s a million.

Revision ID: 0019_item_tile_columns
Revises: 0018_vector_size_index
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019_item_tile_columns"
down_revision: str | None = "0018_vector_size_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (name, JSON type) of the properties a footprint feature carries: catalog.maps.tiles
# FEATURE_PROPERTIES when this was written (a change to either needs a migration).
_PROPERTIES = (
    ("title", "string"),
    ("platform", "string"),
    ("gsd", "number"),
    ("eo:cloud_cover", "number"),
    ("view:azimuth", "number"),
    ("terracat:sequence", "string"),
)
_UTC = "t AT TIME ZONE 'UTC'"
_RFC3339 = (
    f"CASE WHEN date_trunc('second', {_UTC}) = {_UTC} "
    f'THEN to_char({_UTC}, \'YYYY-MM-DD"T"HH24:MI:SS"Z"\') '
    f'ELSE to_char({_UTC}, \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\') END'
)
_MEMBERS = ", ".join(
    f"'{name}', CASE WHEN jsonb_typeof(p->'{name}') = '{kind}' THEN p->'{name}' END"
    for name, kind in _PROPERTIES
)
_FUNCTION = f"""
CREATE FUNCTION terracat_tile_properties(p jsonb, t timestamptz) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  RETURN jsonb_strip_nulls(jsonb_build_object('datetime', {_RFC3339}, {_MEMBERS}));
END
$$"""
_WITHIN = "ST_MakeEnvelope(-180, -89, 180, 89, 4326)"
_MERCATOR = (
    f"ST_Transform(CASE WHEN geometry @ {_WITHIN} THEN geometry "
    f"ELSE ST_ClipByBox2D(geometry, {_WITHIN}) END, 3857)"
)


def upgrade() -> None:
    """The function and both columns (one rewrite of the table)."""
    op.execute(_FUNCTION)
    op.execute(
        "ALTER TABLE items "
        f"ADD COLUMN tile_geometry geometry GENERATED ALWAYS AS ({_MERCATOR}) STORED, "
        "ADD COLUMN tile_properties jsonb GENERATED ALWAYS AS "
        "(terracat_tile_properties(properties, datetime)) STORED"
    )


def downgrade() -> None:
    """Without them."""
    op.execute("ALTER TABLE items DROP COLUMN tile_geometry, DROP COLUMN tile_properties")
    op.execute("DROP FUNCTION terracat_tile_properties(jsonb, timestamptz)")
