"""Vector collections: features in a typed PostGIS table per collection (migration 0010)."""
