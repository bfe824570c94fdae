"""The map viewer served at ``/viewer/``: its settings and routes (the page is built from the
JavaScript sources next to this file, see build.mjs and docs/viewer.md)."""
