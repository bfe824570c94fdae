"""Accounts, API tokens and per-collection rights: who is calling, and what they may do.

Usable without FastAPI: the server's one rights dependency (server/auth.py) resolves a
``Principal`` per request with ``AccountRepository``, and every repository that reads data
filters by the ``Rights`` of that principal in its own SQL.
"""
