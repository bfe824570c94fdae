"""Persistence: the async engine and migrations, the table models, the embedded PostgreSQL."""
