"""STAC extension schemas, checked on every item and collection before it is stored.

The core structure is checked by our own code (serializers.py), which is several times faster
than the core JSON schema and gives sharper messages. Each extension a document declares in
``stac_extensions`` is validated against its published JSON schema, from the copies in
``catalog/schemas/`` (no network). An extension whose schema we do not hold is accepted
unchecked.

Two validators, each for what it does best: jsonschema-rs decides (about 8x faster than
fastjsonschema, which matters for bulk loads: it was 70 % of the server's work per item), and
only for a document it rejects, fastjsonschema says why: jsonschema-rs reports a failed
``oneOf`` at the top of the document, fastjsonschema names the field.
"""

import json
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema_rs

from catalog.errors import InvalidStac

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"


@cache
def _urlmap() -> dict[str, str]:
    mapping: dict[str, str] = json.loads((SCHEMA_DIR / "urlmap.json").read_text())
    return mapping


def _load(url: str) -> Any:
    path = _urlmap().get(url.split("#", 1)[0])
    if path is None:
        raise InvalidStac(f"schema {url} is not available offline")
    return json.loads((SCHEMA_DIR / path).read_text())


@cache
def _checker(url: str) -> Any:
    if url not in _urlmap():
        return None
    return jsonschema_rs.validator_for(_load(url), retriever=_load, validate_formats=True)


@cache
def _explainer(url: str) -> Callable[[Any], Any]:
    compiled: Callable[[Any], Any] = fastjsonschema.compile(
        _load(url), handlers={"https": _load, "http": _load}
    )
    return compiled


def check_extensions(doc: Mapping[str, Any], what: str) -> None:
    """Validate ``doc`` against every declared extension schema we hold."""
    extensions = doc.get("stac_extensions", [])
    if not isinstance(extensions, list) or not all(isinstance(e, str) for e in extensions):
        raise InvalidStac(f"{what}: stac_extensions must be a list of schema URLs")
    for url in extensions:
        checker = _checker(url)
        if checker is None or checker.is_valid(doc):
            continue
        try:
            _explainer(url)(doc)
        except fastjsonschema.JsonSchemaValueException as exc:
            where = ".".join(exc.path[1:])
            detail = exc.message.replace("data.", "", 1) if exc.message else str(exc)
            raise InvalidStac(
                f"{what} does not follow the {_name(url)} extension ({url}): {detail}",
                path=where or None,
            ) from exc
        raise InvalidStac(f"{what} does not follow the {_name(url)} extension ({url})")


def _name(url: str) -> str:
    return url.removeprefix("https://stac-extensions.github.io/").split("/")[0]
