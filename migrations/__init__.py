"""Alembic migrations: the only way Terracat's schema is created or changed."""
