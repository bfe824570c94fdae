"""The one shape every part of the API takes, and how create_app merges the parts.

A part is what one feature adds to the app: stac-fastapi extensions (their routes, and the
conformance classes ``/conformance`` lists), request models of the STAC core routes, operation
ids of routes whose library gives none, links on the landing page and on every collection,
hooks adding links per item or collection document, exception handlers, and what it puts on
``app.state`` at lifespan start. The implementer
declares its conformance classes on its extension; a part only gathers them.

Routers that are not stac-fastapi extensions (titiler factories, uploads) join through
``RoutersExtension``, so StacApi registers every part alike and in the order given.
"""

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypedDict

import attr
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from stac_fastapi.types.extension import ApiExtension
from starlette.datastructures import State
from starlette.routing import BaseRoute

from catalog.stac.client import CollectionItems, DocumentLinks

from .middleware import BodyLimits

# rel, type, title and ``path``: relative to the API root (landing links) or to the
# collection's URL (collection links, ``""`` for the collection itself); ``auth:refs``
# (["bearer"]) on a link that needs a token.
Link = dict[str, Any]
ExceptionHandler = Callable[..., Any]


class StacRequestModels(TypedDict, total=False):
    """Request models of StacApi's own routes, named as StacApi's arguments."""

    search_get_request_model: type[Any]
    search_post_request_model: type[Any]
    items_get_request_model: type[Any]
    item_get_request_model: type[Any]
    collections_get_request_model: type[Any]


@attr.s(frozen=True, kw_only=True)
class ApiPart:
    """Everything one part of the API adds to the app (see the module docstring)."""

    name: str = attr.ib()
    extensions: Sequence[ApiExtension] = attr.ib(default=())
    request_models: StacRequestModels = attr.ib(factory=lambda: StacRequestModels())
    # "METHOD /path" -> operationId, for routes registered without one (stac-fastapi's)
    operation_ids: Mapping[str, str] = attr.ib(factory=dict)
    landing_links: Sequence[Link] = attr.ib(default=())
    collection_links: Sequence[Link] = attr.ib(default=())
    # Links per document: hooks run on every item and collection the STAC routes send.
    item_hooks: Sequence[DocumentLinks] = attr.ib(default=())
    collection_hooks: Sequence[DocumentLinks] = attr.ib(default=())
    # Items routes of collections whose items are not STAC items (vector collections).
    collection_items: Sequence[CollectionItems] = attr.ib(default=())
    error_handlers: Mapping[type[Exception], ExceptionHandler] = attr.ib(factory=dict)
    # "METHOD /path" -> largest body in bytes, for routes that take more than the app's limit
    body_limits: Mapping[str, int] = attr.ib(factory=dict)
    # Called at lifespan start, once the catalogue's repositories are on ``app.state``.
    start: Callable[[State], None] | None = attr.ib(default=None)


@attr.s(kw_only=True)
class RoutersExtension(ApiExtension):
    """Plain routers registered like a stac-fastapi extension.

    ``routers`` is called with the app at registration (the tus hooks bind its state).
    """

    routers: Callable[[FastAPI], Iterable[APIRouter]] = attr.ib()
    conformance_classes: list[str] = attr.ib(factory=list)

    def register(self, app: FastAPI) -> None:
        """Include the routers in ``app``."""
        for router in self.routers(app):
            app.include_router(router)


def routers_part(
    name: str, routers: Callable[[FastAPI], Iterable[APIRouter]], **declared: Any
) -> ApiPart:
    """A part whose routes are plain routers."""
    return ApiPart(name=name, extensions=[RoutersExtension(routers=routers)], **declared)


# -- merging ------------------------------------------------------------------------------------
def extensions(parts: Sequence[ApiPart]) -> list[ApiExtension]:
    """Every part's extensions, in the parts' order (routes match in this order)."""
    return [extension for part in parts for extension in part.extensions]


def request_models(parts: Sequence[ApiPart]) -> StacRequestModels:
    """The request models of the STAC core routes; two parts may not set the same one."""
    merged = StacRequestModels()
    for part in parts:
        for key, model in part.request_models.items():
            if key in merged:
                raise ValueError(f"two parts set StacApi's {key} ({part.name} is the second)")
            merged[key] = model  # type: ignore[literal-required]
    return merged


def landing_links(parts: Sequence[ApiPart]) -> list[Link]:
    """The landing page links of every part."""
    return [dict(link) for part in parts for link in part.landing_links]


def collection_links(parts: Sequence[ApiPart]) -> list[Link]:
    """The links every collection gets from every part."""
    return [dict(link) for part in parts for link in part.collection_links]


def item_hooks(parts: Sequence[ApiPart]) -> list[DocumentLinks]:
    """Every part's item link hooks, in the parts' order."""
    return [hook for part in parts for hook in part.item_hooks]


def collection_hooks(parts: Sequence[ApiPart]) -> list[DocumentLinks]:
    """Every part's collection link hooks, in the parts' order."""
    return [hook for part in parts for hook in part.collection_hooks]


def collection_items(parts: Sequence[ApiPart]) -> list[CollectionItems]:
    """Every part's non-STAC items handlers, in the parts' order."""
    return [handler for part in parts for handler in part.collection_items]


def error_handlers(parts: Sequence[ApiPart]) -> dict[type[Exception], ExceptionHandler]:
    """Every part's exception handlers (parts that render alike may both declare one)."""
    return {exc: handler for part in parts for exc, handler in part.error_handlers.items()}


def api_routes(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Every API route below ``routes`` with its full path.

    FastAPI keeps an included router as one entry (its ``original_router``, included with a
    prefix) and builds the effective routes, copying their operation ids, on first use: naming
    must reach the original routes before that, so this walks them without building anything.
    """
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
        elif isinstance(route, APIRoute):
            yield prefix + route.path, route


def name_operations(app: FastAPI, parts: Sequence[ApiPart]) -> None:
    """Give the routes the parts name their operation ids; a name that matches no route fails."""
    names = {key: name for part in parts for key, name in part.operation_ids.items()}
    for path, route in api_routes(app.routes):
        for method in route.methods or ():
            name = names.pop(f"{method} {path}", None)
            if name is not None:
                route.operation_id = name
    if names:
        raise ValueError(f"operation ids for routes that do not exist: {sorted(names)}")


def limit_bodies(app: FastAPI, parts: Sequence[ApiPart], bodies: BodyLimits) -> None:
    """Give the routes the parts name their own body limits; a limit for no route fails."""
    limits = {key: size for part in parts for key, size in part.body_limits.items()}
    for path, route in api_routes(app.routes):
        for method in route.methods or ():
            size = limits.pop(f"{method} {path}", None)
            if size is not None:
                bodies.add(method, path, size)
    if limits:
        raise ValueError(f"body limits for routes that do not exist: {sorted(limits)}")


def start(parts: Sequence[ApiPart], state: State) -> None:
    """Run every part's lifespan start, in the parts' order."""
    for part in parts:
        if part.start is not None:
            part.start(state)
