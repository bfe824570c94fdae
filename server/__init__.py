"""Terracat composition root: the app factory, CLI, error table and middleware."""

import logging

# stac_fastapi.types.core builds default ApiSettings at import and warns that title,
# description and version are unset; create_app sets ours, so the warning only misleads.
logging.getLogger("stac_fastapi.types.config").setLevel(logging.ERROR)
