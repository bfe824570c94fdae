"""Terracat composition root: the app factory, CLI, error table and middleware."""
