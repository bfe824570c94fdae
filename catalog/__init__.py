"""Terracat catalogue: STAC domain, persistence and search. Imports nothing else of ours."""
