"""A lean route for plain feature pages of vector collections.

``GET /collections/{collection_id}/items`` is stac-fastapi's route (ogc/features.py): FastAPI
solves its twenty query parameters, walks the app's routers and runs the dependencies on every
request, which cost a sortby page of a vector collection more Python time than the page's
statement took in PostgreSQL. A request this route recognises skips that: a GET of a collection
this process already serves as a vector collection (its layer kept by ``FeatureReader``), with
no parameter but these, each once, and values FastAPI would take as they are (canonical
integers, the literals the model allows). It runs the app's rights check of ``getFeatures``
itself and gives the same parameters to the same ``VectorItems.items``.

Any other request (a STAC collection, ``facetby``, ``f=html``, a repeated or unusual value, a
collection not read yet) falls through to the documented route, which answers it with its own
validation and error codes; so does a request whose collection stopped being a vector one
between the match and the answer (sent on through the app's router, not matched here again).
"""

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import attr
from fastapi import FastAPI, Request
from stac_fastapi.types.extension import ApiExtension
from stac_fastapi.types.search import str2list
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

from catalog.vector.features import FeatureReader

from .features import VectorItems

Guard = Callable[[Request, str], Awaitable[object]]
OPERATION = "getFeatures"
PATH = "/collections/{collection_id}/items"
PARAMS_KEY = "terracat.feature_params"  # the scope key of the parameters the match read
_PASSED_KEY = "terracat.feature_route_passed"  # set on a request handed back to the router
_CANONICAL_INT = re.compile(r"0|[1-9][0-9]{0,8}")
# query name -> the name the items model gives it (stac-fastapi's ``kwargs()``)
_TEXT = {
    "bbox": "bbox",
    "bbox-crs": "bbox_crs",
    "datetime": "datetime",
    "filter": "filter_expr",
    "filter-crs": "filter_crs",
    "token": "token",
    "crs": "crs",
    "properties": "properties",
}
_INTEGER = {"limit": "limit", "offset": "offset"}
_CHOICES: dict[str, tuple[str, dict[str, Any]]] = {
    "filter-lang": ("filter_lang", {"cql2-text": "cql2-text", "cql2-json": "cql2-json"}),
    "skipGeometry": ("skip_geometry", {"true": True, "false": False}),
    "f": ("f", {"json": "json", "geojson": "geojson"}),
}
_LEAN = frozenset(_TEXT) | frozenset(_INTEGER) | frozenset(_CHOICES) | {"sortby"}


def lean_params(query_string: bytes) -> dict[str, Any] | None:
    """The items route's parameters (as its model gives them) of a query this route serves,
    or None for any other."""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    query = dict(pairs)
    if len(query) != len(pairs) or not query.keys() <= _LEAN:
        return None
    params: dict[str, Any] = {"filter_lang": "cql2-text"}  # the model's default
    for name, value in query.items():
        if name in _TEXT:
            params[_TEXT[name]] = value
        elif name in _INTEGER:
            if not _CANONICAL_INT.fullmatch(value):
                return None
            params[_INTEGER[name]] = int(value)
        elif name == "sortby":
            params["sortby"] = str2list(value)
        else:
            key, allowed = _CHOICES[name]
            if value not in allowed:
                return None
            params[key] = allowed[value]
    return params


class LeanFeatureRoute(Route):
    """The items route of vector collections, matched before the app's others for plain
    feature pages only (see the module docstring)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """A full match for a plain GET of a kept vector collection's features; no match for
        anything else."""
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get(_PASSED_KEY):
            return Match.NONE, {}
        match, child = super().matches(scope)
        if match is not Match.FULL:
            return Match.NONE, {}
        reader: FeatureReader | None = getattr(scope["app"].state, "features", None)
        if reader is None or not reader.kept(child["path_params"]["collection_id"]):
            return Match.NONE, {}
        params = lean_params(scope.get("query_string", b""))
        if params is None:
            return Match.NONE, {}
        return match, {**child, PARAMS_KEY: params}


@attr.s(frozen=True)
class _LeanFeatures:
    """The route's ASGI app: the rights check, then ``VectorItems.items``."""

    items: VectorItems = attr.ib()
    guard: Guard = attr.ib()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        await self.guard(request, OPERATION)  # the app's rights check, as on every route
        collection_id = request.path_params["collection_id"]
        answer = await self.items.items(request, collection_id, scope[PARAMS_KEY])
        if answer is None:  # no longer a vector collection: the documented route answers
            scope[_PASSED_KEY] = True
            await scope["app"].router(scope, receive, send)
            return
        await answer(scope, receive, send)


@attr.s(kw_only=True)
class LeanFeaturesExtension(ApiExtension):
    """Puts ``LeanFeatureRoute`` first among the app's routes (no OpenAPI operation of its
    own: the documented route describes the same requests)."""

    items: VectorItems = attr.ib()
    guard: Guard = attr.ib()
    conformance_classes: list[str] = attr.ib(factory=list)

    def register(self, app: FastAPI) -> None:
        """Insert the route before the app's others."""
        route: BaseRoute = LeanFeatureRoute(
            PATH, _LeanFeatures(self.items, self.guard), methods=["GET"], include_in_schema=False
        )
        app.router.routes.insert(0, route)


__all__ = ["LeanFeatureRoute", "LeanFeaturesExtension", "lean_params"]
