"""The error answers of the OpenAPI document, declared as the app gives them.

FastAPI declares only ``422`` with its own validation body, which the app never sends: the error
table (server/errors.py) answers invalid requests with ``400`` and every error with a
``{"code", "description"}`` body. Each operation gets the errors it can answer: ``400`` when it
takes parameters or a body, ``404`` when its path names a resource, ``401``/``403`` when it needs
the admin token, and the few of its own listed in ``_OWN``. HEAD answers declare no body.
"""

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant

from .parts import api_routes

ERROR = "#/components/schemas/Error"
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["code", "description"],
    "properties": {
        "code": {"type": "string", "description": "Stable dotted error code"},
        "description": {"type": "string", "description": "What went wrong"},
    },
}
_REASONS = {
    "400": "Invalid parameters or body",
    "401": "A valid 'Authorization: Bearer <token>' header is required",
    "403": "Writes are disabled (no admin token configured)",
    "404": "Not found",
    "408": "No data arrived for too long",
    "409": "Upload-Offset is not the upload's offset",
    "410": "The upload expired",
    "412": "Missing or unsupported Tus-Resumable header",
    "413": "Larger than the upload or the size limit",
    "415": "The body must be application/offset+octet-stream",
    "422": "Well formed, but not possible for this resource",
    "460": "The chunk fails its Upload-Checksum",
}
# Errors an operation answers beyond the general rules, by operation id: the tus protocol's.
_OWN = {
    "createUploadSet": ("404",),  # the collection named in the body
    "tusCreate": ("412", "413", "415"),
    "tusHead": ("412", "410"),
    "tusPatch": ("408", "409", "410", "412", "413", "415", "460"),
    "tusTerminate": ("412", "410"),
}


def describe_errors(app: FastAPI, admin_dependency: str = "require_admin") -> None:
    """Wrap ``app.openapi`` so that every operation declares the errors it can answer."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _declare(generate(), _guarded(app, admin_dependency))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _guarded(app: FastAPI, name: str) -> set[tuple[str, str]]:
    """(method, path) of the routes that depend on the admin check."""
    return {(method.lower(), path) for path, route in api_routes(app.routes)
            if any(getattr(d.call, "__name__", "") == name for d in _dependants(route.dependant))
            for method in route.methods or ()}  # fmt: skip


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _declare(doc: dict[str, Any], guarded: set[tuple[str, str]]) -> dict[str, Any]:
    doc.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            for status in _errors(method, path, operation, guarded):
                responses[status] = _error_response(status)
            if method == "head":  # a HEAD answer has no body, so no media type either
                for response in responses.values():
                    response.pop("content", None)
    return doc


def _errors(
    method: str, path: str, operation: dict[str, Any], guarded: set[tuple[str, str]]
) -> list[str]:
    params = operation.get("parameters", [])
    found = list(_OWN.get(operation.get("operationId", ""), ()))
    if params or "requestBody" in operation:
        found.append("400")
    if any(p.get("in") == "path" for p in params):
        found.append("404")
    if (method, path) in guarded:
        found += ["401", "403"]
    if "422" in operation.get("responses", {}):
        found.append("422")
    return found


def _error_response(status: str) -> dict[str, Any]:
    return {
        "description": _REASONS[status],
        "content": {"application/json": {"schema": {"$ref": ERROR}}},
    }
