"""One exception -> status table; every error body is ``{"code", "description"}`` (STAC style).

Our errors carry their code, status and headers (``CatalogError``: the rights errors of
catalog/accounts/errors.py too, with their ``WWW-Authenticate``); libraries' exceptions
are mapped by the package that drives them (tiler/errors.py) and come in through its API part.
"""

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from catalog.errors import CatalogError, error_body

logger = logging.getLogger("terracat")


HTTP_CODES = {
    400: "request.Invalid",
    401: "auth.Unauthorized",
    403: "auth.Forbidden",
    404: "http.NotFound",
    405: "http.MethodNotAllowed",
    406: "http.NotAcceptable",
    413: "http.PayloadTooLarge",
    415: "http.UnsupportedMediaType",
}


def _catalog_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, CatalogError):  # registered for CatalogError only
        raise exc
    return JSONResponse(error_body(exc.code, exc.description, **exc.detail), exc.status,
                        headers=exc.headers)  # fmt: skip


# A body or query field that fails validation gets the code of the search parameter it is.
_FIELD_CODES = {
    "bbox": "search.InvalidBBox",
    "datetime": "search.InvalidDatetime",
    "intersects": "search.InvalidGeometry",
    "limit": "search.InvalidLimit",
    "filter": "search.InvalidFilter",
    "filter-lang": "search.InvalidFilter",
    "sortby": "search.InvalidSortBy",
    "token": "search.InvalidToken",
}


def _validation_code(errors: list[Any]) -> str:
    for err in errors:
        loc = [p for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        if loc and loc[0] in _FIELD_CODES:
            return _FIELD_CODES[str(loc[0])]
    return "request.InvalidParameter"


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):  # registered for RequestValidationError only
        raise exc
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
        problems.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
    return JSONResponse(
        error_body(_validation_code(list(exc.errors())),
                   "; ".join(problems) or "invalid request", detail=detail),
        400,
    )  # fmt: skip


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        raise exc
    # An HTTPException of ours (server/middleware.py: BodyTooLarge) carries its own code.
    code = getattr(exc, "code", None) or HTTP_CODES.get(exc.status_code, f"http.{exc.status_code}")
    return JSONResponse(
        error_body(code, str(exc.detail)), exc.status_code, headers=getattr(exc, "headers", None)
    )


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body("server.InternalError", "internal server error"), 500)


def add_error_handlers(
    app: FastAPI, handlers: Mapping[type[Exception], Callable[..., Any]] | None = None
) -> None:
    """Register the error table on ``app``, after ``handlers`` (the API parts' own)."""
    for exception, handler in (handlers or {}).items():
        app.add_exception_handler(exception, handler)
    app.add_exception_handler(CatalogError, _catalog_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
