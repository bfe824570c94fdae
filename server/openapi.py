"""The OpenAPI document, made true to what the routes answer.

stac-fastapi declares full STAC Items and Collections as the answers of the routes that take the
fields extension, but ``fields`` removes members those schemas require (``geometry``,
``description``...): schema-checking clients, generators and fuzzers then reject valid answers.
Those operations get copies of the schemas that require only what ``fields`` always keeps.
"""

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from catalog.stac.fields import IDENTITY_FIELDS

SCHEMAS = "#/components/schemas/"
# The answer schemas of the fields routes, by the STAC schema they list and the relaxed name.
_LISTS = {
    "ItemCollection": ("features", "ItemCollectionWithFields", "ItemWithFields"),
    "Collections": ("collections", "CollectionsWithFields", "CollectionWithFields"),
}


def amend_openapi(app: FastAPI, amend: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Wrap ``app.openapi`` so that the document is passed through ``amend`` once, when first
    made (wrappers stack: each amends what the one before it made)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = amend(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def describe_fields(app: FastAPI) -> None:
    """Wrap ``app.openapi`` so that routes taking ``fields`` declare what they can answer."""
    amend_openapi(app, _relax)


def _relax(doc: dict[str, Any]) -> dict[str, Any]:
    schemas = doc.get("components", {}).get("schemas", {})
    for operation in _operations(doc):
        if not _takes_fields(operation, schemas):
            continue
        content = operation.get("responses", {}).get("200", {}).get("content", {})
        for media in content.values():
            ref = media.get("schema", {}).get("$ref", "")
            name = ref.removeprefix(SCHEMAS)
            if name in _LISTS:
                media["schema"] = {"$ref": SCHEMAS + _relaxed_list(schemas, name)}
    return doc


def _operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for item in doc.get("paths", {}).values() for op in item.values()
            if isinstance(op, dict)]  # fmt: skip


def _takes_fields(operation: dict[str, Any], schemas: dict[str, Any]) -> bool:
    if any(p.get("name") == "fields" for p in operation.get("parameters", [])):
        return True
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    name = body.get("schema", {}).get("$ref", "").removeprefix(SCHEMAS)
    return "fields" in schemas.get(name, {}).get("properties", {})


def _relaxed_list(schemas: dict[str, Any], name: str) -> str:
    """Add (once) the list schema whose members need only the identity fields."""
    member_key, list_name, member_name = _LISTS[name]
    if list_name not in schemas:
        listed = copy.deepcopy(schemas[name])
        member_ref = listed["properties"][member_key]["items"]["$ref"]
        member = copy.deepcopy(schemas[member_ref.removeprefix(SCHEMAS)])
        member["required"] = [k for k in member.get("required", []) if k in IDENTITY_FIELDS]
        member["description"] = "The members the fields extension selected."
        # Members that are objects (properties, assets, extent) may be cut inside too.
        for key, value in member.get("properties", {}).items():
            if _is_object(value, schemas):
                nullable = {"type": "null"} in value.get("anyOf", [])
                member["properties"][key] = {"type": ["object", "null"] if nullable else "object"}
        schemas[member_name] = member
        listed["properties"][member_key]["items"] = {"$ref": SCHEMAS + member_name}
        schemas[list_name] = listed
    return list_name


def _is_object(schema: dict[str, Any], schemas: dict[str, Any]) -> bool:
    """Whether a member's schema is an object (through a ``$ref``, or as one of its options)."""
    if "$ref" in schema:
        return _is_object(schemas.get(schema["$ref"].removeprefix(SCHEMAS), {}), schemas)
    options = [*schema.get("anyOf", []), *schema.get("oneOf", [])]
    if any(_is_object(option, schemas) for option in options):
        return True
    return schema.get("type") == "object" or "additionalProperties" in schema
