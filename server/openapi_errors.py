"""The error answers of the OpenAPI document, declared as the app gives them.

FastAPI declares only ``422`` with its own validation body, which the app never sends: the error
table (server/errors.py) answers invalid requests with ``400`` and every error with a
``{"code", "description"}`` body. Each operation gets the errors it can answer: ``400`` when it
takes parameters or a body, ``404`` when its path names a resource, ``401`` everywhere (a token
that is given and refused), ``403`` and ``429`` where the rights table (server/policy.py) asks
for more than reading, and the few of its own listed in ``_OWN``. HEAD answers declare no body.
"""

from typing import Any

from fastapi import FastAPI

from .openapi import amend_openapi
from .policy import Rule, rule_of

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
    "401": "A valid 'Authorization: Bearer <token>' header is required, or the one given "
    "was refused",
    "403": "The caller lacks the right or the token scope this needs",
    "404": "Not found",
    "408": "No data arrived for too long",
    "409": "A conflict: the name is taken, or Upload-Offset is not the upload's offset",
    "410": "The upload expired",
    "412": "Missing or unsupported Tus-Resumable header",
    "413": "Larger than the upload or the size limit, or than the account's storage quota",
    "415": "The body must be application/offset+octet-stream",
    "422": "Well formed, but not possible for this resource",
    "429": "Too many failed sign-ins or token checks: wait Retry-After seconds",
    "460": "The chunk fails its Upload-Checksum",
    "502": "A datacube's store cannot be read now",
}
# Rules that let anyone with a readable collection through: no 403 to declare.
_OPEN = {Rule.PUBLIC, Rule.LISTED, Rule.READ}
# Errors an operation answers beyond the general rules, by operation id: the tus protocol's.
_OWN = {
    "createAccount": ("409",),  # account.Exists
    "createUploadSet": ("404",),  # the collection named in the body
    "addUploadFile": ("413",),  # the file's size limit, the owner's quota
    "tusCreate": ("412", "413", "415"),
    "tusHead": ("412", "410"),
    "tusPatch": ("408", "409", "410", "412", "413", "415", "460"),
    "tusTerminate": ("412", "410"),
    # cube.AreaTooLarge and cube.StoreUnreadable (ogc/cube_series.py, ogc/cube_edr.py)
    **dict.fromkeys(
        (
            "getCollectionTimeSeries",
            "postCollectionTimeSeries",
            "getCollectionAreaStatistics",
            "postCollectionAreaStatistics",
            "getCollectionPosition",
            "getCollectionArea",
        ),
        ("413", "502"),
    ),  # fmt: skip
}


def describe_errors(app: FastAPI) -> None:
    """Wrap ``app.openapi`` so that every operation declares the errors it can answer."""
    amend_openapi(app, _declare)


def _declare(doc: dict[str, Any]) -> dict[str, Any]:
    doc.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for item in doc.get("paths", {}).values():
        for method, operation in item.items():
            if not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            for status in _errors(operation):
                responses[status] = _error_response(status)
            if method == "head":  # a HEAD answer has no body, so no media type either
                for response in responses.values():
                    response.pop("content", None)
    return doc


def _errors(operation: dict[str, Any]) -> list[str]:
    params = operation.get("parameters", [])
    operation_id = operation.get("operationId", "")
    found = list(_OWN.get(operation_id, ()))
    if params or "requestBody" in operation:
        found.append("400")
    if any(p.get("in") == "path" for p in params):
        found.append("404")
    found += ["401", "429"]
    if rule_of(operation_id) not in _OPEN:
        found.append("403")
    if "422" in operation.get("responses", {}):
        found.append("422")
    return found


def _error_response(status: str) -> dict[str, Any]:
    return {
        "description": _REASONS[status],
        "content": {"application/json": {"schema": {"$ref": ERROR}}},
    }
